// Package resync periodically queues a command for every store the
// orchestrator should look at again, without waiting for a user: a READY
// store, so that drift is found and repaired while its status says READY,
// and a store PROVISIONING or DELETING whose status has not changed for
// longer than the interval, so that a command lost or given up on is
// queued again. FAILED and DELETED stores are left alone: only a user's
// retry or delete moves them.
//
// A resync command carries the store's current generation (it never
// bumps it) and lifecycle.ResyncActor as its actor; the orchestrator
// verifies and repairs a generation it already applied, publishing nothing
// when nothing drifted, and reconciles one it never applied. Commands are
// published straight to JetStream, not through the outbox: one lost while
// NATS is down is queued again at the next interval. Their Nats-Msg-Id
// names the store, the generation and the interval's period, so api
// replicas resyncing in the same period queue each command once, and
// several replicas running the loop is harmless.
package resync

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	entstore "github.com/storeprov/storeprov/services/api/internal/ent/store"
	"github.com/storeprov/storeprov/services/api/internal/stores"
)

// MinInterval is the shortest interval accepted: each resync queues a
// command per READY store.
const MinInterval = 10 * time.Second

// batchSize bounds the stores read at once.
const batchSize = 500

// Options tune the resync loop.
type Options struct {
	// Interval between resyncs; zero disables them.
	Interval time.Duration
}

// BindFlags registers the options' flags on fs and sets their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.DurationVar(&o.Interval, "resync-interval", 5*time.Minute,
		"how often READY stores are checked for drift and stuck PROVISIONING or DELETING stores are queued again (0 disables it; at least 10s)")
}

// Validate says what is wrong with the options, naming the flag.
func (o Options) Validate() error {
	if o.Interval < 0 || o.Interval > 0 && o.Interval < MinInterval {
		return fmt.Errorf("--resync-interval %s: use 0 to disable the resync, or an interval of at least %s such as 5m", o.Interval, MinInterval)
	}
	return nil
}

// Resyncer queues resync commands.
type Resyncer struct {
	Client   *ent.Client
	JS       jetstream.JetStream
	Topology bus.Topology
	// Interval between resyncs (see Options); Run does nothing when zero.
	Interval time.Duration
	Log      *slog.Logger
	// Now returns the current time; tests may fix it.
	Now func() time.Time
}

// Run resyncs every Interval, jittered by up to a tenth either way so
// that replicas started together spread their reads, until ctx is done.
// A resync that fails is logged and made good by the next one.
func (r *Resyncer) Run(ctx context.Context) {
	if r.Interval <= 0 {
		return
	}
	for {
		jitter := time.Duration(rand.Int64N(int64(r.Interval/5)+1)) - r.Interval/10
		t := time.NewTimer(r.Interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		n, err := r.Once(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log().Warn("resync incomplete; the next one tries again", "queued", n, "err", err)
		default:
			r.log().Info("resync queued commands", "queued", n)
		}
	}
}

// Once queues a resync command for every store that needs one (see the
// package comment) and returns how many it queued. It goes on past a
// command it cannot publish and returns the errors joined.
func (r *Resyncer) Once(ctx context.Context) (int, error) {
	now := r.now()
	slot := now.Truncate(r.Interval).Unix()
	if r.Interval <= 0 {
		slot = now.Unix()
	}
	stale := now.Add(-r.Interval)
	ready := entstore.Phase(storev1.Phase_PHASE_READY)
	stuck := entstore.And(
		entstore.PhaseIn(storev1.Phase_PHASE_PROVISIONING, storev1.Phase_PHASE_DELETING),
		entstore.UpdateTimeLT(stale),
	)
	queued, after := 0, ""
	var errs []error
	for {
		list, err := r.Client.Store.Query().
			Where(entstore.Or(ready, stuck), entstore.IDGT(after)).
			Order(entstore.ByID()).Limit(batchSize).All(ctx)
		if err != nil {
			return queued, errors.Join(append(errs, fmt.Errorf("cannot list stores to resync: %w", err))...)
		}
		for _, st := range list {
			cmd := command(st, now)
			pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := bus.Publish(pubCtx, r.JS, r.Topology.ResyncSubject(st.ID), lifecycle.ResyncCommandID(st.ID, st.Generation, slot), cmd)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("cannot queue the resync of store %s: %w", st.ID, err))
				if ctx.Err() != nil {
					return queued, errors.Join(errs...)
				}
				continue
			}
			queued++
		}
		if len(list) < batchSize {
			return queued, errors.Join(errs...)
		}
		after = list[len(list)-1].ID
	}
}

// command is the resync command of st at now. A READY store is verified
// from now; a stuck one gets its generation's command again, issued when
// its status last changed, so that its provisioning deadline is not pushed
// back by every resync.
//
// A stuck store's command asks for its outcome to be published again
// (republish): if the orchestrator applied that generation already, the
// api missed its READY or DELETED, and only a republish unsticks it.
func command(st *ent.Store, now time.Time) *eventsv1.ProvisionCommand {
	var cmd *eventsv1.ProvisionCommand
	switch st.Phase {
	case storev1.Phase_PHASE_DELETING:
		cmd = stores.Command(st, eventsv1.Action_ACTION_DELETE, lifecycle.ResyncActor, st.UpdateTime)
	case storev1.Phase_PHASE_PROVISIONING:
		cmd = stores.Command(st, eventsv1.Action_ACTION_PROVISION, lifecycle.ResyncActor, st.UpdateTime)
	default:
		return stores.Command(st, eventsv1.Action_ACTION_PROVISION, lifecycle.ResyncActor, now)
	}
	cmd.Republish = true
	return cmd
}

func (r *Resyncer) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Resyncer) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}
