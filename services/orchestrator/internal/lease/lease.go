// Package lease fences the orchestrator's work on a store with a per-store
// lease, and records the command last applied to each store.
//
// # Fencing contract
//
// A lease is a key, the store id, in the bus's lease bucket, whose TTL is
// the lease TTL: the server removes a key its holder has not renewed for
// that long, judged by the server's clock alone. Acquire creates the key
// (it fails while the key exists) and every later write is a
// compare-and-set on the revision the holder last wrote, so two workers
// never both hold a store. The revision Acquire got is the lease's Token:
// revisions only grow, so a later holder's token is greater than every
// earlier one's.
//
// What is fenced, and how:
//
//   - The work itself. Keep runs the work under a context that is
//     cancelled, with ErrLost as its cause, when a renewal finds the lease
//     taken, and also when no renewal succeeded for two thirds of the TTL:
//     a worker cut off from NATS stops a third of the TTL before the
//     server can hand the store to another worker. The deadline is
//     measured on this host's monotonic clock from before the renewal was
//     sent, so it never outlives the server's expiry whatever the hosts'
//     clocks say.
//   - Status and audit events. Each carries the holder's Token
//     (events.Publisher reads it from the context), and the api drops a
//     status event whose token is older than the last it applied for the
//     store. The publisher also refuses to publish once the fence closed.
//   - The applied record. Release writes it with a compare-and-set on the
//     revision read at Acquire, before deleting the lease key with a
//     compare-and-set on the lease's revision.
//
// What relies on idempotency instead: Kubernetes and Helm writes made in
// the margin between the fence closing on the server and the work
// noticing its cancelled context (an in-flight request). Every such write
// is idempotent (server-side apply, create-if-absent, Helm actions that
// the next holder settles: Unlock, history-based decisions), and events
// have deterministic ids.
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
	"github.com/storeprov/storeprov/pkg/bus"
)

// ErrLost means the lease was taken over, expired on the server, or could
// not be renewed in time. The holder must stop working on the store
// without recording anything.
var ErrLost = errors.New("store lease lost")

// HeldError means another holder has the store's lease. The caller should
// try again later; the lease lapses at most one TTL after its holder's
// last renewal.
type HeldError struct {
	StoreID string
	Holder  string
}

func (e *HeldError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("store %s is leased by another worker", e.StoreID)
	}
	return fmt.Sprintf("store %s is leased by %s", e.StoreID, e.Holder)
}

// Record is what was last applied to a store: the JSON value of its key in
// the applied bucket.
type Record struct {
	// Holder is the worker that applied it.
	Holder string `json:"holder"`
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

// Newer reports whether a command of generation and action makes a
// command of olderGeneration and olderAction obsolete: the same order as
// Supersedes, for two commands.
func Newer(generation int64, action eventsv1.Action, olderGeneration int64, olderAction eventsv1.Action) bool {
	if generation != olderGeneration {
		return generation > olderGeneration
	}
	return actionRank(ActionName(action)) > actionRank(ActionName(olderAction))
}

// Store hands out leases from the lease bucket and keeps the applied
// records.
type Store struct {
	// Leases is the lease bucket; its TTL must be TTL.
	Leases jetstream.KeyValue
	// Applied is the bucket of applied records.
	Applied jetstream.KeyValue
	// TTL is the lease bucket's TTL; DefaultTTL when zero.
	TTL time.Duration
}

// DefaultTTL is the lease TTL when Store.TTL is zero.
const DefaultTTL = bus.DefaultLeaseTTL

// Open binds the topology's lease and applied buckets, which
// Topology.Ensure made; TTL is the lease bucket's.
func Open(ctx context.Context, js jetstream.JetStream, topology bus.Topology) (*Store, error) {
	leases, err := js.KeyValue(ctx, topology.LeaseBucket())
	if err != nil {
		return nil, fmt.Errorf("cannot bind bucket %s: %w", topology.LeaseBucket(), err)
	}
	applied, err := js.KeyValue(ctx, topology.AppliedBucket())
	if err != nil {
		return nil, fmt.Errorf("cannot bind bucket %s: %w", topology.AppliedBucket(), err)
	}
	status, err := leases.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot read bucket %s: %w", topology.LeaseBucket(), err)
	}
	if status.TTL() <= 0 {
		return nil, fmt.Errorf("bucket %s has no TTL: leases would never lapse (Topology.Ensure sets it)", topology.LeaseBucket())
	}
	return &Store{Leases: leases, Applied: applied, TTL: status.TTL()}, nil
}

// holderValue is the JSON value of a lease key.
type holderValue struct {
	Holder string `json:"holder"`
}

// Lease is one holder's hold on a store, valid until Release or until it
// reports ErrLost. Its methods are safe for concurrent use.
type Lease struct {
	store   *Store
	storeID string
	holder  string
	token   uint64

	mu              sync.Mutex
	revision        uint64 // of the lease key, as last written
	renewed         time.Time
	applied         Record
	appliedRevision uint64 // 0 when the store has no record yet
	done            bool
}

// Acquire takes the store's lease for holder when no one holds it. It
// returns a *HeldError when another holder (or another call by the same
// holder) has it, and other errors when a bucket cannot be read or
// written; those are worth retrying.
func (s *Store) Acquire(ctx context.Context, storeID, holder string) (*Lease, error) {
	value, err := json.Marshal(holderValue{Holder: holder})
	if err != nil {
		return nil, err
	}
	sent := time.Now()
	revision, err := s.Leases.Create(ctx, storeID, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		held := &HeldError{StoreID: storeID}
		if entry, err := s.Leases.Get(ctx, storeID); err == nil {
			var h holderValue
			_ = json.Unmarshal(entry.Value(), &h)
			held.Holder = h.Holder
		}
		return nil, held
	}
	if err != nil {
		return nil, fmt.Errorf("cannot take the lease of store %s: %w", storeID, err)
	}
	l := &Lease{store: s, storeID: storeID, holder: holder, token: revision, revision: revision, renewed: sent}
	rec, appliedRevision, err := s.applied(ctx, storeID)
	if err != nil {
		// Give the lease back rather than hold it for a TTL unused.
		_ = s.Leases.Delete(context.WithoutCancel(ctx), storeID, jetstream.LastRevision(revision))
		return nil, err
	}
	l.applied, l.appliedRevision = rec, appliedRevision
	return l, nil
}

// Get returns the store's applied record and whether it has one, for
// observation.
func (s *Store) Get(ctx context.Context, storeID string) (Record, bool, error) {
	rec, revision, err := s.applied(ctx, storeID)
	return rec, revision > 0, err
}

// Holder returns who holds the store's lease, or "" when no one does.
func (s *Store) Holder(ctx context.Context, storeID string) (string, error) {
	entry, err := s.Leases.Get(ctx, storeID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read the lease of store %s: %w", storeID, err)
	}
	var h holderValue
	if err := json.Unmarshal(entry.Value(), &h); err != nil {
		return "", fmt.Errorf("lease of store %s is not a lease: %w", storeID, err)
	}
	return h.Holder, nil
}

func (s *Store) applied(ctx context.Context, storeID string) (Record, uint64, error) {
	entry, err := s.Applied.Get(ctx, storeID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, nil
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("cannot read what was applied to store %s: %w", storeID, err)
	}
	var rec Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("applied record of store %s is not a record: %w", storeID, err)
	}
	return rec, entry.Revision(), nil
}

func (s *Store) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultTTL
}

// Token is the lease's fencing token: the revision at which it was taken.
// A later holder of the same store has a greater one.
func (l *Lease) Token() uint64 { return l.token }

// Record returns what was applied to the store before this holder took
// it.
func (l *Lease) Record() Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applied
}

// Deadline is when the fence closes unless the lease is renewed first:
// two thirds of the TTL after the last successful renewal was sent, on
// this host's monotonic clock. The server expires the key a full TTL
// after it stored the write, which is later.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline()
}

func (l *Lease) deadline() time.Time {
	return l.renewed.Add(l.store.ttl() - l.store.ttl()/3)
}

// Valid returns nil while the lease is held and its fence open, ErrLost
// otherwise.
func (l *Lease) Valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || !time.Now().Before(l.deadline()) {
		return fmt.Errorf("lease of store %s: %w", l.storeID, ErrLost)
	}
	return nil
}

// Renew extends the lease by the TTL. It returns ErrLost when the lease
// is gone (taken over, expired on the server, released); other errors
// (the bucket unreachable) leave it held until Deadline, and the caller
// may try again.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	done, revision := l.done, l.revision
	l.mu.Unlock()
	if done {
		return fmt.Errorf("lease of store %s already released: %w", l.storeID, ErrLost)
	}
	value, err := json.Marshal(holderValue{Holder: l.holder})
	if err != nil {
		return err
	}
	// The write runs unlocked, so that Valid (every publish) never waits
	// for the network; a Release meanwhile makes the result moot.
	sent := time.Now()
	next, err := l.store.Leases.Update(ctx, l.storeID, value, revision)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case isConflict(err):
		l.done = true
		return fmt.Errorf("lease of store %s: %w", l.storeID, ErrLost)
	case err != nil:
		return fmt.Errorf("cannot renew the lease of store %s: %w", l.storeID, err)
	case l.done || l.revision != revision:
		return fmt.Errorf("lease of store %s released during its renewal: %w", l.storeID, ErrLost)
	}
	l.revision, l.renewed = next, sent
	return nil
}

// Release gives the lease up. When applied is non-nil, the applied record
// notes that command (never lowering what was applied before). It returns
// ErrLost when the fence closed or the lease was taken over, in which case
// nothing is recorded.
func (l *Lease) Release(ctx context.Context, applied *eventsv1.ProvisionCommand) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done || !time.Now().Before(l.deadline()) {
		l.done = true
		return fmt.Errorf("lease of store %s: %w", l.storeID, ErrLost)
	}
	if applied != nil && !l.applied.Supersedes(applied.GetGeneration(), applied.GetAction()) {
		rec := Record{Holder: l.holder, AppliedGeneration: applied.GetGeneration(), AppliedAction: ActionName(applied.GetAction())}
		value, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		var revision uint64
		if l.appliedRevision == 0 {
			revision, err = l.store.Applied.Create(ctx, l.storeID, value)
		} else {
			revision, err = l.store.Applied.Update(ctx, l.storeID, value, l.appliedRevision)
		}
		if isConflict(err) {
			l.done = true
			return fmt.Errorf("applied record of store %s written by another holder: %w", l.storeID, ErrLost)
		}
		if err != nil {
			return fmt.Errorf("cannot record what was applied to store %s: %w", l.storeID, err)
		}
		l.applied, l.appliedRevision = rec, revision
	}
	err := l.store.Leases.Delete(ctx, l.storeID, jetstream.LastRevision(l.revision))
	if isConflict(err) {
		l.done = true
		return fmt.Errorf("lease of store %s: %w", l.storeID, ErrLost)
	}
	if err != nil {
		// The key lapses by itself within a TTL.
		return fmt.Errorf("cannot release the lease of store %s: %w", l.storeID, err)
	}
	l.done = true
	return nil
}

// Keep renews the lease every TTL/6 until stop is called and returns a
// context derived from ctx that carries the lease (FromContext) and is
// cancelled with ErrLost as its cause when the lease is lost or its fence
// closes before a renewal succeeds. stop ends the renewals, waits for them
// and cancels the context; the lease stays held until Release.
func (l *Lease) Keep(ctx context.Context) (fenced context.Context, stop func()) {
	fenced, cancel := context.WithCancelCause(context.WithValue(ctx, leaseKey{}, l))
	every := l.store.ttl() / 6
	done := make(chan struct{})
	quit := make(chan struct{})
	quitCtx, cancelQuit := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(done)
		renew := time.NewTimer(every)
		defer renew.Stop()
		fence := time.NewTimer(time.Until(l.Deadline()))
		defer fence.Stop()
		for {
			select {
			case <-quit:
				return
			case <-fenced.Done():
				return
			case <-fence.C:
				cancel(fmt.Errorf("lease of store %s not renewed within two thirds of its TTL: %w", l.storeID, ErrLost))
				return
			case <-renew.C:
			}
			// Bounded by the fence (a renewal that ends after it is
			// useless) and cut short by stop.
			renewCtx, cancelRenew := context.WithDeadline(quitCtx, l.Deadline())
			err := l.Renew(renewCtx)
			cancelRenew()
			if errors.Is(err, ErrLost) {
				cancel(err)
				return
			}
			fence.Reset(time.Until(l.Deadline()))
			renew.Reset(every)
		}
	}()
	return fenced, sync.OnceFunc(func() { close(quit); cancelQuit(); <-done; cancel(context.Canceled) })
}

type leaseKey struct{}

// FromContext returns the lease that Keep put in ctx, or nil.
func FromContext(ctx context.Context) *Lease {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return l
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.Is(err, jetstream.ErrKeyNotFound)
}
