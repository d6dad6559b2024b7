// Package app wires the api service: serve (logs, metrics, tracing, the
// admin server and the lifecycle), database, users and stores, the outbox
// relay, the resync, the status feed and the gRPC server.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/database"
	"github.com/storeprov/storeprov/pkg/metrics"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/serve"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/ent/schema"
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
	OIDC OIDCOptions
	// Resync configures the periodic resync of stores.
	Resync resync.Options
	// OnReady, when set, is called once with the bound addresses, after
	// the database is migrated and before the first call is served.
	OnReady func(Addrs)
	// Options are the flags every service has (--log-level,
	// --shutdown-grace, --otlp-endpoint) and the Logger of tests.
	serve.Options
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
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":9091", "admin HTTP listen address of /metrics, /healthz and /readyz, apart from the gRPC port")
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
	o.Options.BindFlags(fs)
}

// Run serves until ctx is done, then shuts down gracefully: gRPC calls
// in progress, WatchStores streams included, finish within
// --shutdown-grace and the rest are cut; the relay, the resync and the
// status feed stop. It returns an error when the options are wrong or a
// dependency cannot be set up: the database must answer at start, NATS
// need not (requests wait in the outbox). /readyz checks the database.
func Run(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	signIn, err := o.OIDC.build()
	if err != nil {
		return err
	}
	svc, err := serve.New(ctx, "api", o.Options)
	if err != nil {
		return err
	}
	defer svc.Close()
	log := svc.Log
	db, err := database.Open(ctx, o.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx, schema.Migrations); err != nil {
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
	natsBus, err := svc.ConnectBus(serve.BusConfig{URL: o.NATSURL, Credentials: o.NATS, Topology: topo, Role: bus.RoleAPI,
		Options: []nats.Option{nats.ConnectHandler(peers.Connected), nats.ReconnectHandler(peers.Reconnected)}})
	if err != nil {
		return err
	}
	defer natsBus.Close()

	published := metrics.Register(svc.Registry, prometheus.NewCounter(prometheus.CounterOpts{Name: "storeprov_api_outbox_published_total", Help: "Outbox messages published to JetStream."}))
	relay := outbox.NewRelay(client, natsBus.JS, log, published)
	peers.Conn = natsBus.Conn
	if err := peers.Listen(ctx); err != nil {
		return fmt.Errorf("store change fan-out: %w", err)
	}
	storeSvc := &stores.Service{Client: client, Dialect: db.Dialect, Topology: topo, Notifier: peers, Kick: relay.Kick}
	resyncer := &resync.Resyncer{Client: client, JS: natsBus.JS, Topology: topo, Interval: o.Resync.Interval, Log: log}

	grpcSrv := rpc.NewServer(rpc.Options{
		Service: "api", Auth: userSvc, Public: []string{storev1.UserService_SignIn_FullMethodName},
		RateLimit: o.RateLimit, RateBurst: o.RateBurst, MaxStreamsPerUser: o.MaxWatchStreams, Registry: svc.Registry, Logger: log,
	})
	srv := &server.Server{Stores: storeSvc, Users: userSvc, Hub: hub, OIDC: signIn}
	storev1.RegisterStoreServiceServer(grpcSrv, srv)
	storev1.RegisterUserServiceServer(grpcSrv, srv)

	grpcLis, err := net.Listen("tcp", o.GRPCAddr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.GRPCAddr, err)
	}
	defer grpcLis.Close()
	metricsAddr, err := svc.ListenAdmin(o.MetricsAddr, serve.Check{Name: "database", Func: db.PingContext})
	if err != nil {
		return err
	}
	addrs := Addrs{GRPC: grpcLis.Addr().String(), Metrics: metricsAddr}
	log.Info("api serving", "grpc", addrs.GRPC, "metrics", addrs.Metrics, "database", db.Dialect)
	if o.OnReady != nil {
		o.OnReady(addrs)
	}
	tasks := []serve.Task{
		serve.GRPC(grpcSrv, grpcLis),
		serve.Loop("outbox relay", relay.Run),
		serve.Loop("status feed", func(ctx context.Context) { consumeStatus(ctx, natsBus, storeSvc, log) }),
	}
	if o.Resync.Interval > 0 {
		tasks = append(tasks, serve.Loop("resync", resyncer.Run))
	}
	return svc.Run(ctx, tasks...)
}

// validate checks the options that need no dependency.
func (o *Options) validate() error {
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
	return nil
}

// consumeStatus keeps the status feed running, ensuring the api's part of
// the bus topology first and again after each NATS outage, until ctx is
// done.
func consumeStatus(ctx context.Context, natsBus *serve.Bus, applier statusfeed.Applier, log *slog.Logger) {
	for natsBus.EnsureTopology(ctx, bus.Options{}) == nil {
		err := statusfeed.Consume(ctx, natsBus.JS, natsBus.Topology, applier, log)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("status feed unavailable; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(serve.RetryInterval):
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
