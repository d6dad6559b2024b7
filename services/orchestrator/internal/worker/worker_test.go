package worker_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

const (
	provision = eventsv1.Action_ACTION_PROVISION
	del       = eventsv1.Action_ACTION_DELETE
)

func TestProvisionPublishesProvisioningThenReady(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		startWorker(t, env, setup{worker: fastRetries(), reconcile: reconcile.Options{BaseDomain: "shops.test"}})
		id := newStore(t)
		events := watch(t, env, id)

		start := time.Now()
		publish(t, env, command(id, 1, provision), "")
		ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)
		t.Logf("command to READY: %s", time.Since(start).Round(time.Millisecond))

		if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready"}, events.phases(1)); diff != "" {
			t.Errorf("status events (-want +got):\n%s", diff)
		}
		if want := "http://store-" + id + ".shops.test"; ready.GetUrl() != want {
			t.Errorf("READY url = %q, want %q", ready.GetUrl(), want)
		}
		eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionReady, id) != nil },
			func() string { return "no ready audit event" })
		a := events.audit(1, lifecycle.ActionReady, id)
		if a.GetActor() != lifecycle.SystemActor || a.GetStoreOwner() != "owner-"+id || a.GetAction() != lifecycle.ActionReady {
			t.Errorf("ready audit = actor %q owner %q action %q, want %q, %q, ready", a.GetActor(), a.GetStoreOwner(), a.GetAction(), lifecycle.SystemActor, "owner-"+id)
		}
		ns, err := sandboxtest.Clientset(t).CoreV1().Namespaces().Get(context.Background(), storeid.Namespace(id), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("namespace of a READY store: %v", err)
		}
		if ns.Labels[kube.LabelStoreID] != id {
			t.Errorf("namespace labels = %v, want %s=%s", ns.Labels, kube.LabelStoreID, id)
		}
		waitSettled(t, env, 5*time.Second)
	})
}

func TestDeleteWaitsUntilNamespaceGone(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		startWorker(t, env, setup{worker: fastRetries()})
		id := newStore(t)
		events := watch(t, env, id)
		publish(t, env, command(id, 1, provision), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)

		start := time.Now()
		publish(t, env, command(id, 2, del), "")
		events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, 60*time.Second)
		t.Logf("delete command to DELETED: %s", time.Since(start).Round(time.Millisecond))

		if diff := cmp.Diff([]string{"DELETING/Deleting", "DELETED/Deleted"}, events.phases(2)); diff != "" {
			t.Errorf("status events (-want +got):\n%s", diff)
		}
		_, err := sandboxtest.Clientset(t).CoreV1().Namespaces().Get(context.Background(), storeid.Namespace(id), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("namespace after DELETED: %v, want NotFound", err)
		}
		eventually(t, 5*time.Second, func() bool { return events.audit(2, lifecycle.ActionDeleted, id) != nil },
			func() string { return "no deleted audit event" })
	})
}

func TestDuplicateCommandReconcilesOnce(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries()})
		id := newStore(t)
		events := watch(t, env, id)

		// The outbox relay crashed between publishing and marking sent, and
		// published again under another id.
		cmd := command(id, 1, provision)
		publish(t, env, cmd, "outbox-row-1")
		publish(t, env, cmd, "outbox-row-1-again")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)
		waitSettled(t, env, 15*time.Second)

		if got := count(w.metrics, "provision", "done"); got != 1 {
			t.Errorf("reconciles done = %d, want 1", got)
		}
		if got := count(w.metrics, "provision", "stale"); got != 1 {
			t.Errorf("duplicates dropped = %d, want 1", got)
		}
		for _, bad := range []string{"failed", "exhausted", "retry", "rejected"} {
			if got := count(w.metrics, "provision", bad); got != 0 {
				t.Errorf("reconciles %s = %d, want 0", bad, got)
			}
		}
		if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready"}, events.phases(1)); diff != "" {
			t.Errorf("status events (-want +got):\n%s", diff)
		}
	})
}

func TestOlderGenerationAfterNewerIsDropped(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries()})
		id := newStore(t)
		events := watch(t, env, id)

		publish(t, env, command(id, 2, provision), "")
		events.waitStatus(t, 2, storev1.Phase_PHASE_READY, 30*time.Second)
		publish(t, env, command(id, 1, provision), "")
		waitSettled(t, env, 10*time.Second)

		if got := count(w.metrics, "provision", "stale"); got != 1 {
			t.Errorf("stale commands dropped = %d, want 1", got)
		}
		if got := events.phases(1); len(got) != 0 {
			t.Errorf("generation 1 after generation 2 published %v, want nothing", got)
		}
		rec, ok, err := w.leases.Get(context.Background(), id)
		if err != nil || !ok {
			t.Fatalf("lease record: %v, %v", ok, err)
		}
		if rec.AppliedGeneration != 2 || rec.AppliedAction != "provision" || rec.Holder != w.worker.ID() {
			t.Errorf("lease record = %+v, want generation 2 provision applied by %s", rec, w.worker.ID())
		}
	})
}

func TestDeleteIsNeverDroppedForAProvisionOfItsGeneration(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		startWorker(t, env, setup{worker: fastRetries()})
		id := newStore(t)
		events := watch(t, env, id)

		publish(t, env, command(id, 3, provision), "")
		events.waitStatus(t, 3, storev1.Phase_PHASE_READY, 30*time.Second)
		publish(t, env, command(id, 3, del), "delete-3")
		events.waitStatus(t, 3, storev1.Phase_PHASE_DELETED, 60*time.Second)
		// And a provision of that generation redelivered late changes nothing.
		publish(t, env, command(id, 3, provision), "provision-3-late")
		waitSettled(t, env, 10*time.Second)
		_, err := sandboxtest.Clientset(t).CoreV1().Namespaces().Get(context.Background(), storeid.Namespace(id), metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("namespace after a late provision of a deleted generation: %v, want NotFound", err)
		}
	})
}

func TestDeletedCredentialsFailTheStore(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries()})
		id := newStore(t)
		events := watch(t, env, id)
		publish(t, env, command(id, 1, provision), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)

		cs := sandboxtest.Clientset(t)
		if err := cs.CoreV1().Secrets(storeid.Namespace(id)).Delete(context.Background(), kube.SecretDatabase, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		publish(t, env, command(id, 2, provision), "")
		failed := events.waitStatus(t, 2, storev1.Phase_PHASE_FAILED, 30*time.Second)

		if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonCredentialsLost || !strings.Contains(failed.GetMessage(), kube.SecretDatabase) {
			t.Errorf("FAILED = %s %q, want %s naming %s", failed.GetReason(), failed.GetMessage(), lifecycle.ReasonCredentialsLost, kube.SecretDatabase)
		}
		eventually(t, 5*time.Second, func() bool { return events.audit(2, lifecycle.ActionFailure, id) != nil },
			func() string { return "no failure audit event" })
		waitSettled(t, env, 5*time.Second)
		if got := count(w.metrics, "provision", "failed"); got != 1 {
			t.Errorf("terminal failures = %d, want 1 (no retries of a terminal error)", got)
		}
	})
}

func TestDeleteBlockedByFinalizerFailsNamespaceStuck(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries(), reconcile: reconcile.Options{DeleteTimeout: 2 * time.Second}})
		id := newStore(t)
		ns := storeid.Namespace(id)
		events := watch(t, env, id)
		publish(t, env, command(id, 1, provision), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)

		cs := sandboxtest.Clientset(t)
		const blocker = "storeprov.dev/test-blocker"
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{blocker}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, err := cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), "stuck", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cannot release the finalizer: %v", err)
			}
		})

		// The blocker is named from the namespace's conditions, which the
		// namespace controller writes on its own schedule (seconds later on
		// a loaded machine). Start the deletion and wait for the controller
		// to report, so the worker's last attempt is certain to see it.
		if err := cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() bool {
			got, err := cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
			if err != nil {
				return false
			}
			for _, c := range got.Status.Conditions {
				if c.Status == corev1.ConditionTrue && strings.Contains(c.Message, blocker) {
					return true
				}
			}
			return false
		}, func() string { return "the namespace controller never reported the finalizer" })

		publish(t, env, command(id, 2, del), "")
		failed := events.waitStatus(t, 2, storev1.Phase_PHASE_FAILED, 90*time.Second)
		if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonNamespaceStuck || !strings.Contains(failed.GetMessage(), blocker) {
			t.Errorf("FAILED = %s %q, want %s naming %s", failed.GetReason(), failed.GetMessage(), lifecycle.ReasonNamespaceStuck, blocker)
		}
		if got := events.phases(2); len(got) == 0 || got[0] != "DELETING/Deleting" {
			t.Errorf("status events = %v, want DELETING first", got)
		}
		waitSettled(t, env, 5*time.Second)
		if got := count(w.metrics, "delete", "retry"); got != 7 {
			t.Errorf("delete retries = %d, want 7 before giving up on the 8th delivery", got)
		}
	})
}

func TestTransientKubernetesFaultIsRetried(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		cfg := sandboxtest.RESTConfig(t)
		var failures atomic.Int32
		failures.Store(3)
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if failures.Add(-1) >= 0 {
					return nil, errors.New("injected: API server unreachable")
				}
				return rt.RoundTrip(r)
			})
		})
		w := startWorker(t, env, setup{worker: fastRetries(), restConfig: cfg})
		id := newStore(t)
		events := watch(t, env, id)

		publish(t, env, command(id, 1, provision), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)
		waitSettled(t, env, 5*time.Second)
		if got := count(w.metrics, "provision", "retry"); got < 1 {
			t.Errorf("retries = %d, want the injected faults retried", got)
		}
		if got := count(w.metrics, "provision", "done"); got != 1 {
			t.Errorf("reconciles done = %d, want 1", got)
		}
		if failures.Load() >= 0 {
			t.Errorf("%d injected faults were never hit", failures.Load()+1)
		}
	})
}

func TestPassedDeadlineFailsWithTimeout(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		startWorker(t, env, setup{worker: fastRetries(), reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
		id := newStore(t)
		events := watch(t, env, id)

		cmd := command(id, 1, provision)
		cmd.IssueTime = timestamppb.New(time.Now().Add(-time.Hour))
		publish(t, env, cmd, "")
		failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, 30*time.Second)

		if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonTimeout || !strings.Contains(failed.GetMessage(), "missing namespace "+storeid.Namespace(id)) {
			t.Errorf("FAILED = %s %q, want %s saying the namespace is missing", failed.GetReason(), failed.GetMessage(), lifecycle.ReasonTimeout)
		}
		eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionFailure, id) != nil },
			func() string { return "no failure audit event" })
		if a := events.audit(1, lifecycle.ActionFailure, id); !strings.Contains(a.GetDetail(), "missing namespace") {
			t.Errorf("failure audit detail = %q, want what was missing", a.GetDetail())
		}
		if got := events.phases(1); len(got) != 1 {
			t.Errorf("status events = %v, want only FAILED", got)
		}
	})
}

func TestUndecodableMessageIsTerminated(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries()})
		msg := &nats.Msg{Subject: env.Topology.CommandSubject("garbage"), Data: []byte("not protobuf"), Header: nats.Header{}}
		if _, err := env.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		waitSettled(t, env, 10*time.Second)
		if got := count(w.metrics, "unknown", "rejected"); got != 1 {
			t.Errorf("rejected messages = %d, want 1 (terminated, not redelivered)", got)
		}
	})
}

// TestStopHandsInFlightCommandsBack stops a worker in the middle of a long
// delete: after the grace period the command goes back to the queue at
// once, and another worker finishes it.
func TestStopHandsInFlightCommandsBack(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		slow := fastRetries()
		slow.ShutdownGrace = 500 * time.Millisecond
		first := startWorker(t, env, setup{worker: slow, reconcile: reconcile.Options{DeleteTimeout: time.Minute}})
		id := newStore(t)
		ns := storeid.Namespace(id)
		events := watch(t, env, id)
		publish(t, env, command(id, 1, provision), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 30*time.Second)

		cs := sandboxtest.Clientset(t)
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{"storeprov.dev/test-blocker"}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		release := func() {
			_, err := cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), "stuck", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("cannot release the finalizer: %v", err)
			}
		}
		t.Cleanup(release)
		publish(t, env, command(id, 2, del), "")
		events.waitStatus(t, 2, storev1.Phase_PHASE_DELETING, 30*time.Second)

		stopped := time.Now()
		first.stop()
		if d := time.Since(stopped); d > 5*time.Second {
			t.Errorf("stop took %s, want about the 500ms grace period", d)
		}
		if got := count(first.metrics, "delete", "later"); got != 1 {
			t.Errorf("commands handed back on stop = %d, want 1", got)
		}

		release()
		second := startWorker(t, env, setup{worker: fastRetries(), reconcile: reconcile.Options{DeleteTimeout: time.Minute}})
		events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, 60*time.Second)
		// The worker counts a command once it has acked it, after the
		// status is out.
		deadline := time.Now().Add(5 * time.Second)
		for count(second.metrics, "delete", "done") == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := count(second.metrics, "delete", "done"); got != 1 {
			t.Errorf("second worker finished %d deletes, want 1", got)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
