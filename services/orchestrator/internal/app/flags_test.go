package app_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/app"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
)

// runWithFlags parses args as the orchestrator's command line (after the
// flags that point it at env and the sandbox, and sign in with a password
// file) and runs it in process until the test ends. It returns the parsed
// options.
func runWithFlags(t *testing.T, env *bustest.Env, args ...string) app.Options {
	t.Helper()
	var opts app.Options
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	opts.BindFlags(fs)
	base := []string{"--kubeconfig", sandboxtest.KubeconfigPath(t), "--nats-url", env.URL, "--bus-prefix", env.Topology.Prefix,
		"--metrics-addr", "127.0.0.1:0", "--worker-id", "flags-" + sandboxtest.RandomSuffix()}
	if password := env.Credentials(bus.RoleOrchestrator).Password; password != "" {
		passwordFile := filepath.Join(t.TempDir(), "nats-password")
		if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		base = append(base, "--nats-password-file", passwordFile)
	}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return opts
}

// storeCommand is generation of a WooCommerce store, with value overrides.
func storeCommand(id string, generation int64, values map[string]string) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{
		StoreId: id, Generation: generation, Action: eventsv1.Action_ACTION_PROVISION,
		Spec:      &eventsv1.StoreSpec{DisplayName: "Shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE, Owner: "alice", Values: values},
		Actor:     "alice",
		IssueTime: timestamppb.Now(),
	}
}

func publishCommand(t *testing.T, env *bustest.Env, cmd *eventsv1.ProvisionCommand) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := cmd.GetStoreId()
	if err := bus.Publish(ctx, env.JS, env.Topology.CommandSubject(id), lifecycle.CommandID(id, cmd.GetGeneration()), cmd); err != nil {
		t.Fatal(err)
	}
}

// storeEvents are the status events of one store, in stream order.
type storeEvents struct {
	mu     sync.Mutex
	events []*eventsv1.StoreStatusChanged
}

func watchStore(t *testing.T, env *bustest.Env, id string) *storeEvents {
	t.Helper()
	cons, err := env.JS.OrderedConsumer(context.Background(), env.Topology.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{env.Topology.StatusSubject(id)},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &storeEvents{}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var ev eventsv1.StoreStatusChanged
		if err := bus.Decode(msg, &ev); err != nil {
			t.Errorf("status event: %v", err)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, &ev)
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return s
}

// wait returns the first status of generation in phase, waiting up to
// timeout; a FAILED status of the generation when phase is another fails
// the test at once.
func (s *storeEvents) wait(t *testing.T, generation int64, phase storev1.Phase, timeout time.Duration) *eventsv1.StoreStatusChanged {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		var seen []string
		for _, ev := range s.events {
			if ev.GetObservedGeneration() == generation && ev.GetPhase() == phase {
				s.mu.Unlock()
				return ev
			}
			if ev.GetObservedGeneration() == generation && ev.GetPhase() == storev1.Phase_PHASE_FAILED {
				s.mu.Unlock()
				t.Fatalf("generation %d FAILED (%s: %s), want %s", generation, ev.GetReason(), ev.GetMessage(), phase)
			}
			seen = append(seen, fmt.Sprintf("gen %d %s/%s: %s", ev.GetObservedGeneration(), ev.GetPhase(), ev.GetReason(), ev.GetMessage()))
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s status for generation %d within %s; seen %s", phase, generation, timeout, strings.Join(seen, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newStoreID(t *testing.T) string {
	t.Helper()
	id := "f" + sandboxtest.RandomSuffix()
	sandboxtest.CleanupNamespace(t, storeid.Namespace(id))
	return id
}

func releaseHistory(t *testing.T, id string) []helmaction.Release {
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

func revisions(hist []helmaction.Release) []string {
	var out []string
	for _, r := range hist {
		out = append(out, fmt.Sprintf("%d:%s", r.Revision, r.Status))
	}
	return out
}

func TestStoreValuesFlagSetsTheValuesOfEveryRelease(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "store-values.yaml")
	values := "ingress:\n  className: traefik\nsetup:\n  currency: GBP\n  product:\n    name: House Blend\n"
	if err := os.WriteFile(file, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	env := bustest.Embedded(t)
	if opts := runWithFlags(t, env, "--store-values", file); opts.StoreValuesFile != file {
		t.Fatalf("--store-values parsed as %q", opts.StoreValuesFile)
	}
	id := newStoreID(t)
	events := watchStore(t, env, id)
	// The store's own overrides win over the installation's values.
	publishCommand(t, env, storeCommand(id, 1, map[string]string{"setup.currency": "EUR"}))
	events.wait(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	hist := releaseHistory(t, id)
	if len(hist) != 1 {
		t.Fatalf("release history = %v, want one revision", revisions(hist))
	}
	got := map[string]any{"ingress": hist[0].Values["ingress"], "setup": hist[0].Values["setup"], "storeId": hist[0].Values["storeId"]}
	want := map[string]any{
		"ingress": map[string]any{"className": "traefik"},
		"setup":   map[string]any{"currency": "EUR", "product": map[string]any{"name": "House Blend"}},
		"storeId": id,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("release values (-want +got):\n%s", diff)
	}
	ing, err := sandboxtest.Clientset(t).NetworkingV1().Ingresses(storeid.Namespace(id)).Get(context.Background(), "store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ing.Spec.IngressClassName; got == nil || *got != "traefik" {
		t.Errorf("ingress class of the store = %v, want traefik from --store-values", got)
	}
}

func TestRunRefusesStoreValuesItCannotUse(t *testing.T) {
	dir := t.TempDir()
	notAMap := filepath.Join(dir, "list.yaml")
	if err := os.WriteFile(notAMap, []byte("- ingress\n- tls\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, file, want string
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), "cannot read --store-values"},
		{"not a map of values", notAMap, "is not a YAML map of chart values"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts app.Options
			fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
			opts.BindFlags(fs)
			if err := fs.Parse([]string{"--store-values", tt.file}); err != nil {
				t.Fatal(err)
			}
			if err := app.Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run with --store-values %s = %v, want an error saying %q", tt.file, err, tt.want)
			}
		})
	}
}

func TestHelmMaxHistoryFlagBoundsTheReleaseHistory(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	if opts := runWithFlags(t, env, "--helm-max-history", "2"); opts.HelmMaxHistory != 2 {
		t.Fatalf("--helm-max-history parsed as %d", opts.HelmMaxHistory)
	}
	id := newStoreID(t)
	events := watchStore(t, env, id)
	for generation, currency := range []string{"", "EUR", "GBP"} {
		var values map[string]string
		if currency != "" {
			values = map[string]string{"setup.currency": currency}
		}
		publishCommand(t, env, storeCommand(id, int64(generation+1), values))
		events.wait(t, int64(generation+1), storev1.Phase_PHASE_READY, time.Minute)
	}
	// Three revisions were written; Helm keeps two (the default keeps 5).
	if diff := cmp.Diff([]string{"2:superseded", "3:deployed"}, revisions(releaseHistory(t, id))); diff != "" {
		t.Errorf("release history after an install and two upgrades (-want +got):\n%s", diff)
	}
}

func TestRollbackTimeoutFlagBoundsTheRollback(t *testing.T) {
	t.Parallel()
	const provisionTimeout, rollbackTimeout = 10 * time.Second, 3 * time.Second
	env := bustest.Embedded(t)
	opts := runWithFlags(t, env, "--provision-timeout", provisionTimeout.String(), "--rollback-timeout", rollbackTimeout.String())
	if opts.Reconcile.RollbackTimeout != rollbackTimeout {
		t.Fatalf("--rollback-timeout parsed as %s", opts.Reconcile.RollbackTimeout)
	}
	id := newStoreID(t)
	ns := storeid.Namespace(id)
	events := watchStore(t, env, id)
	publishCommand(t, env, storeCommand(id, 1, nil))
	events.wait(t, 1, storev1.Phase_PHASE_READY, time.Minute)

	// Another workload takes the CPU the store's quota has left: no new
	// pod fits, neither the upgrade's setup Job nor the rollback's.
	fillCPUQuota(t, ns)
	start := time.Now()
	publishCommand(t, env, storeCommand(id, 2, map[string]string{"setup.currency": "EUR"}))
	failed := events.wait(t, 2, storev1.Phase_PHASE_FAILED, provisionTimeout+rollbackTimeout+30*time.Second)
	elapsed := time.Since(start)
	t.Logf("upgrade to FAILED in %s", elapsed.Round(time.Millisecond))
	// The rollback ran after the deadline and waited rollbackTimeout for
	// the rolled-back revision, not the default 5 minutes.
	if elapsed < provisionTimeout+rollbackTimeout-time.Second {
		t.Errorf("FAILED %s after the upgrade; the rollback cannot have waited %s after the %s deadline", elapsed, rollbackTimeout, provisionTimeout)
	}
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonQuotaExceeded || !strings.Contains(failed.GetMessage(), "rolled back to revision 1") ||
		!strings.Contains(failed.GetMessage(), "the rolled-back revision 3 is not ready either") {
		t.Errorf("FAILED status = %s: %q; want QuotaExceeded saying that the rolled-back revision 3 is not ready either", failed.GetReason(), failed.GetMessage())
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:superseded", "3:deployed"}, revisions(releaseHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
}

// fillCPUQuota runs a pod that requests all but 50m of the CPU requests
// left in the namespace's quota: too little for any pod of the store.
func fillCPUQuota(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		free := q.Status.Hard[corev1.ResourceRequestsCPU]
		free.Sub(q.Status.Used[corev1.ResourceRequestsCPU])
		free.Sub(resource.MustParse("50m"))
		res := corev1.ResourceList{corev1.ResourceCPU: free, corev1.ResourceMemory: resource.MustParse("64Mi")}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "cpu-hog"},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: to(true), RunAsUser: to[int64](65532),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Containers: []corev1.Container{{
					Name: "hog", Image: "pause",
					Resources: corev1.ResourceRequirements{Requests: res, Limits: res},
					SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: to(false),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
				}},
			},
		}
		_, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			return
		}
		// The quota's usage may still count a pod that just completed.
		if time.Now().After(deadline) || !strings.Contains(err.Error(), "exceeded quota") {
			t.Fatalf("cannot create a pod that fills the CPU quota (%s free): %v", free.String(), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func to[T any](v T) *T { return &v }

// testLog sends log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
