package app_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/app"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// TestPlatformRBACSufficesToProvisionAndDelete runs the orchestrator with
// nothing but the rights helm/platform gives it: the ServiceAccount,
// ClusterRole and ClusterRoleBinding rendered from the chart, and the
// admission policy that confines its writes to store namespaces, applied to
// the sandbox, and a token of that ServiceAccount. A store provisioned and
// deleted end to end proves the rules are enough; requests outside them are
// Forbidden.
func TestPlatformRBACSufficesToProvisionAndDelete(t *testing.T) {
	admin := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "rbac", nil)
	// The ClusterRole's name carries the namespace and the release, so
	// concurrent runs do not collide.
	rbac := renderOrchestratorRBAC(t, ns, "rbac-"+sandboxtest.RandomSuffix())
	applyRBAC(t, admin, rbac)
	cfg := serviceAccountConfig(t, admin, ns, rbac.serviceAccount.Name)
	sa := kubernetes.NewForConfigOrDie(cfg)
	waitUntilAllowed(t, sa, authorizationv1.ResourceAttributes{Verb: "create", Resource: "namespaces"})
	waitUntilPolicyDenies(t, sa, ns)

	t.Run("outside the role", func(t *testing.T) {
		checkForbidden(t, sa, ns)
	})
	t.Run("outside store namespaces", func(t *testing.T) {
		checkConfined(t, admin, sa, ns)
	})

	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		logs := &syncBuffer{}
		opts := app.DefaultOptions()
		opts.NATSURL = env.URL
		opts.NATS = env.Credentials(bus.RoleOrchestrator)
		opts.BusPrefix = env.Topology.Prefix
		opts.RESTConfig = cfg
		opts.MetricsAddr = "127.0.0.1:0"
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		listening := make(chan string, 1)
		opts.OnReady = func(a app.Addrs) { listening <- a.Metrics }

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx, opts) }()
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after cancel = %v, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("the orchestrator did not stop within 30s")
			}
			if t.Failed() {
				t.Logf("orchestrator log:\n%s", logs.String())
			}
		})
		select {
		case <-listening:
		case err := <-done:
			t.Fatalf("the orchestrator stopped before serving: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("the orchestrator did not start within 30s")
		}

		id := "r" + sandboxtest.RandomSuffix()
		storeNS := storeid.Namespace(id)
		sandboxtest.CleanupNamespace(t, storeNS)
		statuses := watchStatuses(t, env)

		sendCommand(t, env, id, 1, eventsv1.Action_ACTION_PROVISION)
		waitWithoutForbidden(t, statuses, logs, id, storev1.Phase_PHASE_READY)
		objects := listStoreObjects(t, admin, storeNS)
		t.Logf("store %s READY with the platform's RBAC; its namespace holds %s", id, objects)

		sendCommand(t, env, id, 2, eventsv1.Action_ACTION_DELETE)
		waitWithoutForbidden(t, statuses, logs, id, storev1.Phase_PHASE_DELETED)
		if _, err := admin.CoreV1().Namespaces().Get(context.Background(), storeNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s after DELETED: %v, want NotFound", storeNS, err)
		}
	})
}

// waitWithoutForbidden waits until the store reaches phase, and fails as
// soon as the orchestrator logs an RBAC denial: a missing rule shows up as
// retries, not as a failed store.
func waitWithoutForbidden(t *testing.T, s *statuses, logs *syncBuffer, id string, phase storev1.Phase) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		// RBAC denials read `… is forbidden: User "system:serviceaccount:…"
		// cannot create resource …`; quota and Pod Security refusals differ.
		if lines := logs.matching(`forbidden: user "system:serviceaccount:`); len(lines) > 0 {
			t.Fatalf("the orchestrator was refused by the API server, its role lacks a rule:\n%s", strings.Join(lines, "\n"))
		}
		s.mu.Lock()
		got := s.phases[id]
		s.mu.Unlock()
		if got == phase {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store %s is %s after 3m, want %s", id, got, phase)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPlatformChartPassesFlagsTheOrchestratorKnows parses the command line
// helm/platform gives the orchestrator, with each shipped values file, with
// the orchestrator's own flag set: a renamed or removed flag fails here, not
// in a crash-looping pod.
func TestPlatformChartPassesFlagsTheOrchestratorKnows(t *testing.T) {
	for _, file := range []string{"values-local.yaml", "values-prod.yaml"} {
		t.Run(file, func(t *testing.T) {
			vals, err := chartutil.ReadValuesFile(filepath.Join("..", "..", "..", "..", "helm", file))
			if err != nil {
				t.Fatal(err)
			}
			var args []string
			for _, obj := range renderPlatform(t, "storeprov", "platform", vals) {
				if d, ok := obj.(*appsv1.Deployment); ok && d.Name == "platform-orchestrator" {
					args = d.Spec.Template.Spec.Containers[0].Args
				}
			}
			if len(args) == 0 {
				t.Fatal("no orchestrator Deployment with arguments rendered")
			}
			var opts app.Options
			flags := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
			flags.SetOutput(io.Discard)
			opts.BindFlags(flags)
			if err := flags.Parse(args); err != nil {
				t.Fatalf("the orchestrator rejects the chart's arguments %q: %v", args, err)
			}
			if flags.NArg() > 0 {
				t.Errorf("arguments the orchestrator ignores: %q", flags.Args())
			}
			if opts.Kubeconfig != "" {
				t.Errorf("--kubeconfig %q: in a cluster the orchestrator must use its ServiceAccount", opts.Kubeconfig)
			}
			domain, _ := vals["domain"].(string)
			if opts.Reconcile.BaseDomain != domain {
				t.Errorf("--base-domain = %q, want the domain %q", opts.Reconcile.BaseDomain, domain)
			}
			if opts.Reconcile.OrderCheck != reconcile.OrderCheckNever {
				t.Errorf("--order-check = %q, want never, the chart's default", opts.Reconcile.OrderCheck)
			}
		})
	}
}

// orchestratorRBAC is what the platform chart grants the orchestrator.
type orchestratorRBAC struct {
	serviceAccount *corev1.ServiceAccount
	role           *rbacv1.ClusterRole
	binding        *rbacv1.ClusterRoleBinding
	policy         *admissionv1.ValidatingAdmissionPolicy
	policyBinding  *admissionv1.ValidatingAdmissionPolicyBinding
}

// renderPlatform renders helm/platform, as embedded in charts.FS, for a
// release in namespace ns, like `helm template`, and decodes its objects.
func renderPlatform(t *testing.T, ns, release string, vals map[string]any) []runtime.Object {
	t.Helper()
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.FS, charts.Platform, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(charts.FS, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, charts.Platform+"/"), Data: data})
		return nil
	})
	if err != nil {
		t.Fatalf("cannot read the platform chart: %v", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatalf("cannot load the platform chart: %v", err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.ClientOnly = true
	install.DryRun = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = ns
	rel, err := install.Run(c, vals)
	if err != nil {
		t.Fatalf("cannot render the platform chart: %v", err)
	}
	var objs []runtime.Object
	decoder := scheme.Codecs.UniversalDeserializer()
	for _, doc := range releaseutil.SplitManifests(rel.Manifest) {
		obj, _, err := decoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("cannot decode %s: %v", doc, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// renderOrchestratorRBAC renders helm/platform with its defaults for a
// release in namespace ns, and returns the orchestrator's RBAC objects.
func renderOrchestratorRBAC(t *testing.T, ns, release string) orchestratorRBAC {
	t.Helper()
	var out orchestratorRBAC
	for _, obj := range renderPlatform(t, ns, release, map[string]any{}) {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			if o.Name == release+"-orchestrator" {
				// Helm sets the namespace when it applies, not in templates.
				o.Namespace = ns
				out.serviceAccount = o
			}
		case *rbacv1.ClusterRole:
			if out.role != nil {
				t.Fatalf("the chart renders ClusterRoles %s and %s; expected only the orchestrator's", out.role.Name, o.Name)
			}
			out.role = o
		case *rbacv1.ClusterRoleBinding:
			if out.binding != nil {
				t.Fatalf("the chart renders ClusterRoleBindings %s and %s; expected only the orchestrator's", out.binding.Name, o.Name)
			}
			out.binding = o
		case *admissionv1.ValidatingAdmissionPolicy:
			out.policy = o
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			out.policyBinding = o
		}
	}
	if out.serviceAccount == nil || out.role == nil || out.binding == nil || out.policy == nil || out.policyBinding == nil {
		t.Fatalf("the chart does not render the orchestrator's ServiceAccount, ClusterRole, ClusterRoleBinding and admission policy: %+v", out)
	}
	return out
}

// applyRBAC creates the objects and deletes the cluster-scoped ones when
// the test ends (the namespace takes the ServiceAccount with it).
func applyRBAC(t *testing.T, admin kubernetes.Interface, r orchestratorRBAC) {
	t.Helper()
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts(r.serviceAccount.Namespace).Create(ctx, r.serviceAccount, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create ServiceAccount %s: %v", r.serviceAccount.Name, err)
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, r.role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create ClusterRole %s: %v", r.role.Name, err)
	}
	t.Cleanup(func() {
		if err := admin.RbacV1().ClusterRoles().Delete(context.Background(), r.role.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("cannot delete ClusterRole %s: %v", r.role.Name, err)
		}
	})
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, r.binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create ClusterRoleBinding %s: %v", r.binding.Name, err)
	}
	t.Cleanup(func() {
		if err := admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), r.binding.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("cannot delete ClusterRoleBinding %s: %v", r.binding.Name, err)
		}
	})
	policies := admin.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	if _, err := policies.Create(ctx, r.policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create ValidatingAdmissionPolicy %s: %v", r.policy.Name, err)
	}
	t.Cleanup(func() {
		if err := policies.Delete(context.Background(), r.policy.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("cannot delete ValidatingAdmissionPolicy %s: %v", r.policy.Name, err)
		}
	})
	policyBindings := admin.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	if _, err := policyBindings.Create(ctx, r.policyBinding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create ValidatingAdmissionPolicyBinding %s: %v", r.policyBinding.Name, err)
	}
	t.Cleanup(func() {
		if err := policyBindings.Delete(context.Background(), r.policyBinding.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("cannot delete ValidatingAdmissionPolicyBinding %s: %v", r.policyBinding.Name, err)
		}
	})
}

// policyDenial is how the chart's admission policy words a refusal.
const policyDenial = "the storeprov orchestrator writes only into"

// waitUntilPolicyDenies waits until the API server enforces the new
// admission policy (it loads policies from an informer cache), probing with
// a dry-run write the policy refuses.
func waitUntilPolicyDenies(t *testing.T, sa kubernetes.Interface, ns string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sa.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}},
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), policyDenial) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policy does not refuse a ConfigMap in %s after 30s: %v", ns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkConfined tries writes the ClusterRole allows but the admission
// policy refuses, because they are not in a store namespace, or would
// adopt a namespace the orchestrator did not create.
func checkConfined(t *testing.T, admin, sa kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	storeLabels := func(level string) map[string]string {
		return map[string]string{kube.LabelManagedBy: kube.ManagedByValue, kube.LabelStoreID: "x", "pod-security.kubernetes.io/enforce": level}
	}
	// A namespace named like a store's that someone else made, and one the
	// orchestrator made for store x.
	foreign := sandboxtest.Namespace(t, "store-foreign", nil)
	owned := "store-x" + sandboxtest.RandomSuffix()
	sandboxtest.CleanupNamespace(t, owned)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: owned, Labels: storeLabels("restricted")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// relabel applies labels as the orchestrator does (server-side apply).
	relabel := func(name string, labels map[string]string) error {
		_, err := sa.CoreV1().Namespaces().Apply(ctx, applycorev1.Namespace(name).WithLabels(labels),
			metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
		return err
	}
	attempts := []struct {
		name string
		do   func() error
	}{
		{"overwrite a Secret in kube-system", func() error {
			_, err := sa.CoreV1().Secrets("kube-system").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, dryRun)
			return err
		}},
		{"run a Deployment in the platform's namespace", func() error {
			labels := map[string]string{"app": "d"}
			_, err := sa.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "d"},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
					},
				},
			}, dryRun)
			return err
		}},
		{"delete a namespace that is not a store's", func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"create a store namespace that is not labelled as one", func() error {
			_, err := sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "store-x" + sandboxtest.RandomSuffix()}}, dryRun)
			return err
		}},
		{"create a store namespace that allows privileged pods", func() error {
			_, err := sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: "store-x" + sandboxtest.RandomSuffix(), Labels: storeLabels("privileged")}}, dryRun)
			return err
		}},
		{"create a store namespace that enforces only baseline", func() error {
			_, err := sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: "store-x" + sandboxtest.RandomSuffix(), Labels: storeLabels("baseline")}}, dryRun)
			return err
		}},
		{"adopt a store-* namespace someone else made by labelling it", func() error {
			return relabel(foreign, storeLabels("restricted"))
		}},
		{"delete a store-* namespace someone else made", func() error {
			return sa.CoreV1().Namespaces().Delete(ctx, foreign, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"hand a store's namespace to another store", func() error {
			labels := storeLabels("restricted")
			labels[kube.LabelStoreID] = "y"
			return relabel(owned, labels)
		}},
	}
	for _, a := range attempts {
		if err := a.do(); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), policyDenial) {
			t.Errorf("%s: %v, want Forbidden by the admission policy", a.name, err)
		}
	}
	// The same request for a proper store namespace passes.
	_, err := sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "store-x" + sandboxtest.RandomSuffix(), Labels: storeLabels("restricted")}}, dryRun)
	if err != nil {
		t.Errorf("creating a labelled store namespace (dry run): %v, want it allowed", err)
	}
	if err := relabel(owned, storeLabels("restricted")); err != nil {
		t.Errorf("updating its own store namespace (dry run): %v, want it allowed", err)
	}
	if err := sa.CoreV1().Namespaces().Delete(ctx, owned, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("deleting its own store namespace (dry run): %v, want it allowed", err)
	}
}

// serviceAccountConfig returns a client configuration for the sandbox that
// authenticates with a fresh token of the ServiceAccount and nothing else:
// the server and its CA from the sandbox, no client certificate.
func serviceAccountConfig(t *testing.T, admin kubernetes.Interface, ns, name string) *rest.Config {
	t.Helper()
	expiry := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("cannot get a token for ServiceAccount %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(sandboxtest.RESTConfig(t))
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// waitUntilAllowed waits until the API server's authorizer has seen the new
// binding: RBAC is read from an informer cache.
func waitUntilAllowed(t *testing.T, cs kubernetes.Interface, attrs authorizationv1.ResourceAttributes) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("cannot review the ServiceAccount's access: %v", err)
		}
		if review.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ServiceAccount may not %s %s after 30s: %s", attrs.Verb, attrs.Resource, review.Status.Reason)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkForbidden tries what a compromised orchestrator would try first,
// and expects Forbidden for each.
func checkForbidden(t *testing.T, sa kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	attempts := []struct {
		name string
		do   func() error
	}{
		{"bind itself to cluster-admin", func() error {
			_, err := sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "escalate-" + sandboxtest.RandomSuffix()},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"create a Role", func() error {
			_, err := sa.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r"}}, metav1.CreateOptions{})
			return err
		}},
		{"delete a Node", func() error {
			return sa.CoreV1().Nodes().Delete(ctx, "sandbox-node-1", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{"run a Pod of its own", func() error {
			_, err := sa.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{"delete a Pod", func() error {
			return sa.CoreV1().Pods(ns).Delete(ctx, "p", metav1.DeleteOptions{})
		}},
		{"create a ServiceAccount", func() error {
			_, err := sa.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
			return err
		}},
		{"list ServiceAccounts", func() error {
			_, err := sa.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"delete every Secret of a namespace at once", func() error {
			return sa.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}},
	}
	for _, a := range attempts {
		if err := a.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", a.name, err)
		}
	}
}

// listStoreObjects names what the store's namespace holds, for the log.
func listStoreObjects(t *testing.T, admin kubernetes.Interface, ns string) string {
	t.Helper()
	ctx := context.Background()
	var parts []string
	count := func(kind string, n int, err error) {
		if err != nil {
			t.Errorf("cannot list %s in %s: %v", kind, ns, err)
			return
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, kind))
		}
	}
	secrets, err := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	count("Secrets", len(secrets.Items), err)
	deps, err := admin.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	count("Deployments", len(deps.Items), err)
	sets, err := admin.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	count("StatefulSets", len(sets.Items), err)
	jobs, err := admin.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	count("Jobs", len(jobs.Items), err)
	return strings.Join(parts, ", ")
}

// sendCommand publishes a command as the api's outbox relay would.
func sendCommand(t *testing.T, env *bustest.Env, id string, generation int64, action eventsv1.Action) {
	t.Helper()
	cmd := &eventsv1.ProvisionCommand{
		StoreId: id, Generation: generation, Action: action,
		Spec:      &eventsv1.StoreSpec{DisplayName: "RBAC shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE, Owner: "alice"},
		Actor:     "alice",
		IssueTime: timestamppb.Now(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, env.JS, env.Topology.CommandSubject(id), lifecycle.CommandID(id, generation), cmd); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects a log written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// matching returns the lines that mention s, ignoring case and the
// escaping of quotes in logged values.
func (b *syncBuffer) matching(s string) []string {
	var out []string
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(line, `\"`, `"`)), s) {
			out = append(out, line)
		}
	}
	return out
}
