// Package app wires the api service: tracing, database, users and stores,
// the outbox relay, the status feed, the gRPC server and the metrics
// endpoint.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/database"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/outbox"
	"github.com/storeprov/storeprov/services/api/internal/resync"
	"github.com/storeprov/storeprov/services/api/internal/server"
	"github.com/storeprov/storeprov/services/api/internal/statusfeed"
	"github.com/storeprov/storeprov/services/api/internal/stores"
	"github.com/storeprov/storeprov/services/api/internal/users"
	"github.com/storeprov/storeprov/services/api/internal/watch"
)

// Options configure the api.
type Options struct {
	DatabaseURL string
	NATSURL     string
	// NATS signs in to NATSURL as the api role.
	NATS        bus.Credentials
	BusPrefix   string
	GRPCAddr    string
	MetricsAddr string
	// AdminTokenFile receives the first admin's token when the database is
	// new. AdminTokenFromFile instead holds the token to give the first
	// admin, such as a Secret a Helm chart generated and mounted. The token
	// is never logged: a new database with neither, and no
	// --oidc-admin-emails to make admins, is refused.
	AdminTokenFile     string
	AdminTokenFromFile string
	// TokenMaxTTL is the longest an API token lasts, and its default.
	TokenMaxTTL       time.Duration
	DefaultStoreQuota int
	RateLimit         float64
	RateBurst         int
	// MaxWatchStreams caps the WatchStores streams one user may have open
	// on this replica (0: unlimited).
	MaxWatchStreams int
	// OIDC configures sign-in with an OpenID Connect issuer; an empty
	// Issuer disables it.
	OIDC   OIDCOptions
	Logger *slog.Logger
	// Resync configures the periodic resync of stores.
	Resync resync.Options
	// Tracing names the OTLP collector spans go to (--otlp-endpoint).
	Tracing tracing.Options
	// OnReady, when set, is called with the bound addresses once serving.
	OnReady func(Addrs)
}

// OIDCOptions configure OpenID Connect sign-in.
type OIDCOptions struct {
	Issuer, ClientID string
	// AdminEmails is a comma-separated list of verified emails of admins.
	AdminEmails string
	SessionTTL  time.Duration
	// AllowedDomains and AllowedGroups are comma-separated lists: only a
	// person with a verified email in one of the domains, or in one of
	// the groups (claim GroupsClaim), may sign in.
	AllowedDomains, AllowedGroups string
	GroupsClaim                   string
}

// Addrs are the addresses the api listens on.
type Addrs struct{ GRPC, Metrics string }

// BindFlags registers the options as flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.DatabaseURL, "database-url", "sqlite://api.db", "database: sqlite:///path/file.db or postgres://user@host/db")
	fs.StringVar(&o.NATSURL, "nats-url", "nats://127.0.0.1:4222", "NATS server with JetStream")
	o.NATS.BindFlags(fs, bus.RoleAPI)
	fs.StringVar(&o.BusPrefix, "bus-prefix", "storeprov", "prefix of the NATS streams and subjects")
	fs.StringVar(&o.GRPCAddr, "grpc-addr", ":9090", "gRPC listen address")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":9091", "admin HTTP listen address of /metrics and /healthz, apart from the gRPC port")
	fs.StringVar(&o.AdminTokenFile, "admin-token-file", "", "file that receives the first admin's token when the database is new (mode 0600)")
	fs.StringVar(&o.AdminTokenFromFile, "admin-token-from-file", "", "file holding the token to give the first admin when the database is new (sp_…, such as a mounted Secret); instead of --admin-token-file")
	fs.DurationVar(&o.TokenMaxTTL, "token-max-ttl", users.DefaultTokenMaxTTL, "longest an API token lasts, and how long it lasts when no ttl is asked for")
	fs.IntVar(&o.DefaultStoreQuota, "default-store-quota", 5, "stores a new user may have")
	fs.Float64Var(&o.RateLimit, "rate-limit", 20, "requests per second per user (0: unlimited)")
	fs.IntVar(&o.RateBurst, "rate-burst", 40, "burst of requests per user")
	fs.IntVar(&o.MaxWatchStreams, "max-watch-streams", 8, "WatchStores streams one user may have open at once on this replica (0: unlimited)")
	fs.StringVar(&o.OIDC.Issuer, "oidc-issuer", "", "OpenID Connect issuer URL whose users may sign in to the dashboard (empty: API tokens only)")
	fs.StringVar(&o.OIDC.ClientID, "oidc-client-id", "", "client ID the issuer's ID tokens must be issued for (the gateway's)")
	fs.StringVar(&o.OIDC.AdminEmails, "oidc-admin-emails", "", "comma-separated verified emails of users who are admins")
	fs.DurationVar(&o.OIDC.SessionTTL, "oidc-session-ttl", 12*time.Hour, "how long a sign-in session lasts")
	fs.StringVar(&o.OIDC.AllowedDomains, "oidc-allowed-domains", "", "comma-separated email domains whose people may sign in (with a verified email)")
	fs.StringVar(&o.OIDC.AllowedGroups, "oidc-allowed-groups", "", "comma-separated groups whose members may sign in (read from --oidc-groups-claim)")
	fs.StringVar(&o.OIDC.GroupsClaim, "oidc-groups-claim", users.DefaultGroupsClaim, "claim of the ID token or userinfo that lists a person's groups")
	o.Resync.BindFlags(fs)
	o.Tracing.BindFlags(fs)
}

// Run serves until ctx is done, then shuts down gracefully.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := o.Resync.Validate(); err != nil {
		return err
	}
	if o.TokenMaxTTL == 0 {
		o.TokenMaxTTL = users.DefaultTokenMaxTTL
	}
	if o.TokenMaxTTL < time.Minute {
		return fmt.Errorf("--token-max-ttl %s: want at least 1m", o.TokenMaxTTL)
	}
	if o.AdminTokenFile != "" && o.AdminTokenFromFile != "" {
		return errors.New("--admin-token-file and --admin-token-from-file exclude each other: the first receives a generated token, the second holds one")
	}
	signIn, err := o.OIDC.build()
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, "storeprov-api", o.Tracing.Endpoint)
	if err != nil {
		return err
	}
	defer func() {
		if err := stopTracing(context.WithoutCancel(ctx)); err != nil {
			log.Warn("spans lost at shutdown", "err", err)
		}
	}()
	db, err := database.Open(ctx, o.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx, stores.Migrations); err != nil {
		return err
	}
	client := ent.NewClient(ent.Driver(db.Driver))

	if signIn.Enabled() && len(signIn.AllowedDomains) == 0 && len(signIn.AllowedGroups) == 0 {
		log.Warn("sign-in admits anyone the issuer signs in: limit it with --oidc-allowed-domains or --oidc-allowed-groups")
	}
	userSvc := &users.Service{Client: client, DefaultStoreQuota: int32(o.DefaultStoreQuota), TokenMaxTTL: o.TokenMaxTTL}
	if err := o.bootstrap(ctx, userSvc, signIn, log); err != nil {
		return err
	}

	// NATS may be down: requests are still accepted and wait in the outbox.
	topo := bus.Topology{Prefix: o.BusPrefix, Replicas: 1}
	hub := &watch.Hub{}
	peers := &watch.Peers{
		Hub: hub, Topology: topo, Origin: rand.Text(), Log: log,
		Load: func(ctx context.Context, id string) (*ent.Store, error) { return client.Store.Get(ctx, id) },
	}
	// Changes announced while this replica was not subscribed are lost: its
	// watchers start again once it is subscribed again.
	nc, err := nats.Connect(o.NATSURL, append(topo.ConnectOptions(bus.RoleAPI, o.NATS, log),
		nats.Name("storeprov-api"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.ConnectHandler(peers.Connected), nats.ReconnectHandler(peers.Reconnected))...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", o.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	published := rpc.Register(prometheus.DefaultRegisterer, prometheus.NewCounter(prometheus.CounterOpts{Name: "storeprov_api_outbox_published_total", Help: "Outbox messages published to JetStream."}))
	relay := outbox.NewRelay(client, js, log, published)
	peers.Conn = nc
	if err := peers.Listen(ctx); err != nil {
		return fmt.Errorf("store change fan-out: %w", err)
	}
	storeSvc := &stores.Service{Client: client, Dialect: db.Dialect, Topology: topo, Notifier: peers, Kick: relay.Kick}

	grpcSrv := rpc.NewServer(rpc.Options{
		Service: "api", Auth: userSvc, Public: []string{storev1.UserService_SignIn_FullMethodName},
		RateLimit: o.RateLimit, RateBurst: o.RateBurst, MaxStreamsPerUser: o.MaxWatchStreams, Logger: log,
	})
	srv := &server.Server{Stores: storeSvc, Users: userSvc, Hub: hub, OIDC: signIn}
	storev1.RegisterStoreServiceServer(grpcSrv, srv)
	storev1.RegisterUserServiceServer(grpcSrv, srv)

	grpcLis, err := net.Listen("tcp", o.GRPCAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.GRPCAddr, err)
	}
	metricsLis, err := net.Listen("tcp", o.MetricsAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("cannot listen on %s: %w", o.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", rpc.MetricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	metricsSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { relay.Run(ctx) })
	resyncer := &resync.Resyncer{Client: client, JS: js, Topology: topo, Interval: o.Resync.Interval, Log: log}
	wg.Go(func() { resyncer.Run(ctx) })
	wg.Go(func() { consumeStatus(ctx, js, topo, storeSvc, log) })
	wg.Go(func() {
		if err := grpcSrv.Serve(grpcLis); err != nil {
			errs <- fmt.Errorf("gRPC server: %w", err)
		}
	})
	wg.Go(func() {
		if err := metricsSrv.Serve(metricsLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("metrics server: %w", err)
		}
	})
	addrs := Addrs{GRPC: grpcLis.Addr().String(), Metrics: metricsLis.Addr().String()}
	log.Info("api serving", "grpc", addrs.GRPC, "metrics", addrs.Metrics, "database", db.Dialect)
	if o.OnReady != nil {
		o.OnReady(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	grpcSrv.Health.Shutdown()
	stopped := make(chan struct{})
	go func() { grpcSrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		grpcSrv.Stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = metricsSrv.Shutdown(shutdownCtx)
	wg.Wait()
	return runErr
}

// consumeStatus keeps the status feed running, creating the api's part of
// the bus topology first and starting again after NATS outages.
func consumeStatus(ctx context.Context, js jetstream.JetStream, topo bus.Topology, applier statusfeed.Applier, log *slog.Logger) {
	for ctx.Err() == nil {
		err := topo.Ensure(ctx, js, bus.RoleAPI, bus.Options{})
		if err == nil {
			err = statusfeed.Consume(ctx, js, topo, applier, log)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("status feed unavailable; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// build checks the options and returns the sign-in checker.
func (o OIDCOptions) build() (*users.OIDC, error) {
	if o.Issuer == "" {
		if o.ClientID != "" || o.AdminEmails != "" || o.AllowedDomains != "" || o.AllowedGroups != "" {
			return nil, errors.New("--oidc-client-id, --oidc-admin-emails, --oidc-allowed-domains and --oidc-allowed-groups need --oidc-issuer")
		}
		return &users.OIDC{}, nil
	}
	if u, err := url.Parse(o.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--oidc-issuer %q: want the issuer's URL, such as https://accounts.example.com", o.Issuer)
	}
	if o.ClientID == "" {
		return nil, errors.New("--oidc-issuer needs --oidc-client-id: the client ID the gateway signs in with")
	}
	if o.SessionTTL < time.Minute {
		return nil, fmt.Errorf("--oidc-session-ttl %s: want at least 1m", o.SessionTTL)
	}
	domains := list(o.AllowedDomains, true)
	for _, d := range domains {
		if strings.ContainsAny(d, "@ /") || !strings.Contains(d, ".") {
			return nil, fmt.Errorf("--oidc-allowed-domains: %q is not an email domain: write example.com, without '@'", d)
		}
	}
	return &users.OIDC{
		Issuer: o.Issuer, ClientID: o.ClientID, AdminEmails: list(o.AdminEmails, true), SessionTTL: o.SessionTTL,
		AllowedDomains: domains, AllowedGroups: list(o.AllowedGroups, false), GroupsClaim: strings.TrimSpace(o.GroupsClaim),
	}, nil
}

// list splits a comma-separated flag, dropping blanks; fold lowercases.
func list(s string, fold bool) []string {
	var out []string
	for e := range strings.SplitSeq(s, ",") {
		if e = strings.TrimSpace(e); fold {
			e = strings.ToLower(e)
		}
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

// bootstrap creates the first admin of a new database with the token of
// AdminTokenFromFile, or a new one written to AdminTokenFile. The token
// never reaches a log. Without either, a new database is refused, unless
// sign-in has admin emails to make admins of.
func (o Options) bootstrap(ctx context.Context, userSvc *users.Service, signIn *users.OIDC, log *slog.Logger) error {
	given := ""
	switch {
	case o.AdminTokenFromFile != "":
		b, err := os.ReadFile(o.AdminTokenFromFile)
		if err != nil {
			return fmt.Errorf("cannot read the first admin's token: %w", err)
		}
		given = strings.TrimSpace(string(b))
	case o.AdminTokenFile == "":
		n, err := userSvc.Client.User.Query().Count(ctx)
		if err != nil || n > 0 {
			return err
		}
		if signIn.Enabled() && len(signIn.AdminEmails) > 0 {
			log.Info("new database without a first admin token: admins are the users of --oidc-admin-emails who sign in")
			return nil
		}
		return errors.New("the database is new and nobody could administer it: pass --admin-token-file FILE to receive the first admin's token, or --admin-token-from-file FILE holding one")
	}
	token, err := userSvc.Bootstrap(ctx, given)
	if err != nil {
		return fmt.Errorf("cannot create the first admin: %w", err)
	}
	if token == "" {
		return nil
	}
	if given != "" {
		log.Info("created the first admin user with the token of --admin-token-from-file", "user", users.BootstrapAdmin)
		return nil
	}
	if err := writeToken(o.AdminTokenFile, token); err != nil {
		return fmt.Errorf("cannot write the first admin's token: %w", err)
	}
	log.Info("created the first admin user; its token is in the file", "user", users.BootstrapAdmin, "token_file", o.AdminTokenFile)
	return nil
}

// writeToken writes token to path, replacing what it held, readable by
// the owner only.
func writeToken(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
