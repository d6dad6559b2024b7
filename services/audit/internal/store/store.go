// Package store is the audit log's database: it applies the versioned
// migrations, appends entries idempotently by (event id, lease token) to a
// hash chain, lists them in (time, id) order with keyset paging, verifies
// the chain and deletes entries past the retention (chain.go). Times are
// stored in UTC with microsecond precision, the precision PostgreSQL keeps,
// so that both dialects return the same values and compare them the same
// way.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	"github.com/storeprov/storeprov/pkg/database"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/audit/internal/ent"
	"github.com/storeprov/storeprov/services/audit/internal/ent/auditentry"
)

//go:embed migrations
var migrations embed.FS

// Migrations returns the versioned migrations, laid out as
// database.DB.Migrate expects.
func Migrations() fs.FS { return migrations }

// ErrInvalidEntry means an entry lacks its id or time. Such an entry
// cannot become valid by retrying.
var ErrInvalidEntry = errors.New("invalid audit entry")

// Store is the audit log. It is safe for concurrent use.
type Store struct {
	db     *database.DB
	client *ent.Client
	now    func() time.Time
}

// Open connects to the database at url (see package database for the
// forms), applies the migrations not applied yet, and returns the log. The
// caller must Close it.
func Open(ctx context.Context, url string) (*Store, error) {
	db, err := database.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot migrate the audit database: %w", err)
	}
	s := &Store{db: db, client: ent.NewClient(ent.Driver(db.Driver)), now: time.Now}
	if err := s.seal(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SetClock replaces the clock that stamps recorded_at; for tests.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Close closes the database.
func (s *Store) Close() error { return s.client.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Append records e unless an entry with the same id and lease token is
// already recorded. inserted is false for such a duplicate, which is not
// an error: events are delivered at least once, and an event the
// orchestrator reports again under a new lease (a new attempt) is a new
// entry. The entry joins the end of the hash chain; when Append returns,
// the row and the chain's new head are committed together. An entry
// without id or time is rejected with ErrInvalidEntry; ErrChainMissing
// means the database was changed outside the audit service; any other
// error is the database's and the caller may retry.
func (s *Store) Append(ctx context.Context, e *auditv1.AuditEntry) (inserted bool, err error) {
	if e.GetId() == "" {
		return false, fmt.Errorf("%w: it has no id", ErrInvalidEntry)
	}
	if e.GetTime() == nil || e.GetTime().CheckValid() != nil {
		return false, fmt.Errorf("%w: event %s has no valid time", ErrInvalidEntry, e.GetId())
	}
	c := content{
		EventID:    e.GetId(),
		LeaseToken: e.GetLeaseToken(),
		Action:     e.GetAction(),
		Actor:      e.GetActor(),
		StoreID:    e.GetStoreId(),
		StoreOwner: e.GetStoreOwner(),
		Time:       normalize(e.GetTime().AsTime()),
		Detail:     e.GetDetail(),
	}
	err = s.inChain(ctx, func(tx *ent.Tx, chain *ent.AuditChain) error {
		exists, err := tx.AuditEntry.Query().
			Where(auditentry.EventID(c.EventID), auditentry.LeaseToken(c.LeaseToken)).
			Exist(ctx)
		if err != nil || exists {
			return err
		}
		// Stamped under the chain's lock, so recorded_at grows with the
		// sequence on one clock, which retention relies on.
		c.RecordedAt = normalize(s.now())
		hash := c.hash(chain.HeadHash)
		row, err := tx.AuditEntry.Create().
			SetEventID(c.EventID).
			SetLeaseToken(c.LeaseToken).
			SetAction(c.Action).
			SetActor(c.Actor).
			SetStoreID(c.StoreID).
			SetStoreOwner(c.StoreOwner).
			SetTime(c.Time).
			SetDetail(c.Detail).
			SetRecordedAt(c.RecordedAt).
			SetPrevHash(chain.HeadHash).
			SetHash(hash).
			Save(ctx)
		if err != nil {
			return err
		}
		inserted = true
		return tx.AuditChain.UpdateOneID(chainID).SetHeadHash(hash).SetHeadSequence(row.ID).Exec(ctx)
	})
	if err != nil {
		return false, fmt.Errorf("cannot record audit event %s: %w", e.GetId(), err)
	}
	return inserted, nil
}

// Owner returns the owner the api recorded for a store: the owner of its
// "create" entry, which only the api publishes. found is false when no
// such entry is recorded (yet).
func (s *Store) Owner(ctx context.Context, storeID string) (owner string, found bool, err error) {
	row, err := s.client.AuditEntry.Query().
		Where(auditentry.StoreID(storeID), auditentry.Action(lifecycle.ActionCreate), auditentry.StoreOwnerNEQ("")).
		Order(auditentry.ByID()).
		First(ctx)
	switch {
	case ent.IsNotFound(err):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("cannot read the owner of store %s: %w", storeID, err)
	}
	return row.StoreOwner, true, nil
}

// Cursor is a position in the log: entries after it come after (Time, ID)
// in the log's order.
type Cursor struct {
	Time time.Time
	ID   int
}

// Query selects entries. Empty strings and zero times select everything.
type Query struct {
	StoreID    string
	Actor      string
	Action     string
	StoreOwner string
	// Start is inclusive, End exclusive.
	Start, End time.Time
	// After, when set, skips entries up to and including it.
	After *Cursor
	// Limit is the most entries returned; it must be positive.
	Limit int
}

// List returns up to q.Limit entries matching q, oldest first, and the
// cursor of the last one when more entries follow it (nil otherwise).
func (s *Store) List(ctx context.Context, q Query) ([]*auditv1.AuditEntry, *Cursor, error) {
	if q.Limit <= 0 {
		return nil, nil, fmt.Errorf("list limit must be positive, got %d", q.Limit)
	}
	query := s.client.AuditEntry.Query()
	if q.StoreID != "" {
		query.Where(auditentry.StoreID(q.StoreID))
	}
	if q.Actor != "" {
		query.Where(auditentry.Actor(q.Actor))
	}
	if q.Action != "" {
		query.Where(auditentry.Action(q.Action))
	}
	if q.StoreOwner != "" {
		query.Where(auditentry.StoreOwner(q.StoreOwner))
	}
	if !q.Start.IsZero() {
		query.Where(auditentry.TimeGTE(normalize(q.Start)))
	}
	if !q.End.IsZero() {
		query.Where(auditentry.TimeLT(normalize(q.End)))
	}
	if a := q.After; a != nil {
		t := normalize(a.Time)
		query.Where(auditentry.Or(
			auditentry.TimeGT(t),
			auditentry.And(auditentry.Time(t), auditentry.IDGT(a.ID)),
		))
	}
	rows, err := query.
		Order(auditentry.ByTime(), auditentry.ByID()).
		Limit(q.Limit + 1).
		All(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list audit entries: %w", err)
	}
	var next *Cursor
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		last := rows[len(rows)-1]
		next = &Cursor{Time: normalize(last.Time), ID: last.ID}
	}
	entries := make([]*auditv1.AuditEntry, len(rows))
	for i, r := range rows {
		entries[i] = toProto(r)
	}
	return entries, next, nil
}

// toProto returns a row as the API shows it.
func toProto(r *ent.AuditEntry) *auditv1.AuditEntry {
	return &auditv1.AuditEntry{
		Id:         r.EventID,
		Action:     r.Action,
		Actor:      r.Actor,
		StoreId:    r.StoreID,
		Time:       timestamppb.New(normalize(r.Time)),
		Detail:     r.Detail,
		StoreOwner: r.StoreOwner,
		LeaseToken: r.LeaseToken,
		Sequence:   int64(r.ID),
		Hash:       r.Hash,
	}
}

// normalize gives a time the form it is stored in. SQLite compares times
// as text, which orders correctly only when every time has the same zone
// and no monotonic clock reading.
func normalize(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
