package helmaction_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
)

func TestValuesLayersOverridesUnderThePlatformsValues(t *testing.T) {
	base := map[string]any{
		"ingress": map[string]any{"className": "nginx"}, "storageClass": "fast",
		"wordpress": map[string]any{"resources": map[string]any{"limits": map[string]any{"cpu": "1", "memory": "1Gi"}}},
	}
	store := helmaction.StoreValues{StoreID: "s1", BaseDomain: "shops.test", Title: "Corner Shop"}
	policy, err := charts.TenantPolicyFor(charts.WordPress)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		overrides map[string]string
		want      map[string]any
		// wantErr is the message of the *charts.RefusedError expected.
		wantErr string
	}{
		{
			name: "no overrides", want: map[string]any{
				"ingress": map[string]any{"className": "nginx"}, "storageClass": "fast",
				"wordpress": map[string]any{"resources": map[string]any{"limits": map[string]any{"cpu": "1", "memory": "1Gi"}}},
				"storeId":   "s1", "baseDomain": "shops.test", "title": "Corner Shop",
			},
		},
		{
			name: "overrides typed as helm --set types them, merged into the base",
			overrides: map[string]string{
				"wordpress.replicas": "2", "wordpress.resources.limits.cpu": "2", "setup.currency": "EUR", "setup.product.regularPrice": "0123",
			},
			want: map[string]any{
				"ingress": map[string]any{"className": "nginx"}, "storageClass": "fast",
				"wordpress": map[string]any{
					"replicas":  int64(2),
					"resources": map[string]any{"limits": map[string]any{"cpu": int64(2), "memory": "1Gi"}},
				},
				"setup":   map[string]any{"currency": "EUR", "product": map[string]any{"regularPrice": "0123"}},
				"storeId": "s1", "baseDomain": "shops.test", "title": "Corner Shop",
			},
		},
		{name: "store id is the platform's", overrides: map[string]string{"storeId": "other"},
			wantErr: `values["storeId"]: is not a value a tenant may set; allowed: ` + strings.Join(policy.AllowedKeys(), ", ")},
		{name: "image is the platform's", overrides: map[string]string{"wordpress.image.tag": "latest"},
			wantErr: `values["wordpress.image.tag"]: is not a value a tenant may set; allowed: ` + strings.Join(policy.AllowedKeys(), ", ")},
		{name: "malformed key", overrides: map[string]string{"wordpress..replicas": "1"},
			wantErr: `values["wordpress..replicas"]: is not a dotted path of at most 8 names, such as wordpress.replicas`},
		{name: "beyond the bound", overrides: map[string]string{"wordpress.replicas": "9"}, wantErr: `values["wordpress.replicas"]: must be at most 3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := helmaction.Values(base, tt.overrides, policy, store)
			if tt.wantErr != "" {
				var refused *charts.RefusedError
				if !errors.As(err, &refused) || err.Error() != tt.wantErr {
					t.Errorf("Values = %v, %v; want a *charts.RefusedError %s", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
	if _, ok := base["storeId"]; ok {
		t.Error("Values wrote into its base map")
	}
	if limits := base["wordpress"].(map[string]any)["resources"].(map[string]any)["limits"].(map[string]any); limits["cpu"] != "1" {
		t.Errorf("Values wrote into its base map: wordpress.resources.limits.cpu = %v", limits["cpu"])
	}
}

func TestValuesWithoutAPolicyAdmitNoOverride(t *testing.T) {
	store := helmaction.StoreValues{StoreID: "s1", BaseDomain: "shops.test"}
	if _, err := helmaction.Values(nil, nil, nil, store); err != nil {
		t.Errorf("Values without overrides nor policy = %v, want nil", err)
	}
	var refused *charts.RefusedError
	if _, err := helmaction.Values(nil, map[string]string{"wordpress.replicas": "2"}, nil, store); !errors.As(err, &refused) {
		t.Errorf("Values with an override and no policy = %v, want a *charts.RefusedError", err)
	}
}

// storeNamespace prepares a store namespace with the guardrails of pl and
// returns the spec of its WordPress release.
func storeNamespace(t *testing.T, quota corev1.ResourceList) helmaction.Spec {
	t.Helper()
	id := "h" + sandboxtest.RandomSuffix()
	ns := storeid.Namespace(id)
	sandboxtest.CleanupNamespace(t, ns)
	ensureGuardrails(t, id, quota)
	values, err := helmaction.Values(nil, nil, nil, helmaction.StoreValues{StoreID: id, BaseDomain: "shops.test"})
	if err != nil {
		t.Fatal(err)
	}
	return helmaction.Spec{Namespace: ns, Chart: charts.WordPress, Values: values}
}

// ensureGuardrails applies the standard plan, with quota's entries
// replaced.
func ensureGuardrails(t *testing.T, id string, quota corev1.ResourceList) {
	t.Helper()
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	q := corev1.ResourceList{}
	for k, v := range pl.Quota {
		q[k] = v
	}
	for k, v := range quota {
		q[k] = v
	}
	pl.Quota = q
	if err := (&kube.Guardrails{Client: sandboxtest.Clientset(t), Plan: pl}).Ensure(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func history(t *testing.T, h *helmaction.Client, ns string) []string {
	t.Helper()
	hist, err := h.History(context.Background(), ns)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range hist {
		out = append(out, fmt.Sprintf("%d:%s", r.Revision, r.Status))
	}
	return out
}

func TestUpgradesRollbackAndUninstallKeepABoundedHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := helmaction.New(sandboxtest.RESTConfig(t), helmaction.Options{MaxHistory: 3})
	if err != nil {
		t.Fatal(err)
	}
	spec := storeNamespace(t, nil)
	rel, err := h.InstallOrUpgrade(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	version, err := h.Charts().Newest(charts.WordPress)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Revision != 1 || rel.Status != release.StatusDeployed || rel.ChartVersion != version {
		t.Errorf("install = revision %d %s chart %s, want 1 deployed %s", rel.Revision, rel.Status, rel.ChartVersion, version)
	}
	if !strings.Contains(fmt.Sprint(rel.Resources), "{Job store-setup-1}") {
		t.Errorf("release resources %v lack the setup Job of revision 1", rel.Resources)
	}
	for i := range 4 {
		spec.Values["title"] = fmt.Sprintf("Title %d", i)
		if rel, err = h.InstallOrUpgrade(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"3:superseded", "4:superseded", "5:deployed"}, history(t, h, spec.Namespace)); diff != "" {
		t.Errorf("history after 4 upgrades with MaxHistory 3 (-want +got):\n%s", diff)
	}
	rel, err = h.Rollback(ctx, spec.Namespace, 4)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Revision != 6 || rel.Status != release.StatusDeployed || rel.Values["title"] != "Title 2" {
		t.Errorf("rollback to 4 = revision %d %s title %v, want revision 6 deployed with revision 4's title", rel.Revision, rel.Status, rel.Values["title"])
	}
	if err := h.Uninstall(ctx, spec.Namespace); err != nil {
		t.Fatal(err)
	}
	if got := history(t, h, spec.Namespace); len(got) != 0 {
		t.Errorf("history after uninstall = %v, want none", got)
	}
	if err := h.Uninstall(ctx, spec.Namespace); err != nil {
		t.Errorf("uninstall of an uninstalled release: %v", err)
	}
}

func TestFailedFirstInstallIsUpgradedNotRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := helmaction.New(sandboxtest.RESTConfig(t), helmaction.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// No room for the chart's claim: the install writes some objects and fails.
	spec := storeNamespace(t, corev1.ResourceList{"persistentvolumeclaims": resource.MustParse("0")})
	if _, err := h.InstallOrUpgrade(ctx, spec); err == nil || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("install without room for claims = %v, want a quota error", err)
	}
	if diff := cmp.Diff([]string{"1:failed"}, history(t, h, spec.Namespace)); diff != "" {
		t.Errorf("history after the failed install (-want +got):\n%s", diff)
	}
	ensureGuardrails(t, strings.TrimPrefix(spec.Namespace, "store-"), nil)
	rel, err := h.InstallOrUpgrade(ctx, spec)
	if err != nil {
		t.Fatalf("install again after the quota was raised: %v (never \"cannot re-use a name\")", err)
	}
	if rel.Revision != 2 || rel.Status != release.StatusDeployed {
		t.Errorf("second attempt = revision %d %s, want 2 deployed", rel.Revision, rel.Status)
	}
}

// pendingDriver wraps the real storage driver and drops the update that
// would settle an upgrade, as a worker that dies mid-upgrade does.
type pendingDriver struct {
	driver.Driver
	armed *atomic.Bool
}

func (d pendingDriver) Update(key string, rls *release.Release) error {
	if rls.Info.Status == release.StatusDeployed && rls.Version > 1 && d.armed.CompareAndSwap(true, false) {
		return errors.New("injected fault: worker died")
	}
	return d.Driver.Update(key, rls)
}

func TestUnlockRepairsAReleaseLeftPendingUpgrade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var armed atomic.Bool
	h, err := helmaction.New(sandboxtest.RESTConfig(t), helmaction.Options{
		WrapDriver: func(d driver.Driver) driver.Driver { return pendingDriver{Driver: d, armed: &armed} },
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := storeNamespace(t, nil)
	if _, err := h.Install(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if unlocked, err := h.Unlock(ctx, spec.Namespace); unlocked != nil || err != nil {
		t.Errorf("Unlock of a deployed release = %v, %v; want nothing to repair", unlocked, err)
	}
	armed.Store(true)
	spec.Values["title"] = "Upgraded"
	_, _ = h.Upgrade(ctx, spec) // its last record is lost
	if diff := cmp.Diff([]string{"1:superseded", "2:pending-upgrade"}, history(t, h, spec.Namespace)); diff != "" {
		t.Fatalf("history after the interrupted upgrade (-want +got):\n%s", diff)
	}
	if _, err := h.Upgrade(ctx, spec); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Errorf("upgrade of a locked release = %v, want Helm's operation-in-progress error", err)
	}
	unlocked, err := h.Unlock(ctx, spec.Namespace)
	if err != nil || unlocked == nil || unlocked.Revision != 2 || unlocked.Status != release.StatusFailed {
		t.Fatalf("Unlock = %+v, %v; want revision 2 marked failed", unlocked, err)
	}
	rel, err := h.Upgrade(ctx, spec)
	if err != nil {
		t.Fatalf("upgrade after Unlock: %v", err)
	}
	if rel.Revision != 3 || rel.Status != release.StatusDeployed {
		t.Errorf("upgrade after Unlock = revision %d %s, want 3 deployed", rel.Revision, rel.Status)
	}
}

// The order check is the platform's: StoreValues.OrderCheck decides it
// over the installation's values, and leaves them as they are when nil
// (a chart without an order check).
func TestValuesSetTheOrderCheckLast(t *testing.T) {
	base := map[string]any{"orderCheck": map[string]any{"enabled": true, "backoffLimit": 0}}
	off, on := false, true
	tests := []struct {
		name  string
		check *bool
		want  any
	}{
		{name: "off over the installation's on", check: &off, want: map[string]any{"enabled": false, "backoffLimit": float64(0)}},
		{name: "on", check: &on, want: map[string]any{"enabled": true, "backoffLimit": float64(0)}},
		{name: "left to the installation", check: nil, want: map[string]any{"enabled": true, "backoffLimit": float64(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := helmaction.Values(base, nil, nil, helmaction.StoreValues{StoreID: "s1", BaseDomain: "shops.test", OrderCheck: tt.check})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got["orderCheck"]); diff != "" {
				t.Errorf("orderCheck (-want +got):\n%s", diff)
			}
		})
	}
	if base["orderCheck"].(map[string]any)["enabled"] != true {
		t.Error("Values wrote into its base map")
	}
}
