package worker_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
	"github.com/storeprov/storeprov/services/orchestrator/internal/worker"
)

// TestOneProvisioningIsOneTrace provisions a store, then deletes it, each
// command queued from a span as the api's relay queues it: each command is
// one span of its request's trace, its phases are its children (render
// inside install), its status events carry the trace on, and every phase
// is observed by the phase metric. It installs the global tracer provider,
// so it must not run in parallel.
func TestOneProvisioningIsOneTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	env := bustest.Embedded(t)
	w := startWorker(t, env, setup{worker: fastRetries(), release: true, reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute}})
	id := newStore(t)
	events := watch(t, env, id)

	provisioning := queue(t, env, storeCommand(id, 1, provision, storev1.Engine_ENGINE_WOOCOMMERCE))
	events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 2*time.Minute)
	if got := lastStatusTrace(t, env, id); got != provisioning.TraceID() {
		t.Errorf("the READY status carries trace %v, want the provisioning's %v", got, provisioning.TraceID())
	}
	checkCommandTrace(t, spans, provisioning, id, []string{"lease", "observe", "guardrails", "install", "readiness", "publish"},
		map[string]string{"render": "install"})

	deletion := queue(t, env, storeCommand(id, 2, del, storev1.Engine_ENGINE_WOOCOMMERCE))
	events.waitStatus(t, 2, storev1.Phase_PHASE_DELETED, 2*time.Minute)
	if got := lastStatusTrace(t, env, id); got != deletion.TraceID() {
		t.Errorf("the DELETED status carries trace %v, want the deletion's %v", got, deletion.TraceID())
	}
	checkCommandTrace(t, spans, deletion, id, []string{"lease", "observe", "uninstall", "delete_namespace", "publish"}, nil)

	for _, p := range []struct {
		name   phase.Name
		action string
	}{
		{phase.Lease, "provision"}, {phase.Observe, "provision"}, {phase.Guardrails, "provision"}, {phase.Render, "provision"},
		{phase.Install, "provision"}, {phase.Readiness, "provision"}, {phase.Publish, "provision"},
		{phase.Uninstall, "delete"}, {phase.DeleteNamespace, "delete"}, {phase.Publish, "delete"},
	} {
		if n := observations(t, w.metrics, p.name, p.action); n == 0 {
			t.Errorf("storeprov_orchestrator_phase_duration_seconds{phase=%q,action=%q} observed nothing", p.name, p.action)
		}
	}
}

// queue publishes cmd from a span of its own, as the api's relay does,
// and returns that span.
func queue(t *testing.T, env *bustest.Env, cmd *eventsv1.ProvisionCommand) trace.SpanContext {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx, span := otel.Tracer("worker_test").Start(ctx, "outbox.publish")
	defer span.End()
	if err := bus.Publish(ctx, env.JS, env.Topology.CommandSubject(cmd.GetStoreId()), lifecycle.CommandID(cmd.GetStoreId(), cmd.GetGeneration()), cmd); err != nil {
		t.Fatal(err)
	}
	return span.SpanContext()
}

// lastStatusTrace is the trace of the last status event of the store.
func lastStatusTrace(t *testing.T, env *bustest.Env, id string) trace.TraceID {
	t.Helper()
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, env.Topology.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, env.Topology.StatusSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	return trace.SpanContextFromContext(tracing.Extract(ctx, tracing.Header(msg.Header))).TraceID()
}

// checkCommandTrace waits until the command queued from parent is handled
// and checks its trace: one orchestrator.command span, child of parent,
// naming the store; a span of each phase in children, child of the
// command; and of each phase in nested, child of the phase it maps to.
func checkCommandTrace(t *testing.T, spans *tracetest.SpanRecorder, parent trace.SpanContext, id string, children []string, nested map[string]string) {
	t.Helper()
	var inTrace []sdktrace.ReadOnlySpan
	var command sdktrace.ReadOnlySpan
	eventually(t, 30*time.Second, func() bool {
		inTrace, command = nil, nil
		for _, s := range spans.Ended() {
			if s.SpanContext().TraceID() != parent.TraceID() {
				continue
			}
			inTrace = append(inTrace, s)
			if s.Name() == "orchestrator.command" {
				command = s
			}
		}
		return command != nil
	}, func() string {
		return fmt.Sprintf("no orchestrator.command span ended in trace %v: %v", parent.TraceID(), spanNames(inTrace))
	})

	sort.Slice(inTrace, func(i, j int) bool { return inTrace[i].StartTime().Before(inTrace[j].StartTime()) })
	for _, s := range inTrace {
		t.Logf("%-32s %8s", s.Name(), s.EndTime().Sub(s.StartTime()).Round(time.Millisecond))
	}
	if command.Parent().SpanID() != parent.SpanID() || !command.Parent().IsRemote() {
		t.Errorf("orchestrator.command's parent is %v, want the publisher's span %v, remote", command.Parent(), parent.SpanID())
	}
	for _, want := range []attribute.KeyValue{tracing.StoreID.String(id), attribute.String("storeprov.result", "done")} {
		if !slices.Contains(command.Attributes(), want) {
			t.Errorf("orchestrator.command has attributes %v, want %v", command.Attributes(), want)
		}
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range inTrace {
		byID[s.SpanContext().SpanID()] = s
	}
	parentName := func(s sdktrace.ReadOnlySpan) string {
		if p, ok := byID[s.Parent().SpanID()]; ok {
			return p.Name()
		}
		return "?"
	}
	for _, name := range children {
		found := false
		for _, s := range inTrace {
			if s.Name() == "orchestrator."+name {
				found = true
				if s.Parent().SpanID() != command.SpanContext().SpanID() {
					t.Errorf("orchestrator.%s is a child of %s, want orchestrator.command", name, parentName(s))
				}
			}
		}
		if !found {
			t.Errorf("no orchestrator.%s span in the command's trace: %v", name, spanNames(inTrace))
		}
	}
	for name, of := range nested {
		found := false
		for _, s := range inTrace {
			if s.Name() == "orchestrator."+name {
				found = true
				if parentName(s) != "orchestrator."+of {
					t.Errorf("orchestrator.%s is a child of %s, want orchestrator.%s", name, parentName(s), of)
				}
			}
		}
		if !found {
			t.Errorf("no orchestrator.%s span in the command's trace: %v", name, spanNames(inTrace))
		}
	}
}

// observations is how many durations the phase metric holds for a phase
// of an action.
func observations(t *testing.T, m *worker.Metrics, name phase.Name, action string) uint64 {
	t.Helper()
	h, err := m.Phases.GetMetricWithLabelValues(string(name), action)
	if err != nil {
		t.Fatal(err)
	}
	var d dto.Metric
	if err := h.(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	sort.Strings(out)
	return out
}
