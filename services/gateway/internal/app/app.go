// Package app wires the gateway: grpc-gateway REST handlers for
// StoreService, UserService (both served by the api) and AuditService
// (served by the audit service), the OpenAPI document, health and metrics.
// The gateway keeps no state; it forwards the Authorization header to the
// gRPC services, which authenticate every call.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/storeprov/storeprov/gen/openapi"
	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/rpc"
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
	Logger *slog.Logger
	// OnReady, when set, is called with the bound HTTP address.
	OnReady func(httpAddr string)
}

// BindFlags registers the options as flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.HTTPAddr, "http-addr", ":3000", "HTTP listen address for REST, the OpenAPI document and the dashboard")
	fs.StringVar(&o.APIAddr, "api-addr", "localhost:9090", "gRPC address of the api service")
	fs.StringVar(&o.AuditAddr, "audit-addr", "localhost:9092", "gRPC address of the audit service")
}

// Handler returns the gateway's HTTP handler.
func Handler(ctx context.Context, o Options) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
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
	log.Info("gateway serving", "http", lis.Addr().String(), "api", o.APIAddr, "audit", o.AuditAddr)
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
