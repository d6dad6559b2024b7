package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// resyncCommand is the command the api's resync queues for a store at its
// current generation, and its message id.
func resyncCommand(id string, generation int64) (*eventsv1.ProvisionCommand, string) {
	cmd := upgradeCommand(id, generation, nil)
	cmd.Actor = lifecycle.ResyncActor
	cmd.IssueTime = timestamppb.Now()
	return cmd, lifecycle.ResyncCommandID(id, generation, cmd.GetIssueTime().AsTime().UnixNano())
}

// repairs lists the details of the store's "repaired" audit events.
func (r *recorder) repairs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range r.audits {
		if a.GetAction() == lifecycle.ActionRepaired {
			out = append(out, a.GetDetail())
		}
	}
	return out
}

func (r *recorder) counts() (statuses, audits int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statuses), len(r.audits)
}

// provisionReady provisions a WooCommerce store at generation 1 and waits
// until it is READY, audited and every command settled.
func provisionReady(t *testing.T, env *bustest.Env, id string, events *recorder) {
	t.Helper()
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)
	eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionReady, id) != nil },
		func() string { return "no ready audit event" })
	waitSettled(t, env, 10*time.Second)
}

func TestResyncOfAHealthyStoreChangesNothing(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	w := startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)
	provisionReady(t, env, id, events)
	statuses0, audits0 := events.counts()

	cmd, msgID := resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	eventually(t, 30*time.Second, func() bool { return count(w.metrics, "provision", "done") == 2 },
		func() string { return "the resync was not handled as done" })
	// Events are stored before the command is acked; give the recorder a
	// moment to receive any.
	time.Sleep(time.Second)
	if s, a := events.counts(); s != statuses0 || a != audits0 {
		t.Errorf("after the resync: %d status and %d audit events, want %d and %d as before: %s", s, a, statuses0, audits0, events.summary())
	}
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}

	// A store another worker holds is not waited for: the resync is
	// dropped, and the next one looks again.
	held, err := w.leases.Acquire(context.Background(), id, "another-worker")
	if err != nil {
		t.Fatal(err)
	}
	cmd, msgID = resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	waitSettled(t, env, 10*time.Second)
	if got := count(w.metrics, "provision", "stale"); got != 1 {
		t.Errorf("resyncs dropped for a held lease = %d, want 1", got)
	}
	if got := count(w.metrics, "provision", "later"); got != 0 {
		t.Errorf("resyncs handed back for a held lease = %d, want 0", got)
	}
	if err := held.Release(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestResyncRepairsDriftOfAReadyStore(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	cs := sandboxtest.Clientset(t)
	ctx := context.Background()
	id := newStore(t)
	ns := storeid.Namespace(id)
	events := watch(t, env, id)
	provisionReady(t, env, id, events)
	standard, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	raiseQuota := func() {
		t.Helper()
		q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		q.Spec.Hard["requests.cpu"] = resource.MustParse("64")
		if _, err := cs.CoreV1().ResourceQuotas(ns).Update(ctx, q, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wantQuota := func() {
		t.Helper()
		q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have, want := q.Spec.Hard["requests.cpu"], standard.Quota["requests.cpu"]
		if have.Cmp(want) != 0 {
			t.Errorf("quota requests.cpu after the resync = %s, want the plan's %s", have.String(), want.String())
		}
	}

	// The quota alone was raised out of band: the guardrails restore it,
	// and the release, unchanged, gets no new revision.
	raiseQuota()
	cmd, msgID := resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	eventually(t, 30*time.Second, func() bool { return len(events.repairs()) == 1 },
		func() string { return fmt.Sprintf("repaired audit events = %q, want 1", events.repairs()) })
	waitSettled(t, env, 10*time.Second)
	wantQuota()
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after a quota repair (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready", "READY/DriftRepaired"}, events.phases(1)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}

	// The WordPress Deployment deleted and the quota raised again: the
	// release is upgraded at the same chart and values, which recreates
	// the Deployment, and the store stays READY (never PROVISIONING, never
	// uninstalled or rolled back).
	raiseQuota()
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "store-wordpress", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cmd, msgID = resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	eventually(t, 60*time.Second, func() bool { return len(events.repairs()) == 2 },
		func() string {
			return fmt.Sprintf("repaired audit events = %q, want 2: %s", events.repairs(), events.summary())
		})
	waitSettled(t, env, 10*time.Second)
	wantQuota()
	hist := helmHistory(t, id)
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(hist)); diff != "" {
		t.Errorf("release history after a Deployment repair (-want +got):\n%s", diff)
	}
	if len(hist) == 2 && hist[1].ChartVersion != hist[0].ChartVersion {
		t.Errorf("repair upgraded chart %s to %s, want the same version", hist[0].ChartVersion, hist[1].ChartVersion)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "store-wordpress", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("wordpress Deployment after the repair: %v", err)
	}
	if d.Status.AvailableReplicas < 1 {
		t.Errorf("wordpress Deployment after the repair has %d available replicas, want at least 1", d.Status.AvailableReplicas)
	}
	// Each repair, made under a lease of its own, is reported; the store
	// never left READY.
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready", "READY/DriftRepaired", "READY/DriftRepaired"}, events.phases(1)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
	if r := events.repairs(); len(r) == 2 {
		t.Logf("repairs audited: %q", r)
	}
}

func TestResyncOfALostCommandReconcilesItAndOfAnOldGenerationIsDropped(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	w := startWorker(t, env, setup{worker: fastRetries()})
	id := newStore(t)
	events := watch(t, env, id)

	// The command of generation 1 never reached a worker: the resync
	// re-enqueues it, and it is reconciled as the original would be.
	cmd, msgID := resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready"}, events.phases(1)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}

	// Generation 2 applied, then a resync of generation 1 queued before
	// it: dropped, nothing published.
	publish(t, env, command(id, 2, provision), "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_READY, 30*time.Second)
	waitSettled(t, env, 10*time.Second)
	statuses0, audits0 := events.counts()
	cmd, msgID = resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	waitSettled(t, env, 10*time.Second)
	if got := count(w.metrics, "provision", "stale"); got != 1 {
		t.Errorf("resyncs of an old generation dropped = %d, want 1", got)
	}
	time.Sleep(500 * time.Millisecond)
	if s, a := events.counts(); s != statuses0 || a != audits0 {
		t.Errorf("after the stale resync: %d status and %d audit events, want %d and %d: %s", s, a, statuses0, audits0, events.summary())
	}
}

// TestResyncOfAStoreWhoseNamespaceIsGoneFailsIt: the namespace of a READY
// store was deleted out of band, and its data with it. The resync does
// not install an empty store and call it repaired: the store is FAILED
// with StoreLost, and its owner retries or deletes it.
func TestResyncOfAStoreWhoseNamespaceIsGoneFailsIt(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	cs := sandboxtest.Clientset(t)
	ctx := context.Background()
	id := newStore(t)
	events := watch(t, env, id)
	provisionReady(t, env, id, events)

	ns := storeid.Namespace(id)
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() bool {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, func() string { return "the namespace was not deleted" })

	cmd, msgID := resyncCommand(id, 1)
	publish(t, env, cmd, msgID)
	failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, 30*time.Second)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonStoreLost || !strings.Contains(failed.GetMessage(), "deleted out of band") {
		t.Errorf("status %s: %q; want StoreLost saying the namespace was deleted out of band", failed.GetReason(), failed.GetMessage())
	}
	waitSettled(t, env, 10*time.Second)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the resync created namespace %s again (%v)", ns, err)
	}
}

// readyStores counts, from one consumer of every status event, the stores
// whose generation 1 is READY.
type readyStores struct {
	mu    sync.Mutex
	ready map[string]time.Time
}

func watchReady(t *testing.T, env *bustest.Env) *readyStores {
	t.Helper()
	r := &readyStores{ready: map[string]time.Time{}}
	consume(t, env, env.Topology.Prefix+".status.>", func(msg jetstream.Msg) {
		var s eventsv1.StoreStatusChanged
		if err := bus.Decode(msg, &s); err != nil {
			t.Errorf("status event: %v", err)
			return
		}
		if s.GetPhase() == storev1.Phase_PHASE_READY {
			r.mu.Lock()
			if _, seen := r.ready[s.GetStoreId()]; !seen {
				r.ready[s.GetStoreId()] = time.Now()
			}
			r.mu.Unlock()
		}
	})
	return r
}

func (r *readyStores) at(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.ready[id]
	return at, ok
}

func (r *readyStores) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ready)
}

// A user's create is picked up at once however many resync commands are
// queued: with 200 READY stores resynced every second by one worker, a new
// store becomes READY while most of the resync commands still wait, in
// about the time it takes on an idle worker.
func TestUserCommandsNeverWaitBehindResync(t *testing.T) {
	t.Parallel()
	const fleet = 200
	env := bustest.Embedded(t)
	w := startWorker(t, env, setup{worker: fastRetries()}) // guardrails only: cheap stores, real verifies
	ready := watchReady(t, env)
	ids := make([]string, fleet)
	for i := range ids {
		ids[i] = newStore(t)
		publish(t, env, command(ids[i], 1, provision), "")
	}
	eventually(t, 5*time.Minute, func() bool { return ready.count() == fleet },
		func() string { return fmt.Sprintf("%d of %d stores READY", ready.count(), fleet) })
	waitSettled(t, env, 30*time.Second)

	// On the idle worker.
	idle := newStore(t)
	start := time.Now()
	publish(t, env, command(idle, 1, provision), "")
	eventually(t, time.Minute, func() bool { _, ok := ready.at(idle); return ok }, func() string { return "idle store not READY" })
	idleTime := time.Since(start)

	// The api's resync, every second: a batch of the whole fleet each time.
	stop := make(chan struct{})
	var resyncing sync.WaitGroup
	resyncing.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			for _, id := range ids {
				cmd, msgID := resyncCommand(id, 1)
				if err := bus.Publish(context.Background(), env.JS, env.Topology.ResyncSubject(id), msgID, cmd); err != nil {
					t.Errorf("resync of %s: %v", id, err)
					return
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer func() { close(stop); resyncing.Wait() }()
	eventually(t, 30*time.Second, func() bool { return count(w.metrics, "provision", "done") > fleet+1 },
		func() string { return "no resync handled" })

	busy := newStore(t)
	start = time.Now()
	publish(t, env, command(busy, 1, provision), "")
	eventually(t, time.Minute, func() bool { _, ok := ready.at(busy); return ok }, func() string { return "store not READY during resyncs" })
	busyTime := time.Since(start)
	queued := streamMsgs(t, env, env.Topology.ResyncStream())
	t.Logf("create → READY: %s idle, %s with %d resync commands queued (%d handled so far)",
		idleTime.Round(time.Millisecond), busyTime.Round(time.Millisecond), queued, count(w.metrics, "provision", "done")-fleet-1)
	// Structural, not timed: had the create waited behind maintenance, the
	// resync queue would have drained first.
	if queued < fleet/2 {
		t.Errorf("only %d resync commands were still queued when the new store became READY: it waited behind them", queued)
	}
}

func streamMsgs(t *testing.T, env *bustest.Env, name string) uint64 {
	t.Helper()
	s, err := env.JS.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A store the api still shows PROVISIONING or DELETING although the
// orchestrator applied its generation (the api missed the outcome) is
// unstuck by the resync: asked to republish, the worker says READY or
// DELETED again.
func TestResyncOfAStuckStoreRepublishesItsOutcome(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true})
	id := newStore(t)
	events := watch(t, env, id)
	provisionReady(t, env, id, events)

	cmd, msgID := resyncCommand(id, 1)
	cmd.Republish = true
	publish(t, env, cmd, msgID)
	eventually(t, 30*time.Second, func() bool { return len(events.phasesOf(1, storev1.Phase_PHASE_READY)) == 2 },
		func() string { return "READY not published again: " + events.summary() })
	if again := events.phasesOf(1, storev1.Phase_PHASE_READY)[1]; lifecycle.Reason(again.GetReason()) != lifecycle.ReasonReady || !strings.Contains(again.GetMessage(), "reported again") {
		t.Errorf("republished status = %s: %q", again.GetReason(), again.GetMessage())
	}

	publish(t, env, command(id, 2, del), "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, time.Minute)
	waitSettled(t, env, 10*time.Second)
	cmd, msgID = resyncCommand(id, 2)
	cmd.Action, cmd.Republish = del, true
	publish(t, env, cmd, msgID)
	eventually(t, 30*time.Second, func() bool { return len(events.phasesOf(2, storev1.Phase_PHASE_DELETED)) == 2 },
		func() string { return "DELETED not published again: " + events.summary() })
}

// phasesOf returns the store's status events of generation in phase.
func (r *recorder) phasesOf(generation int64, phase storev1.Phase) []*eventsv1.StoreStatusChanged {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*eventsv1.StoreStatusChanged
	for _, s := range r.statuses {
		if s.GetObservedGeneration() == generation && s.GetPhase() == phase {
			out = append(out, s)
		}
	}
	return out
}
