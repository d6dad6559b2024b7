// Package app wires the gateway: grpc-gateway REST handlers for
// StoreService, UserService (both served by the api) and AuditService
// (served by the audit service), the OpenAPI document, health and metrics.
// The gateway keeps no state; it forwards the Authorization header to the
// gRPC services, which authenticate every call. With an OpenID Connect
// issuer configured it also runs the dashboard's sign-in (package signin).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/storeprov/storeprov/gen/openapi"
	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/services/gateway/internal/signin"
)

// OpenAPIPath is where the OpenAPI document is served.
const OpenAPIPath = "/openapi.json"

// Options configure the gateway.
type Options struct {
	HTTPAddr  string
	APIAddr   string
	AuditAddr string
	// Static, when set, serves the dashboard for every path that is not an API path.
	Static http.Handler
	// SignIn configures OpenID Connect sign-in; an empty Issuer disables it.
	SignIn signin.Config
	// ClientSecretFile, when set, holds SignIn.ClientSecret.
	ClientSecretFile string
	Logger           *slog.Logger
	// OnReady, when set, is called with the bound HTTP address.
	OnReady func(httpAddr string)
}

// BindFlags registers the options as flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.HTTPAddr, "http-addr", ":3000", "HTTP listen address for REST, the OpenAPI document and the dashboard")
	fs.StringVar(&o.APIAddr, "api-addr", "localhost:9090", "gRPC target of the api service; dns:///<headless service>:9090 spreads calls over its replicas")
	fs.StringVar(&o.AuditAddr, "audit-addr", "localhost:9092", "gRPC target of the audit service; dns:///<headless service>:9092 spreads calls over its replicas")
	fs.StringVar(&o.SignIn.Issuer, "oidc-issuer", "", "OpenID Connect issuer URL the dashboard signs in with (empty: API tokens only); give the api the same")
	fs.StringVar(&o.SignIn.ClientID, "oidc-client-id", "", "this gateway's client ID at the issuer")
	fs.StringVar(&o.ClientSecretFile, "oidc-client-secret-file", "", "file holding the client secret (default: $STOREPROV_OIDC_CLIENT_SECRET)")
	fs.StringVar(&o.SignIn.RedirectURL, "oidc-redirect-url", "", "this gateway's callback URL as registered at the issuer, ending in /auth/callback")
	fs.StringVar(&o.SignIn.ProviderName, "oidc-provider-name", "single sign-on", "what the dashboard's sign-in button calls the issuer")
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

// Handler returns the gateway's HTTP handler. Its gRPC connections close
// when ctx is done.
func Handler(ctx context.Context, o Options) (http.Handler, error) {
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("/metrics", rpc.MetricsHandler())
	if o.Static != nil {
		mux.Handle("/", o.Static)
	}
	return mux, nil
}

// Run serves until ctx is done.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	h, err := Handler(ctx, o)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.HTTPAddr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(lis) }()
	log.Info("gateway serving", "http", lis.Addr().String(), "api", o.APIAddr, "audit", o.AuditAddr, "oidc_issuer", o.SignIn.Issuer)
	if o.OnReady != nil {
		o.OnReady(lis.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
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
