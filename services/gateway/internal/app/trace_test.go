package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TestRESTCallStartsTheTraceTheAPIContinues creates a store through the
// gateway: the REST call is a span named after its route, the root of a
// trace that the gRPC call to the api continues. A caller's own trace
// context is linked, not continued, and the OpenAPI document makes no
// span.
func TestRESTCallStartsTheTraceTheAPIContinues(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	b := startBackend(t, 0)
	base := "http://" + startGateway(t, b).HTTP

	const outside = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if r := call(t, "POST", base+"/v1/stores", goodToken, strings.NewReader(`{"displayName":"Traced"}`), "traceparent", outside); r.status != http.StatusOK {
		t.Fatalf("create: %d %q", r.status, r.body)
	}
	if r := call(t, "GET", base+"/openapi.json", "", nil); r.status != http.StatusOK {
		t.Fatalf("openapi: %d", r.status)
	}

	var rest, client, server sdktrace.ReadOnlySpan
	deadline := time.Now().Add(10 * time.Second)
	for rest == nil || server == nil {
		for _, s := range spans.Ended() {
			switch {
			case s.Name() == "POST /v1/stores" && s.SpanKind() == trace.SpanKindServer:
				rest = s
			case s.Name() == "storeprov.store.v1.StoreService/CreateStore" && s.SpanKind() == trace.SpanKindClient:
				client = s
			case s.Name() == "storeprov.store.v1.StoreService/CreateStore" && s.SpanKind() == trace.SpanKindServer:
				server = s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: REST span %v, gRPC client span %v, gRPC server span %v; spans %v", rest != nil, client != nil, server != nil, names(spans.Ended()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rest.Parent().IsValid() {
		t.Errorf("the REST span has parent %v: a caller's trace context must not be continued", rest.Parent())
	}
	if links := rest.Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("the REST span links %v, want the caller's span", links)
	}
	if client == nil || client.Parent().SpanID() != rest.SpanContext().SpanID() {
		t.Errorf("the gRPC client span %v is not a child of the REST span %v", client, rest.SpanContext())
	}
	if server.SpanContext().TraceID() != rest.SpanContext().TraceID() {
		t.Errorf("the api's span is in trace %v, want the REST call's %v", server.SpanContext().TraceID(), rest.SpanContext().TraceID())
	}
	for _, s := range spans.Ended() {
		if strings.Contains(s.Name(), "openapi") || s.Name() == "GET" {
			t.Errorf("GET /openapi.json made span %q", s.Name())
		}
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name() + "/" + s.SpanKind().String()
	}
	return out
}
