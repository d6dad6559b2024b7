package phase_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// TestPhasesAreChildSpansAndObservations runs a render inside an install
// inside a command: each phase is a span, child of the one it ran in,
// failed when it failed, and its duration goes to the command's observer.
func TestPhasesAreChildSpansAndObservations(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	var observed []phase.Name
	ctx, command := otel.Tracer("phase_test").Start(context.Background(), "command")
	ctx = phase.WithObserver(ctx, phase.ObserverFunc(func(name phase.Name, d time.Duration) {
		if d <= 0 {
			t.Errorf("phase %s took %v", name, d)
		}
		observed = append(observed, name)
	}))
	installCtx, install := phase.Start(ctx, phase.Install)
	_, render := phase.Start(installCtx, phase.Render)
	time.Sleep(time.Millisecond)
	render.End(nil)
	install.End(errors.New("cannot install release: boom"))
	command.End()

	if diff := cmp.Diff([]phase.Name{phase.Render, phase.Install}, observed); diff != "" {
		t.Errorf("observed phases (-want +got):\n%s", diff)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		byName[s.Name()] = s
	}
	r, i := byName["orchestrator.render"], byName["orchestrator.install"]
	if r == nil || i == nil {
		t.Fatalf("spans %v: want orchestrator.render and orchestrator.install", byName)
	}
	if r.Parent().SpanID() != i.SpanContext().SpanID() || i.Parent().SpanID() != command.SpanContext().SpanID() {
		t.Errorf("render's parent is %v and install's %v, want install %v and the command %v",
			r.Parent().SpanID(), i.Parent().SpanID(), i.SpanContext().SpanID(), command.SpanContext().SpanID())
	}
	if i.Status().Code != codes.Error || i.Status().Description != "cannot install release: boom" || r.Status().Code == codes.Error {
		t.Errorf("install status %v and render status %v: want install failed, render not", i.Status(), r.Status())
	}

	// Outside a command, a phase is a span and no more.
	_, alone := phase.Start(context.Background(), phase.Publish)
	alone.End(nil)
	if len(observed) != 2 {
		t.Errorf("a phase without an observer was observed: %v", observed)
	}
}
