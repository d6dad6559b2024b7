package recorder_test

import (
	"context"
	"slices"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/audit/internal/recorder"
)

// TestAnEventIsRecordedInASpanOfItsTrace publishes an audit event from a
// span, as the api's relay and the orchestrator do: the recorder records
// it in a child span of that one, naming the store.
func TestAnEventIsRecordedInASpanOfItsTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	env := bustest.Embedded(t)
	log := openLog(t, databasetest.SQLite(t))
	run(t, env, log, recorder.Options{})

	ctx, publisher := otel.Tracer("recorder_test").Start(context.Background(), "publish")
	e := entry("traced", "store1", t0)
	if err := bus.Publish(ctx, env.JS, env.Topology.AuditSubject(bus.RoleAPI, e.GetStoreId()), "msg-traced", &eventsv1.AuditEvent{Entry: e}); err != nil {
		t.Fatal(err)
	}
	publisher.End()

	var record sdktrace.ReadOnlySpan
	eventually(t, "the event is recorded in a span", func() bool {
		for _, s := range spans.Ended() {
			if s.Name() == "audit.record" {
				record = s
			}
		}
		return record != nil
	})
	if record.Parent().SpanID() != publisher.SpanContext().SpanID() || record.SpanContext().TraceID() != publisher.SpanContext().TraceID() {
		t.Errorf("audit.record has parent %v in trace %v, want the publisher's span %v in %v", record.Parent().SpanID(),
			record.SpanContext().TraceID(), publisher.SpanContext().SpanID(), publisher.SpanContext().TraceID())
	}
	if record.SpanKind() != trace.SpanKindConsumer || !slices.Contains(record.Attributes(), tracing.StoreID.String("store1")) {
		t.Errorf("audit.record is a %v span with attributes %v, want a consumer span naming store1", record.SpanKind(), record.Attributes())
	}
}
