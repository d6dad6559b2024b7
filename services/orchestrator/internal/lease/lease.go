// Package lease fences the orchestrator's work on a store with a per-store
// lease kept in the bus's lease bucket (a JetStream key-value bucket).
//
// # Fencing contract
//
// The key is the store id; the value is a JSON Record naming the holder,
// when the lease expires and the last command applied to the store. The
// key's revision is the fencing token: every write is a compare-and-set on
// the revision the writer last read (Create for a new key, Update
// otherwise), so two workers can never both believe they took the lease.
//
//   - A worker changes a store (Kubernetes objects, status and audit
//     events) only between a successful Acquire and Release, and calls
//     Renew well before Expires (the worker does so every TTL/3).
//   - A lease whose Expires has passed may be taken over by anyone. The
//     old holder's next Renew or Release then fails with ErrLost: it must
//     stop at once and leave the command to the new holder. Writes it made
//     between its last renewal and noticing the loss are not fenced, which
//     is why every write a reconcile makes is idempotent (server-side
//     apply, create-if-absent, events with deterministic ids).
//   - Release records the command just applied (generation and action)
//     and keeps it across holders; Record.Supersedes then tells a later
//     command that is obsolete. A released record keeps the last holder's
//     name, so the bucket shows which worker handled each store last.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
)

// DefaultTTL is how long a lease lasts without renewal when Store.TTL is
// zero.
const DefaultTTL = 30 * time.Second

var (
	// ErrLost means the lease was taken over after it expired (or the
	// bucket was changed under the holder). The holder must stop working
	// on the store without recording anything.
	ErrLost = errors.New("store lease lost")
)

// HeldError means another holder has an unexpired lease on the store. The
// caller should try again later, after Expires at the latest.
type HeldError struct {
	StoreID string
	Holder  string
	Expires time.Time
}

func (e *HeldError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("store %s is leased by another worker", e.StoreID)
	}
	return fmt.Sprintf("store %s is leased by %s until %s", e.StoreID, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

// Record is the JSON value of a store's key.
type Record struct {
	// Holder is the worker holding the lease or, once released, the last
	// one that held it.
	Holder string `json:"holder"`
	// Expires is when the lease lapses; zero once released.
	Expires time.Time `json:"expires"`
	// AppliedGeneration and AppliedAction name the last command whose
	// outcome (READY, DELETED or FAILED) was published.
	AppliedGeneration int64  `json:"appliedGeneration"`
	AppliedAction     string `json:"appliedAction,omitempty"`
}

// Action names as stored in Record.AppliedAction.
const (
	ActionProvision = "provision"
	ActionDelete    = "delete"
)

// ActionName returns the Record.AppliedAction of a command action.
func ActionName(a eventsv1.Action) string {
	switch a {
	case eventsv1.Action_ACTION_PROVISION:
		return ActionProvision
	case eventsv1.Action_ACTION_DELETE:
		return ActionDelete
	}
	return ""
}

// actionRank orders actions of the same generation: a delete outranks a
// provision, so it is never dropped in favour of one.
func actionRank(name string) int {
	switch name {
	case ActionProvision:
		return 1
	case ActionDelete:
		return 2
	}
	return 0
}

// Supersedes reports whether the applied command makes a command of the
// given generation and action obsolete: it was of a newer generation, or
// of the same generation with the same action (a duplicate) or a delete.
// A delete is therefore never dropped for a provision of its generation
// or an older one.
func (r Record) Supersedes(generation int64, action eventsv1.Action) bool {
	if r.AppliedGeneration != generation {
		return r.AppliedGeneration > generation
	}
	return actionRank(r.AppliedAction) >= actionRank(ActionName(action))
}

// Held reports whether the lease is held at now.
func (r Record) Held(now time.Time) bool { return r.Holder != "" && r.Expires.After(now) }

// Store hands out leases from one bucket.
type Store struct {
	KV jetstream.KeyValue
	// TTL is how long a lease lasts without renewal; DefaultTTL when zero.
	TTL time.Duration
	// Now returns the current time; tests may fix it.
	Now func() time.Time
}

// Lease is one holder's hold on a store, valid until Release or until it
// reports ErrLost. Its methods are safe for concurrent use.
type Lease struct {
	store   *Store
	storeID string

	mu       sync.Mutex
	revision uint64
	record   Record
	done     bool
}

// Acquire takes the store's lease for holder when it is free, released or
// expired. It returns a *HeldError when another holder (or another call by
// the same holder) has it, and other errors when the bucket cannot be
// read or written; those are worth retrying.
func (s *Store) Acquire(ctx context.Context, storeID, holder string) (*Lease, error) {
	now := s.now()
	entry, err := s.KV.Get(ctx, storeID)
	var rec Record
	var revision uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("cannot read the lease of store %s: %w", storeID, err)
	default:
		if err := json.Unmarshal(entry.Value(), &rec); err != nil {
			return nil, fmt.Errorf("lease of store %s is not a lease record: %w", storeID, err)
		}
		if rec.Held(now) {
			return nil, &HeldError{StoreID: storeID, Holder: rec.Holder, Expires: rec.Expires}
		}
		revision = entry.Revision()
	}

	rec.Holder = holder
	rec.Expires = now.Add(s.ttl())
	value, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if revision == 0 {
		revision, err = s.KV.Create(ctx, storeID, value)
	} else {
		revision, err = s.KV.Update(ctx, storeID, value, revision)
	}
	if isConflict(err) {
		// Someone wrote between our read and write: they hold it now.
		return nil, &HeldError{StoreID: storeID}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot take the lease of store %s: %w", storeID, err)
	}
	return &Lease{store: s, storeID: storeID, revision: revision, record: rec}, nil
}

// Get returns the store's record and whether it has one, for observation.
func (s *Store) Get(ctx context.Context, storeID string) (Record, bool, error) {
	entry, err := s.KV.Get(ctx, storeID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("cannot read the lease of store %s: %w", storeID, err)
	}
	var rec Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return Record{}, false, fmt.Errorf("lease of store %s is not a lease record: %w", storeID, err)
	}
	return rec, true, nil
}

// Record returns the record as of the last acquisition or renewal; its
// applied fields say what was applied before this holder took over.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.record
}

// Renew extends the lease by the store's TTL. It returns ErrLost when the
// lease was taken over; other errors (the bucket unreachable) leave the
// lease held until it expires, and the caller may try again.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.record
	rec.Expires = l.store.now().Add(l.store.ttl())
	return l.write(ctx, rec)
}

// Release gives the lease up. When applied is non-nil, the record notes
// that command as applied (never lowering what was applied before); the
// applied fields are otherwise kept. It returns ErrLost when the lease was
// taken over, in which case nothing is recorded.
func (l *Lease) Release(ctx context.Context, applied *eventsv1.ProvisionCommand) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := l.record
	rec.Expires = time.Time{}
	if applied != nil && !rec.Supersedes(applied.GetGeneration(), applied.GetAction()) {
		rec.AppliedGeneration = applied.GetGeneration()
		rec.AppliedAction = ActionName(applied.GetAction())
	}
	if err := l.write(ctx, rec); err != nil {
		return err
	}
	l.done = true
	return nil
}

// write stores rec if the key is still at our revision; l.mu is held.
func (l *Lease) write(ctx context.Context, rec Record) error {
	if l.done {
		return fmt.Errorf("lease of store %s already released: %w", l.storeID, ErrLost)
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	revision, err := l.store.KV.Update(ctx, l.storeID, value, l.revision)
	if isConflict(err) {
		l.done = true
		return fmt.Errorf("lease of store %s: %w", l.storeID, ErrLost)
	}
	if err != nil {
		return fmt.Errorf("cannot write the lease of store %s: %w", l.storeID, err)
	}
	l.revision, l.record = revision, rec
	return nil
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

func (s *Store) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultTTL
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
