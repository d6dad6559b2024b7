// Package tracing sets up OpenTelemetry tracing the same way in every
// service, and carries trace context across NATS messages, so that one
// provisioning is one trace: the REST request at the gateway, the api's
// gRPC call and transaction, the outbox relay's publish, the
// orchestrator's command and its phases, and the status and audit events
// the api and the audit service take back.
//
// Spans are exported with OTLP only when an endpoint is given (Setup);
// otherwise the global tracer provider stays OpenTelemetry's no-op one,
// whose spans record nothing and cost next to nothing, while the trace
// context still passes through every service. Trace context always
// travels as W3C Trace Context (Propagator), whether or not Setup ran.
package tracing

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Environment variables of the OpenTelemetry specification that Setup and
// BindFlags honour. The exporters also read the other OTEL_EXPORTER_OTLP_*
// variables (headers, timeout, certificate…), and the tracer provider
// OTEL_TRACES_SAMPLER and OTEL_RESOURCE_ATTRIBUTES.
const (
	// EndpointEnv is the default of --otlp-endpoint.
	EndpointEnv = "OTEL_EXPORTER_OTLP_ENDPOINT"
	// ProtocolEnv set to "grpc" makes a URL endpoint an OTLP/gRPC one.
	ProtocolEnv = "OTEL_EXPORTER_OTLP_PROTOCOL"
)

// EndpointHelp is the help text of --otlp-endpoint.
const EndpointHelp = "OTLP collector that traces are exported to: http://host:4318 (or https://…) speaks OTLP/HTTP, posting to <url>/v1/traces " +
	"(OTLP/gRPC instead when $" + ProtocolEnv + "=grpc); host:4317 without a scheme speaks OTLP/gRPC in plaintext. " +
	"Empty: nothing is exported and tracing costs nothing. Default: $" + EndpointEnv

// Options configure tracing from flags.
type Options struct {
	// Endpoint is the OTLP collector spans are exported to, as Setup
	// reads it; empty exports nothing.
	Endpoint string
}

// BindFlags registers --otlp-endpoint on fs, defaulting to
// $OTEL_EXPORTER_OTLP_ENDPOINT.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Endpoint, "otlp-endpoint", os.Getenv(EndpointEnv), EndpointHelp)
}

// Propagator is how trace context travels between the services, in gRPC
// metadata, NATS headers and outbox rows: W3C Trace Context (the
// traceparent and tracestate headers).
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Setup makes spans go to the OTLP collector at endpoint, as service (the
// service.name of every span, unless $OTEL_SERVICE_NAME says otherwise),
// and installs Propagator as the global propagator.
//
// The endpoint is either a URL, http://host:port or https://host:port
// with an optional path, spoken to with OTLP/HTTP (protobuf) at
// <url>/v1/traces, in plaintext for http (or with OTLP/gRPC at host:port
// when $OTEL_EXPORTER_OTLP_PROTOCOL is "grpc"); or host:port without a
// scheme, spoken to with OTLP/gRPC in plaintext. So a collector in a test
// or benchmark listens on 127.0.0.1 and is named http://127.0.0.1:4318 or
// 127.0.0.1:4317.
//
// An empty endpoint installs no tracer provider: the global one stays what
// it was, OpenTelemetry's no-op provider unless a test installed another.
// The exporter connects lazily, so a collector that is down loses spans
// but never stops the service. The caller must call shutdown before it
// exits, with a context that is not cancelled, to flush the spans still
// buffered for at most FlushTimeout; shutdown is never nil, and its error
// means spans were lost. Setup's error means the endpoint is malformed.
//
// Setup installs process-wide state: a process running several services
// (a test running them in process) traces them all as the last one set
// up.
func Setup(ctx context.Context, service, endpoint string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator())
	nothing := func(context.Context) error { return nil }
	if endpoint == "" {
		return nothing, nil
	}
	exporter, err := newExporter(ctx, endpoint)
	if err != nil {
		return nothing, err
	}
	// No schema URL of our own: it would conflict with the SDK's whenever
	// the two semconv versions differ.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exporter.Shutdown(ctx)
		return nothing, fmt.Errorf("cannot describe the tracing resource of %s: %w", service, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, FlushTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("cannot export the last spans to %s: %w", endpoint, err)
		}
		return nil
	}, nil
}

// FlushTimeout bounds the shutdown Setup returns: spans a collector did
// not take by then are lost.
const FlushTimeout = 5 * time.Second

// newExporter returns the OTLP exporter endpoint names; see Setup.
func newExporter(ctx context.Context, endpoint string) (*otlptrace.Exporter, error) {
	bad := func(why string) error {
		return fmt.Errorf("--otlp-endpoint %q %s: give http://host:4318 for OTLP/HTTP or host:4317 for OTLP/gRPC", endpoint, why)
	}
	if !strings.Contains(endpoint, "://") {
		if _, port, err := net.SplitHostPort(endpoint); err != nil || port == "" {
			return nil, bad("is neither a URL nor host:port")
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, bad("is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, bad("is not an http or https URL")
	}
	if os.Getenv(ProtocolEnv) == "grpc" {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(u.Host)}
		if u.Scheme == "http" {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath(path.Join("/", u.Path, "v1/traces"))}
	if u.Scheme == "http" {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	return otlptracehttp.New(ctx, opts...)
}

// Attributes that name what a span works on, the same in every service,
// so that the spans of one store can be found across traces.
const (
	StoreID    attribute.Key = "storeprov.store.id"
	Generation attribute.Key = "storeprov.store.generation"
	// Action is what a command asks: provision or delete.
	Action attribute.Key = "storeprov.action"
)

// End ends span, marking it failed with err unless err is nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Header adapts the headers of a NATS message to Inject and Extract. The
// trace context travels in the traceparent and tracestate headers. Inject
// needs a Header that is not nil.
type Header nats.Header

// Get implements propagation.TextMapCarrier.
func (h Header) Get(key string) string { return nats.Header(h).Get(key) }

// Set implements propagation.TextMapCarrier.
func (h Header) Set(key, value string) { nats.Header(h).Set(key, value) }

// Keys implements propagation.TextMapCarrier.
func (h Header) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes the trace context of ctx's span into carrier: a message's
// Header, or a propagation.MapCarrier kept with an outbox row. It writes
// nothing when ctx has no span.
func Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	Propagator().Inject(ctx, carrier)
}

// Extract returns ctx with the remote span that carrier names as its
// parent, so that the next span started from it continues that trace; ctx
// as it is when carrier holds no trace context or a malformed one.
func Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return Propagator().Extract(ctx, carrier)
}
