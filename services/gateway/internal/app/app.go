// Package app wires the gateway: grpc-gateway REST handlers for
// StoreService, UserService (both served by the api) and AuditService
// (served by the audit service), the OpenAPI document and the dashboard on
// its public port, and /metrics, /healthz and /readyz on an admin port of
// their own (package serve, which also runs its lifecycle and logs).
// The gateway keeps no state; it forwards the Authorization header to the
// gRPC services, which authenticate every call. It bounds what one client
// can make it do (package limit): body size, read, write and idle timeouts,
// and the unauthenticated or failed calls of one address. With an OpenID
// Connect issuer configured it also runs the dashboard's sign-in (package
// signin). Each REST call and sign-in request is the root span of a trace
// (see traced) that the services continue.
package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/storeprov/storeprov/gen/openapi"
	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/metrics"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/serve"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/gateway/internal/limit"
	"github.com/storeprov/storeprov/services/gateway/internal/signin"
)

// OpenAPIPath is where the OpenAPI document is served.
const OpenAPIPath = "/openapi.json"

// streamingPaths answer with a stream that lasts as long as the client
// wants: they have no write timeout.
var streamingPaths = map[string]bool{"/v1/stores:watch": true}

// Options configure the gateway.
type Options struct {
	HTTPAddr string
	// MetricsAddr is the admin address of /metrics, /healthz and /readyz,
	// which the public HTTPAddr does not serve.
	MetricsAddr string
	APIAddr     string
	AuditAddr   string
	// MaxBodyBytes is the largest request body accepted; larger ones get 413.
	MaxBodyBytes int64
	// ReadHeaderTimeout and ReadTimeout bound reading a request's header
	// and the whole request, WriteTimeout answering a request that is not a
	// stream, IdleTimeout how long a keep-alive connection waits for its
	// next request.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Failures limits unauthenticated and failed calls per client address.
	Failures limit.Failures
	// Static, when set, serves the dashboard for every path that is not an API path.
	Static http.Handler
	// SignIn configures OpenID Connect sign-in; an empty Issuer disables it.
	SignIn signin.Config
	// ClientSecretFile, when set, holds SignIn.ClientSecret.
	ClientSecretFile string
	// OnReady, when set, is called once with the bound addresses, before
	// the first request is served.
	OnReady func(Addrs)
	// Options are the flags every service has (--log-level,
	// --shutdown-grace, --otlp-endpoint) and the Logger of tests.
	serve.Options
}

// Addrs are the addresses the gateway listens on.
type Addrs struct{ HTTP, Metrics string }

// BindFlags registers the options as flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.HTTPAddr, "http-addr", ":3000", "public HTTP listen address for REST, the OpenAPI document and the dashboard")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":9095", "admin HTTP listen address of /metrics, /healthz and /readyz, kept off the public port")
	fs.Int64Var(&o.MaxBodyBytes, "max-body-bytes", 1<<20, "largest request body accepted; larger ones get 413")
	fs.DurationVar(&o.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time to read a request's header")
	fs.DurationVar(&o.ReadTimeout, "read-timeout", 30*time.Second, "time to read a whole request, body included")
	fs.DurationVar(&o.WriteTimeout, "write-timeout", 60*time.Second, "time to answer a request; streams (WatchStores) have none")
	fs.DurationVar(&o.IdleTimeout, "idle-timeout", 2*time.Minute, "time a keep-alive connection may wait for its next request")
	fs.Float64Var(&o.Failures.Rate, "unauthenticated-rate-limit", 1, "unauthenticated or failed (401) REST calls and sign-in callbacks per second per client address (0: unlimited)")
	fs.IntVar(&o.Failures.Burst, "unauthenticated-rate-burst", 20, "burst of unauthenticated or failed calls per client address")
	fs.Var(&o.Failures.Proxies, "trusted-proxies", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (empty: the connection's peer is the client)")
	fs.StringVar(&o.APIAddr, "api-addr", "localhost:9090", "gRPC target of the api service; dns:///<headless service>:9090 spreads calls over its replicas")
	fs.StringVar(&o.AuditAddr, "audit-addr", "localhost:9092", "gRPC target of the audit service; dns:///<headless service>:9092 spreads calls over its replicas")
	fs.StringVar(&o.SignIn.Issuer, "oidc-issuer", "", "OpenID Connect issuer URL the dashboard signs in with (empty: API tokens only); give the api the same")
	fs.StringVar(&o.SignIn.ClientID, "oidc-client-id", "", "this gateway's client ID at the issuer")
	fs.StringVar(&o.ClientSecretFile, "oidc-client-secret-file", "", "file holding the client secret (default: $STOREPROV_OIDC_CLIENT_SECRET)")
	fs.StringVar(&o.SignIn.RedirectURL, "oidc-redirect-url", "", "this gateway's callback URL as registered at the issuer, ending in /auth/callback")
	fs.StringVar(&o.SignIn.ProviderName, "oidc-provider-name", "single sign-on", "what the dashboard's sign-in button calls the issuer")
	// Dashboards' WatchStores streams never end on their own: they hold a
	// stopping gateway until its grace ends, so it is short.
	o.ShutdownGrace = 5 * time.Second
	o.Options.BindFlags(fs)
}

// loadSecret reads the client secret from ClientSecretFile or the
// environment, unless it is set already.
func (o *Options) loadSecret() error {
	if o.SignIn.Issuer == "" || o.SignIn.ClientSecret != "" {
		return nil
	}
	if o.ClientSecretFile == "" {
		o.SignIn.ClientSecret = os.Getenv("STOREPROV_OIDC_CLIENT_SECRET")
		return nil
	}
	b, err := os.ReadFile(o.ClientSecretFile)
	if err != nil {
		return fmt.Errorf("cannot read the OpenID Connect client secret: %w", err)
	}
	o.SignIn.ClientSecret = strings.TrimSpace(string(b))
	return nil
}

// Handler returns the handler of the gateway's public port, with its
// limits; its metrics go to reg. Its gRPC connections close when ctx is
// done.
func Handler(ctx context.Context, o Options, reg prometheus.Registerer) (http.Handler, error) {
	if err := o.loadSecret(); err != nil {
		return nil, err
	}
	if err := o.SignIn.Validate(); err != nil {
		return nil, err
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithMiddlewares(nameSpanByRoute),
	)
	dial := rpc.ClientOptions()
	registrations := []struct {
		name     string
		addr     string
		register func(context.Context, *runtime.ServeMux, string, []grpc.DialOption) error
	}{
		{"StoreService", o.APIAddr, storev1.RegisterStoreServiceHandlerFromEndpoint},
		{"UserService", o.APIAddr, storev1.RegisterUserServiceHandlerFromEndpoint},
		{"AuditService", o.AuditAddr, auditv1.RegisterAuditServiceHandlerFromEndpoint},
	}
	for _, r := range registrations {
		if err := r.register(ctx, gw, r.addr, dial); err != nil {
			return nil, fmt.Errorf("cannot register %s at %s: %w", r.name, r.addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", gw)
	apiConn, err := grpc.NewClient(o.APIAddr, dial...)
	if err != nil {
		return nil, fmt.Errorf("cannot dial the api at %s: %w", o.APIAddr, err)
	}
	context.AfterFunc(ctx, func() { apiConn.Close() })
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	signin.New(o.SignIn, storev1.NewUserServiceClient(apiConn), log).Register(mux)
	mux.HandleFunc(OpenAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Document)
	})
	fail := func(w http.ResponseWriter, r *http.Request, httpStatus int, code codes.Code, message string) {
		_, marshaler := runtime.MarshalerForRequest(gw, r)
		runtime.HTTPError(r.Context(), gw, marshaler, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: status.Error(code, message)})
	}
	// Not the dashboard's index either: these live on the admin port.
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			fail(w, r, http.StatusNotFound, codes.NotFound, r.URL.Path+" is served on the gateway's admin port (--metrics-addr), not here")
		})
	}
	if o.Static != nil {
		mux.Handle("/", o.Static)
	}
	refused := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeprov_gateway_refused_total", Help: "Requests the gateway refused before forwarding them, by reason.",
	}, []string{"reason"}))
	failBody := func(w http.ResponseWriter, r *http.Request, httpStatus int, code codes.Code, message string) {
		refused.WithLabelValues("body").Inc()
		fail(w, r, httpStatus, code, message)
	}
	h := limit.Body(mux, o.MaxBodyBytes, failBody)
	// Before the body is read: a refused call costs no more than its header.
	failures := o.Failures
	failures.Paths = []string{"/v1/", signin.CallbackPath}
	h = failures.Handler(h, fail, refused.WithLabelValues("rate_limited").Inc)
	h = limit.Deadlines(h, o.WriteTimeout, func(r *http.Request) bool { return streamingPaths[r.URL.Path] })
	return traced(h), nil
}

// traced makes a span of every REST call and sign-in request, the root of
// the trace that the api, the orchestrator and the events continue. The
// gateway faces the internet: a caller's own trace context is linked to,
// not continued.
func traced(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "gateway",
		otelhttp.WithPropagators(tracing.Propagator()),
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
		otelhttp.WithFilter(func(r *http.Request) bool {
			return strings.HasPrefix(r.URL.Path, "/v1/") || strings.HasPrefix(r.URL.Path, "/auth/")
		}))
}

// nameSpanByRoute names the request's span after the route it matched,
// such as "POST /v1/stores", rather than its path, which holds ids.
func nameSpanByRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if route, ok := runtime.HTTPPattern(r.Context()); ok {
			span := trace.SpanFromContext(r.Context())
			span.SetName(r.Method + " " + route.String())
			span.SetAttributes(semconv.HTTPRoute(route.String()))
		}
		next(w, r, params)
	}
}

// Run serves until ctx is done, then stops: the public port stops
// accepting connections, requests in progress (streams included) may
// finish within --shutdown-grace, and the rest are cut. The connections to
// the api and the audit service close after that, not before, so that
// requests in progress can still reach them.
func Run(ctx context.Context, o Options) error {
	svc, err := serve.New(ctx, "gateway", o.Options)
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Log
	o.Logger = log
	backends, closeBackends := context.WithCancel(context.WithoutCancel(ctx))
	defer closeBackends()
	h, err := Handler(backends, o, svc.Registry)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.HTTPAddr, err)
	}
	defer lis.Close()
	metricsAddr, err := svc.ListenAdmin(o.MetricsAddr)
	if err != nil {
		return err
	}
	// No WriteTimeout here: limit.Deadlines sets one for each request
	// that is not a stream.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: o.ReadHeaderTimeout, ReadTimeout: o.ReadTimeout, IdleTimeout: o.IdleTimeout}
	addrs := Addrs{HTTP: lis.Addr().String(), Metrics: metricsAddr}
	log.Info("gateway serving", "http", addrs.HTTP, "metrics", addrs.Metrics, "api", o.APIAddr, "audit", o.AuditAddr,
		"oidc_issuer", o.SignIn.Issuer, "trusted_proxies", o.Failures.Proxies.String())
	if o.OnReady != nil {
		o.OnReady(addrs)
	}
	return svc.Run(ctx, serve.HTTP("public HTTP server", srv, lis))
}

// incomingHeader forwards to the services the headers grpc-gateway
// forwards by default and Idempotency-Key, which CreateStore reads as its
// request id.
func incomingHeader(key string) (string, bool) {
	if http.CanonicalHeaderKey(key) == "Idempotency-Key" {
		return "idempotency-key", true
	}
	return runtime.DefaultHeaderMatcher(key)
}
