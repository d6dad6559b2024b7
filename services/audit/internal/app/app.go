// Package app assembles the audit service: its whole dependency graph is
// built in Run, in one place.
//
//	serve      logs, metrics, tracing (--otlp-endpoint), the admin server
//	           (/metrics, /healthz, /readyz: the database answers) and
//	           the lifecycle: every task below stops on SIGTERM within
//	           --shutdown-grace
//	store      the audit log in SQLite or PostgreSQL, migrated at start
//	recorder   NATS JetStream audit events → store, once the bus
//	           topology is ensured
//	server     gRPC AuditService over store, callers authenticated by
//	auth       the api's UserService (30 s cache)
//	retention  deletes entries older than --audit-retention (prune)
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/serve"
	"github.com/storeprov/storeprov/services/audit/internal/apiauth"
	"github.com/storeprov/storeprov/services/audit/internal/recorder"
	"github.com/storeprov/storeprov/services/audit/internal/server"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// Defaults of the flags.
const (
	DefaultDatabaseURL = "sqlite://audit.db"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	DefaultBusPrefix   = "storeprov"
	DefaultGRPCAddr    = ":9092"
	DefaultMetricsAddr = ":9093"
	DefaultAPIAddr     = "localhost:9090"
)

// Options configure the audit service.
type Options struct {
	// DatabaseURL is sqlite:///path, sqlite://relative/path or postgres://….
	DatabaseURL string
	NATSURL     string
	// NATS signs in to NATSURL as the audit role.
	NATS bus.Credentials
	// BusPrefix names the installation's NATS streams and subjects.
	BusPrefix string
	// BusReplicas is the replica count of streams the service creates.
	BusReplicas int
	// GRPCAddr and MetricsAddr are listen addresses; port 0 picks a free
	// port, reported to OnReady. MetricsAddr is the admin server's
	// (serve.Service.ListenAdmin); an empty one serves no admin endpoints.
	GRPCAddr    string
	MetricsAddr string
	// APIAddr is the api's gRPC address, asked who a bearer token is.
	APIAddr string
	// Concurrency bounds the events recorded at once.
	Concurrency int
	// Retention is how long entries are kept; 0 keeps them forever. Older
	// entries are deleted every RetentionInterval, leaving a checkpoint so
	// that the kept chain still verifies.
	Retention time.Duration
	// RetentionInterval is how often retention runs (default: a tenth of
	// Retention, between a minute and an hour).
	RetentionInterval time.Duration

	// Authenticator, when set, replaces asking the api at APIAddr (an
	// in-process stack or a test may share one).
	Authenticator auth.Authenticator
	// OnReady, when set, is called once with the bound addresses, after
	// the database is migrated and before the first call is served.
	OnReady func(Addrs)
	// Options are the flags every service has (--log-level,
	// --shutdown-grace, --otlp-endpoint) and the Logger of tests.
	serve.Options
}

// Addrs are the addresses the service listens on.
type Addrs struct {
	// GRPC is host:port of the AuditService.
	GRPC string
	// Metrics is host:port of /metrics, /healthz and /readyz, empty when
	// disabled.
	Metrics string
}

// Defaults returns the options the flags default to, without the NATS
// password, which BindFlags takes from the environment.
func Defaults() Options {
	return Options{
		DatabaseURL: DefaultDatabaseURL,
		NATSURL:     DefaultNATSURL,
		NATS:        bus.Credentials{User: string(bus.RoleAudit)},
		BusPrefix:   DefaultBusPrefix,
		BusReplicas: 1,
		GRPCAddr:    DefaultGRPCAddr,
		MetricsAddr: DefaultMetricsAddr,
		APIAddr:     DefaultAPIAddr,
		Concurrency: 8,
		Options:     serve.Options{ShutdownGrace: serve.DefaultShutdownGrace},
	}
}

// BindFlags registers the service's flags on fs, with Defaults as their
// defaults, writing into o.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	d := Defaults()
	fs.StringVar(&o.DatabaseURL, "database-url", d.DatabaseURL, "audit database: sqlite:///path/to/file.db, sqlite://relative.db or postgres://user@host/db")
	fs.StringVar(&o.NATSURL, "nats-url", d.NATSURL, "NATS JetStream server to consume audit events from")
	o.NATS.BindFlags(fs, bus.RoleAudit)
	fs.StringVar(&o.BusPrefix, "bus-prefix", d.BusPrefix, "prefix of the installation's NATS streams and subjects")
	fs.IntVar(&o.BusReplicas, "bus-replicas", d.BusReplicas, "replicas of the NATS streams (3 on a production cluster)")
	fs.StringVar(&o.GRPCAddr, "grpc-addr", d.GRPCAddr, "listen address of the gRPC AuditService")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", d.MetricsAddr, "listen address of /metrics, /healthz and /readyz; empty disables them")
	fs.StringVar(&o.APIAddr, "api-addr", d.APIAddr, "gRPC target of the api, which authenticates callers' tokens; dns:///<headless service>:9090 spreads calls over its replicas")
	fs.IntVar(&o.Concurrency, "concurrency", d.Concurrency, "audit events recorded at once")
	fs.DurationVar(&o.Retention, "audit-retention", d.Retention, "delete audit entries recorded longer ago than this, such as 2160h (90 days), keeping a checkpoint so the rest still verifies; 0 keeps them forever")
	o.Options = d.Options
	o.Options.BindFlags(fs)
}

func (o Options) validate() error {
	var missing []string
	for _, f := range []struct{ flag, value string }{
		{"--database-url", o.DatabaseURL}, {"--nats-url", o.NATSURL}, {"--bus-prefix", o.BusPrefix}, {"--grpc-addr", o.GRPCAddr},
	} {
		if f.value == "" {
			missing = append(missing, f.flag)
		}
	}
	if o.Authenticator == nil && o.APIAddr == "" {
		missing = append(missing, "--api-addr")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing options %v: set them or leave their defaults", missing)
	}
	if o.Retention < 0 {
		return fmt.Errorf("--audit-retention %s is negative: use 0 to keep entries forever, or how long to keep them, such as 2160h", o.Retention)
	}
	if o.RetentionInterval < 0 {
		return fmt.Errorf("retention interval %s is negative: use 0 for the default", o.RetentionInterval)
	}
	return nil
}

// retentionInterval is how often retention runs.
func (o Options) retentionInterval() time.Duration {
	if o.RetentionInterval > 0 {
		return o.RetentionInterval
	}
	return min(max(o.Retention/10, time.Minute), time.Hour)
}

// Run serves the audit service until ctx is cancelled, then shuts down
// gracefully and returns nil. It returns an error when it cannot start
// (database unreachable, address in use, …) or when a server fails.
// NATS may be unreachable at start: queries are served meanwhile, and
// recording starts when it is reachable. /readyz checks the database.
func Run(ctx context.Context, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}
	svc, err := serve.New(ctx, "audit", opts.Options)
	if err != nil {
		return err
	}
	defer svc.Close()
	logger := svc.Log
	log, err := store.Open(ctx, opts.DatabaseURL)
	if err != nil {
		return err
	}
	defer log.Close()

	topology := bus.Topology{Prefix: opts.BusPrefix, Replicas: opts.BusReplicas}
	natsBus, err := svc.ConnectBus(serve.BusConfig{URL: opts.NATSURL, Credentials: opts.NATS, Topology: topology, Role: bus.RoleAudit})
	if err != nil {
		return err
	}
	defer natsBus.Close()
	rec, err := recorder.New(natsBus.JS, topology, log, recorder.Options{Concurrency: opts.Concurrency, Registry: svc.Registry, Logger: logger})
	if err != nil {
		return err
	}

	authenticator := opts.Authenticator
	if authenticator == nil {
		conn, err := grpc.NewClient(opts.APIAddr, rpc.ClientOptions()...)
		if err != nil {
			return fmt.Errorf("cannot create a client of the api at %s: %w", opts.APIAddr, err)
		}
		defer conn.Close()
		authenticator = apiauth.New(storev1.NewUserServiceClient(conn), apiauth.Options{})
	}
	grpcServer := rpc.NewServer(rpc.Options{Service: "audit", Auth: authenticator, Registry: svc.Registry, Logger: logger})
	auditv1.RegisterAuditServiceServer(grpcServer, server.New(log, logger))
	grpcServer.Health.SetServingStatus(auditv1.AuditService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	grpcListener, err := net.Listen("tcp", opts.GRPCAddr)
	if err != nil {
		return fmt.Errorf("cannot listen for gRPC on %s: %w", opts.GRPCAddr, err)
	}
	defer grpcListener.Close()
	metricsAddr, err := svc.ListenAdmin(opts.MetricsAddr, serve.Check{Name: "database", Func: log.Ping})
	if err != nil {
		return err
	}
	addrs := Addrs{GRPC: grpcListener.Addr().String(), Metrics: metricsAddr}
	logger.Info("audit service started", "grpc", addrs.GRPC, "metrics", addrs.Metrics, "nats", opts.NATSURL, "bus_prefix", opts.BusPrefix)
	if opts.OnReady != nil {
		opts.OnReady(addrs)
	}

	tasks := []serve.Task{
		serve.GRPC(grpcServer, grpcListener),
		{Name: "recorder", Run: func(ctx context.Context) error {
			if natsBus.EnsureTopology(ctx, bus.Options{}) != nil {
				return nil // stopped before NATS was reachable
			}
			return rec.Run(ctx)
		}},
	}
	if opts.Retention > 0 {
		tasks = append(tasks, serve.Loop("retention", func(ctx context.Context) {
			retain(ctx, log, opts.Retention, opts.retentionInterval(), logger)
		}))
	}
	return svc.Run(ctx, tasks...)
}

// retain deletes the entries older than retention now and every interval
// until ctx ends. A failure is logged and retried at the next interval: a
// chain that does not verify is never pruned (store.ErrChainBroken).
func retain(ctx context.Context, log *store.Store, retention, interval time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		deleted, err := log.Prune(ctx, time.Now().Add(-retention))
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, store.ErrChainBroken):
			logger.Error("audit retention stopped at a break in the hash chain; nothing past it is deleted", "deleted", deleted, "error", err)
		case err != nil:
			logger.Warn("audit retention failed; retrying later", "deleted", deleted, "retry_in", interval, "error", err)
		case deleted > 0:
			logger.Info("audit retention deleted old entries", "deleted", deleted, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
