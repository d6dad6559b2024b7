// Package phase times where the work on a command goes: taking the
// store's lease, observing the store, its guardrails, rendering and
// installing or upgrading its Helm release, waiting for its workloads,
// deleting its namespace, publishing its events. Each phase is a span,
// child of the command's, named "orchestrator.<phase>" (so one
// provisioning is one trace), and, when the context carries an Observer
// (the worker's), one observation of the phase's duration.
//
// A phase here is a stretch of the orchestrator's work, not a store's
// Phase (PROVISIONING, READY…).
package phase

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/storeprov/storeprov/pkg/tracing"
)

// Name names a phase: the "phase" label of the duration metric, and its
// span's name after "orchestrator.".
type Name string

// The phases. Their spans nest as the calls do: render is part of install
// or upgrade, readiness follows them.
const (
	// Lease is taking the store's lease (lease.Store.Acquire).
	Lease Name = "lease"
	// Observe is reading what of the store exists (reconcile's
	// DetermineState): namespace, guardrails, Helm history, workloads.
	Observe Name = "observe"
	// Guardrails is applying the namespace, quota, limits, network
	// policies and credentials (kube.Guardrails.Ensure).
	Guardrails Name = "guardrails"
	// Render is Helm loading the chart, checking the values and rendering
	// the manifests, until it starts applying them; part of Install or
	// Upgrade.
	Render Name = "render"
	// Install and Upgrade are the whole Helm action, render included,
	// until the objects are written (no wait for readiness).
	Install Name = "install"
	Upgrade Name = "upgrade"
	// Rollback is a Helm rollback to the store's ready revision.
	Rollback Name = "rollback"
	// Uninstall is removing the Helm release.
	Uninstall Name = "uninstall"
	// Readiness is waiting until the release's workloads are ready
	// (rollout.Wait).
	Readiness Name = "readiness"
	// DeleteNamespace is deleting the store's namespace and waiting until
	// it is gone (kube.Guardrails.DeleteNamespace).
	DeleteNamespace Name = "delete_namespace"
	// Publish is publishing one status or audit event.
	Publish Name = "publish"
)

// tracerName is the instrumentation scope of the phases' spans.
const tracerName = "github.com/storeprov/storeprov/services/orchestrator/internal/phase"

// Observer receives how long each phase took.
type Observer interface {
	ObservePhase(name Name, d time.Duration)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(name Name, d time.Duration)

// ObservePhase calls f.
func (f ObserverFunc) ObservePhase(name Name, d time.Duration) { f(name, d) }

type observerKey struct{}

// WithObserver returns ctx whose phases, and those of contexts derived
// from it, are reported to o.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// Timing is a phase under way; see Start.
type Timing struct {
	name     Name
	start    time.Time
	span     trace.Span
	observer Observer
}

// Start begins phase name: a span child of ctx's, with opts (attributes,
// a span kind), in the returned context, which the phase's work must use
// so that its own phases and messages are children of this one. The
// caller must End the timing exactly once.
func Start(ctx context.Context, name Name, opts ...trace.SpanStartOption) (context.Context, *Timing) {
	observer, _ := ctx.Value(observerKey{}).(Observer)
	ctx, span := otel.Tracer(tracerName).Start(ctx, "orchestrator."+string(name), opts...)
	return ctx, &Timing{name: name, start: time.Now(), span: span, observer: observer}
}

// End ends the phase, marking its span failed with err unless err is nil,
// and reports its duration, failed or not.
func (t *Timing) End(err error) {
	if t.observer != nil {
		t.observer.ObservePhase(t.name, time.Since(t.start))
	}
	tracing.End(t.span, err)
}

// Span returns the phase's span, to add attributes learnt on the way.
func (t *Timing) Span() trace.Span { return t.span }
