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

// clock is a settable time.
type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func newStore(t *testing.T, env *bustest.Env) (*lease.Store, *clock) {
	t.Helper()
	_, js := env.ConnectAs(t, bus.RoleOrchestrator)
	kv, err := js.KeyValue(context.Background(), env.Topology.LeaseBucket())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{}
	c.now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return &lease.Store{KV: kv, TTL: 30 * time.Second, Now: c.Now}, c
}

func cmd(generation int64, action eventsv1.Action) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{StoreId: "s1", Generation: generation, Action: action}
}

func TestLeaseIsExclusiveUntilReleased(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		ctx := context.Background()
		s, _ := newStore(t, env)

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
		if rec := next.Record(); rec.AppliedGeneration != 4 || rec.AppliedAction != lease.ActionProvision {
			t.Errorf("record after release = %+v, want generation 4 provision kept", rec)
		}
		// Releasing without an applied command keeps what was applied.
		if err := next.Release(ctx, nil); err != nil {
			t.Fatal(err)
		}
		rec, ok, err := s.Get(ctx, "s1")
		if err != nil || !ok || rec.AppliedGeneration != 4 || rec.Holder != "wz" || !rec.Expires.IsZero() {
			t.Errorf("record = %+v (%v, %v), want generation 4 kept, last holder wz, no expiry", rec, ok, err)
		}
	})
}

func TestExpiredLeaseIsTakenOverAndOldHolderStops(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		ctx := context.Background()
		s, c := newStore(t, env)
		old, err := s.Acquire(ctx, "s1", "old")
		if err != nil {
			t.Fatal(err)
		}
		c.Advance(10 * time.Second)
		if _, err := s.Acquire(ctx, "s1", "new"); !errors.As(err, new(*lease.HeldError)) {
			t.Fatalf("Acquire of a live lease = %v, want *HeldError", err)
		}
		c.Advance(25 * time.Second)
		taken, err := s.Acquire(ctx, "s1", "new")
		if err != nil {
			t.Fatalf("Acquire of an expired lease: %v", err)
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
		})
	}
}
