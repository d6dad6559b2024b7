package rpc_test

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/rpc"
)

// spanOfCall answers GetStore with nothing, keeping the span its handler
// ran in.
type spanOfCall struct {
	storev1.UnimplementedStoreServiceServer
	got chan trace.SpanContext
}

func (s spanOfCall) GetStore(ctx context.Context, _ *storev1.GetStoreRequest) (*storev1.Store, error) {
	s.got <- trace.SpanContextFromContext(ctx)
	return &storev1.Store{}, nil
}

// TestCallsContinueTheCallersTrace calls a server built by NewServer with
// ClientOptions: the client and the server each make a span of the call,
// the server's a child of the client's, in the caller's trace; health
// checks make none.
func TestCallsContinueTheCallersTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	srv := rpc.NewServer(rpc.Options{Service: "test", Registry: prometheus.NewRegistry()})
	handler := spanOfCall{got: make(chan trace.SpanContext, 1)}
	storev1.RegisterStoreServiceServer(srv, handler)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), rpc.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	ctx, caller := otel.Tracer("rpc_test").Start(context.Background(), "caller")
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := storev1.NewStoreServiceClient(conn).GetStore(ctx, &storev1.GetStoreRequest{Id: "x"}); err != nil {
		t.Fatal(err)
	}
	caller.End()
	inHandler := <-handler.got
	srv.Stop() // the server span ends once the call is done

	const method = "storeprov.store.v1.StoreService/GetStore"
	var client, server sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch {
		case s.Name() == method && s.SpanKind() == trace.SpanKindClient:
			client = s
		case s.Name() == method && s.SpanKind() == trace.SpanKindServer:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("spans %v: want a client and a server span named %s", names(spans.Ended()), method)
	}
	if client.Parent().SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("the client span's parent is %v, want the caller's span %v", client.Parent().SpanID(), caller.SpanContext().SpanID())
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
		t.Errorf("the server span's parent is %v, want the client span %v, remote", server.Parent(), client.SpanContext().SpanID())
	}
	if inHandler.TraceID() != caller.SpanContext().TraceID() || inHandler.SpanID() != server.SpanContext().SpanID() {
		t.Errorf("the handler ran in span %v/%v, want the server span %v/%v", inHandler.TraceID(), inHandler.SpanID(),
			caller.SpanContext().TraceID(), server.SpanContext().SpanID())
	}
	for _, s := range spans.Ended() {
		if s.Name() == healthpb.Health_Check_FullMethodName[1:] {
			t.Errorf("a health check made span %s", s.Name())
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}
