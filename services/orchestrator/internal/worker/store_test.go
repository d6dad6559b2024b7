package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// storeCommand is a command for a store of engine.
func storeCommand(id string, generation int64, action eventsv1.Action, engine storev1.Engine) *eventsv1.ProvisionCommand {
	cmd := command(id, generation, action)
	cmd.Spec.Engine = engine
	return cmd
}

// helmHistory reads the store's release history with the Helm SDK.
func helmHistory(t *testing.T, id string) []helmaction.Release {
	t.Helper()
	h, err := helmaction.New(sandboxtest.RESTConfig(t), helmaction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hist, err := h.History(context.Background(), storeid.Namespace(id))
	if err != nil {
		t.Fatal(err)
	}
	return hist
}

// statuses lists revisions as "N:status".
func statuses(hist []helmaction.Release) []string {
	var out []string
	for _, r := range hist {
		out = append(out, fmt.Sprintf("%d:%s", r.Revision, r.Status))
	}
	return out
}

func TestStoresBecomeReadyAndDeleteLeavesNothing(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute}})
	cs := sandboxtest.Clientset(t)
	ctx := context.Background()
	for _, tt := range []struct {
		engine storev1.Engine
		chart  string
	}{
		{storev1.Engine_ENGINE_WOOCOMMERCE, charts.WordPress},
		{storev1.Engine_ENGINE_MEDUSA, charts.Medusa},
	} {
		t.Run(tt.chart, func(t *testing.T) {
			t.Parallel()
			id := newStore(t)
			ns := storeid.Namespace(id)
			events := watch(t, env, id)
			start := time.Now()
			publish(t, env, storeCommand(id, 1, provision, tt.engine), "")
			ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 2*time.Minute)
			t.Logf("%s: command to READY in %s", tt.chart, time.Since(start).Round(time.Millisecond))

			version, err := catalog.Embedded().Newest(tt.chart)
			if err != nil {
				t.Fatal(err)
			}
			if ready.GetChartVersion() != version || lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
				t.Errorf("READY status = reason %q chart %q, want Ready with chart %s", ready.GetReason(), ready.GetChartVersion(), version)
			}
			hist := helmHistory(t, id)
			if diff := cmp.Diff([]string{"1:deployed"}, statuses(hist)); diff != "" {
				t.Errorf("release history (-want +got):\n%s", diff)
			}
			if hist[0].Chart != tt.chart {
				t.Errorf("release chart = %s, want %s", hist[0].Chart, tt.chart)
			}
			// The namespace holds the release (Helm's storage Secret), its
			// bound claims, and the guardrails.
			helmSecrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + helmaction.ReleaseName})
			if err != nil || len(helmSecrets.Items) != 1 {
				t.Errorf("helm storage secrets = %v, %v; want one", helmSecrets, err)
			}
			claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(claims.Items) < 2 {
				t.Errorf("store has %d claims, want the database's and the web tier's", len(claims.Items))
			}
			for _, c := range claims.Items {
				if c.Status.Phase != corev1.ClaimBound {
					t.Errorf("claim %s is %s, want Bound", c.Name, c.Status.Phase)
				}
			}
			for what, get := range map[string]func() error{
				"quota": func() error {
					_, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
					return err
				},
				"limits": func() error {
					_, err := cs.CoreV1().LimitRanges(ns).Get(ctx, "store-limits", metav1.GetOptions{})
					return err
				},
				"default-deny": func() error {
					_, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.PolicyDefaultDeny, metav1.GetOptions{})
					return err
				},
				"database cred": func() error {
					_, err := cs.CoreV1().Secrets(ns).Get(ctx, kube.SecretDatabase, metav1.GetOptions{})
					return err
				},
				"admin cred": func() error {
					_, err := cs.CoreV1().Secrets(ns).Get(ctx, kube.SecretAdmin, metav1.GetOptions{})
					return err
				},
			} {
				if err := get(); err != nil {
					t.Errorf("%s of a READY store: %v", what, err)
				}
			}
			var volumes []string
			for _, c := range claims.Items {
				volumes = append(volumes, c.Spec.VolumeName)
			}

			start = time.Now()
			publish(t, env, storeCommand(id, 2, del, tt.engine), "")
			events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, 2*time.Minute)
			t.Logf("%s: delete command to DELETED in %s", tt.chart, time.Since(start).Round(time.Millisecond))
			if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("namespace after DELETED: %v, want NotFound", err)
			}
			if hist := helmHistory(t, id); len(hist) != 0 {
				t.Errorf("release history after DELETED = %v, want none", statuses(hist))
			}
			// Volumes go after their claims, when the provisioner has
			// deleted them.
			eventually(t, 30*time.Second, func() bool {
				for _, v := range volumes {
					if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, v, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
						return false
					}
				}
				return true
			}, func() string { return fmt.Sprintf("volumes %v of the deleted store remain", volumes) })
		})
	}
}

// tinyPlan is the standard plan with a CPU quota too small for a store.
func tinyPlan(t *testing.T) *plan.Plan {
	t.Helper()
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	quota := corev1.ResourceList{}
	for k, v := range pl.Quota {
		quota[k] = v
	}
	quota[corev1.ResourceRequestsCPU] = resource.MustParse("300m")
	pl.Quota = quota
	return &pl
}

func TestTooSmallQuotaFailsWithQuotaExceededAndRetrySucceeds(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	small := startWorker(t, env, setup{worker: fastRetries(), release: true, plan: tinyPlan(t),
		reconcile: reconcile.Options{ProvisionTimeout: 10 * time.Second}})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, time.Minute)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonQuotaExceeded || !strings.Contains(failed.GetMessage(), "exceeded quota") ||
		strings.Contains(failed.GetMessage(), "context deadline exceeded") {
		t.Errorf("FAILED status = %s: %q; want QuotaExceeded quoting the quota", failed.GetReason(), failed.GetMessage())
	}
	eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionFailure, id) != nil },
		func() string { return "no failure audit event" })
	waitSettled(t, env, 5*time.Second)
	small.stop()

	// The operator raises the plan; the user retries the same store.
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	start := time.Now()
	publish(t, env, storeCommand(id, 2, provision, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	t.Logf("retry to READY in %s", time.Since(start).Round(time.Millisecond))
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after the retry (-want +got):\n%s", diff)
	}
}

// failingDriver wraps Helm's real storage driver and fails the first
// update that would record revision 1 as deployed: the release stays
// pending-install, as when the worker dies at the end of an install.
type failingDriver struct {
	driver.Driver
	failed *atomic.Bool
}

func (d failingDriver) Update(key string, rls *release.Release) error {
	if rls.Version == 1 && rls.Info.Status == release.StatusDeployed && d.failed.CompareAndSwap(false, true) {
		return errors.New("injected fault: storage unreachable")
	}
	return d.Driver.Update(key, rls)
}

func TestReleaseLeftPendingInstallIsRepaired(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	var failed atomic.Bool
	w := startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute},
		wrapDriver: func(d driver.Driver) driver.Driver { return failingDriver{Driver: d, failed: &failed} }})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)
	if !failed.Load() {
		t.Fatal("the fault was never injected")
	}
	// The install reported success but its revision stayed pending: the
	// attempt that made it is handed back at once, before any READY, and
	// the next one unlocks the release and, as the store never served,
	// installs it again.
	waitSettled(t, env, 5*time.Second)
	if got := count(w.metrics, "provision", "retry"); got != 1 {
		t.Errorf("provision retries = %d, want 1: the attempt whose revision stayed pending", got)
	}
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
	if got := events.phases(1); slices.Index(got, "READY/Ready") != len(got)-1 {
		t.Errorf("status events = %v, want READY once, last", got)
	}
}

func TestPendingInstallOfAStoreThatNeverServedIsReinstalledOnFreshClaims(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	id := newStore(t)
	ns := storeid.Namespace(id)

	// A worker died at the end of the first install: the guardrails and
	// the release's objects exist, the release record says pending-install,
	// and the store never became READY.
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	if err := (&kube.Guardrails{Client: cs, Plan: pl}).Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Bool
	crashed, err := helmaction.New(sandboxtest.RESTConfig(t), helmaction.Options{
		WrapDriver: func(d driver.Driver) driver.Driver { return failingDriver{Driver: d, failed: &failed} }})
	if err != nil {
		t.Fatal(err)
	}
	values, err := helmaction.Values(nil, nil, nil, helmaction.StoreValues{StoreID: id, BaseDomain: "crashed.test"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = crashed.Install(ctx, helmaction.Spec{Namespace: ns, Chart: charts.WordPress, Values: values})
	if err == nil || !strings.Contains(err.Error(), "recorded as pending-install") {
		t.Fatalf("install whose outcome was not recorded = %v, want it to say so", err)
	}
	if diff := cmp.Diff([]string{"1:pending-install"}, statuses(helmHistory(t, id))); diff != "" {
		t.Fatalf("release history after the crash (-want +got):\n%s", diff)
	}
	var old []string
	eventually(t, 30*time.Second, func() bool {
		claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		old = nil
		for _, c := range claims.Items {
			old = append(old, string(c.UID))
		}
		return err == nil && len(old) == 2
	}, func() string { return fmt.Sprintf("claims of the crashed install: %v", old) })

	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	events := watch(t, env, id)
	publish(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after the repair (-want +got):\n%s", diff)
	}
	claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) != 2 {
		t.Errorf("store has %d claims after the repair, want 2", len(claims.Items))
	}
	for _, c := range claims.Items {
		if slices.Contains(old, string(c.UID)) {
			t.Errorf("claim %s survived the reinstall of a store that never served; want it recreated", c.Name)
		}
	}
}

// upgradeCommand is the command UpgradeStore sends: a new generation of a
// WooCommerce store with value overrides.
func upgradeCommand(id string, generation int64, values map[string]string) *eventsv1.ProvisionCommand {
	cmd := storeCommand(id, generation, provision, storev1.Engine_ENGINE_WOOCOMMERCE)
	cmd.Spec.Values = values
	return cmd
}

func TestUpgradeWithNewValuesDeploysANewRevision(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	start := time.Now()
	publish(t, env, upgradeCommand(id, 2, map[string]string{"setup.currency": "EUR", "wordpress.php.memoryLimit": "512M"}), "")
	ready := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	t.Logf("upgrade to READY in %s", time.Since(start).Round(time.Millisecond))
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
		t.Errorf("READY after the upgrade has reason %s: %s", ready.GetReason(), ready.GetMessage())
	}
	hist := helmHistory(t, id)
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(hist)); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
	if got := fmt.Sprint(hist[1].Values["setup"]); !strings.Contains(got, "currency:EUR") {
		t.Errorf("revision 2 setup values = %s, want currency EUR", got)
	}
	// The new revision's setup Job ran; the old one is gone with its revision.
	jobs, err := sandboxtest.Clientset(t).BatchV1().Jobs(storeid.Namespace(id)).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 1 || jobs.Items[0].Name != "store-setup-2" {
		t.Errorf("jobs after the upgrade = %v, %v; want store-setup-2 only", jobs, err)
	}
}

// versionCommand is the command UpgradeStore sends to move a WooCommerce
// store to chart version ("" asks for the newest).
func versionCommand(id string, generation int64, version string) *eventsv1.ProvisionCommand {
	cmd := storeCommand(id, generation, provision, storev1.Engine_ENGINE_WOOCOMMERCE)
	cmd.Spec.ChartVersion = version
	return cmd
}

func TestUpgradeToAnotherChartVersionRollsItOutAndAnUnknownOneChangesNothing(t *testing.T) {
	t.Parallel()
	// The operator adds the next version of the chart, whose WordPress
	// pods carry one more annotation, to the orchestrator's charts.
	old := chartstest.Version(t, charts.WordPress)
	next := chartstest.NextMinor(t, old)
	dir := t.TempDir()
	chartstest.WriteWordPress(t, dir, next)
	cat, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, charts: cat, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	id := newStore(t)
	ns := storeid.Namespace(id)
	events := watch(t, env, id)
	publish(t, env, versionCommand(id, 1, old), "")
	if ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute); ready.GetChartVersion() != old {
		t.Fatalf("store pinned to %s is READY with chart %q", old, ready.GetChartVersion())
	}

	start := time.Now()
	publish(t, env, versionCommand(id, 2, next), "")
	ready := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	t.Logf("upgrade from chart %s to %s to READY in %s", old, next, time.Since(start).Round(time.Millisecond))
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady || ready.GetChartVersion() != next {
		t.Errorf("READY after the upgrade = %s with chart %q: %s; want Ready with chart %s", ready.GetReason(), ready.GetChartVersion(), ready.GetMessage(), next)
	}
	hist := helmHistory(t, id)
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(hist)); diff != "" {
		t.Fatalf("release history (-want +got):\n%s", diff)
	}
	if hist[0].ChartVersion != old || hist[1].ChartVersion != next {
		t.Errorf("revisions run charts %s and %s, want %s then %s", hist[0].ChartVersion, hist[1].ChartVersion, old, next)
	}
	// The new chart's change is in the cluster and rolled out.
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "store-wordpress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Annotations[chartstest.Annotation]; got != next {
		t.Errorf("wordpress pod template annotation %s = %q, want %q", chartstest.Annotation, got, next)
	}
	if got, want := d.Labels["helm.sh/chart"], charts.WordPress+"-"+next; got != want {
		t.Errorf("wordpress label helm.sh/chart = %q, want %q", got, want)
	}
	if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.AvailableReplicas != 1 {
		t.Errorf("wordpress rollout: observed generation %d of %d, %d updated, %d available; want the new template available",
			d.Status.ObservedGeneration, d.Generation, d.Status.UpdatedReplicas, d.Status.AvailableReplicas)
	}

	// A version the orchestrator does not have is refused before anything
	// changes: the store stays READY on what it runs, and says what exists.
	publish(t, env, versionCommand(id, 3, "9.9.9"), "")
	kept := events.waitStatus(t, 3, storev1.Phase_PHASE_READY, time.Minute)
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonUpgradeFailed || !strings.Contains(kept.GetMessage(), charts.WordPress+" 9.9.9 is not among") ||
		!strings.Contains(kept.GetMessage(), old+", "+next) || kept.GetChartVersion() != next {
		t.Errorf("status after an upgrade to 9.9.9 = %s with chart %q: %q; want UpgradeFailed listing %s, %s and chart %s",
			kept.GetReason(), kept.GetChartVersion(), kept.GetMessage(), old, next, next)
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after the refused upgrade (-want +got):\n%s", diff)
	}
	eventually(t, 5*time.Second, func() bool { return events.audit(3, lifecycle.ActionFailure, id) != nil },
		func() string { return "no failure audit event for the refused upgrade" })

	// No version is the newest, which the store runs already.
	publish(t, env, versionCommand(id, 4, ""), "")
	if ready := events.waitStatus(t, 4, storev1.Phase_PHASE_READY, time.Minute); lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady || ready.GetChartVersion() != next {
		t.Errorf("status after asking for the newest = %s with chart %q, want Ready with %s", ready.GetReason(), ready.GetChartVersion(), next)
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after asking for the version it runs (-want +got):\n%s", diff)
	}

	// A new store asking for a version that does not exist fails at once,
	// with nothing installed.
	fresh := newStore(t)
	freshEvents := watch(t, env, fresh)
	publish(t, env, versionCommand(fresh, 1, "9.9.9"), "")
	failed := freshEvents.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, time.Minute)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonInvalidSpec || !strings.Contains(failed.GetMessage(), old+", "+next) {
		t.Errorf("new store asking for 9.9.9 = %s: %q; want InvalidSpec listing the versions", failed.GetReason(), failed.GetMessage())
	}
	if hist := helmHistory(t, fresh); len(hist) != 0 {
		t.Errorf("release of a store with an unknown chart version: %v, want none", statuses(hist))
	}
}

func TestValuesTheChartRefusesFailANewStoreAndLeaveAReadyOneAsItIs(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})

	// A new store whose values the chart's tenant policy refuses (the api
	// refuses them too; this command did not come through it) fails at
	// once, with nothing installed.
	fresh := newStore(t)
	freshEvents := watch(t, env, fresh)
	publish(t, env, upgradeCommand(fresh, 1, map[string]string{"wordpress.image.repository": "evil/miner"}), "")
	failed := freshEvents.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, time.Minute)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonValuesRefused ||
		!strings.Contains(failed.GetMessage(), `values["wordpress.image.repository"]: is not a value a tenant may set; allowed: `) {
		t.Errorf("new store with an image override = %s: %q; want ValuesRefused naming the key", failed.GetReason(), failed.GetMessage())
	}
	if hist := helmHistory(t, fresh); len(hist) != 0 {
		t.Errorf("release of a store whose values were refused: %v, want none", statuses(hist))
	}
	eventually(t, 5*time.Second, func() bool { return freshEvents.audit(1, lifecycle.ActionFailure, fresh) != nil },
		func() string { return "no failure audit event for the refused store" })

	// A READY store whose upgrade asks for more than the policy allows
	// keeps running its revision, and says which value was refused.
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)
	publish(t, env, upgradeCommand(id, 2, map[string]string{"wordpress.replicas": "9"}), "")
	kept := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonValuesRefused || !strings.Contains(kept.GetMessage(), `values["wordpress.replicas"]: must be at most 3`) {
		t.Errorf("status after an upgrade to 9 replicas = %s: %q; want ValuesRefused naming the key and the bound", kept.GetReason(), kept.GetMessage())
	}
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history after the refused upgrade (-want +got):\n%s", diff)
	}
}

func TestUpgradeThatCannotBecomeReadyIsRolledBack(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: 15 * time.Second, RollbackTimeout: time.Minute}})
	id := newStore(t)
	ns := storeid.Namespace(id)
	events := watch(t, env, id)
	publish(t, env, upgradeCommand(id, 1, nil), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	// WordPress asks for more CPU than the namespace's quota has left: its
	// new pod is refused, and the upgrade can never become ready.
	publish(t, env, upgradeCommand(id, 2, map[string]string{
		"wordpress.resources.requests.cpu": "1900m", "wordpress.resources.limits.cpu": "2",
	}), "")
	kept := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonUpgradeRolledBack || !strings.Contains(kept.GetMessage(), string(lifecycle.ReasonQuotaExceeded)) ||
		!strings.Contains(kept.GetMessage(), "rolled back to revision 1") {
		t.Errorf("status after the failed upgrade = %s: %q; want UpgradeRolledBack saying QuotaExceeded and the revision", kept.GetReason(), kept.GetMessage())
	}
	version, _ := catalog.Embedded().Newest(charts.WordPress)
	if kept.GetChartVersion() != version || kept.GetUrl() == "" {
		t.Errorf("rolled-back READY status has chart %q url %q", kept.GetChartVersion(), kept.GetUrl())
	}
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/UpgradeRolledBack"}, events.phases(2)); diff != "" {
		t.Errorf("status events of the upgrade (-want +got):\n%s", diff)
	}
	eventually(t, 5*time.Second, func() bool { return events.audit(2, lifecycle.ActionFailure, id) != nil },
		func() string { return "no failure audit event for the upgrade" })
	if a := events.audit(2, lifecycle.ActionFailure, id); !strings.HasPrefix(a.GetDetail(), string(lifecycle.ReasonUpgradeRolledBack)+": ") {
		t.Errorf("failure audit detail = %q", a.GetDetail())
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:superseded", "3:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
	d, err := sandboxtest.Clientset(t).AppsV1().Deployments(ns).Get(context.Background(), "store-wordpress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu := d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); cpu != "250m" || d.Status.AvailableReplicas != 1 {
		t.Errorf("wordpress after the rollback requests %s cpu with %d available, want revision 1's 250m and 1", cpu, d.Status.AvailableReplicas)
	}

	// The next upgrade starts from the rolled-back revision.
	publish(t, env, upgradeCommand(id, 3, map[string]string{"setup.currency": "EUR"}), "")
	if ready := events.waitStatus(t, 3, storev1.Phase_PHASE_READY, time.Minute); lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
		t.Errorf("next upgrade = %s: %s, want Ready", ready.GetReason(), ready.GetMessage())
	}
}

func TestStoreInSyncAfterItsDeadlineIsReadyNotFailed(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)
	publish(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_MEDUSA), "")
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	// A command looked at long after it was issued (a backlog, a worker
	// that was down) for a store that is in sync.
	late := storeCommand(id, 2, provision, storev1.Engine_ENGINE_MEDUSA)
	late.IssueTime = timestamppb.New(time.Now().Add(-time.Hour))
	publish(t, env, late, "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_READY, time.Minute)
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/Ready"}, events.phases(2)); diff != "" {
		t.Errorf("status events of the late command (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
}

// A namespace named store-<id> that the platform did not create fails the
// store with NamespaceConflict; deleting the store then removes nothing.
func TestForeignNamespaceFailsTheStoreAndSurvivesItsDelete(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true})
	id := newStore(t)
	ns := storeid.Namespace(id)
	cs := sandboxtest.Clientset(t)
	ctx := context.Background()
	foreign, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"team": "frontend"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events := watch(t, env, id)
	publish(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, time.Minute)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonNamespaceConflict || !strings.Contains(failed.GetMessage(), ns) {
		t.Errorf("FAILED status = %s: %q; want NamespaceConflict naming %s", failed.GetReason(), failed.GetMessage(), ns)
	}
	publish(t, env, storeCommand(id, 2, eventsv1.Action_ACTION_DELETE, storev1.Engine_ENGINE_WOOCOMMERCE), "")
	events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, time.Minute)
	after, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the foreign namespace is gone: %v", err)
	}
	if after.ResourceVersion != foreign.ResourceVersion || after.DeletionTimestamp != nil {
		t.Errorf("the foreign namespace was changed: labels %v, deleting %v", after.Labels, after.DeletionTimestamp != nil)
	}
}
