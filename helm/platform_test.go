package charts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	psa "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// platformNamespace is where the platform is rendered for the static tests.
const platformNamespace = "storeprov"

// platformValueFiles are the values files the platform ships with, next to
// the charts (the test runs in helm/).
var platformValueFiles = []string{"values-local.yaml", "values-prod.yaml"}

// platformValues returns each shipped values file by name, and the chart's
// defaults alone under "defaults".
func platformValues(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{"defaults": {}}
	for _, f := range platformValueFiles {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("cannot read %s: %v", f, err)
		}
		out[f] = vals
	}
	return out
}

// renderPlatform renders the platform chart client-side, like `helm
// template`: lookup finds nothing, so the bundled PostgreSQL password is a
// fresh one.
func renderPlatform(t *testing.T, vals map[string]any) (*release.Release, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: t.Logf})
	install.ClientOnly = true
	install.DryRun = true
	install.Replace = true
	install.ReleaseName = "platform"
	install.Namespace = platformNamespace
	kube, err := chartutil.ParseKubeVersion("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	install.KubeVersion = kube
	return install.Run(loadChart(t, charts.Platform), vals)
}

// platformCase is the platform rendered with one values file.
type platformCase struct {
	file string
	rel  *release.Release
	objs objects
}

func platformCases(t *testing.T) []platformCase {
	t.Helper()
	files := platformValues(t)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var cases []platformCase
	for _, n := range names {
		rel, err := renderPlatform(t, files[n])
		if err != nil {
			t.Fatalf("platform with %s: cannot render: %v", n, err)
		}
		cases = append(cases, platformCase{file: n, rel: rel, objs: decode(t, rel.Manifest)})
	}
	return cases
}

// typed returns the rendered objects of type T.
func typed[T any](o objects) []T {
	var out []T
	for _, obj := range o.all {
		if v, ok := obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestPlatformLintsWithoutFindings(t *testing.T) {
	sub, err := fs.Sub(charts.FS, charts.Platform)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/" + charts.Platform
	if err := os.CopyFS(dir, sub); err != nil {
		t.Fatal(err)
	}
	for file, vals := range platformValues(t) {
		t.Run(file, func(t *testing.T) {
			linter := lint.All(dir, vals, platformNamespace, false)
			for _, m := range linter.Messages {
				// `helm lint --strict` fails on warnings; an icon is only
				// recommended (INFO).
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// The long-running workloads of the platform and the port their probes
// must use: the admin (metrics) port of each Go service, the gateway's
// included, never a public port.
var platformProbePorts = map[string]string{
	"api": "metrics", "audit": "metrics", "orchestrator": "metrics", "gateway": "metrics",
	"nats": "monitor", "postgresql": "postgresql",
}

func TestPlatformWorkloadsAreHardened(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psa.LevelVersion{Level: psa.LevelRestricted, Version: psa.LatestVersion()}
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			ws := c.objs.workloads(t)
			if len(ws) == 0 {
				t.Fatal("no workload rendered")
			}
			for _, w := range ws {
				component := w.template.Labels["app.kubernetes.io/component"]
				spec := w.template.Spec
				results := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &w.template.ObjectMeta, &spec))
				if !results.Allowed {
					t.Errorf("%s %s violates Pod Security restricted: %s: %s", w.kind, w.name, results.ForbiddenReason(), results.ForbiddenDetail())
				}
				if sc := spec.SecurityContext; sc == nil || !ptrOr(sc.RunAsNonRoot, false) || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s %s: the pod must set runAsNonRoot and the RuntimeDefault seccomp profile", w.kind, w.name)
				}
				wantToken := component == "orchestrator"
				if got := ptrOr(spec.AutomountServiceAccountToken, true); got != wantToken {
					t.Errorf("%s %s: automountServiceAccountToken = %v, want %v (only the orchestrator talks to the Kubernetes API)", w.kind, w.name, got, wantToken)
				}
				port, known := platformProbePorts[component]
				if !known {
					t.Errorf("%s %s: unknown component %q", w.kind, w.name, component)
				}
				for _, ctr := range allContainers(spec) {
					where := fmt.Sprintf("%s %s container %s", w.kind, w.name, ctr.Name)
					sc := ctr.SecurityContext
					if sc == nil || !ptrOr(sc.ReadOnlyRootFilesystem, false) || ptrOr(sc.AllowPrivilegeEscalation, true) ||
						sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
						t.Errorf("%s: securityContext must set readOnlyRootFilesystem, no privilege escalation and drop ALL", where)
					}
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, hasReq := ctr.Resources.Requests[r]
						lim, hasLim := ctr.Resources.Limits[r]
						if !hasReq || !hasLim || req.Cmp(lim) > 0 {
							t.Errorf("%s: %s needs a request no larger than its limit (request %v, limit %v)", where, r, req.String(), lim.String())
						}
					}
				}
				for _, ctr := range spec.Containers {
					where := fmt.Sprintf("%s %s container %s", w.kind, w.name, ctr.Name)
					for name, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
						if p == nil {
							t.Errorf("%s: no %s probe", where, name)
							continue
						}
						if got := probePort(p); got != port {
							t.Errorf("%s: %s probe on port %q, want %q", where, name, got, port)
						}
					}
					if _, goService := map[string]bool{"api": true, "audit": true, "gateway": true, "orchestrator": true}[component]; goService {
						// Liveness asks whether the process lives (package
						// serve), readiness whether its dependencies answer:
						// a database or NATS outage must not restart it.
						for name, want := range map[string]struct {
							probe *corev1.Probe
							path  string
						}{
							"startup":   {ctr.StartupProbe, "/healthz"},
							"liveness":  {ctr.LivenessProbe, "/healthz"},
							"readiness": {ctr.ReadinessProbe, "/readyz"},
						} {
							if want.probe == nil {
								continue // startup is optional; the others are checked above
							}
							if g := want.probe.HTTPGet; g == nil || g.Path != want.path {
								t.Errorf("%s: %s probe must be GET %s", where, name, want.path)
							}
						}
					}
				}
			}
		})
	}
}

func probePort(p *corev1.Probe) string {
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.Port.String()
	case p.TCPSocket != nil:
		return p.TCPSocket.Port.String()
	case p.Exec != nil:
		// An exec probe checks the main port from inside (pg_isready).
		return "postgresql"
	}
	return ""
}

func TestPlatformReplicatedWorkloadsHaveDisruptionBudgets(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			if c.file == "values-prod.yaml" {
				for _, d := range c.objs.deployments {
					if strings.HasSuffix(d.Name, "-orchestrator") && ptrOr(d.Spec.Replicas, 1) != 3 {
						t.Errorf("orchestrator replicas = %d, want 3 in production", ptrOr(d.Spec.Replicas, 1))
					}
				}
			}
			pdbs := typed[*policyv1.PodDisruptionBudget](c.objs)
			for _, w := range c.objs.workloads(t) {
				var budgets []string
				for _, p := range pdbs {
					if p.Spec.Selector != nil && selects(p.Spec.Selector.MatchLabels, w.template.Labels) {
						budgets = append(budgets, p.Name)
						if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
							t.Errorf("pdb %s sets neither maxUnavailable nor minAvailable", p.Name)
						}
					}
				}
				switch {
				case w.replicas > 1 && len(budgets) != 1:
					t.Errorf("%s %s has %d replicas and %d PodDisruptionBudgets %v, want 1", w.kind, w.name, w.replicas, len(budgets), budgets)
				case w.replicas <= 1 && len(budgets) > 0:
					t.Errorf("%s %s has one replica and PodDisruptionBudgets %v, which would block every node drain", w.kind, w.name, budgets)
				}
			}
		})
	}
}

// access is one verb on one kind of object.
type access struct {
	group, resource, verb string
}

func (a access) String() string {
	if a.group == "" {
		return a.verb + " " + a.resource
	}
	return a.verb + " " + a.resource + "." + a.group
}

var (
	// manage is what the orchestrator and Helm do with the objects of a
	// store: create, read back, patch on upgrade and repair, delete.
	manage = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	// read is what it does with objects it only observes.
	read = []string{"get", "list", "watch"}

	// orchestratorOwnKinds are what the orchestrator itself writes into a
	// store namespace (services/orchestrator/internal/kube), and Helm's
	// release records (Secrets, the Secrets storage driver).
	orchestratorOwnKinds = []schema.GroupResource{
		{Resource: "resourcequotas"}, {Resource: "limitranges"}, {Resource: "secrets"},
		{Group: "networking.k8s.io", Resource: "networkpolicies"},
	}
	// observedKinds are read to tell why a store is not ready.
	observedKinds = []schema.GroupResource{
		{Resource: "pods"}, {Resource: "events"}, {Group: "apps", Resource: "replicasets"},
	}
	// namespaceVerbs: store namespaces are applied server-side (create and
	// patch), annotated, watched and deleted.
	namespaceVerbs = []string{"get", "list", "watch", "create", "patch", "delete"}
)

// storeChartResources returns every kind the store charts render with any
// of their ci values files.
func storeChartResources(t *testing.T) []schema.GroupResource {
	t.Helper()
	seen := map[schema.GroupResource]bool{}
	for _, c := range renderCases(t) {
		for _, o := range c.objs.all {
			gvks, _, err := scheme.Scheme.ObjectKinds(o.(runtime.Object))
			if err != nil || len(gvks) == 0 {
				t.Fatalf("%s: kind of %s: %v", c, o.GetName(), err)
			}
			plural, _ := meta.UnsafeGuessKindToResource(gvks[0])
			seen[plural.GroupResource()] = true
		}
	}
	out := make([]schema.GroupResource, 0, len(seen))
	for gr := range seen {
		out = append(out, gr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// neededAccess is everything the orchestrator must be able to do, and
// everything it may do.
func neededAccess(t *testing.T) map[access]bool {
	t.Helper()
	need := map[access]bool{}
	grant := func(grs []schema.GroupResource, verbs []string) {
		for _, gr := range grs {
			for _, v := range verbs {
				need[access{gr.Group, gr.Resource, v}] = true
			}
		}
	}
	kinds := storeChartResources(t)
	t.Logf("kinds the store charts render: %v", kinds)
	grant(kinds, manage)
	grant(orchestratorOwnKinds, manage)
	grant(observedKinds, read)
	grant([]schema.GroupResource{{Resource: "namespaces"}}, namespaceVerbs)
	return need
}

// orchestratorRole returns the ClusterRole bound to the orchestrator's
// ServiceAccount, failing unless there is exactly one binding and no other
// role binding in the chart.
func orchestratorRole(t *testing.T, o objects, namespace string) *rbacv1.ClusterRole {
	t.Helper()
	var sa *corev1.ServiceAccount
	for _, s := range typed[*corev1.ServiceAccount](o) {
		if strings.HasSuffix(s.Name, "-orchestrator") {
			sa = s
		}
	}
	if sa == nil {
		t.Fatal("no orchestrator ServiceAccount rendered")
	}
	if n := len(typed[*rbacv1.Role](o)) + len(typed[*rbacv1.RoleBinding](o)); n > 0 {
		t.Errorf("the chart renders %d Roles or RoleBindings; only the orchestrator's ClusterRole is expected", n)
	}
	bindings := typed[*rbacv1.ClusterRoleBinding](o)
	if len(bindings) != 1 {
		t.Fatalf("%d ClusterRoleBindings rendered, want 1 (the orchestrator's)", len(bindings))
	}
	b := bindings[0]
	want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: namespace}}
	if !slices.Equal(b.Subjects, want) {
		t.Errorf("ClusterRoleBinding %s subjects = %v, want %v", b.Name, b.Subjects, want)
	}
	for _, r := range typed[*rbacv1.ClusterRole](o) {
		if b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == r.Name {
			return r
		}
	}
	t.Fatalf("ClusterRoleBinding %s refers to %s %s, which the chart does not render", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
	return nil
}

func TestOrchestratorRoleCoversStoreChartsAndNothingElse(t *testing.T) {
	need := neededAccess(t)
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			role := orchestratorRole(t, c.objs, platformNamespace)
			granted := map[access]bool{}
			for i, r := range role.Rules {
				where := fmt.Sprintf("rule %d", i)
				for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
					if slices.Contains(field, "*") {
						t.Errorf("%s: wildcard in %v", where, r)
					}
				}
				if len(r.NonResourceURLs) > 0 {
					t.Errorf("%s: non-resource URLs %v (discovery is granted to every authenticated user)", where, r.NonResourceURLs)
				}
				for _, res := range r.Resources {
					if strings.Contains(res, "/") {
						t.Errorf("%s: subresource %s (exec, attach, logs, token…) is not needed", where, res)
					}
				}
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							a := access{g, res, v}
							granted[a] = true
							if !need[a] {
								t.Errorf("%s grants %s, which neither the orchestrator nor the store charts need", where, a)
							}
						}
					}
				}
			}
			var missing []string
			for a := range need {
				if !granted[a] {
					missing = append(missing, a.String())
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				t.Errorf("ClusterRole %s does not allow: %s", role.Name, strings.Join(missing, ", "))
			}
		})
	}
}

func TestOrchestratorWritesAreConfinedToStoreNamespaces(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			role := orchestratorRole(t, c.objs, platformNamespace)
			policies := typed[*admissionv1.ValidatingAdmissionPolicy](c.objs)
			bindings := typed[*admissionv1.ValidatingAdmissionPolicyBinding](c.objs)
			if len(policies) != 1 || len(bindings) != 1 {
				t.Fatalf("%d ValidatingAdmissionPolicies and %d bindings rendered, want 1 each", len(policies), len(bindings))
			}
			p, b := policies[0], bindings[0]
			if b.Spec.PolicyName != p.Name || !slices.Equal(b.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
				t.Errorf("binding %s: policy %q actions %v, want %q [Deny]", b.Name, b.Spec.PolicyName, b.Spec.ValidationActions, p.Name)
			}
			if ptrOr(p.Spec.FailurePolicy, admissionv1.Fail) != admissionv1.Fail {
				t.Errorf("policy %s fails open", p.Name)
			}
			sa := "system:serviceaccount:" + platformNamespace + ":platform-orchestrator"
			if len(p.Spec.MatchConditions) != 1 || !strings.Contains(p.Spec.MatchConditions[0].Expression, "'"+sa+"'") {
				t.Errorf("policy %s does not match the orchestrator's requests (%s): %v", p.Name, sa, p.Spec.MatchConditions)
			}
			// Every kind the orchestrator may write is checked on every write.
			checked := map[access]bool{}
			for _, r := range p.Spec.MatchConstraints.ResourceRules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, op := range r.Operations {
							checked[access{g, res, string(op)}] = true
						}
					}
				}
			}
			writes := map[string]admissionv1.OperationType{"create": admissionv1.Create, "update": admissionv1.Update, "patch": admissionv1.Update, "delete": admissionv1.Delete}
			for _, r := range role.Rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							if op, write := writes[v]; write && !checked[access{g, res, string(op)}] {
								t.Errorf("the role lets the orchestrator %s, which the admission policy does not check (%s)", access{g, res, v}, op)
							}
						}
					}
				}
			}
		})
	}
}

func TestStoreValuesFitStoreCharts(t *testing.T) {
	for file, vals := range platformValues(t) {
		chartValues, err := chartutil.Values(vals).Table("orchestrator.storeValues")
		if err != nil {
			continue // none in this file
		}
		for _, spec := range specs {
			t.Run(file+"/"+spec.name, func(t *testing.T) {
				v := storeValues()
				for k, x := range chartValues.AsMap() {
					v[k] = x
				}
				rel, err := render(t, loadChart(t, spec.name), releaseName, v)
				if err != nil {
					t.Fatalf("orchestrator.storeValues of %s do not fit chart %s: %v", file, spec.name, err)
				}
				objs := decode(t, rel.Manifest)
				if len(objs.ingresses) != 1 {
					t.Fatalf("%d Ingresses rendered, want 1", len(objs.ingresses))
				}
				want, _ := chartValues.PathValue("ingress.className")
				if got := ptrOr(objs.ingresses[0].Spec.IngressClassName, ""); want != nil && got != want {
					t.Errorf("store Ingress class = %q, want %q", got, want)
				}
			})
		}
	}
}

var (
	// secretEnvName names an env var that must be read from a Secret.
	secretEnvName = regexp.MustCompile(`(?i)pass|secret|token|database_url|dsn`)
	// databaseFlag passes a database URL on the command line.
	databaseFlag = regexp.MustCompile(`^--database-url=(.*)$`)
)

func TestPlatformPassesNoCredentialInPodSpecs(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			databaseFlags := 0
			for _, w := range c.objs.workloads(t) {
				for _, ctr := range allContainers(w.template.Spec) {
					where := fmt.Sprintf("%s %s container %s", w.kind, w.name, ctr.Name)
					fromSecret := map[string]bool{}
					for _, e := range ctr.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							fromSecret[e.Name] = true
						} else if secretEnvName.MatchString(e.Name) {
							t.Errorf("%s: env %s is not read from a Secret", where, e.Name)
						}
					}
					for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
						if m := databaseFlag.FindStringSubmatch(a); m != nil {
							databaseFlags++
							if ref := kubeletRef.FindStringSubmatch(m[1]); ref == nil || ref[0] != m[1] || !fromSecret[ref[1]] {
								t.Errorf("%s: %s is not a $(VAR) read from a Secret", where, a)
							}
						}
						for _, m := range urlPassword.FindAllStringSubmatch(a, -1) {
							if ref := kubeletRef.FindStringSubmatch(m[1]); ref == nil || !fromSecret[ref[1]] {
								t.Errorf("%s: argument %q has a literal URL password", where, a)
							}
						}
					}
				}
			}
			if databaseFlags != 2 {
				t.Errorf("%d containers take --database-url, want 2 (api and audit)", databaseFlags)
			}

			// The generated password is in its Secret and nowhere else.
			for _, s := range c.objs.secrets {
				pw := string(s.Data["password"])
				if pw == "" {
					continue
				}
				if len(pw) < 24 {
					t.Errorf("secret %s: generated password has %d characters, want at least 24", s.Name, len(pw))
				}
				for name, doc := range releaseutil.SplitManifests(c.rel.Manifest) {
					if strings.Contains(doc, "kind: Secret") {
						continue
					}
					if strings.Contains(doc, pw) {
						t.Errorf("the generated password appears outside its Secret, in %s", name)
					}
				}
				if strings.Contains(c.rel.Info.Notes, pw) {
					t.Error("the generated password appears in NOTES")
				}
			}
		})
	}
}

func TestPlatformServesDashboardAtDomain(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			vals, err := chartutil.CoalesceValues(loadChart(t, charts.Platform), platformValues(t)[c.file])
			if err != nil {
				t.Fatal(err)
			}
			host := "dashboard." + stringValue(t, vals, "domain")
			if len(c.objs.ingresses) != 1 {
				t.Fatalf("%d Ingresses rendered, want 1", len(c.objs.ingresses))
			}
			ing := c.objs.ingresses[0]
			if len(ing.Spec.Rules) != 1 || ing.Spec.Rules[0].Host != host {
				t.Fatalf("ingress rules %v, want one for %s", ing.Spec.Rules, host)
			}
			backend := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service
			svc := findService(c.objs, backend.Name)
			if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == backend.Port.Name }) {
				t.Fatalf("ingress backend %s port %q is not a rendered Service port", backend.Name, backend.Port.Name)
			}
			if !slices.ContainsFunc(c.objs.deployments, func(d *appsv1.Deployment) bool {
				return strings.HasSuffix(d.Name, "-gateway") && selects(svc.Spec.Selector, d.Spec.Template.Labels)
			}) {
				t.Errorf("ingress backend %s does not select the gateway's pods", backend.Name)
			}
			tls, _ := vals.PathValue("ingress.tls.enabled")
			if tls == true && (len(ing.Spec.TLS) != 1 || !slices.Equal(ing.Spec.TLS[0].Hosts, []string{host})) {
				t.Errorf("TLS is enabled but the Ingress has TLS %v", ing.Spec.TLS)
			}
			if !strings.Contains(c.rel.Info.Notes, host) || !strings.Contains(c.rel.Info.Notes, "-admin-token -o jsonpath") {
				t.Errorf("NOTES do not tell the dashboard's URL and how to read the first admin token:\n%s", c.rel.Info.Notes)
			}
		})
	}
}

// TestPlatformConfiguresSignIn renders the platform with OpenID Connect
// sign-in on: the gateway and the api get the same issuer and client, the
// gateway's redirect URL is the dashboard's callback, and the client secret
// comes from its Secret.
func TestPlatformConfiguresSignIn(t *testing.T) {
	rel, err := renderPlatform(t, map[string]any{
		"domain":  "shops.example.com",
		"ingress": map[string]any{"tls": map[string]any{"enabled": true}},
		"signIn": map[string]any{
			"enabled": true, "issuer": "https://id.example.com/realms/shops", "clientID": "storeprov",
			"clientSecret": map[string]any{"secretName": "storeprov-oidc", "key": "secret"},
			"adminEmails":  []any{"ops@example.com", "cto@example.com"}, "sessionTTL": "8h",
			"allowedDomains": []any{"example.com"}, "allowedGroups": []any{"storeprov-users", "ops"}, "groupsClaim": "roles",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	containers := map[string]corev1.Container{}
	for _, d := range decode(t, rel.Manifest).deployments {
		containers[d.Name] = d.Spec.Template.Spec.Containers[0]
	}
	wantArgs := map[string][]string{
		"platform-gateway": {
			"--oidc-issuer=https://id.example.com/realms/shops", "--oidc-client-id=storeprov",
			"--oidc-redirect-url=https://dashboard.shops.example.com/auth/callback", "--oidc-provider-name=single sign-on",
		},
		"platform-api": {
			"--oidc-issuer=https://id.example.com/realms/shops", "--oidc-client-id=storeprov",
			"--oidc-admin-emails=ops@example.com,cto@example.com", "--oidc-session-ttl=8h",
			"--oidc-allowed-domains=example.com", "--oidc-allowed-groups=storeprov-users,ops", "--oidc-groups-claim=roles",
		},
	}
	for name, want := range wantArgs {
		c, ok := containers[name]
		if !ok {
			t.Fatalf("no Deployment %s", name)
		}
		for _, a := range want {
			if !slices.Contains(c.Args, a) {
				t.Errorf("%s args %q lack %q", name, c.Args, a)
			}
		}
	}
	i := slices.IndexFunc(containers["platform-gateway"].Env, func(e corev1.EnvVar) bool { return e.Name == "STOREPROV_OIDC_CLIENT_SECRET" })
	if i < 0 {
		t.Fatal("the gateway gets no STOREPROV_OIDC_CLIENT_SECRET")
	}
	if ref := containers["platform-gateway"].Env[i].ValueFrom; ref == nil || ref.SecretKeyRef == nil ||
		ref.SecretKeyRef.Name != "storeprov-oidc" || ref.SecretKeyRef.Key != "secret" {
		t.Errorf("the client secret comes from %+v; want Secret storeprov-oidc, key secret", ref)
	}
	// Off by default: no sign-in flags at all.
	rel, err = renderPlatform(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rel.Manifest, "--oidc-") || strings.Contains(rel.Manifest, "OIDC") {
		t.Error("sign-in is configured although signIn.enabled is false")
	}
}

// TestPlatformRefusesSignInOpenToAnyone: with a public issuer, sign-in
// without allowed domains or groups would give anyone a user.
func TestPlatformRefusesSignInOpenToAnyone(t *testing.T) {
	signIn := func(extra map[string]any) map[string]any {
		s := map[string]any{
			"enabled": true, "issuer": "https://accounts.example.com", "clientID": "storeprov",
			"clientSecret": map[string]any{"secretName": "storeprov-oidc", "key": "secret"},
		}
		maps.Copy(s, extra)
		return map[string]any{"signIn": s}
	}
	_, err := renderPlatform(t, signIn(nil))
	if err == nil || !strings.Contains(err.Error(), "signIn.enabled needs signIn.allowedDomains or signIn.allowedGroups") {
		t.Errorf("sign-in open to anyone: %v; want the chart to refuse, naming allowedDomains and allowedGroups", err)
	}
	for _, extra := range []map[string]any{
		{"allowedDomains": []any{"example.com"}},
		{"allowedGroups": []any{"storeprov-users"}},
	} {
		if _, err := renderPlatform(t, signIn(extra)); err != nil {
			t.Errorf("sign-in with %v: %v", extra, err)
		}
	}
	_, err = renderPlatform(t, signIn(map[string]any{"allowedDomains": []any{"@example.com"}}))
	if err == nil || !strings.Contains(err.Error(), "allowedDomains") {
		t.Errorf("an allowed domain with '@': %v; want the schema to refuse it", err)
	}
}

// TestPlatformGivesTheFirstAdminTokenThroughASecret: the api reads the
// first admin's token from a Secret the chart generated, so it never has
// to print it; the token is in no pod spec.
func TestPlatformGivesTheFirstAdminTokenThroughASecret(t *testing.T) {
	rel, err := renderPlatform(t, map[string]any{"api": map[string]any{"tokenMaxTTL": "720h"}})
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, rel.Manifest)
	var token string
	for _, s := range objs.secrets {
		if s.Name == "platform-admin-token" {
			token = string(s.Data["token"])
			if s.Annotations["helm.sh/resource-policy"] != "keep" {
				t.Errorf("Secret %s is not kept on uninstall, unlike the database it opens", s.Name)
			}
		}
	}
	if !regexp.MustCompile(`^sp_[a-z0-9]{52}$`).MatchString(token) {
		t.Fatalf("Secret platform-admin-token holds token %q; want sp_ and 52 random lowercase characters", token)
	}
	var api *appsv1.Deployment
	for _, d := range objs.deployments {
		if d.Name == "platform-api" {
			api = d
		}
	}
	if api == nil {
		t.Fatal("no Deployment platform-api")
	}
	spec := api.Spec.Template.Spec
	c := spec.Containers[0]
	for _, a := range []string{"--admin-token-from-file=/var/run/storeprov/admin-token/token", "--token-max-ttl=720h"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("api args %q lack %q", c.Args, a)
		}
	}
	mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == "/var/run/storeprov/admin-token" && m.ReadOnly
	}) && slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "platform-admin-token"
	})
	if !mounted {
		t.Errorf("the api does not mount Secret platform-admin-token read-only at /var/run/storeprov/admin-token: %+v %+v", c.VolumeMounts, spec.Volumes)
	}
	for _, d := range objs.deployments {
		b, _ := json.Marshal(d.Spec.Template)
		if strings.Contains(string(b), token) {
			t.Errorf("Deployment %s's pod spec holds the admin token", d.Name)
		}
	}
	if strings.Contains(rel.Info.Notes, "logs") {
		t.Errorf("NOTES still send operators to the logs for the admin token:\n%s", rel.Info.Notes)
	}
	if !strings.Contains(rel.Info.Notes, "get secret platform-admin-token") {
		t.Errorf("NOTES do not say how to read the admin token's Secret:\n%s", rel.Info.Notes)
	}
}

// TestPlatformSpreadsCallsOverReplicas checks that the services calling
// the api and the audit service dial a headless Service of their pods
// (dns:///…), so that round robin reaches every replica, and that each
// such Service selects the right pods and port.
func TestPlatformSpreadsCallsOverReplicas(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			deployments := map[string]*appsv1.Deployment{}
			for _, d := range c.objs.deployments {
				deployments[strings.TrimPrefix(d.Name, "platform-")] = d
			}
			for _, call := range []struct{ caller, flag, callee, port string }{
				{"gateway", "--api-addr", "api", "9090"},
				{"gateway", "--audit-addr", "audit", "9092"},
				{"audit", "--api-addr", "api", "9090"},
			} {
				want := "dns:///platform-" + call.callee + "-pods:" + call.port
				if args := deployments[call.caller].Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, call.flag+"="+want) {
					t.Errorf("%s args %q lack %s=%s", call.caller, args, call.flag, want)
				}
				svc := findService(c.objs, "platform-"+call.callee+"-pods")
				if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !selects(svc.Spec.Selector, deployments[call.callee].Spec.Template.Labels) ||
					len(svc.Spec.Ports) != 1 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != call.port {
					t.Errorf("Service platform-%s-pods = %+v; want a headless Service of the %s pods on port %s", call.callee, svc, call.callee, call.port)
				}
			}
		})
	}
}

func TestPlatformSchemaRejectsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		reason  string
		values  map[string]any
		wantErr string
	}{
		{
			name:    "unknown top-level key",
			reason:  "a misspelt key must not be ignored silently",
			values:  map[string]any{"replicas": 3},
			wantErr: "replicas",
		},
		{
			name:    "external database without its Secret",
			reason:  "the api and the audit service would start without a database",
			values:  map[string]any{"postgresql": map[string]any{"enabled": false}},
			wantErr: "existingSecret",
		},
		{
			name:    "replicas as a string",
			reason:  "values are typed",
			values:  map[string]any{"orchestrator": map[string]any{"replicas": "3"}},
			wantErr: "replicas",
		},
		{
			name:    "resources without limits",
			reason:  "GOMEMLIMIT and GOMAXPROCS are derived from the limits",
			values:  map[string]any{"api": map[string]any{"resources": map[string]any{"limits": nil}}},
			wantErr: "limits",
		},
		{
			name:    "domain with a scheme",
			reason:  "the domain is a DNS suffix",
			values:  map[string]any{"domain": "https://shops.example.com"},
			wantErr: "domain",
		},
		{
			name:    "sign-in without a client secret",
			reason:  "the gateway cannot redeem the issuer's codes without it",
			values:  map[string]any{"signIn": map[string]any{"enabled": true, "issuer": "https://id.example.com", "clientID": "storeprov"}},
			wantErr: "secretName",
		},
		{
			name:    "sign-in issuer without a scheme",
			reason:  "the issuer is a URL, compared exactly with the tokens' iss claim",
			values:  map[string]any{"signIn": map[string]any{"issuer": "id.example.com"}},
			wantErr: "issuer",
		},
		{
			name:    "database URL as a value",
			reason:  "credentials come from Secrets, never from values",
			values:  map[string]any{"postgresql": map[string]any{"external": map[string]any{"url": "postgres://u:p@db/x"}}},
			wantErr: "url",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderPlatform(t, tt.values)
			if err == nil {
				t.Fatalf("rendering succeeded, want an error about %s (%s)", tt.wantErr, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %s", err, tt.wantErr)
			}
		})
	}
}

// TestPlatformInstallsInSandbox installs the chart with values-local.yaml
// into a fresh namespace that enforces Pod Security restricted, waits until
// every Deployment and StatefulSet is ready, upgrades it (the generated
// database and NATS passwords must survive), and uninstalls it.
func TestPlatformInstallsInSandbox(t *testing.T) {
	ns := sandboxtest.Namespace(t, "platform", map[string]string{
		psa.EnforceLevelLabel: string(psa.LevelRestricted),
		psa.WarnLevelLabel:    string(psa.LevelRestricted),
	})
	cs := sandboxtest.Clientset(t)
	kubeconfig := sandboxtest.KubeconfigPath(t)
	getter := genericclioptions.NewConfigFlags(false)
	getter.KubeConfig = &kubeconfig
	getter.Namespace = &ns
	cfg := &action.Configuration{}
	if err := cfg.Init(getter, ns, "secret", t.Logf); err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValuesFile("values-local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox's storage class, and a cluster-wide unique release.
	vals["storageClass"] = "standard"
	name := "platform-" + sandboxtest.RandomSuffix()
	c := loadChart(t, charts.Platform)

	install := action.NewInstall(cfg)
	install.ReleaseName = name
	install.Namespace = ns
	install.Wait = true
	install.Timeout = 3 * time.Minute
	start := time.Now()
	rel, err := install.Run(c, vals)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Logf("installed %s in %s in %s", name, ns, time.Since(start).Round(time.Millisecond))
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			if _, err := action.NewUninstall(cfg).Run(name); err != nil {
				t.Errorf("helm uninstall: %v", err)
			}
		}
	})
	objs := decode(t, rel.Manifest)
	role := orchestratorRole(t, objs, ns)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checkReady(ctx, t, cs, ns, objs)
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("ClusterRole %s: %v", role.Name, err)
	}

	password := func() string {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name+"-postgresql", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("database Secret: %v", err)
		}
		return string(s.Data["password"])
	}
	natsPasswords := func() map[string][]byte {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name+"-nats-auth", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("NATS passwords Secret: %v", err)
		}
		return s.Data
	}
	before, natsBefore := password(), natsPasswords()
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	upgrade.Wait = true
	upgrade.Timeout = 3 * time.Minute
	if _, err := upgrade.Run(name, c, vals); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if after := password(); after != before {
		t.Error("helm upgrade generated a new database password; the data directory keeps the old one")
	}
	if diff := cmp.Diff(natsBefore, natsPasswords()); diff != "" {
		t.Error("helm upgrade generated new NATS passwords; running services would be refused until restarted")
	}
	checkReady(ctx, t, cs, ns, objs)

	if _, err := action.NewUninstall(cfg).Run(name); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	uninstalled = true
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole %s after uninstall: %v, want NotFound", role.Name, err)
	}
	if password() != before {
		t.Error("the database Secret changed on uninstall; it must be kept with the data claim")
	}
}

// checkReady waits until every Deployment and StatefulSet of objs has all
// its replicas updated and ready.
func checkReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, objs objects) {
	t.Helper()
	for {
		var pending []string
		for _, d := range objs.deployments {
			got, err := cs.AppsV1().Deployments(ns).Get(ctx, d.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("deployment %s: %v", d.Name, err)
			}
			want := ptrOr(d.Spec.Replicas, 1)
			if got.Status.ReadyReplicas != want || got.Status.UpdatedReplicas != want || got.Status.ObservedGeneration < got.Generation {
				pending = append(pending, fmt.Sprintf("deployment %s %d/%d ready", d.Name, got.Status.ReadyReplicas, want))
			}
		}
		for _, s := range objs.statefulSets {
			got, err := cs.AppsV1().StatefulSets(ns).Get(ctx, s.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("statefulset %s: %v", s.Name, err)
			}
			want := ptrOr(s.Spec.Replicas, 1)
			if got.Status.ReadyReplicas != want || got.Status.ObservedGeneration < got.Generation {
				pending = append(pending, fmt.Sprintf("statefulset %s %d/%d ready", s.Name, got.Status.ReadyReplicas, want))
			}
		}
		if len(pending) == 0 {
			t.Logf("%d Deployments and %d StatefulSets ready", len(objs.deployments), len(objs.statefulSets))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not ready: %s", strings.Join(pending, "; "))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// natsRoles are the services that sign in to NATS, with their Deployment.
var natsRoles = map[bus.Role]string{bus.RoleAPI: "platform-api", bus.RoleOrchestrator: "platform-orchestrator", bus.RoleAudit: "platform-audit"}

// natsServerUsers loads the bundled NATS server's configuration as the
// server does, with the passwords the Secret would put in its environment.
func natsServerUsers(t *testing.T, o objects, passwords map[bus.Role]string) []*server.User {
	t.Helper()
	i := slices.IndexFunc(typed[*corev1.ConfigMap](o), func(c *corev1.ConfigMap) bool { return c.Name == "platform-nats" })
	if i < 0 {
		t.Fatal("no ConfigMap platform-nats")
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(typed[*corev1.ConfigMap](o)[i].Data["nats.conf"]), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "platform-nats-0")
	for role, password := range passwords {
		t.Setenv(strings.ToUpper(string(role))+"_PASSWORD", password)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the NATS server cannot load its configuration: %v", err)
	}
	if opts.NoAuthUser != "" || opts.Username != "" || len(opts.Nkeys) > 0 || opts.Accounts != nil {
		t.Errorf("NATS admits more than the role users: no_auth_user %q, user %q, %d nkeys, accounts %v", opts.NoAuthUser, opts.Username, len(opts.Nkeys), opts.Accounts)
	}
	return opts.Users
}

// TestPlatformNATSGrantsEachServiceThePermissionsOfPkgBus loads the bundled
// NATS configuration with the server's own parser and compares each user
// with bus.Topology.Permissions, so the chart and the services cannot drift.
func TestPlatformNATSGrantsEachServiceThePermissionsOfPkgBus(t *testing.T) {
	sorted := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	for _, prefix := range []string{"storeprov", "shop-2"} {
		t.Run(prefix, func(t *testing.T) {
			rel, err := renderPlatform(t, map[string]any{"bus": map[string]any{"prefix": prefix, "replicas": 1}})
			if err != nil {
				t.Fatal(err)
			}
			passwords := map[bus.Role]string{bus.RoleAPI: "pw-api", bus.RoleOrchestrator: "pw-orchestrator", bus.RoleAudit: "pw-audit"}
			users := natsServerUsers(t, decode(t, rel.Manifest), passwords)
			topo := bus.Topology{Prefix: prefix}
			var names []string
			for _, u := range users {
				names = append(names, u.Username)
				role := bus.Role(u.Username)
				if u.Password != passwords[role] {
					t.Errorf("user %s has password %q, want $%s_PASSWORD", u.Username, u.Password, strings.ToUpper(u.Username))
				}
				p := u.Permissions
				if p == nil || p.Publish == nil || p.Subscribe == nil || len(p.Publish.Deny)+len(p.Subscribe.Deny) > 0 || p.Response != nil {
					t.Errorf("user %s has permissions %+v; want allow lists only", u.Username, p)
					continue
				}
				want := topo.Permissions(role)
				if diff := cmp.Diff(sorted(want.Publish), sorted(p.Publish.Allow)); diff != "" {
					t.Errorf("user %s may publish to (-bus.Topology.Permissions +chart):\n%s", u.Username, diff)
				}
				if diff := cmp.Diff(sorted(want.Subscribe), sorted(p.Subscribe.Allow)); diff != "" {
					t.Errorf("user %s may subscribe to (-bus.Topology.Permissions +chart):\n%s", u.Username, diff)
				}
			}
			if diff := cmp.Diff([]string{"api", "audit", "orchestrator"}, sorted(names)); diff != "" {
				t.Errorf("NATS users (-want +got):\n%s", diff)
			}
		})
	}
}

// natsPasswordRef is where a container's env var name comes from.
func natsPasswordRef(c corev1.Container, name string) *secretRef {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return &secretRef{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}
		}
	}
	return nil
}

func TestPlatformNATSPasswordsComeFromOneSecret(t *testing.T) {
	for _, tt := range []struct {
		name string
		nats map[string]any
		// secret is the Secret every password comes from; empty: none.
		secret    string
		generated bool
	}{
		{name: "bundled NATS", nats: nil, secret: "platform-nats-auth", generated: true},
		{name: "bundled NATS, passwords of mine", nats: map[string]any{"auth": map[string]any{"existingSecret": "my-nats"}}, secret: "my-nats"},
		{name: "external NATS with passwords", nats: map[string]any{"external": map[string]any{"url": "nats://nats.example:4222"}, "auth": map[string]any{"existingSecret": "my-nats"}}, secret: "my-nats"},
		{name: "external NATS without authentication", nats: map[string]any{"external": map[string]any{"url": "nats://nats.example:4222"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vals := map[string]any{}
			if tt.nats != nil {
				vals["nats"] = tt.nats
			}
			rel, err := renderPlatform(t, vals)
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, rel.Manifest)
			deployments := map[string]*appsv1.Deployment{}
			for _, d := range o.deployments {
				deployments[d.Name] = d
			}
			for role, name := range natsRoles {
				got := natsPasswordRef(deployments[name].Spec.Template.Spec.Containers[0], bus.PasswordEnv)
				if want := (&secretRef{tt.secret, string(role)}); tt.secret == "" && got != nil || tt.secret != "" && (got == nil || *got != *want) {
					t.Errorf("%s reads %s from %+v, want %+v", name, bus.PasswordEnv, got, tt.secret)
				}
			}
			if got := natsPasswordRef(deployments["platform-gateway"].Spec.Template.Spec.Containers[0], bus.PasswordEnv); got != nil {
				t.Errorf("the gateway, which has no NATS connection, gets a NATS password from %+v", got)
			}
			for _, s := range o.statefulSets {
				if s.Name != "platform-nats" {
					continue
				}
				for role := range natsRoles {
					env := strings.ToUpper(string(role)) + "_PASSWORD"
					if got := natsPasswordRef(s.Spec.Template.Spec.Containers[0], env); got == nil || *got != (secretRef{tt.secret, string(role)}) {
						t.Errorf("NATS reads %s from %+v, want Secret %s key %s", env, got, tt.secret, role)
					}
				}
			}
			var generated *corev1.Secret
			for _, s := range o.secrets {
				if s.Name == "platform-nats-auth" {
					generated = s
				}
			}
			if !tt.generated {
				if generated != nil {
					t.Errorf("Secret platform-nats-auth generated although %q", tt.name)
				}
				return
			}
			if generated == nil {
				t.Fatal("no Secret platform-nats-auth")
			}
			seen := map[string]bool{}
			for role := range natsRoles {
				pw := string(generated.Data[string(role)])
				if len(pw) < 24 || seen[pw] {
					t.Errorf("generated password of %s has %d characters or is another role's; want 24 or more, its own", role, len(pw))
				}
				seen[pw] = true
				for name, doc := range releaseutil.SplitManifests(rel.Manifest) {
					if !strings.Contains(doc, "kind: Secret") && strings.Contains(doc, pw) {
						t.Errorf("the NATS password of %s appears outside its Secret, in %s", role, name)
					}
				}
			}
		})
	}
}

// peers names the rendered workloads a NetworkPolicy peer list selects,
// "anywhere" for no peer, and the CIDRs of its ipBlocks.
func peers(t *testing.T, o objects, from []networkingv1.NetworkPolicyPeer) []string {
	t.Helper()
	if len(from) == 0 {
		return []string{"anywhere"}
	}
	var out []string
	for _, p := range from {
		if p.IPBlock != nil {
			out = append(out, p.IPBlock.CIDR+" except "+strings.Join(p.IPBlock.Except, ","))
			continue
		}
		if p.PodSelector == nil && p.NamespaceSelector != nil && len(p.NamespaceSelector.MatchLabels)+len(p.NamespaceSelector.MatchExpressions) == 0 {
			out = append(out, "any pod")
			continue
		}
		if p.PodSelector == nil || p.NamespaceSelector != nil || len(p.PodSelector.MatchExpressions) > 0 {
			t.Errorf("peer %+v is not a pod selector of this namespace", p)
			continue
		}
		for _, w := range o.workloads(t) {
			if selects(p.PodSelector.MatchLabels, w.template.Labels) {
				out = append(out, strings.TrimPrefix(w.name, "platform-"))
			}
		}
	}
	slices.Sort(out)
	return out
}

// rule is a NetworkPolicy rule: its peers and ports, for comparison.
type rule struct {
	Peers []string
	Ports []string
}

func rulesOf(t *testing.T, o objects, peerLists [][]networkingv1.NetworkPolicyPeer, portLists [][]networkingv1.NetworkPolicyPort) []rule {
	var out []rule
	for i := range peerLists {
		r := rule{Peers: peers(t, o, peerLists[i])}
		for _, p := range portLists[i] {
			r.Ports = append(r.Ports, fmt.Sprintf("%s/%s", ptrOr(p.Protocol, corev1.ProtocolTCP), p.Port.String()))
		}
		out = append(out, r)
	}
	return out
}

func TestPlatformNetworkPoliciesConfineNATSPostgreSQLAndTheGateway(t *testing.T) {
	private := "0.0.0.0/0 except 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,100.64.0.0/10,127.0.0.0/8"
	private6 := "::/0 except fc00::/7,fe80::/10,::1/128"
	gatewayEgress := []rule{
		{Peers: []string{"api"}, Ports: []string{"TCP/9090"}},
		{Peers: []string{"audit"}, Ports: []string{"TCP/9092"}},
		{Peers: []string{"anywhere"}, Ports: []string{"UDP/53", "TCP/53"}},
	}
	type policy struct {
		Selects []string
		Types   []string
		Ingress []rule
		Egress  []rule
	}
	gateway := policy{Selects: []string{"gateway"}, Types: []string{"Ingress", "Egress"},
		Ingress: []rule{{Peers: []string{"anywhere"}, Ports: []string{"TCP/http"}}, {Peers: []string{"any pod"}, Ports: []string{"TCP/metrics"}}},
		Egress:  gatewayEgress}
	signInGateway := gateway
	signInGateway.Egress = append(slices.Clone(gatewayEgress), rule{Peers: []string{private, private6}, Ports: []string{"TCP/443"}})
	nats := policy{Selects: []string{"nats"}, Types: []string{"Ingress"},
		Ingress: []rule{{Peers: []string{"api", "audit", "orchestrator"}, Ports: []string{"TCP/client"}}}}
	postgresql := policy{Selects: []string{"postgresql"}, Types: []string{"Ingress"},
		Ingress: []rule{{Peers: []string{"api", "audit"}, Ports: []string{"TCP/postgresql"}}}}
	signIn := map[string]any{"enabled": true, "issuer": "https://id.example.com", "clientID": "storeprov",
		"clientSecret": map[string]any{"secretName": "oidc", "key": "secret"}, "allowedDomains": []any{"example.com"}}
	external := map[string]any{
		"nats":       map[string]any{"external": map[string]any{"url": "nats://nats.example:4222"}},
		"postgresql": map[string]any{"enabled": false, "external": map[string]any{"existingSecret": "db"}},
	}
	for _, tt := range []struct {
		name   string
		values map[string]any
		want   map[string]policy
	}{
		{"defaults", nil, map[string]policy{"platform-nats": nats, "platform-postgresql": postgresql, "platform-gateway": gateway}},
		{"sign-in reaches the issuer's public HTTPS", map[string]any{"signIn": signIn},
			map[string]policy{"platform-nats": nats, "platform-postgresql": postgresql, "platform-gateway": signInGateway}},
		{"external NATS and PostgreSQL", external, map[string]policy{"platform-gateway": gateway}},
		{"disabled", map[string]any{"networkPolicies": map[string]any{"enabled": false}}, map[string]policy{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rel, err := renderPlatform(t, tt.values)
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, rel.Manifest)
			got := map[string]policy{}
			for _, np := range typed[*networkingv1.NetworkPolicy](o) {
				p := policy{}
				for _, w := range o.workloads(t) {
					if selects(np.Spec.PodSelector.MatchLabels, w.template.Labels) {
						p.Selects = append(p.Selects, strings.TrimPrefix(w.name, "platform-"))
					}
				}
				for _, pt := range np.Spec.PolicyTypes {
					p.Types = append(p.Types, string(pt))
				}
				var from, to [][]networkingv1.NetworkPolicyPeer
				var inPorts, outPorts [][]networkingv1.NetworkPolicyPort
				for _, r := range np.Spec.Ingress {
					from, inPorts = append(from, r.From), append(inPorts, r.Ports)
				}
				for _, r := range np.Spec.Egress {
					to, outPorts = append(to, r.To), append(outPorts, r.Ports)
				}
				p.Ingress, p.Egress = rulesOf(t, o, from, inPorts), rulesOf(t, o, to, outPorts)
				got[np.Name] = p
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("NetworkPolicies (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlatformServesMetricsOnlyOnAdminPorts: every Go service's /metrics
// (the Prometheus annotation) and probes are on its admin port, named
// metrics, which no Ingress routes to; the gateway's public Service has no
// other port than http. The gateway gets its limits.
func TestPlatformServesMetricsOnlyOnAdminPorts(t *testing.T) {
	for _, c := range platformCases(t) {
		t.Run(c.file, func(t *testing.T) {
			for _, d := range c.objs.deployments {
				component := d.Spec.Template.Labels["app.kubernetes.io/component"]
				if !map[string]bool{"api": true, "audit": true, "gateway": true, "orchestrator": true}[component] {
					continue
				}
				ctr := d.Spec.Template.Spec.Containers[0]
				var admin int32
				for _, p := range ctr.Ports {
					if p.Name == "metrics" {
						admin = p.ContainerPort
					}
				}
				if admin == 0 {
					t.Errorf("%s has no metrics (admin) port", d.Name)
					continue
				}
				if got := d.Spec.Template.Annotations["prometheus.io/port"]; got != fmt.Sprint(admin) {
					t.Errorf("%s: prometheus.io/port %q, want the admin port %d", d.Name, got, admin)
				}
				if !slices.Contains(ctr.Args, fmt.Sprintf("--metrics-addr=:%d", admin)) {
					t.Errorf("%s: args %v lack --metrics-addr=:%d", d.Name, ctr.Args, admin)
				}
				if component == "gateway" {
					for _, want := range []string{"--max-body-bytes=1048576", "--unauthenticated-rate-limit=1", "--unauthenticated-rate-burst=20",
						"--trusted-proxies=10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"} {
						if !slices.Contains(ctr.Args, want) {
							t.Errorf("gateway args %v lack %s", ctr.Args, want)
						}
					}
				}
				if component == "api" && !slices.Contains(ctr.Args, "--max-watch-streams=8") {
					t.Errorf("api args %v lack --max-watch-streams=8", ctr.Args)
				}
			}
			for _, ing := range c.objs.ingresses {
				for _, r := range ing.Spec.Rules {
					for _, p := range r.HTTP.Paths {
						if svc := p.Backend.Service; svc != nil && (svc.Port.Name == "metrics" || svc.Port.Number == 9095) {
							t.Errorf("ingress %s routes %s to the admin port", ing.Name, p.Path)
						}
					}
				}
			}
			if svc := findService(c.objs, "platform-gateway"); svc == nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" {
				t.Errorf("the gateway's Service must expose only http")
			}
		})
	}
}
