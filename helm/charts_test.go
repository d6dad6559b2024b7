package charts_test

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/scheme"
	psa "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
)

// The store the charts are rendered for, as the orchestrator would name it.
const (
	storeID     = "abc12345"
	baseDomain  = "127.0.0.1.nip.io"
	releaseName = "store"
	namespace   = "store-" + storeID
)

// The guardrails of the "standard" plan the orchestrator creates in the
// namespace before installing a chart
// (services/orchestrator/internal/plan/plans.yaml).
var (
	standardQuota = corev1.ResourceList{
		"requests.cpu":           resource.MustParse("2"),
		"requests.memory":        resource.MustParse("4Gi"),
		"limits.cpu":             resource.MustParse("4"),
		"limits.memory":          resource.MustParse("8Gi"),
		"pods":                   resource.MustParse("20"),
		"services":               resource.MustParse("10"),
		"persistentvolumeclaims": resource.MustParse("6"),
		"requests.storage":       resource.MustParse("30Gi"),
	}
	containerMax = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("4Gi"),
	}
	claimMin = resource.MustParse("100Mi")
	claimMax = resource.MustParse("20Gi")
)

// steadyShare is the largest share of the compute quota the pods of a store
// may take when nothing is rolling out: the rest is headroom for rollouts,
// Jobs and growth.
const steadyShare = 0.75

// chartSpec is what a chart promises the orchestrator.
type chartSpec struct {
	name string
	// tiers maps every pod's app.kubernetes.io/component to the
	// storeprov.dev/tier its pods must carry.
	tiers map[string]string
	// optional components are off by default: a values file may leave
	// them out.
	optional map[string]bool
	// adminPath is the path of the store's administration.
	adminPath string
	// database is the values key of the database's settings.
	database string
	// userText maps each env var that carries text of the store's owner
	// to the values key of that text; a container gets it exactly.
	userText map[string]string
}

var specs = []chartSpec{
	{
		name:      charts.WordPress,
		tiers:     map[string]string{"wordpress": "web", "setup": "web", "order-check": "web", "mariadb": "database"},
		optional:  map[string]bool{"order-check": true},
		adminPath: "/wp-admin/",
		database:  "mariadb",
		userText: map[string]string{
			"STORE_TITLE": "title", "PRODUCT_NAME": "setup.product.name", "PRODUCT_DESCRIPTION": "setup.product.description",
		},
	},
	{
		name: charts.Medusa,
		tiers: map[string]string{
			"medusa": "web", "migrate": "web", "setup": "web", "order-check": "web",
			"postgresql": "database", "redis": "database",
		},
		optional:  map[string]bool{"order-check": true},
		adminPath: "/app",
		database:  "postgresql",
		userText: map[string]string{
			"STORE_TITLE": "title", "PRODUCT_NAME": "setup.product.name", "PRODUCT_DESCRIPTION": "setup.product.description",
		},
	},
}

// The keys of the Secrets the orchestrator creates, by the values key that
// names each Secret.
var secretKeys = map[string][]string{
	"database": {"root-password", "username", "password", "database"},
	"admin":    {"username", "password", "email"},
}

// loadChart loads a chart from the embedded FS, as the orchestrator does.
func loadChart(t testing.TB, name string) *chart.Chart {
	t.Helper()
	files, err := charts.Files(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatalf("cannot load chart %s: %v", name, err)
	}
	return c
}

// ciValues returns the chart's ci/*.yaml values files by file name.
func ciValues(t *testing.T, name string) map[string]map[string]any {
	t.Helper()
	paths, err := fs.Glob(charts.FS, name+"/ci/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("chart %s has no ci/*.yaml values files (%v)", name, err)
	}
	out := map[string]map[string]any{}
	for _, p := range paths {
		data, err := fs.ReadFile(charts.FS, p)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := chartutil.ReadValues(data)
		if err != nil {
			t.Fatalf("cannot parse %s: %v", p, err)
		}
		out[path.Base(p)] = vals
	}
	return out
}

// storeValues are the values the orchestrator sets for the test store.
func storeValues() map[string]any {
	return map[string]any{"storeId": storeID, "baseDomain": baseDomain}
}

// render installs the chart client-side, like `helm template`, and returns
// the release with its manifest and notes.
func render(t testing.TB, c *chart.Chart, release string, vals map[string]any) (*release.Release, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: t.Logf})
	install.ClientOnly = true
	install.DryRun = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = namespace
	kube, err := chartutil.ParseKubeVersion("v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	install.KubeVersion = kube
	return install.Run(c, vals)
}

// objects are the decoded manifests of a release.
type objects struct {
	all          []metav1.Object
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	jobs         []*batchv1.Job
	services     []*corev1.Service
	ingresses    []*networkingv1.Ingress
	claims       []*corev1.PersistentVolumeClaim
	secrets      []*corev1.Secret
}

// decode parses every manifest strictly (unknown or duplicate fields are
// errors) into the typed Kubernetes objects.
func decode(t testing.TB, manifest string) objects {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var o objects
	for _, k := range keys {
		obj, _, err := decoder.Decode([]byte(docs[k]), nil, nil)
		if err != nil {
			t.Fatalf("cannot decode manifest:\n%s\nerror: %v", docs[k], err)
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			o.deployments = append(o.deployments, v)
		case *appsv1.StatefulSet:
			o.statefulSets = append(o.statefulSets, v)
		case *batchv1.Job:
			o.jobs = append(o.jobs, v)
		case *corev1.Service:
			o.services = append(o.services, v)
		case *networkingv1.Ingress:
			o.ingresses = append(o.ingresses, v)
		case *corev1.PersistentVolumeClaim:
			o.claims = append(o.claims, v)
		case *corev1.Secret:
			o.secrets = append(o.secrets, v)
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			t.Fatalf("manifest is not a Kubernetes object: %T", obj)
		}
		o.all = append(o.all, m)
	}
	return o
}

// workload is a pod template and how many pods of it may run at once.
type workload struct {
	kind, name string
	template   corev1.PodTemplateSpec
	// replicas run in the steady state; surge more during a rollout.
	replicas, surge int
	// longRunning pods serve; the others (Jobs) run to completion.
	longRunning bool
}

func (o objects) workloads(t testing.TB) []workload {
	t.Helper()
	var ws []workload
	for _, d := range o.deployments {
		replicas := int(ptrOr(d.Spec.Replicas, 1))
		surge := 0
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			maxSurge := intstr.FromString("25%")
			if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
				maxSurge = *ru.MaxSurge
			}
			s, err := intstr.GetScaledValueFromIntOrPercent(&maxSurge, replicas, true)
			if err != nil {
				t.Fatalf("deployment %s: %v", d.Name, err)
			}
			surge = s
		}
		ws = append(ws, workload{"Deployment", d.Name, d.Spec.Template, replicas, surge, true})
	}
	for _, s := range o.statefulSets {
		// A StatefulSet replaces its pods one by one: no surge.
		ws = append(ws, workload{"StatefulSet", s.Name, s.Spec.Template, int(ptrOr(s.Spec.Replicas, 1)), 0, true})
	}
	for _, j := range o.jobs {
		// All Jobs may run at once, during a rollout (an upgrade starts them).
		ws = append(ws, workload{"Job", j.Name, j.Spec.Template, 0, int(ptrOr(j.Spec.Parallelism, 1)), false})
	}
	return ws
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// renderCase is one chart rendered with one of its ci values files.
type renderCase struct {
	spec   chartSpec
	file   string
	values chartutil.Values // the chart's defaults merged with the file
	rel    *release.Release
	objs   objects
}

func (c renderCase) String() string { return c.spec.name + "/" + c.file }

// renderCases renders every chart with each of its ci values files.
func renderCases(t *testing.T) []renderCase {
	t.Helper()
	var cases []renderCase
	for _, spec := range specs {
		c := loadChart(t, spec.name)
		files := ciValues(t, spec.name)
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			rel, err := render(t, c, releaseName, files[n])
			if err != nil {
				t.Fatalf("%s with ci/%s: cannot render: %v", spec.name, n, err)
			}
			merged, err := chartutil.CoalesceValues(c, files[n])
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, renderCase{spec: spec, file: n, values: merged, rel: rel, objs: decode(t, rel.Manifest)})
		}
	}
	return cases
}

func stringValue(t *testing.T, v chartutil.Values, p string) string {
	t.Helper()
	x, err := v.PathValue(p)
	if err != nil {
		t.Fatalf("value %s: %v", p, err)
	}
	s, ok := x.(string)
	if !ok {
		t.Fatalf("value %s is %T, want a string", p, x)
	}
	return s
}

func TestChartsLintWithoutFindings(t *testing.T) {
	for _, spec := range specs {
		// Lint works on a directory: lint what is embedded, not the source tree.
		sub, err := fs.Sub(charts.FS, spec.name)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir() + "/" + spec.name
		if err := os.CopyFS(dir, sub); err != nil {
			t.Fatal(err)
		}
		for file, vals := range ciValues(t, spec.name) {
			t.Run(spec.name+"/"+file, func(t *testing.T) {
				linter := lint.All(dir, vals, namespace, false)
				for _, m := range linter.Messages {
					if m.Severity >= support.WarningSev {
						t.Errorf("helm lint: %s", m)
					} else {
						t.Logf("helm lint: %s", m)
					}
				}
			})
		}
	}
}

func TestChartsRenderOnlyValidObjects(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			if len(c.objs.secrets) > 0 {
				t.Errorf("the chart renders %d Secret(s); credentials must come from the orchestrator's Secrets", len(c.objs.secrets))
			}
			for _, o := range c.objs.all {
				if errs := validation.IsDNS1123Label(o.GetName()); len(errs) > 0 {
					t.Errorf("object name %q: %s", o.GetName(), strings.Join(errs, "; "))
				}
			}
		})
	}
}

func TestLongReleaseNameKeepsNamesValid(t *testing.T) {
	long := strings.Repeat("r", 53) // Helm's longest release name
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) {
			rel, err := render(t, loadChart(t, spec.name), long, storeValues())
			if err != nil {
				t.Fatalf("cannot render: %v", err)
			}
			objs := decode(t, rel.Manifest)
			for _, o := range objs.all {
				if errs := validation.IsDNS1123Label(o.GetName()); len(errs) > 0 {
					t.Errorf("object name %q: %s", o.GetName(), strings.Join(errs, "; "))
				}
			}
			// The StatefulSet controller labels each pod with
			// controller-revision-hash: <name>-<hash of up to 10 characters>.
			for _, s := range objs.statefulSets {
				if n := len(s.Name) + 11; n > validation.LabelValueMaxLength {
					t.Errorf("statefulset %s: its revision label would be %d characters long", s.Name, n)
				}
			}
		})
	}
}

func TestPodsCarryTierAndAppLabels(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			seen := map[string]bool{}
			for _, w := range c.objs.workloads(t) {
				labels := w.template.Labels
				component := labels["app.kubernetes.io/component"]
				want, known := c.spec.tiers[component]
				if !known {
					t.Errorf("%s %s: pod component %q is not one of %v", w.kind, w.name, component, c.spec.tiers)
					continue
				}
				seen[component] = true
				if got := labels["storeprov.dev/tier"]; got != want {
					t.Errorf("%s %s: label storeprov.dev/tier = %q, want %q", w.kind, w.name, got, want)
				}
				for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "storeprov.dev/store-id"} {
					if labels[k] == "" {
						t.Errorf("%s %s: pod label %s is missing", w.kind, w.name, k)
					}
				}
			}
			for component := range c.spec.tiers {
				if !seen[component] && !c.spec.optional[component] {
					t.Errorf("no pod of component %q was rendered", component)
				}
			}
		})
	}
}

func TestPodsMeetRestrictedPodSecurity(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Store namespaces enforce restricted: a pod that does not meet it is
	// refused.
	restricted := psa.LevelVersion{Level: psa.LevelRestricted, Version: psa.LatestVersion()}
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			for _, w := range c.objs.workloads(t) {
				results := policy.AggregateCheckResults(evaluator.EvaluatePod(restricted, &w.template.ObjectMeta, &w.template.Spec))
				if !results.Allowed {
					t.Errorf("%s %s violates Pod Security restricted: %s: %s", w.kind, w.name, results.ForbiddenReason(), results.ForbiddenDetail())
				}
				if spec := w.template.Spec; ptrOr(spec.AutomountServiceAccountToken, true) {
					t.Errorf("%s %s mounts a service account token it does not need", w.kind, w.name)
				}
			}
		})
	}
}

func TestContainersHaveResourcesWithinLimitRange(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			for _, w := range c.objs.workloads(t) {
				for _, ctr := range allContainers(w.template.Spec) {
					where := fmt.Sprintf("%s %s container %s", w.kind, w.name, ctr.Name)
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, hasReq := ctr.Resources.Requests[r]
						lim, hasLim := ctr.Resources.Limits[r]
						if !hasReq || !hasLim {
							t.Errorf("%s: %s request and limit are required (got request %v, limit %v)", where, r, hasReq, hasLim)
							continue
						}
						if req.Cmp(lim) > 0 {
							t.Errorf("%s: %s request %s exceeds its limit %s", where, r, req.String(), lim.String())
						}
						if max := containerMax[r]; lim.Cmp(max) > 0 {
							t.Errorf("%s: %s limit %s exceeds the LimitRange maximum %s", where, r, lim.String(), max.String())
						}
					}
				}
			}
		})
	}
}

func allContainers(spec corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func TestLongRunningContainersHaveProbes(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			for _, w := range c.objs.workloads(t) {
				if !w.longRunning {
					continue
				}
				for _, ctr := range w.template.Spec.Containers {
					if ctr.LivenessProbe == nil || ctr.ReadinessProbe == nil {
						t.Errorf("%s %s container %s: liveness and readiness probes are required (liveness %v, readiness %v)",
							w.kind, w.name, ctr.Name, ctr.LivenessProbe != nil, ctr.ReadinessProbe != nil)
					}
				}
			}
		})
	}
}

func TestStatefulSetsKeepDataInClaims(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			if len(c.objs.statefulSets) == 0 {
				t.Fatal("no StatefulSet rendered")
			}
			for _, s := range c.objs.statefulSets {
				if len(s.Spec.VolumeClaimTemplates) == 0 {
					t.Errorf("statefulset %s has no volumeClaimTemplate", s.Name)
				}
				for _, vct := range s.Spec.VolumeClaimTemplates {
					if _, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
						t.Errorf("statefulset %s: claim %s requests no storage", s.Name, vct.Name)
					}
					if !mounts(s.Spec.Template.Spec.Containers, vct.Name) {
						t.Errorf("statefulset %s: no container mounts claim %s", s.Name, vct.Name)
					}
				}
				svc := findService(c.objs, s.Spec.ServiceName)
				if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("statefulset %s: serviceName %q is not a rendered headless Service", s.Name, s.Spec.ServiceName)
				}
			}
		})
	}
}

func mounts(containers []corev1.Container, volume string) bool {
	for _, c := range containers {
		for _, m := range c.VolumeMounts {
			if m.Name == volume {
				return true
			}
		}
	}
	return false
}

func findService(o objects, name string) *corev1.Service {
	for _, s := range o.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func TestIngressServesStoreHost(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			want := "store-" + stringValue(t, c.values, "storeId") + "." + stringValue(t, c.values, "baseDomain")
			if len(c.objs.ingresses) != 1 {
				t.Fatalf("%d Ingresses rendered, want 1", len(c.objs.ingresses))
			}
			ing := c.objs.ingresses[0]
			var hosts []string
			for _, r := range ing.Spec.Rules {
				hosts = append(hosts, r.Host)
			}
			if diff := cmp.Diff([]string{want}, hosts); diff != "" {
				t.Errorf("ingress hosts (-want +got):\n%s", diff)
			}
			if class := stringValue(t, c.values, "ingress.className"); class != "" && ptrOr(ing.Spec.IngressClassName, "") != class {
				t.Errorf("ingressClassName = %v, want %q", ing.Spec.IngressClassName, class)
			}
			tls, _ := c.values.PathValue("ingress.tls.enabled")
			if tls == true {
				if len(ing.Spec.TLS) != 1 || !slices.Contains(ing.Spec.TLS[0].Hosts, want) || ing.Spec.TLS[0].SecretName == "" {
					t.Errorf("ingress TLS = %+v, want host %s with a secret", ing.Spec.TLS, want)
				}
			} else if len(ing.Spec.TLS) != 0 {
				t.Errorf("ingress has TLS %+v while ingress.tls.enabled is false", ing.Spec.TLS)
			}
			for _, r := range ing.Spec.Rules {
				for _, p := range r.HTTP.Paths {
					checkBackend(t, c.objs, p.Backend.Service)
				}
			}
		})
	}
}

// checkBackend fails unless the backend is a rendered Service port that
// selects web-tier pods.
func checkBackend(t *testing.T, o objects, b *networkingv1.IngressServiceBackend) {
	t.Helper()
	svc := findService(o, b.Name)
	if svc == nil {
		t.Errorf("ingress backend %s is not a rendered Service", b.Name)
		return
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.Name == b.Port.Name && b.Port.Name != "" || p.Port == b.Port.Number && b.Port.Number != 0
	}) {
		t.Errorf("ingress backend port %+v is not a port of Service %s", b.Port, b.Name)
	}
	for _, w := range o.workloads(t) {
		if w.longRunning && selects(svc.Spec.Selector, w.template.Labels) {
			if tier := w.template.Labels["storeprov.dev/tier"]; tier != "web" {
				t.Errorf("ingress backend %s selects %s %s of tier %q; the ingress controller may reach only the web tier", b.Name, w.kind, w.name, tier)
			}
			return
		}
	}
	t.Errorf("ingress backend %s selects no Deployment or StatefulSet", b.Name)
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// secretRef is a reference from a container to a Secret key.
type secretRef struct{ Secret, Key string }

func TestCredentialsComeFromStoreSecrets(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			allowed := map[secretRef]bool{}
			for valuesKey, keys := range secretKeys {
				name := stringValue(t, c.values, "existingSecret."+valuesKey)
				for _, k := range keys {
					allowed[secretRef{name, k}] = true
				}
			}
			checkNoCredentialValues(t, "", map[string]any(c.values))
			used := map[secretRef]bool{}
			for _, w := range c.objs.workloads(t) {
				for _, v := range w.template.Spec.Volumes {
					if v.Secret != nil || v.Projected != nil {
						t.Errorf("%s %s mounts Secret volume %s; credentials come as env from the store Secrets", w.kind, w.name, v.Name)
					}
				}
				for _, ctr := range allContainers(w.template.Spec) {
					where := fmt.Sprintf("%s %s container %s", w.kind, w.name, ctr.Name)
					for _, ef := range ctr.EnvFrom {
						if ef.SecretRef != nil {
							t.Errorf("%s: envFrom Secret %s; reference single keys instead", where, ef.SecretRef.Name)
						}
					}
					secretVars := map[string]bool{}
					for _, e := range ctr.Env {
						if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
							ref := secretRef{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}
							if !allowed[ref] {
								t.Errorf("%s: env %s reads %s/%s, which is not a key of the store Secrets", where, e.Name, ref.Secret, ref.Key)
							}
							used[ref] = true
							secretVars[e.Name] = true
							continue
						}
						checkNoLiteralCredential(t, where+" env "+e.Name, e.Name, e.Value, secretVars)
					}
					for i, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
						checkNoLiteralCredential(t, fmt.Sprintf("%s command/args[%d]", where, i), "", a, secretVars)
					}
					checkFlagArguments(t, where, append(slices.Clone(ctr.Command), ctr.Args...), secretVars)
				}
			}
			for _, must := range []secretRef{
				{stringValue(t, c.values, "existingSecret.database"), "password"},
				{stringValue(t, c.values, "existingSecret.admin"), "password"},
			} {
				if !used[must] {
					t.Errorf("no container reads %s/%s", must.Secret, must.Key)
				}
			}
		})
	}
}

var (
	// credentialName matches names that hold a credential.
	credentialName = regexp.MustCompile(`(?i)pass|secret|token|_key$|_salt$|seed`)
	// credentialKey matches values keys that would hold a credential.
	credentialKey = regexp.MustCompile(`(?i)(pass|password|passwd|token|secret|key|salt)$`)
	// passwordFlagArg is a password flag given as its own argv element.
	passwordFlagArg = regexp.MustCompile(`(?i)^--?(p|password|pass|requirepass|admin_password)$`)
	// kubeletRef is a $(NAME) reference the kubelet expands from the env.
	kubeletRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	// urlPassword is the password of a URL's userinfo.
	urlPassword = regexp.MustCompile(`://[^:/@\s]*:([^@/\s]+)@`)
	// passwordFlag is a password flag of a command line and its value.
	passwordFlag = regexp.MustCompile(`(?i)(?:^|\s)(?:-p|--password|--admin_password|--requirepass|--pass)(?:=|\s+)("?)(\S+?)("?)(?:\s|$)`)
	// shellRef is a shell or kubelet variable reference, and nothing else.
	shellRef = regexp.MustCompile(`^(\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$\([A-Za-z_][A-Za-z0-9_]*\))$`)
)

// checkNoLiteralCredential fails when value holds a credential that is not
// read from a Secret: an env var named like a credential must reference a
// Secret-backed var, and so must the password of any URL.
func checkNoLiteralCredential(t *testing.T, where, name, value string, secretVars map[string]bool) {
	t.Helper()
	refsSecret := func(s string) bool {
		for _, m := range kubeletRef.FindAllStringSubmatch(s, -1) {
			if secretVars[m[1]] {
				return true
			}
		}
		return false
	}
	if name != "" && credentialName.MatchString(name) && !refsSecret(value) {
		t.Errorf("%s = %q: a credential must come from a store Secret", where, value)
	}
	for _, m := range urlPassword.FindAllStringSubmatch(value, -1) {
		if ref := kubeletRef.FindStringSubmatch(m[1]); ref == nil || ref[0] != m[1] || !secretVars[ref[1]] {
			t.Errorf("%s: URL password %q is not a $(VAR) read from a store Secret", where, m[1])
		}
	}
}

// checkFlagArguments fails when a password flag on a command line (in argv
// form or inside a shell script) has a literal value.
func checkFlagArguments(t *testing.T, where string, argv []string, secretVars map[string]bool) {
	t.Helper()
	for i, a := range argv {
		if passwordFlagArg.MatchString(a) {
			if i+1 >= len(argv) || !shellRef.MatchString(argv[i+1]) {
				t.Errorf("%s: flag %s is not followed by a variable reference", where, a)
			}
		}
		for _, m := range passwordFlag.FindAllStringSubmatch(a, -1) {
			if !shellRef.MatchString(m[2]) {
				t.Errorf("%s: password flag with literal value %q", where, m[2])
			}
		}
	}
}

// checkNoCredentialValues fails when a values key named like a credential
// holds a non-empty value: the charts take no credential from values.
func checkNoCredentialValues(t *testing.T, prefix string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			p := strings.TrimPrefix(prefix+"."+k, ".")
			if s, ok := val.(string); ok && s != "" && credentialKey.MatchString(k) && !strings.HasPrefix(p, "existingSecret.") {
				t.Errorf("value %s holds a credential", p)
			}
			checkNoCredentialValues(t, p, val)
		}
	case []any:
		for i, val := range x {
			checkNoCredentialValues(t, fmt.Sprintf("%s[%d]", prefix, i), val)
		}
	}
}

// podResources returns what one pod counts against a quota: per resource,
// the larger of its largest init container and the sum of its containers.
func podResources(spec corev1.PodSpec) (requests, limits corev1.ResourceList) {
	effective := func(get func(corev1.Container) corev1.ResourceList) corev1.ResourceList {
		sum := corev1.ResourceList{}
		for _, c := range spec.Containers {
			add(sum, get(c), 1)
		}
		for _, c := range spec.InitContainers {
			for r, q := range get(c) {
				if cur, ok := sum[r]; !ok || q.Cmp(cur) > 0 {
					sum[r] = q.DeepCopy()
				}
			}
		}
		return sum
	}
	return effective(func(c corev1.Container) corev1.ResourceList { return c.Resources.Requests }),
		effective(func(c corev1.Container) corev1.ResourceList { return c.Resources.Limits })
}

// add adds n times b to a.
func add(a, b corev1.ResourceList, n int) {
	for r, q := range b {
		sum := a[r]
		for range n {
			sum.Add(q)
		}
		a[r] = sum
	}
}

// usage is what a store counts against its quota.
type usage struct {
	steady, rollout corev1.ResourceList
}

func storeUsage(t *testing.T, o objects) usage {
	t.Helper()
	u := usage{steady: corev1.ResourceList{}, rollout: corev1.ResourceList{}}
	for _, w := range o.workloads(t) {
		req, lim := podResources(w.template.Spec)
		pod := corev1.ResourceList{
			"requests.cpu":    req[corev1.ResourceCPU],
			"requests.memory": req[corev1.ResourceMemory],
			"limits.cpu":      lim[corev1.ResourceCPU],
			"limits.memory":   lim[corev1.ResourceMemory],
			"pods":            resource.MustParse("1"),
		}
		add(u.steady, pod, w.replicas)
		add(u.rollout, pod, w.replicas+w.surge)
	}
	objectCounts := corev1.ResourceList{
		"services":               *resource.NewQuantity(int64(len(o.services)), resource.DecimalSI),
		"persistentvolumeclaims": resource.Quantity{},
		"requests.storage":       resource.Quantity{},
	}
	claims := slices.Clone(o.claims)
	for _, s := range o.statefulSets {
		for range ptrOr(s.Spec.Replicas, 1) {
			for i := range s.Spec.VolumeClaimTemplates {
				claims = append(claims, &s.Spec.VolumeClaimTemplates[i])
			}
		}
	}
	for _, c := range claims {
		add(objectCounts, corev1.ResourceList{
			"persistentvolumeclaims": resource.MustParse("1"),
			"requests.storage":       c.Spec.Resources.Requests[corev1.ResourceStorage],
		}, 1)
	}
	add(u.steady, objectCounts, 1)
	add(u.rollout, objectCounts, 1)
	return u
}

func TestStoreFitsStandardQuota(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			u := storeUsage(t, c.objs)
			for r, hard := range standardQuota {
				if got := u.rollout[r]; got.Cmp(hard) > 0 {
					t.Errorf("%s: %s during a rollout with every Job running, quota %s", r, got.String(), hard.String())
				}
			}
			for _, r := range []corev1.ResourceName{"requests.cpu", "requests.memory", "limits.cpu", "limits.memory"} {
				hard := standardQuota[r]
				if got := u.steady[r]; got.AsApproximateFloat64() > steadyShare*hard.AsApproximateFloat64() {
					t.Errorf("%s: %s in the steady state leaves less than %.0f%% of the quota %s as headroom",
						r, got.String(), 100*(1-steadyShare), hard.String())
				}
			}
			for _, cl := range c.objs.claims {
				checkClaimSize(t, "claim "+cl.Name, cl.Spec)
			}
			for _, s := range c.objs.statefulSets {
				for _, vct := range s.Spec.VolumeClaimTemplates {
					checkClaimSize(t, "statefulset "+s.Name+" claim "+vct.Name, vct.Spec)
				}
			}
			t.Logf("during a rollout: %s", formatList(u.rollout))
		})
	}
}

func formatList(l corev1.ResourceList) string {
	var parts []string
	for r, q := range l {
		parts = append(parts, fmt.Sprintf("%s=%s", r, q.String()))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func checkClaimSize(t *testing.T, where string, spec corev1.PersistentVolumeClaimSpec) {
	t.Helper()
	size := spec.Resources.Requests[corev1.ResourceStorage]
	if size.Cmp(claimMin) < 0 || size.Cmp(claimMax) > 0 {
		t.Errorf("%s: size %s is outside the LimitRange's %s to %s", where, size.String(), claimMin.String(), claimMax.String())
	}
}

func TestJobsRerunOnEveryRevision(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			if len(c.objs.jobs) == 0 {
				t.Fatal("no Job rendered")
			}
			for _, j := range c.objs.jobs {
				if want := fmt.Sprintf("-%d", c.rel.Version); !strings.HasSuffix(j.Name, want) {
					t.Errorf("job %s: the name must end with the release revision (%s)", j.Name, want)
				}
				if j.Spec.TTLSecondsAfterFinished != nil {
					t.Errorf("job %s: ttlSecondsAfterFinished is set; the orchestrator reads the finished Job", j.Name)
				}
				if b := ptrOr(j.Spec.BackoffLimit, 6); b > 5 {
					t.Errorf("job %s: backoffLimit %d, want at most 5", j.Name, b)
				}
				if j.Spec.ActiveDeadlineSeconds == nil {
					t.Errorf("job %s: no activeDeadlineSeconds", j.Name)
				}
				if _, hook := j.Annotations[release.HookAnnotation]; hook {
					t.Errorf("job %s is a Helm hook; the orchestrator waits on plain Jobs", j.Name)
				}
			}
		})
	}
}

func TestNotesTellHowToReachStore(t *testing.T) {
	for _, c := range renderCases(t) {
		t.Run(c.String(), func(t *testing.T) {
			notes := c.rel.Info.Notes
			host := "store-" + stringValue(t, c.values, "storeId") + "." + stringValue(t, c.values, "baseDomain")
			admin := stringValue(t, c.values, "existingSecret.admin")
			for _, want := range []string{
				host + c.spec.adminPath,
				"kubectl -n " + namespace + " get secret " + admin,
			} {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES do not mention %q:\n%s", want, notes)
				}
			}
		})
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		reason  string
		edit    func(v map[string]any, spec chartSpec)
		wantErr string
	}{
		{
			name:    "bad store id",
			reason:  "the id names the namespace and the host: a DNS label starting with a letter",
			edit:    func(v map[string]any, _ chartSpec) { v["storeId"] = "Bad_ID" },
			wantErr: "storeId",
		},
		{
			name:    "store id ending with a dash",
			reason:  "store-<id> is a DNS label of the host",
			edit:    func(v map[string]any, _ chartSpec) { v["storeId"] = "abc-" },
			wantErr: "storeId",
		},
		{
			name:    "no base domain",
			reason:  "the store has no host without it",
			edit:    func(v map[string]any, _ chartSpec) { delete(v, "baseDomain") },
			wantErr: "baseDomain",
		},
		{
			name:    "unknown top-level key",
			reason:  "a misspelt key must not be ignored silently, and there is no place for a password",
			edit:    func(v map[string]any, _ chartSpec) { v["adminPassword"] = "hunter2" },
			wantErr: "adminPassword",
		},
		{
			name:    "storage class that is not a string",
			reason:  "values are typed",
			edit:    func(v map[string]any, _ chartSpec) { v["storageClass"] = 3 },
			wantErr: "storageClass",
		},
		{
			name:   "claim size in bytes",
			reason: "sizes are Mi or Gi, so the LimitRange bounds are plain to see",
			edit: func(v map[string]any, spec chartSpec) {
				v[spec.database] = map[string]any{"persistence": map[string]any{"size": "1073741824"}}
			},
			wantErr: "size",
		},
	}
	for _, spec := range specs {
		c := loadChart(t, spec.name)
		for _, tt := range tests {
			t.Run(spec.name+"/"+tt.name, func(t *testing.T) {
				vals := storeValues()
				tt.edit(vals, spec)
				_, err := render(t, c, releaseName, vals)
				if err == nil {
					t.Fatalf("rendering succeeded, want an error about %s (%s)", tt.wantErr, tt.reason)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not mention %s", err, tt.wantErr)
				}
			})
		}
	}
}

func TestStoreValuesAloneRender(t *testing.T) {
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) {
			rel, err := render(t, loadChart(t, spec.name), releaseName, storeValues())
			if err != nil {
				t.Fatalf("storeId and baseDomain must be all a chart needs: %v", err)
			}
			objs := decode(t, rel.Manifest)
			if len(objs.ingresses) != 1 || objs.ingresses[0].Spec.Rules[0].Host != "store-"+storeID+"."+baseDomain {
				t.Errorf("ingress host is not store-%s.%s", storeID, baseDomain)
			}
		})
	}
}

func TestVersionIsTheEmbeddedChartsVersion(t *testing.T) {
	for _, name := range []string{charts.WordPress, charts.Medusa} {
		got, err := charts.Version(name)
		if want := chartstest.Version(t, name); err != nil || got != want {
			t.Errorf("Version(%s) = %q, %v; want %q, its Chart.yaml's", name, got, err, want)
		}
	}
	if _, err := charts.Version("no-such-chart"); err == nil {
		t.Error("Version of a chart that is not embedded succeeded")
	}
}

// TestOrderCheckMeetsWhatTheNetworkPoliciesSelect checks the order check's
// contract: a chart that has one (both) renders, with orderCheck.enabled,
// one Job of component order-check whose pods carry that component and
// reach the web tier's Service on the port its server names http; without
// it, no such Job.
func TestOrderCheckMeetsWhatTheNetworkPoliciesSelect(t *testing.T) {
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) {
			c := loadChart(t, spec.name)
			has := charts.HasOrderCheck(c)
			if want := spec.optional[charts.ComponentOrderCheck]; has != want {
				t.Fatalf("HasOrderCheck = %v, want %v", has, want)
			}
			// The web tier's servers name their port as the policies do.
			var web int
			for _, d := range decode(t, mustRender(t, c, storeValues()).Manifest).deployments {
				if d.Spec.Template.Labels["storeprov.dev/tier"] != "web" {
					continue
				}
				web++
				if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool {
					return p.Name == charts.WebPortName && p.Protocol == corev1.ProtocolTCP
				}) {
					t.Errorf("deployment %s serves on no TCP port named %s", d.Name, charts.WebPortName)
				}
			}
			if web == 0 {
				t.Error("no web-tier Deployment rendered")
			}
			if !has {
				vals := storeValues()
				vals["orderCheck"] = map[string]any{"enabled": true}
				if _, err := render(t, c, releaseName, vals); err == nil {
					t.Error("a chart without an order check accepts orderCheck.enabled")
				}
				return
			}
			for _, enabled := range []bool{false, true} {
				vals := storeValues()
				vals["orderCheck"] = map[string]any{"enabled": enabled}
				var checks []*batchv1.Job
				for _, j := range decode(t, mustRender(t, c, vals).Manifest).jobs {
					if j.Labels[charts.LabelComponent] == charts.ComponentOrderCheck {
						checks = append(checks, j)
					}
				}
				if !enabled {
					if len(checks) != 0 {
						t.Errorf("orderCheck.enabled false renders %d order-check Jobs", len(checks))
					}
					continue
				}
				if len(checks) != 1 {
					t.Fatalf("orderCheck.enabled renders %d order-check Jobs, want 1", len(checks))
				}
				if got := checks[0].Spec.Template.Labels[charts.LabelComponent]; got != charts.ComponentOrderCheck {
					t.Errorf("order-check pods have component %q, want %q", got, charts.ComponentOrderCheck)
				}
			}
		})
	}
}

func mustRender(t *testing.T, c *chart.Chart, vals map[string]any) *release.Release {
	t.Helper()
	rel, err := render(t, c, releaseName, vals)
	if err != nil {
		t.Fatalf("cannot render %s: %v", c.Name(), err)
	}
	return rel
}
