package app_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/api/internal/app"
)

// recordSpans makes the global tracer provider record every span until
// the test ends. The tests that call it must not run in parallel.
func recordSpans(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	return spans
}

// TestCreateStoreMessagesContinueTheRequestsTrace creates a store from a
// caller's span, as the gateway calls: the gRPC call, the transaction and
// the relay's publishes are spans of the caller's trace, and the command
// and audit messages carry it on; a status event about the store is
// applied in a span of the trace it carries.
func TestCreateStoreMessagesContinueTheRequestsTrace(t *testing.T) {
	spans := recordSpans(t)
	nats := bustest.Embedded(t)
	var addr string
	e := startAPI(t, databasetest.SQLite(t), nats, func(o *app.Options) {
		ready := o.OnReady
		o.OnReady = func(a app.Addrs) { addr = a.GRPC; ready(a) }
	})
	conn, err := grpc.NewClient(addr, rpc.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	ctx, request := otel.Tracer("app_test").Start(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.token), "request")
	st, err := storev1.NewStoreServiceClient(conn).CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: "Traced Shop", Engine: storev1.Engine_ENGINE_MEDUSA}})
	if err != nil {
		t.Fatal(err)
	}
	request.End()
	traceID := request.SpanContext().TraceID()

	command := lastMessage(t, nats, nats.Topology.CommandsStream(), nats.Topology.CommandSubject(st.GetId()))
	audit := lastMessage(t, nats, nats.Topology.EventsStream(), nats.Topology.AuditSubject(bus.RoleAPI, st.GetId()))
	for name, msg := range map[string]*jetstream.RawStreamMsg{"command": command, "audit event": audit} {
		if got := spanOf(msg); got.TraceID() != traceID {
			t.Errorf("the %s message carries trace %v (headers %v), want the request's %v", name, got.TraceID(), msg.Header, traceID)
		}
	}

	publishes := waitForSpans(t, spans, "outbox.publish", 2)
	server := findSpan(t, spans, "storeprov.store.v1.StoreService/CreateStore", trace.SpanKindServer)
	create := findSpan(t, spans, "stores.create", trace.SpanKindInternal)
	if server.SpanContext().TraceID() != traceID {
		t.Errorf("the server span is in trace %v, want the request's %v", server.SpanContext().TraceID(), traceID)
	}
	if create.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("stores.create's parent is %v, want the server span %v", create.Parent().SpanID(), server.SpanContext().SpanID())
	}
	if !slices.Contains(create.Attributes(), tracing.StoreID.String(st.GetId())) {
		t.Errorf("stores.create has attributes %v, want %s", create.Attributes(), tracing.StoreID.String(st.GetId()))
	}
	var published []trace.SpanID
	for _, p := range publishes {
		if p.Parent().SpanID() != create.SpanContext().SpanID() || p.SpanContext().TraceID() != traceID {
			t.Errorf("outbox.publish has parent %v in trace %v, want stores.create %v in %v",
				p.Parent().SpanID(), p.SpanContext().TraceID(), create.SpanContext().SpanID(), traceID)
		}
		published = append(published, p.SpanContext().SpanID())
	}
	if got := spanOf(command).SpanID(); !slices.Contains(published, got) {
		t.Errorf("the command message names span %v, want one of the relay's publishes %v", got, published)
	}

	// The orchestrator's status event continues the trace; the status feed
	// applies it in a span of its own, child of the publish.
	orchestrator, publish := otel.Tracer("app_test").Start(trace.ContextWithRemoteSpanContext(context.Background(), spanOf(command)), "orchestrator")
	ev := &eventsv1.StoreStatusChanged{StoreId: st.GetId(), Phase: storev1.Phase_PHASE_READY, Reason: string(lifecycle.ReasonReady),
		ObservedGeneration: 1, Time: timestamppb.Now()}
	if err := bus.Publish(orchestrator, nats.JS, nats.Topology.StatusSubject(st.GetId()),
		lifecycle.StatusEventID(st.GetId(), 1, ev.Phase, lifecycle.Reason(ev.Reason)), ev); err != nil {
		t.Fatal(err)
	}
	publish.End()
	apply := waitForSpans(t, spans, "statusfeed.apply", 1)[0]
	if apply.Parent().SpanID() != publish.SpanContext().SpanID() || apply.SpanContext().TraceID() != traceID {
		t.Errorf("statusfeed.apply has parent %v in trace %v, want the status publish %v in %v",
			apply.Parent().SpanID(), apply.SpanContext().TraceID(), publish.SpanContext().SpanID(), traceID)
	}
}

// lastMessage waits for a message on subject and returns the last one.
func lastMessage(t *testing.T, nats *bustest.Env, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := nats.JS.Stream(ctx, stream)
		if err == nil {
			var msg *jetstream.RawStreamMsg
			if msg, err = s.GetLastMsgForSubject(ctx, subject); err == nil {
				return msg
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message on %s in %s: %v", subject, stream, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spanOf is the span whose trace msg carries.
func spanOf(msg *jetstream.RawStreamMsg) trace.SpanContext {
	return trace.SpanContextFromContext(tracing.Extract(context.Background(), tracing.Header(msg.Header)))
}

// waitForSpans waits until n spans named name have ended and returns them.
func waitForSpans(t *testing.T, spans *tracetest.SpanRecorder, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found []sdktrace.ReadOnlySpan
		for _, s := range spans.Ended() {
			if s.Name() == name {
				found = append(found, s)
			}
		}
		if len(found) >= n {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans named %s ended, want %d", len(found), name, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findSpan returns the ended span named name of kind.
func findSpan(t *testing.T, spans *tracetest.SpanRecorder, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans.Ended() {
		if s.Name() == name && s.SpanKind() == kind {
			return s
		}
	}
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name()+"/"+s.SpanKind().String())
	}
	t.Fatalf("no %s span named %s among %v", kind, name, names)
	return nil
}
