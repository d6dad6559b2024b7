package worker_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// stuckUpgrade asks WordPress for more CPU than the namespace's quota has
// left: its new pod is refused, and the upgrade can never become ready.
var stuckUpgrade = map[string]string{"wordpress.resources.requests.cpu": "1900m", "wordpress.resources.limits.cpu": "2"}

// A delete issued while an upgrade waits for a readiness that never comes
// does not wait for the upgrade's deadline (ten minutes here): the newer
// command cancels the older one, which is audited as superseded, and the
// store is DELETED in about the time of a plain delete.
func TestDeleteDuringAStuckUpgradeSupersedesIt(t *testing.T) {
	t.Parallel()
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		w := startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: 10 * time.Minute}})
		id := newStore(t)
		events := watch(t, env, id)
		publish(t, env, upgradeCommand(id, 1, nil), "")
		events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

		publish(t, env, upgradeCommand(id, 2, stuckUpgrade), "")
		events.waitStatus(t, 2, storev1.Phase_PHASE_PROVISIONING, 30*time.Second)
		time.Sleep(2 * time.Second) // well into the readiness wait

		issued := time.Now()
		publish(t, env, command(id, 3, del), "")
		events.waitStatus(t, 3, storev1.Phase_PHASE_DELETED, 30*time.Second)
		t.Logf("delete during a stuck upgrade: DELETED %s after it was issued", time.Since(issued).Round(time.Millisecond))

		if diff := cmp.Diff([]string{"PROVISIONING/Provisioning"}, events.phases(2)); diff != "" {
			t.Errorf("status events of the superseded upgrade (-want +got):\n%s", diff)
		}
		eventually(t, 5*time.Second, func() bool { return events.audit(2, lifecycle.ActionSuperseded, id) != nil },
			func() string { return "no superseded audit event for the upgrade: " + events.summary() })
		if a := events.audit(2, lifecycle.ActionSuperseded, id); !strings.Contains(a.GetDetail(), "generation 3 (delete") {
			t.Errorf("superseded audit detail = %q, want it to name generation 3's delete", a.GetDetail())
		}
		waitSettled(t, env, 10*time.Second)
		if got := count(w.metrics, "provision", "superseded"); got != 1 {
			t.Errorf("commands superseded = %d, want 1", got)
		}
		if _, err := sandboxtest.Clientset(t).CoreV1().Namespaces().Get(t.Context(), storeid.Namespace(id), metav1.GetOptions{}); err == nil {
			t.Errorf("namespace of the deleted store still exists")
		}
	})
}

// The same holds for a first provision that cannot become ready, and for a
// retry queued while it waits: the newest command runs at once.
func TestNewerCommandSupersedesAStuckFirstProvision(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, plan: tinyPlan(t), reconcile: reconcile.Options{ProvisionTimeout: 10 * time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, command(id, 1, provision), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_PROVISIONING, 30*time.Second)
	time.Sleep(2 * time.Second)

	publish(t, env, command(id, 2, provision), "") // a retry: still stuck, but it is the one that runs
	events.waitStatus(t, 2, storev1.Phase_PHASE_PROVISIONING, 15*time.Second)
	eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionSuperseded, id) != nil },
		func() string { return "no superseded audit event for generation 1: " + events.summary() })

	issued := time.Now()
	publish(t, env, command(id, 3, del), "")
	events.waitStatus(t, 3, storev1.Phase_PHASE_DELETED, 30*time.Second)
	t.Logf("delete during a stuck first provision: DELETED %s after it was issued", time.Since(issued).Round(time.Millisecond))
	if events.audit(2, lifecycle.ActionSuperseded, id) == nil {
		t.Errorf("no superseded audit event for generation 2: %s", events.summary())
	}
}

// A worker stopped while an upgrade waits hands the command back within
// its grace period; a worker that takes it after the deadline does not
// fail a store that was serving: it rolls the unfinished upgrade back and
// keeps the store READY on its previous revision.
func TestUpgradeCutShortIsSettledByTheNextHolderAfterItsDeadline(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	stopping := fastRetries()
	stopping.ShutdownGrace = 500 * time.Millisecond
	const deadline = 8 * time.Second
	opts := reconcile.Options{ProvisionTimeout: deadline, RollbackTimeout: time.Minute}
	first := startWorker(t, env, setup{worker: stopping, release: true, reconcile: opts})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	cmd := upgradeCommand(id, 2, stuckUpgrade)
	publish(t, env, cmd, "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_PROVISIONING, 30*time.Second)
	// Stop it while it waits for readiness: once revision 2 is written.
	eventually(t, 30*time.Second, func() bool {
		return slices.Equal(statuses(helmHistory(t, id)), []string{"1:superseded", "2:deployed"})
	}, func() string { return fmt.Sprintf("the upgrade was never written: %v", statuses(helmHistory(t, id))) })
	stopped := time.Now()
	first.stop()
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("stop took %s, want about the 500ms grace period", d)
	}
	if got := count(first.metrics, "provision", "later"); got != 1 {
		t.Errorf("commands handed back on stop = %d, want 1", got)
	}

	time.Sleep(time.Until(cmd.GetIssueTime().AsTime().Add(deadline)))
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: opts})
	kept := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonUpgradeRolledBack || !strings.Contains(kept.GetMessage(), "rolled back to revision 1") {
		t.Errorf("status after the deadline = %s: %q; want UpgradeRolledBack to revision 1", kept.GetReason(), kept.GetMessage())
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:superseded", "3:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
}

// rollbackCutDriver fails the first update that would record a rollback
// as deployed: the rollback stays pending, as when its worker is killed.
type rollbackCutDriver struct {
	driver.Driver
	cut *atomic.Bool
}

func (d rollbackCutDriver) Update(key string, rls *release.Release) error {
	if rls.Info.Status == release.StatusDeployed && strings.HasPrefix(rls.Info.Description, "Rollback") && d.cut.CompareAndSwap(false, true) {
		return errors.New("injected fault: the worker died during the rollback")
	}
	return d.Driver.Update(key, rls)
}

// A rollback cut short is finished by the next attempt, which reports the
// reason the rollback started for (the quota), not a bare Timeout.
func TestRollbackCutShortIsFinishedWithItsCause(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	var cut atomic.Bool
	startWorker(t, env, setup{worker: fastRetries(), release: true,
		reconcile:  reconcile.Options{ProvisionTimeout: 8 * time.Second, RollbackTimeout: time.Minute},
		wrapDriver: func(d driver.Driver) driver.Driver { return rollbackCutDriver{Driver: d, cut: &cut} }})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	publish(t, env, upgradeCommand(id, 2, stuckUpgrade), "")
	kept := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if !cut.Load() {
		t.Fatal("the rollback was never cut short")
	}
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonUpgradeRolledBack || !strings.Contains(kept.GetMessage(), string(lifecycle.ReasonQuotaExceeded)) {
		t.Errorf("status after the finished rollback = %s: %q; want UpgradeRolledBack naming QuotaExceeded", kept.GetReason(), kept.GetMessage())
	}
}
