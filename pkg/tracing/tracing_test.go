package tracing_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/storeprov/storeprov/pkg/tracing"
)

// collector keeps the spans an OTLP exporter sent it, by service.name.
type collector struct {
	mu    sync.Mutex
	spans map[string][]string
	paths []string
}

func (c *collector) add(path string, req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spans == nil {
		c.spans = map[string][]string{}
	}
	c.paths = append(c.paths, path)
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans[service] = append(c.spans[service], s.GetName())
			}
		}
	}
}

func (c *collector) got(service string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spans[service]
}

// exportOneSpan sets tracing up for endpoint, ends one span and flushes it.
func exportOneSpan(t *testing.T, endpoint string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdown, err := tracing.Setup(ctx, "storeprov-test", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("tracing_test").Start(ctx, "test.span")
	if !span.IsRecording() {
		t.Error("with an endpoint, spans are recorded")
	}
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("cannot flush spans to %s: %v", endpoint, err)
	}
}

func TestSetupExportsToAnHTTPURLWithOTLPOverHTTP(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("OTLP/HTTP request to %s is not an ExportTraceServiceRequest: %v", r.URL.Path, err)
		}
		c.add(r.URL.Path, &req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	exportOneSpan(t, srv.URL) // http://127.0.0.1:port

	if got := c.got("storeprov-test"); len(got) != 1 || got[0] != "test.span" {
		t.Errorf("collector got spans %q of storeprov-test, want [test.span]", got)
	}
	if len(c.paths) == 0 || c.paths[0] != "/v1/traces" {
		t.Errorf("exporter posted to %q, want /v1/traces", c.paths)
	}
}

type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	c *collector
}

func (g grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.c.add("grpc", req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestSetupExportsToHostPortWithOTLPOverGRPC(t *testing.T) {
	c := &collector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcCollector{c: c})
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	exportOneSpan(t, lis.Addr().String()) // 127.0.0.1:port

	if got := c.got("storeprov-test"); len(got) != 1 || got[0] != "test.span" {
		t.Errorf("collector got spans %q of storeprov-test, want [test.span]", got)
	}
}

func TestSetupWithoutEndpointRecordsNothing(t *testing.T) {
	// Not the provider an earlier test installed.
	otel.SetTracerProvider(noop.NewTracerProvider())
	shutdown, err := tracing.Setup(context.Background(), "storeprov-test", "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	_, span := otel.Tracer("tracing_test").Start(context.Background(), "test.span")
	defer span.End()
	if span.IsRecording() {
		t.Error("without an endpoint, a span is recorded")
	}
}

func TestSetupRefusesMalformedEndpoints(t *testing.T) {
	for _, endpoint := range []string{"127.0.0.1", "ftp://127.0.0.1:4318", "http://", "collector"} {
		if _, err := tracing.Setup(context.Background(), "storeprov-test", endpoint); err == nil || !strings.Contains(err.Error(), "--otlp-endpoint") {
			t.Errorf("Setup(%q) = %v, want an error naming --otlp-endpoint", endpoint, err)
		}
	}
}

func TestHeaderCarriesTraceContext(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
	})
	h := nats.Header{}
	tracing.Inject(trace.ContextWithSpanContext(context.Background(), sc), tracing.Header(h))
	if want := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"; h.Get("traceparent") != want {
		t.Errorf("traceparent header = %q, want %q (headers %v)", h.Get("traceparent"), want, h)
	}
	got := trace.SpanContextFromContext(tracing.Extract(context.Background(), tracing.Header(h)))
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the remote span %v", got, sc)
	}

	// A row of the outbox keeps it in a map.
	m := propagation.MapCarrier{}
	tracing.Inject(trace.ContextWithSpanContext(context.Background(), sc), m)
	if got := trace.SpanContextFromContext(tracing.Extract(context.Background(), m)); got.TraceID() != sc.TraceID() {
		t.Errorf("extracted trace %v from %v, want %v", got.TraceID(), m, sc.TraceID())
	}

	empty := nats.Header{}
	tracing.Inject(context.Background(), tracing.Header(empty))
	if len(empty) != 0 {
		t.Errorf("a context without a span injected %v", empty)
	}
}
