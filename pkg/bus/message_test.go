package bus_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/tracing"
)

// TestPublishCarriesTheTraceOfItsContext publishes from a context with a
// span and reads the message back from the stream: its headers name that
// span, so that whoever handles the message continues the trace.
func TestPublishCarriesTheTraceOfItsContext(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		span := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{0xa1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			SpanID:     trace.SpanID{0xb1, 2, 3, 4, 5, 6, 7, 8},
			TraceFlags: trace.FlagsSampled,
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		traced := trace.ContextWithSpanContext(ctx, span)
		tracedSubject, untracedSubject := env.Topology.StatusSubject("traced"), env.Topology.StatusSubject("untraced")
		if err := bus.Publish(traced, env.JS, tracedSubject, "traced-1", &eventsv1.StoreStatusChanged{StoreId: "traced"}); err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(ctx, env.JS, untracedSubject, "untraced-1", &eventsv1.StoreStatusChanged{StoreId: "untraced"}); err != nil {
			t.Fatal(err)
		}

		stream, err := env.JS.Stream(ctx, env.Topology.EventsStream())
		if err != nil {
			t.Fatal(err)
		}
		msg, err := stream.GetLastMsgForSubject(ctx, tracedSubject)
		if err != nil {
			t.Fatal(err)
		}
		var ev eventsv1.StoreStatusChanged
		if err := bus.DecodeStored(msg, &ev); err != nil {
			t.Fatalf("a traced message no longer decodes: %v", err)
		}
		got := trace.SpanContextFromContext(tracing.Extract(context.Background(), tracing.Header(msg.Header)))
		if got.TraceID() != span.TraceID() || got.SpanID() != span.SpanID() {
			t.Errorf("message headers %v carry span %v/%v, want %v/%v", msg.Header, got.TraceID(), got.SpanID(), span.TraceID(), span.SpanID())
		}

		msg, err = stream.GetLastMsgForSubject(ctx, untracedSubject)
		if err != nil {
			t.Fatal(err)
		}
		if tp := msg.Header.Get("traceparent"); tp != "" {
			t.Errorf("a message published without a span carries traceparent %q", tp)
		}
	})
}
