package worker_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/events"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
	"github.com/storeprov/storeprov/services/orchestrator/internal/worker"
)

// setup configures one worker under test.
type setup struct {
	// restConfig overrides the sandbox's (to inject faults).
	restConfig *rest.Config
	reconcile  reconcile.Options
	worker     worker.Options
	// release adds the Helm release step after the guardrails, as
	// internal/app does.
	release bool
	// plan sizes store namespaces; nil means the standard plan.
	plan *plan.Plan
	// wrapDriver wraps Helm's release storage driver (fault injection).
	wrapDriver func(driver.Driver) driver.Driver
	// charts are the charts the release step installs; nil means the
	// embedded ones.
	charts *catalog.Catalog
}

// running is a worker running on a real NATS server and the sandbox.
type running struct {
	worker  *worker.Worker
	metrics *worker.Metrics
	leases  *lease.Store
	stop    func()
}

// fastRetries makes redeliveries quick enough for tests.
func fastRetries() worker.Options {
	return worker.Options{
		Concurrency:   4,
		RetryBackoff:  []time.Duration{100 * time.Millisecond},
		ConflictDelay: 200 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
	}
}

// startWorker runs a worker wired as internal/app wires it; it stops when
// the test ends.
func startWorker(t *testing.T, env *bustest.Env, s setup) *running {
	t.Helper()
	cfg := s.restConfig
	if cfg == nil {
		cfg = sandboxtest.RESTConfig(t)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	if s.plan != nil {
		pl = *s.plan
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	g := &kube.Guardrails{Client: cs, Plan: pl, Network: kube.Network{
		IngressNamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"},
		AllowInternetEgress:    true,
		OrderCheck:             s.reconcile.OrderCheck.Enabled(),
	}}
	// The worker connects as the orchestrator does, with its permissions.
	_, js := env.ConnectAs(t, bus.RoleOrchestrator)
	r := reconcile.New(nil, &events.Publisher{JS: js, Topology: env.Topology}, s.reconcile)
	r.Steps = []reconcile.Step{reconcile.GuardrailsStep{Guardrails: g, DeleteTimeout: r.Options.DeleteTimeout}}
	if s.release {
		helm, err := helmaction.New(cfg, helmaction.Options{WrapDriver: s.wrapDriver, Charts: s.charts})
		if err != nil {
			t.Fatal(err)
		}
		r.Steps = append(r.Steps, &reconcile.ReleaseStep{Helm: helm, Client: cs, BaseDomain: r.Options.BaseDomain,
			RollbackTimeout: r.Options.RollbackTimeout, OrderCheck: r.Options.OrderCheck, Log: log})
	}
	leases, err := lease.Open(context.Background(), js, env.Topology)
	if err != nil {
		t.Fatal(err)
	}
	m := worker.NewMetrics(prometheus.NewRegistry())
	wopts := s.worker
	if wopts.ID == "" {
		wopts.ID = "w-" + sandboxtest.RandomSuffix()
	}
	w := worker.New(js, env.Topology, r, leases, m, log, wopts)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &running{worker: w, metrics: m, leases: leases, stop: stop}
}

// newStore returns a fresh store id whose namespace is removed after the
// test.
func newStore(t *testing.T) string {
	t.Helper()
	id := "w" + sandboxtest.RandomSuffix()
	sandboxtest.CleanupNamespace(t, storeid.Namespace(id))
	return id
}

func command(id string, generation int64, action eventsv1.Action) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{
		StoreId:    id,
		Generation: generation,
		Action:     action,
		Spec:       &eventsv1.StoreSpec{DisplayName: "Shop " + id, Engine: storev1.Engine_ENGINE_WOOCOMMERCE, Owner: "owner-" + id},
		Actor:      "alice",
		IssueTime:  timestamppb.Now(),
	}
}

// publish sends cmd as the api would, with msgID as its Nats-Msg-Id (the
// default: lifecycle.CommandID): a resync command (lifecycle.ResyncActor)
// on the resync subject as the api's resync does, any other on the
// commands subject as its outbox relay does.
func publish(t *testing.T, env *bustest.Env, cmd *eventsv1.ProvisionCommand, msgID string) {
	t.Helper()
	if msgID == "" {
		msgID = lifecycle.CommandID(cmd.GetStoreId(), cmd.GetGeneration())
	}
	subject := env.Topology.CommandSubject(cmd.GetStoreId())
	if cmd.GetActor() == lifecycle.ResyncActor {
		subject = env.Topology.ResyncSubject(cmd.GetStoreId())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, env.JS, subject, msgID, cmd); err != nil {
		t.Fatal(err)
	}
}

// recorder collects a store's status and audit events in stream order.
type recorder struct {
	mu       sync.Mutex
	statuses []*eventsv1.StoreStatusChanged
	audits   []*auditv1.AuditEntry
}

// watch records every event about the store from the start of the stream.
// It uses one consumer per subject: servers before 2.10 take one filter.
func watch(t *testing.T, env *bustest.Env, storeID string) *recorder {
	t.Helper()
	rec := &recorder{}
	consume(t, env, env.Topology.StatusSubject(storeID), func(msg jetstream.Msg) {
		var s eventsv1.StoreStatusChanged
		if err := bus.Decode(msg, &s); err != nil {
			t.Errorf("status event: %v", err)
			return
		}
		rec.mu.Lock()
		rec.statuses = append(rec.statuses, &s)
		rec.mu.Unlock()
	})
	consume(t, env, env.Topology.AuditSubject(bus.RoleOrchestrator, storeID), func(msg jetstream.Msg) {
		var a eventsv1.AuditEvent
		if err := bus.Decode(msg, &a); err != nil {
			t.Errorf("audit event: %v", err)
			return
		}
		rec.mu.Lock()
		rec.audits = append(rec.audits, a.GetEntry())
		rec.mu.Unlock()
	})
	return rec
}

func consume(t *testing.T, env *bustest.Env, subject string, f func(jetstream.Msg)) {
	t.Helper()
	cons, err := env.JS.OrderedConsumer(context.Background(), env.Topology.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
}

// waitStatus waits for a status event of the generation in the phase and
// returns it.
func (r *recorder) waitStatus(t *testing.T, generation int64, phase storev1.Phase, timeout time.Duration) *eventsv1.StoreStatusChanged {
	t.Helper()
	var found *eventsv1.StoreStatusChanged
	eventually(t, timeout, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.statuses {
			if s.GetObservedGeneration() == generation && s.GetPhase() == phase {
				found = s
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("no %s status for generation %d; have %s", phase, generation, r.summary())
	})
	return found
}

// phases lists the generation's status events as PHASE/Reason.
func (r *recorder) phases(generation int64) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.statuses {
		if s.GetObservedGeneration() == generation {
			out = append(out, strings.TrimPrefix(s.GetPhase().String(), "PHASE_")+"/"+s.GetReason())
		}
	}
	return out
}

// audit returns the audit entry of the generation and action, or nil.
func (r *recorder) audit(generation int64, action string, storeID string) *auditv1.AuditEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.audits {
		if a.GetId() == lifecycle.AuditEventID(storeID, generation, action) {
			return a
		}
	}
	return nil
}

func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var parts []string
	for _, s := range r.statuses {
		parts = append(parts, fmt.Sprintf("gen %d %s/%s %q", s.GetObservedGeneration(), s.GetPhase(), s.GetReason(), s.GetMessage()))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// waitSettled waits until every command was acked or terminated: both
// work queues are empty and nothing is pending.
func waitSettled(t *testing.T, env *bustest.Env, timeout time.Duration) {
	t.Helper()
	var last string
	eventually(t, timeout, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, name := range []string{env.Topology.CommandsStream(), env.Topology.ResyncStream()} {
			s, err := env.JS.Stream(ctx, name)
			if err != nil {
				last = err.Error()
				return false
			}
			info, err := s.Info(ctx)
			if err != nil {
				last = err.Error()
				return false
			}
			if last = fmt.Sprintf("%d commands left in %s", info.State.Msgs, name); info.State.Msgs != 0 {
				return false
			}
		}
		return true
	}, func() string { return last })
}

func eventually(t *testing.T, timeout time.Duration, ok func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, why())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// count reads a counter of the worker's reconciles metric.
func count(m *worker.Metrics, action, result string) int {
	var d dto.Metric
	if err := m.Reconciles.WithLabelValues(action, result).Write(&d); err != nil {
		panic(err)
	}
	return int(d.GetCounter().GetValue())
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
