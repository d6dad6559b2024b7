package lease_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
)

// newStore returns a lease store whose leases last ttl, as the
// orchestrator opens it.
func newStore(t *testing.T, env *bustest.Env, ttl time.Duration) *lease.Store {
	t.Helper()
	ctx := context.Background()
	_, js := env.ConnectAs(t, bus.RoleOrchestrator)
	if err := env.Topology.Ensure(ctx, js, bus.RoleOrchestrator, bus.Options{LeaseTTL: ttl}); err != nil {
		t.Fatal(err)
	}
	s, err := lease.Open(ctx, js, env.Topology)
	if err != nil {
		t.Fatal(err)
	}
	if s.TTL != ttl {
		t.Fatalf("lease store TTL = %s, want the bucket's %s", s.TTL, ttl)
	}
	return s
}

func cmd(generation int64, action eventsv1.Action) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{StoreId: "s1", Generation: generation, Action: action}
}

func TestLeaseIsExclusiveUntilReleased(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		ctx := context.Background()
		s := newStore(t, env, 30*time.Second)

		// Many contenders at once: exactly one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		var winner *lease.Lease
		var mu sync.Mutex
		for i := range 8 {
			wg.Go(func() {
				l, err := s.Acquire(ctx, "s1", "w"+string(rune('a'+i)))
				var held *lease.HeldError
				switch {
				case err == nil:
					wins.Add(1)
					mu.Lock()
					winner = l
					mu.Unlock()
				case !errors.As(err, &held):
					t.Errorf("Acquire: %v, want nil or *HeldError", err)
				case held.Holder == "":
					t.Errorf("HeldError %v does not name the holder", held)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d contenders took the lease, want exactly 1", wins.Load())
		}
		if err := winner.Renew(ctx); err != nil {
			t.Fatalf("Renew by the holder: %v", err)
		}
		if err := winner.Release(ctx, cmd(4, eventsv1.Action_ACTION_PROVISION)); err != nil {
			t.Fatalf("Release: %v", err)
		}
		next, err := s.Acquire(ctx, "s1", "wz")
		if err != nil {
			t.Fatalf("Acquire after release: %v", err)
		}
		if next.Token() <= winner.Token() {
			t.Errorf("next holder's token %d is not greater than the previous one's %d", next.Token(), winner.Token())
		}
		if rec := next.Record(); rec.AppliedGeneration != 4 || rec.AppliedAction != lease.ActionProvision {
			t.Errorf("record after release = %+v, want generation 4 provision kept", rec)
		}
		if h, err := s.Holder(ctx, "s1"); err != nil || h != "wz" {
			t.Errorf("Holder = %q, %v; want wz", h, err)
		}
		// Releasing without an applied command keeps what was applied.
		if err := next.Release(ctx, nil); err != nil {
			t.Fatal(err)
		}
		rec, ok, err := s.Get(ctx, "s1")
		if err != nil || !ok || rec.AppliedGeneration != 4 || rec.Holder == "wz" {
			t.Errorf("record = %+v (%v, %v), want generation 4 kept as applied by the first holder", rec, ok, err)
		}
		if h, err := s.Holder(ctx, "s1"); err != nil || h != "" {
			t.Errorf("Holder after release = %q, %v; want none", h, err)
		}
	})
}

// The server, not a clock of the holder's or the taker's, decides when a
// lease lapses: a holder that stops renewing loses it one TTL later, and
// everything it tries afterwards fails with ErrLost.
func TestUnrenewedLeaseLapsesOnTheServerAndOldHolderStops(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		ctx := context.Background()
		const ttl = time.Second
		s := newStore(t, env, ttl)
		old, err := s.Acquire(ctx, "s1", "old")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Acquire(ctx, "s1", "new"); !errors.As(err, new(*lease.HeldError)) {
			t.Fatalf("Acquire of a live lease = %v, want *HeldError", err)
		}
		var taken *lease.Lease
		for taken == nil {
			taken, err = s.Acquire(ctx, "s1", "new")
			if err != nil && !errors.As(err, new(*lease.HeldError)) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := old.Renew(ctx); !errors.Is(err, lease.ErrLost) {
			t.Errorf("Renew by the old holder = %v, want ErrLost", err)
		}
		if err := old.Release(ctx, cmd(9, eventsv1.Action_ACTION_DELETE)); !errors.Is(err, lease.ErrLost) {
			t.Errorf("Release by the old holder = %v, want ErrLost", err)
		}
		if err := taken.Release(ctx, cmd(1, eventsv1.Action_ACTION_PROVISION)); err != nil {
			t.Fatal(err)
		}
		rec, _, _ := s.Get(ctx, "s1")
		if rec.AppliedGeneration != 1 {
			t.Errorf("applied generation = %d, want 1: the old holder must not record anything", rec.AppliedGeneration)
		}
	})
}

// Keep holds a lease for as long as the work runs, renewing it well within
// the TTL.
func TestKeepRenewsWhileWorkRuns(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		ctx := context.Background()
		const ttl = time.Second
		s := newStore(t, env, ttl)
		l, err := s.Acquire(ctx, "s1", "holder")
		if err != nil {
			t.Fatal(err)
		}
		work, stop := l.Keep(ctx)
		if lease.FromContext(work) != l {
			t.Error("the kept context does not carry the lease")
		}
		time.Sleep(3 * ttl)
		if work.Err() != nil {
			t.Fatalf("work cancelled after 3 TTLs of renewals: %v", context.Cause(work))
		}
		if _, err := s.Acquire(ctx, "s1", "other"); !errors.As(err, new(*lease.HeldError)) {
			t.Errorf("Acquire while kept = %v, want *HeldError", err)
		}
		stop()
		if err := l.Release(ctx, nil); err != nil {
			t.Errorf("Release after Keep: %v", err)
		}
	})
}

// A holder cut off from NATS stops its work before the server can hand the
// store to anyone else: the fence closes two thirds of a TTL after the last
// renewal, and nothing it publishes afterwards is valid.
func TestKeepFencesAHolderCutOffFromTheBus(t *testing.T) {
	env := bustest.Embedded(t)
	ctx := context.Background()
	const ttl = 3 * time.Second
	s := newStore(t, env, ttl)
	l, err := s.Acquire(ctx, "s1", "holder")
	if err != nil {
		t.Fatal(err)
	}
	work, stop := l.Keep(ctx)
	defer stop()
	cut := time.Now()
	env.Stop(t)
	select {
	case <-work.Done():
	case <-time.After(2 * ttl):
		t.Fatal("work not cancelled two TTLs after the bus went away")
	}
	stopped := time.Since(cut)
	if !errors.Is(context.Cause(work), lease.ErrLost) {
		t.Errorf("cause = %v, want ErrLost", context.Cause(work))
	}
	// The fence closes 2/3 TTL after the last renewal, which was at most
	// TTL/6 before the cut: before the server's expiry in every case.
	if stopped >= ttl {
		t.Errorf("work stopped %s after the cut, not before the lease could lapse (TTL %s)", stopped, ttl)
	}
	if err := l.Valid(); !errors.Is(err, lease.ErrLost) {
		t.Errorf("Valid after the fence closed = %v, want ErrLost", err)
	}
}

func TestSupersedes(t *testing.T) {
	const (
		p = eventsv1.Action_ACTION_PROVISION
		d = eventsv1.Action_ACTION_DELETE
	)
	applied := func(gen int64, action string) lease.Record {
		return lease.Record{AppliedGeneration: gen, AppliedAction: action}
	}
	tests := []struct {
		name    string
		applied lease.Record
		gen     int64
		action  eventsv1.Action
		want    bool
	}{
		{"nothing applied", lease.Record{}, 1, p, false},
		{"newer provision", applied(1, lease.ActionProvision), 2, p, false},
		{"duplicate provision", applied(2, lease.ActionProvision), 2, p, true},
		{"older provision", applied(2, lease.ActionProvision), 1, p, true},
		{"delete of the applied provision's generation", applied(2, lease.ActionProvision), 2, d, false},
		{"newer delete", applied(2, lease.ActionProvision), 3, d, false},
		{"provision after a delete of its generation", applied(2, lease.ActionDelete), 2, p, true},
		{"duplicate delete", applied(2, lease.ActionDelete), 2, d, true},
		{"older delete", applied(3, lease.ActionProvision), 2, d, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.applied.Supersedes(tt.gen, tt.action); got != tt.want {
				t.Errorf("%+v.Supersedes(%d, %s) = %v, want %v", tt.applied, tt.gen, tt.action, got, tt.want)
			}
			// Newer orders two commands the same way, but a duplicate
			// is not newer than itself.
			newer := lease.Newer(tt.applied.AppliedGeneration, actionOf(tt.applied.AppliedAction), tt.gen, tt.action)
			duplicate := tt.applied.AppliedGeneration == tt.gen && actionOf(tt.applied.AppliedAction) == tt.action
			if newer != (tt.want && !duplicate) {
				t.Errorf("Newer(%d %s over %d %s) = %v", tt.applied.AppliedGeneration, tt.applied.AppliedAction, tt.gen, tt.action, newer)
			}
		})
	}
}

func actionOf(name string) eventsv1.Action {
	switch name {
	case lease.ActionProvision:
		return eventsv1.Action_ACTION_PROVISION
	case lease.ActionDelete:
		return eventsv1.Action_ACTION_DELETE
	}
	return eventsv1.Action_ACTION_UNSPECIFIED
}
