package kube_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
)

func newGuardrails(t *testing.T, cs kubernetes.Interface) *kube.Guardrails {
	t.Helper()
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	return &kube.Guardrails{
		Client: cs,
		Plan:   pl,
		Network: kube.Network{
			IngressNamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"},
			AllowInternetEgress:    true,
		},
	}
}

// newStore returns a fresh store id whose namespace is removed after the test.
func newStore(t *testing.T) string {
	t.Helper()
	id := "t" + sandboxtest.RandomSuffix()
	sandboxtest.CleanupNamespace(t, storeid.Namespace(id))
	return id
}

func TestEnsureCreatesNamespaceWithGuardrails(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)

	if err := g.Ensure(ctx, id); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	nsObj, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{
		"app.kubernetes.io/managed-by":       "storeprov",
		"storeprov.dev/store-id":             id,
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
		"pod-security.kubernetes.io/audit":   "restricted",
	}
	for k, v := range wantLabels {
		if got := nsObj.Labels[k]; got != v {
			t.Errorf("namespace label %s = %q, want %q", k, got, v)
		}
	}

	quota, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range g.Plan.Quota {
		if got := quota.Spec.Hard[name]; got.Cmp(want) != 0 {
			t.Errorf("quota %s = %s, want %s", name, got.String(), want.String())
		}
	}

	lr, err := cs.CoreV1().LimitRanges(ns).Get(ctx, "store-limits", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(lr.Spec.Limits) != 2 {
		t.Fatalf("limit range has %d items, want container and PVC", len(lr.Spec.Limits))
	}
	container := lr.Spec.Limits[0]
	if got, want := container.DefaultRequest[corev1.ResourceCPU], g.Plan.Limits.Container.DefaultRequest[corev1.ResourceCPU]; got.Cmp(want) != 0 {
		t.Errorf("container default cpu request = %s, want %s", got.String(), want.String())
	}
	if got, want := lr.Spec.Limits[1].Max[corev1.ResourceStorage], g.Plan.Limits.PersistentVolumeClaim.Max[corev1.ResourceStorage]; got.Cmp(want) != 0 {
		t.Errorf("PVC max storage = %s, want %s", got.String(), want.String())
	}

	policies, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range policies.Items {
		got[p.Name] = true
		if p.Labels["storeprov.dev/store-id"] != id {
			t.Errorf("policy %s lacks the store id label", p.Name)
		}
	}
	for _, name := range []string{kube.PolicyDefaultDeny, kube.PolicyAllowDNS, kube.PolicyIngressToWeb, kube.PolicyWebToDatabase, kube.PolicyWebToDatabaseEgress, kube.PolicyInternetEgress} {
		if !got[name] {
			t.Errorf("network policy %s missing; have %v", name, got)
		}
	}
	deny := find(policies.Items, kube.PolicyDefaultDeny)
	if len(deny.Spec.PodSelector.MatchLabels) != 0 || len(deny.Spec.Ingress) != 0 || len(deny.Spec.Egress) != 0 || len(deny.Spec.PolicyTypes) != 2 {
		t.Errorf("default-deny must select all pods with no rule for both directions: %+v", deny.Spec)
	}
	ingress := find(policies.Items, kube.PolicyIngressToWeb)
	if ingress.Spec.PodSelector.MatchLabels[kube.LabelTier] != kube.TierWeb ||
		ingress.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "ingress-nginx" {
		t.Errorf("ingress policy must admit the ingress controller's namespace to the web tier: %+v", ingress.Spec)
	}
	dns := find(policies.Items, kube.PolicyAllowDNS)
	if len(dns.Spec.Egress) != 1 || len(dns.Spec.Egress[0].Ports) != 2 || dns.Spec.Egress[0].Ports[0].Port.IntValue() != 53 {
		t.Errorf("dns policy must allow port 53 over UDP and TCP: %+v", dns.Spec)
	}

	db := secretData(t, cs, ns, kube.SecretDatabase)
	admin := secretData(t, cs, ns, kube.SecretAdmin)
	for _, k := range []string{kube.KeyDatabaseRootPassword, kube.KeyDatabasePassword, kube.KeyDatabaseUser, kube.KeyDatabaseName} {
		if len(db[k]) == 0 {
			t.Errorf("database secret key %s is empty", k)
		}
	}
	if string(db[kube.KeyDatabaseRootPassword]) == string(db[kube.KeyDatabasePassword]) {
		t.Error("root and user database passwords must differ")
	}
	if len(admin[kube.KeyAdminPassword]) < 20 || len(admin[kube.KeyAdminUser]) == 0 {
		t.Errorf("admin secret incomplete: %d-character password", len(admin[kube.KeyAdminPassword]))
	}
}

func TestEnsureIsIdempotentAndKeepsCredentials(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)

	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	before := secretData(t, cs, ns, kube.SecretDatabase)
	quotaBefore, _ := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	for range 3 {
		if err := g.Ensure(ctx, id); err != nil {
			t.Fatalf("second Ensure: %v", err)
		}
	}
	after := secretData(t, cs, ns, kube.SecretDatabase)
	if string(before[kube.KeyDatabasePassword]) != string(after[kube.KeyDatabasePassword]) {
		t.Error("database password changed on a later reconcile")
	}
	quotaAfter, _ := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	if quotaBefore.ResourceVersion != quotaAfter.ResourceVersion {
		t.Errorf("an unchanged quota was rewritten: resourceVersion %s -> %s", quotaBefore.ResourceVersion, quotaAfter.ResourceVersion)
	}
	assertCount(t, cs, ns, 2, 6)
}

func TestEnsureConcurrentCallsConverge(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	id := newStore(t)
	ns := storeid.Namespace(id)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			g := newGuardrails(t, cs)
			for range 2 {
				errs <- g.Ensure(ctx, id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Ensure: %v", err)
		}
	}
	assertCount(t, cs, ns, 2, 6)
}

func TestEnsureRestoresDriftButNotCredentials(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}

	// Drift: a raised quota, a deleted limit range and policy, a removed label,
	// a rotated admin password.
	quota, _ := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	quota.Spec.Hard[corev1.ResourcePods] = resource.MustParse("500")
	if _, err := cs.CoreV1().ResourceQuotas(ns).Update(ctx, quota, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	must(t, cs.CoreV1().LimitRanges(ns).Delete(ctx, "store-limits", metav1.DeleteOptions{}))
	must(t, cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, kube.PolicyDefaultDeny, metav1.DeleteOptions{}))
	patch := `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`
	if _, err := cs.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rotated := `{"stringData":{"password":"rotated-by-the-owner"}}`
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, kube.SecretAdmin, types.MergePatchType, []byte(rotated), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := g.Ensure(ctx, id); err != nil {
		t.Fatalf("Ensure after drift: %v", err)
	}

	quota, _ = cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
	if got, want := quota.Spec.Hard[corev1.ResourcePods], g.Plan.Quota[corev1.ResourcePods]; got.Cmp(want) != 0 {
		t.Errorf("quota pods = %s after reconcile, want %s restored", got.String(), want.String())
	}
	if _, err := cs.CoreV1().LimitRanges(ns).Get(ctx, "store-limits", metav1.GetOptions{}); err != nil {
		t.Errorf("limit range not restored: %v", err)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.PolicyDefaultDeny, metav1.GetOptions{}); err != nil {
		t.Errorf("default-deny policy not restored: %v", err)
	}
	nsObj, _ := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("pod security label = %q, want restricted restored", got)
	}
	if got := string(secretData(t, cs, ns, kube.SecretAdmin)[kube.KeyAdminPassword]); got != "rotated-by-the-owner" {
		t.Errorf("admin password overwritten by reconcile: %q", got)
	}
}

func TestEnsureRefusesToRegenerateDeletedCredentials(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	must(t, cs.CoreV1().Secrets(ns).Delete(ctx, kube.SecretDatabase, metav1.DeleteOptions{}))

	err := g.Ensure(ctx, id)
	if !errors.Is(err, kube.ErrCredentialsLost) {
		t.Fatalf("Ensure after the credentials were deleted = %v, want ErrCredentialsLost", err)
	}
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, kube.SecretDatabase, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a new database secret was generated silently: %v", err)
	}
}

// TestEnsureConvergesAfterPartialFailure cuts the API off for network
// policies, as a crash half-way would, then reconciles again.
func TestEnsureConvergesAfterPartialFailure(t *testing.T) {
	ctx := context.Background()
	cfg := sandboxtest.RESTConfig(t)
	var failing atomic.Bool
	failing.Store(true)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if failing.Load() && strings.Contains(r.URL.Path, "/networkpolicies") {
				return nil, errors.New("injected: connection reset")
			}
			return rt.RoundTrip(r)
		})
	})
	faulty := kubernetes.NewForConfigOrDie(cfg)
	id := newStore(t)
	ns := storeid.Namespace(id)

	if err := newGuardrails(t, faulty).Ensure(ctx, id); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Ensure with failing network = %v, want the injected error", err)
	}
	failing.Store(false)
	if err := newGuardrails(t, faulty).Ensure(ctx, id); err != nil {
		t.Fatalf("Ensure after recovery: %v", err)
	}
	assertCount(t, sandboxtest.Clientset(t), ns, 2, 6)
}

func TestInternetEgressFollowsConfiguration(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	g.Network.ClusterCIDRs = []string{"10.96.0.0/12", "198.18.0.0/15"}
	id := newStore(t)
	ns := storeid.Namespace(id)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	egress, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.PolicyInternetEgress, metav1.GetOptions{})
	must(t, err)
	block := egress.Spec.Egress[0].To[0].IPBlock
	// Private, shared, cloud metadata, loopback, and the cluster's range
	// outside them.
	for _, closed := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8", "198.18.0.0/15"} {
		if !slices.Contains(block.Except, closed) {
			t.Errorf("internet egress does not exclude %s: except %v", closed, block.Except)
		}
	}
	if block.CIDR != "0.0.0.0/0" || len(block.Except) != 7 {
		t.Errorf("internet egress = %s except %v, want 0.0.0.0/0 except 7 ranges", block.CIDR, block.Except)
	}
	g.Network.AllowInternetEgress = false
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.PolicyInternetEgress, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("internet egress policy still present after it was disabled: %v", err)
	}
}

// TestOrderCheckPoliciesFollowConfiguration turns the order check on for
// a store, then off: on, the check's pods (and only they) may reach the
// web tier on its server's port, and the web tier accepts them there;
// every other policy stays as it was; off, both policies are gone.
func TestOrderCheckPoliciesFollowConfiguration(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	before := policySpecs(t, cs, ns)

	g.Network.OrderCheck = true
	if obs, err := g.Observe(ctx, id); err != nil || !slices.Equal(obs.Missing, []string{"network policy " + kube.PolicyOrderCheckToWeb, "network policy " + kube.PolicyOrderCheckEgress}) {
		t.Errorf("Observe with the order check on, before Ensure = %v, %v; want both order-check policies missing", obs.Missing, err)
	}
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	after := policySpecs(t, cs, ns)
	tcp, httpPort := corev1.ProtocolTCP, intstr.FromString("http")
	check := metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/component": "order-check"}}
	web := metav1.LabelSelector{MatchLabels: map[string]string{kube.LabelTier: kube.TierWeb}}
	port := []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &httpPort}}
	want := map[string]networkingv1.NetworkPolicySpec{
		kube.PolicyOrderCheckToWeb: {
			PodSelector: web,
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &check}}, Ports: port}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
		kube.PolicyOrderCheckEgress: {
			PodSelector: check,
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &web}}, Ports: port}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		},
	}
	maps.Copy(want, before)
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("policies with the order check on (-want +got):\n%s", diff)
	}
	if obs, err := g.Observe(ctx, id); err != nil || len(obs.Missing) != 0 {
		t.Errorf("Observe with the order check on = %v, %v; want nothing missing", obs.Missing, err)
	}

	g.Network.OrderCheck = false
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, policySpecs(t, cs, ns)); diff != "" {
		t.Errorf("policies with the order check off again (-want +got):\n%s", diff)
	}
}

// policySpecs returns the specs of the network policies in ns by name.
func policySpecs(t *testing.T, cs kubernetes.Interface, ns string) map[string]networkingv1.NetworkPolicySpec {
	t.Helper()
	list, err := cs.NetworkingV1().NetworkPolicies(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]networkingv1.NetworkPolicySpec{}
	for _, p := range list.Items {
		out[p.Name] = p.Spec
	}
	return out
}

func TestStoreNamespaceRejectsPrivilegedPods(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	privileged := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "escape"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
		}}},
	}
	_, err := cs.CoreV1().Pods(storeid.Namespace(id)).Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "privileged") {
		t.Fatalf("privileged pod in a store namespace: %v, want Forbidden by Pod Security", err)
	}
}

func TestDeleteNamespaceWaitsUntilGone(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := g.DeleteNamespace(ctx, id, time.Minute); err != nil {
		t.Fatalf("DeleteNamespace: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, storeid.Namespace(id), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace still there after DeleteNamespace returned: %v", err)
	}
	if err := g.DeleteNamespace(ctx, id, time.Minute); err != nil {
		t.Fatalf("DeleteNamespace of a deleted namespace: %v", err)
	}
}

func TestDeleteNamespaceReportsWhatBlocksIt(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	id := newStore(t)
	ns := storeid.Namespace(id)
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	const blocker = "storeprov.dev/test-blocker"
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Finalizers: []string{blocker}}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release := func() {
		patch := `{"metadata":{"finalizers":null}}`
		_, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "stuck", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cannot release the finalizer: %v", err)
		}
	}
	t.Cleanup(release)

	err := g.DeleteNamespace(ctx, id, 15*time.Second)
	var te *kube.TerminatingError
	if !errors.As(err, &te) {
		t.Fatalf("DeleteNamespace with a stuck finalizer = %v, want *TerminatingError", err)
	}
	if !strings.Contains(te.Error(), blocker) || !strings.Contains(te.Error(), "NamespaceFinalizersRemaining") {
		t.Errorf("terminating error does not name the blocker: %v", te)
	}
	if err := g.Ensure(ctx, id); !errors.Is(err, kube.ErrNamespaceTerminating) {
		t.Errorf("Ensure on a terminating namespace = %v, want ErrNamespaceTerminating", err)
	}

	release()
	if err := g.DeleteNamespace(ctx, id, time.Minute); err != nil {
		t.Fatalf("DeleteNamespace after the blocker left: %v", err)
	}
}

func TestEnsureRejectsInvalidStoreID(t *testing.T) {
	g := newGuardrails(t, nil)
	for _, id := range []string{"", "Has-Upper", "-lead", "trail-", "a_b", strings.Repeat("a", 41)} {
		if err := g.Ensure(context.Background(), id); !errors.Is(err, storeid.ErrInvalid) {
			t.Errorf("Ensure(%q) = %v, want storeid.ErrInvalid", id, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func find(items []networkingv1.NetworkPolicy, name string) networkingv1.NetworkPolicy {
	for _, it := range items {
		if it.Name == name {
			return it
		}
	}
	return networkingv1.NetworkPolicy{}
}

func secretData(t *testing.T, cs kubernetes.Interface, ns, name string) map[string][]byte {
	t.Helper()
	s, err := cs.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("secret %s: %v", name, err)
	}
	return s.Data
}

// assertCount checks there is exactly one quota and limit range and the
// given numbers of secrets and policies: nothing duplicated.
func assertCount(t *testing.T, cs kubernetes.Interface, ns string, secrets, policies int) {
	t.Helper()
	ctx := context.Background()
	sl, _ := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=storeprov"})
	pl, _ := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	ql, _ := cs.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
	ll, _ := cs.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{})
	if len(sl.Items) != secrets || len(pl.Items) != policies || len(ql.Items) != 1 || len(ll.Items) != 1 {
		t.Errorf("objects in %s: %d secrets, %d policies, %d quotas, %d limit ranges; want %d, %d, 1, 1",
			ns, len(sl.Items), len(pl.Items), len(ql.Items), len(ll.Items), secrets, policies)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A namespace named like a store's that the platform did not create for
// that store is never adopted, changed or deleted.
func TestForeignNamespaceIsLeftUntouched(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	g := newGuardrails(t, cs)
	cases := map[string]map[string]string{
		"unlabelled":        nil,
		"another's label":   {"app.kubernetes.io/managed-by": "someone-else", "team": "frontend"},
		"another store's":   {"app.kubernetes.io/managed-by": "storeprov", "storeprov.dev/store-id": "other"},
		"managed, no store": {"app.kubernetes.io/managed-by": "storeprov"},
	}
	for name, labels := range cases {
		t.Run(name, func(t *testing.T) {
			id := newStore(t)
			ns := storeid.Namespace(id)
			created, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
			must(t, err)

			if err := g.Ensure(ctx, id); !errors.Is(err, kube.ErrNamespaceConflict) {
				t.Fatalf("Ensure = %v, want ErrNamespaceConflict", err)
			}
			if _, err := g.Observe(ctx, id); !errors.Is(err, kube.ErrNamespaceConflict) {
				t.Errorf("Observe = %v, want ErrNamespaceConflict", err)
			}
			if err := g.DeleteNamespace(ctx, id, 5*time.Second); !errors.Is(err, kube.ErrNamespaceConflict) {
				t.Errorf("DeleteNamespace = %v, want ErrNamespaceConflict", err)
			}
			after, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			must(t, err)
			if after.DeletionTimestamp != nil || after.ResourceVersion != created.ResourceVersion {
				t.Errorf("namespace %s was changed (resourceVersion %s → %s, deleting %v), want it untouched",
					ns, created.ResourceVersion, after.ResourceVersion, after.DeletionTimestamp != nil)
			}
			quotas, err := cs.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
			must(t, err)
			policies, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
			must(t, err)
			secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=storeprov"})
			must(t, err)
			if n := len(quotas.Items) + len(policies.Items) + len(secrets.Items); n != 0 {
				t.Errorf("%d objects written into the foreign namespace, want none", n)
			}
		})
	}
}
