package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// waitObserved waits until the store reports on generation in phase.
func (c *restClient) waitObserved(id string, generation int, phase string, timeout time.Duration) store {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var st store
	for time.Now().Before(deadline) {
		c.do("GET", "/v1/stores/"+id, "", 200, &st)
		if st.ObservedGeneration == strconv.Itoa(generation) && st.Phase == phase {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("store %s is %s at observed generation %s (%s: %s), not %s at generation %d after %s",
		id, st.Phase, st.ObservedGeneration, st.FailureReason, st.FailureMessage, phase, generation, timeout)
	return st
}

// auditDetail returns the detail of the store's audit entry of action
// that contains substr, waiting for it.
func (c *restClient) auditDetail(id, action, substr string) string {
	c.t.Helper()
	e, _ := c.waitAuditEntry(id, fmt.Sprintf("%q saying %q", action, substr), func(e auditEntry) bool {
		return e.Action == action && strings.Contains(e.Detail, substr)
	})
	return e.Detail
}

// tinyPlan is the standard plan with too little CPU for a store: its
// second pod is refused by the quota.
const tinyPlan = `tiny:
  podSecurity: restricted
  quota:
    requests.cpu: 300m
    requests.memory: 4Gi
    limits.cpu: "4"
    limits.memory: 8Gi
    pods: "20"
    services: "10"
    secrets: "30"
    configmaps: "30"
    persistentvolumeclaims: "6"
    requests.storage: 30Gi
  limits:
    container:
      defaultRequest: {cpu: 100m, memory: 128Mi}
      default: {cpu: 500m, memory: 512Mi}
      max: {cpu: "2", memory: 4Gi}
    persistentVolumeClaim:
      min: {storage: 100Mi}
      max: {storage: 20Gi}
`

func TestTooSmallQuotaFailsThroughRESTAndRetryAfterRaisingItSucceeds(t *testing.T) {
	plans := filepath.Join(t.TempDir(), "plans.yaml")
	if err := os.WriteFile(plans, []byte(tinyPlan), 0o644); err != nil {
		t.Fatal(err)
	}
	c := configs(t)[0]
	c.orchestratorArgs = []string{"--plans", plans, "--plan", "tiny", "--provision-timeout", "10s"}
	s := startStack(t, c)
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)

	var created store
	api.do("POST", "/v1/stores", `{"displayName":"Tight Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &created)
	ns := "store-" + created.ID
	sandboxtest.CleanupNamespace(t, ns)
	start := time.Now()
	failed := api.waitObserved(created.ID, 1, "PHASE_FAILED", time.Minute)
	t.Logf("create to FAILED in %s", time.Since(start).Round(time.Millisecond))
	if failed.FailureReason != "QuotaExceeded" || !strings.Contains(failed.FailureMessage, "exceeded quota") ||
		strings.Contains(failed.FailureMessage, "context deadline exceeded") {
		t.Errorf("FAILED store = %s: %q; want QuotaExceeded quoting the quota", failed.FailureReason, failed.FailureMessage)
	}
	api.auditDetail(created.ID, "failure", "QuotaExceeded")

	// The operator moves stores to a larger plan: the orchestrators roll
	// out with it. The user retries.
	if err := s.RestartOrchestrators(ctx, []string{"--plan", "standard", "--provision-timeout", "10s"}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var retried store
	api.do("POST", "/v1/stores/"+created.ID+":retry", "{}", 200, &retried)
	if retried.Phase != "PHASE_PROVISIONING" {
		t.Errorf("retry answered phase %s, want PHASE_PROVISIONING", retried.Phase)
	}
	ready := api.waitObserved(created.ID, 2, "PHASE_READY", time.Minute)
	t.Logf("retry to READY in %s", time.Since(start).Round(time.Millisecond))
	if ready.FailureReason != "" || ready.ChartVersion == "" {
		t.Errorf("READY store after the retry has failure %q and chart %q; want no failure and its chart", ready.FailureReason, ready.ChartVersion)
	}
	q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu := q.Spec.Hard["requests.cpu"]; cpu.String() != "2" {
		t.Errorf("quota requests.cpu after the retry = %s, want the standard plan's 2", cpu.String())
	}
	// The retry converged the first install; it did not install again.
	if got := releaseRevisions(t, ns); got != "1:deployed" {
		t.Errorf("release revisions = %s, want 1:deployed", got)
	}
	assertStoreResources(t, ns)
}

func TestUpgradeToANewChartVersionThroughREST(t *testing.T) {
	for _, c := range configs(t) {
		t.Run(c.name, func(t *testing.T) { upgradeToANewChartVersion(t, c) })
	}
}

// upgradeToANewChartVersion moves a store to a chart version an operator
// added, then asks for one that does not exist.
func upgradeToANewChartVersion(t *testing.T, c stackConfig) {
	s := startStack(t, c)
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}
	ctx := context.Background()

	var created store
	api.do("POST", "/v1/stores", `{"displayName":"Growing Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &created)
	ns := "store-" + created.ID
	sandboxtest.CleanupNamespace(t, ns)
	old := chartstest.Version(t, charts.WordPress)
	if st := api.waitObserved(created.ID, 1, "PHASE_READY", time.Minute); st.ChartVersion != old {
		t.Fatalf("new store runs chart %q, want the embedded %s", st.ChartVersion, old)
	}

	// The operator adds the next version of the chart to the orchestrators.
	next := chartstest.NextMinor(t, old)
	dir := t.TempDir()
	chartstest.WriteWordPress(t, dir, next)
	if err := s.RestartOrchestrators(ctx, []string{"--charts-dir", dir}); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var upgrading store
	api.do("POST", "/v1/stores/"+created.ID+":upgrade", `{"chartVersion":"`+next+`"}`, 200, &upgrading)
	if upgrading.Phase != "PHASE_PROVISIONING" {
		t.Errorf("upgrade answered phase %s, want PHASE_PROVISIONING", upgrading.Phase)
	}
	ready := api.waitObserved(created.ID, 2, "PHASE_READY", time.Minute)
	t.Logf("upgrade from chart %s to %s to READY in %s", old, next, time.Since(start).Round(time.Millisecond))
	if ready.ChartVersion != next || ready.FailureReason != "" {
		t.Errorf("upgraded store runs chart %q with failure %q, want %s and none", ready.ChartVersion, ready.FailureReason, next)
	}
	if got := releaseRevisions(t, ns); got != "2:deployed" {
		t.Errorf("release revisions = %s, want 2:deployed", got)
	}
	d, err := sandboxtest.Clientset(t).AppsV1().Deployments(ns).Get(ctx, "store-wordpress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Annotations[chartstest.Annotation]; got != next || d.Status.UpdatedReplicas != 1 || d.Status.AvailableReplicas != 1 {
		t.Errorf("wordpress after the upgrade: annotation %s=%q, %d updated and %d available replicas; want %q rolled out",
			chartstest.Annotation, got, d.Status.UpdatedReplicas, d.Status.AvailableReplicas, next)
	}

	// A version no orchestrator has is refused: the store keeps serving
	// what it runs and says which versions exist.
	api.do("POST", "/v1/stores/"+created.ID+":upgrade", `{"chartVersion":"9.9.9"}`, 200, nil)
	kept := api.waitObserved(created.ID, 3, "PHASE_READY", time.Minute)
	if kept.FailureReason != "UpgradeFailed" || !strings.Contains(kept.FailureMessage, "9.9.9") ||
		!strings.Contains(kept.FailureMessage, old+", "+next) || kept.ChartVersion != next {
		t.Errorf("store after an upgrade to 9.9.9 = %s with chart %q: %q; want UpgradeFailed listing %s, %s and chart %s",
			kept.FailureReason, kept.ChartVersion, kept.FailureMessage, old, next, next)
	}
	if got := releaseRevisions(t, ns); got != "2:deployed" {
		t.Errorf("release revisions after the refused upgrade = %s, want 2:deployed", got)
	}
}

func TestUpgradeThatCannotBecomeReadyIsRolledBackThroughREST(t *testing.T) {
	c := configs(t)[0]
	c.orchestratorArgs = []string{"--provision-timeout", "12s"}
	s := startStack(t, c)
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}

	var created store
	api.do("POST", "/v1/stores", `{"displayName":"Bold Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &created)
	ns := "store-" + created.ID
	sandboxtest.CleanupNamespace(t, ns)
	before := api.waitObserved(created.ID, 1, "PHASE_READY", time.Minute)

	// A value no tenant may set is refused before anything is queued.
	var refusal struct {
		Message string `json:"message"`
	}
	api.do("POST", "/v1/stores/"+created.ID+":upgrade", `{"values":{"wordpress.image.repository":"evil/miner"}}`, 400, &refusal)
	if want := `values["wordpress.image.repository"]: is not a value a tenant may set; allowed: `; !strings.Contains(refusal.Message, want) {
		t.Errorf("upgrade with an image override answered %q, want it to say %q", refusal.Message, want)
	}

	// WordPress asks for more CPU than the quota has left: its new pod is
	// refused and the upgrade can never become ready.
	start := time.Now()
	api.do("POST", "/v1/stores/"+created.ID+":upgrade",
		`{"values":{"wordpress.resources.requests.cpu":"1900m","wordpress.resources.limits.cpu":"2"}}`, 200, nil)
	kept := api.waitObserved(created.ID, 2, "PHASE_READY", time.Minute)
	t.Logf("upgrade to READY after its rollback in %s", time.Since(start).Round(time.Millisecond))
	if kept.FailureReason != "UpgradeRolledBack" || !strings.Contains(kept.FailureMessage, "QuotaExceeded") ||
		!strings.Contains(kept.FailureMessage, "rolled back to revision 1 (now revision 3)") || kept.ChartVersion != before.ChartVersion {
		t.Errorf("store after the failed upgrade = %s with chart %q: %q; want UpgradeRolledBack saying QuotaExceeded and the revisions, on chart %s",
			kept.FailureReason, kept.ChartVersion, kept.FailureMessage, before.ChartVersion)
	}
	api.auditDetail(created.ID, "failure", "UpgradeRolledBack")
	if got := releaseRevisions(t, ns); got != "3:deployed" {
		t.Errorf("release revisions = %s, want 3:deployed (revision 1 rolled back to)", got)
	}
	d, err := sandboxtest.Clientset(t).AppsV1().Deployments(ns).Get(context.Background(), "store-wordpress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu := d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); cpu != "250m" || d.Status.AvailableReplicas != 1 {
		t.Errorf("wordpress after the rollback requests %s cpu with %d available, want revision 1's 250m and 1", cpu, d.Status.AvailableReplicas)
	}
}

// releaseRevisions describes the newest revision of the store's Helm
// release, from Helm's storage Secrets, as "revision:status".
func releaseRevisions(t *testing.T, ns string) string {
	t.Helper()
	secrets, err := sandboxtest.Clientset(t).CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=store"})
	if err != nil {
		t.Fatal(err)
	}
	newest, desc := 0, "none"
	for _, s := range secrets.Items {
		if v, _ := strconv.Atoi(s.Labels["version"]); v > newest {
			newest, desc = v, s.Labels["version"]+":"+s.Labels["status"]
		}
	}
	return desc
}

// A delete issued 5 s into an upgrade that cannot become ready reaches
// DELETED within 30 s on a platform with the default ten-minute
// provisioning deadline: the delete supersedes the upgrade, which the
// audit log records, and nothing of the store is left.
func TestDeleteDuringAStuckUpgradeThroughREST(t *testing.T) {
	s := startStack(t, configs(t)[0])
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}

	var created store
	api.do("POST", "/v1/stores", `{"displayName":"Stuck Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &created)
	ns := "store-" + created.ID
	sandboxtest.CleanupNamespace(t, ns)
	api.waitObserved(created.ID, 1, "PHASE_READY", time.Minute)

	api.do("POST", "/v1/stores/"+created.ID+":upgrade",
		`{"values":{"wordpress.resources.requests.cpu":"1900m","wordpress.resources.limits.cpu":"2"}}`, 200, nil)
	time.Sleep(5 * time.Second)
	start := time.Now()
	api.do("DELETE", "/v1/stores/"+created.ID, "", 200, nil)
	api.waitObserved(created.ID, 3, "PHASE_DELETED", 30*time.Second)
	t.Logf("delete 5 s into a stuck upgrade: DELETED in %s", time.Since(start).Round(time.Millisecond))
	api.auditDetail(created.ID, "superseded", "generation 3 (delete")
	assertNothingLeft(t, ns)
}
