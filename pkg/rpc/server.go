// Package rpc builds the gRPC servers of the services the same way: bearer
// token authentication, Prometheus metrics, a span per call (continuing
// the caller's trace), panic recovery, the standard health service and
// server reflection (so grpcurl works against every service). Its metrics
// go to the registry a service gives it, which package serve's admin
// server exports.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/storeprov/storeprov/pkg/tracing"
)

// Principal is an authenticated caller.
type Principal struct {
	// Name of the user; the actor in the audit log.
	Name  string
	Admin bool
}

// Authenticator resolves a bearer token to its user. It returns an error
// wrapping ErrUnauthenticated when the token is not accepted; the wrapping
// error's text, if any, tells the caller why.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, token string) (Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (Principal, error) {
	return f(ctx, token)
}

// ErrUnauthenticated means the bearer token is missing or unknown.
var ErrUnauthenticated = errors.New("unauthenticated")

type principalKey struct{}

// PrincipalFrom returns the caller that the server's interceptor
// authenticated. ok is false for unauthenticated methods.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns a context carrying p, for tests of handlers.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// BearerToken returns the token of the incoming "authorization: Bearer …"
// metadata.
func BearerToken(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if token, ok := strings.CutPrefix(v, "Bearer "); ok && token != "" {
			return strings.TrimSpace(token), true
		}
	}
	return "", false
}

// Options configure NewServer.
type Options struct {
	// Service names the service in metrics and logs.
	Service string
	// Auth authenticates every method not listed in Public; nil disables
	// authentication.
	Auth Authenticator
	// Public lists full method names that need no token.
	Public []string
	// RateLimit is the sustained requests per second allowed to each user
	// (0: unlimited), with bursts of RateBurst. The buckets live in this
	// server's memory: each replica of a service limits its own calls, so
	// a user's limit over N replicas is N times RateLimit.
	RateLimit float64
	RateBurst int
	// MaxStreamsPerUser caps the server-streaming calls (WatchStores) one
	// user may have open on this server at once (0: unlimited); one more is
	// refused with ResourceExhausted. Like RateLimit, it is per replica.
	MaxStreamsPerUser int
	// Registry receives the server's metrics; nil means the default registry.
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// MaxConnectionAge is how long a client connection may serve new calls
// before the server asks the client to reconnect.
const MaxConnectionAge = 5 * time.Minute

// Server is a gRPC server with health and reflection registered.
type Server struct {
	*grpc.Server
	// Health reports serving status; it starts SERVING.
	Health *health.Server
}

// NewServer returns a gRPC server with the interceptors of Options. The
// caller registers its services, then calls Serve.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.DefaultRegisterer
	}
	m := newMetrics(opts.Service, opts.Registry)
	limiter := newLimiter(opts.RateLimit, opts.RateBurst)
	streams := &streamCounter{max: opts.MaxStreamsPerUser, open: map[string]int{}}
	public := map[string]bool{
		healthpb.Health_Check_FullMethodName: true,
		healthpb.Health_Watch_FullMethodName: true,
		healthpb.Health_List_FullMethodName:  true,
	}
	for _, p := range opts.Public {
		public[p] = true
	}
	authenticate := func(ctx context.Context, method string) (context.Context, error) {
		if opts.Auth == nil || public[method] || strings.HasPrefix(method, "/grpc.reflection.") {
			return ctx, nil
		}
		token, ok := BearerToken(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, `missing API token: send the header "Authorization: Bearer <token>"`)
		}
		p, err := opts.Auth.Authenticate(ctx, token)
		if errors.Is(err, ErrUnauthenticated) {
			msg := "invalid API token: it is unknown or was revoked; create a new one with storectl token create"
			if err != ErrUnauthenticated { // the authenticator says why
				msg = strings.TrimPrefix(err.Error(), ErrUnauthenticated.Error()+": ")
			}
			return nil, status.Error(codes.Unauthenticated, msg)
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "cannot check API token: %v", err)
		}
		if !limiter.allow(p.Name) {
			return nil, status.Errorf(codes.ResourceExhausted, "rate limit exceeded: at most %g requests per second per user; retry in a moment", opts.RateLimit)
		}
		return WithPrincipal(ctx, p), nil
	}
	recoverPanic := func(method string, err *error) {
		if r := recover(); r != nil {
			opts.Logger.Error("panic in gRPC handler", "method", method, "panic", r, "stack", string(debug.Stack()))
			*err = status.Error(codes.Internal, "internal error")
		}
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		defer func() { m.observe(info.FullMethod, err, start) }()
		defer recoverPanic(info.FullMethod, &err)
		ctx, err = authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		start := time.Now()
		defer func() { m.observe(info.FullMethod, err, start) }()
		defer recoverPanic(info.FullMethod, &err)
		ctx, err := authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		if p, ok := PrincipalFrom(ctx); ok && info.IsServerStream {
			if !streams.open1(p.Name) {
				return status.Errorf(codes.ResourceExhausted,
					"too many open streams: at most %d per user at once (on this replica); close one, such as another dashboard tab or storectl watch, and retry", streams.max)
			}
			defer streams.close1(p.Name)
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
	}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream),
		grpc.StatsHandler(otelgrpc.NewServerHandler(traceOptions()...)),
		// Clients reconnect now and then, and so find new replicas; streams
		// in flight (WatchStores) are not cut: the grace is unbounded.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: MaxConnectionAge}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return &Server{Server: gs, Health: hs}
}

// traceOptions make a span of every call but health checks and
// reflection, under the global tracer provider (see package tracing),
// with the trace context in the call's metadata.
func traceOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithPropagators(tracing.Propagator()),
		otelgrpc.WithFilter(filters.Not(filters.Any(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection.")))),
	}
}

// limiter keeps one token bucket per user.
type limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	users map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), users: map[string]*rate.Limiter{}}
}

func (l *limiter) allow(user string) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	lim, ok := l.users[user]
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.users[user] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}

// streamCounter counts each user's open server-streaming calls.
type streamCounter struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// open1 counts one more stream of user, unless user has max open already.
func (c *streamCounter) open1(user string) bool {
	if c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[user] >= c.max {
		return false
	}
	c.open[user]++
	return true
}

// close1 counts one stream of user less.
func (c *streamCounter) close1(user string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[user]--; c.open[user] <= 0 {
		delete(c.open, user)
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

type metrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics(service string, reg prometheus.Registerer) *metrics {
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "storeprov_grpc_handled_total", Help: "gRPC calls completed, by method and code.",
			ConstLabels: prometheus.Labels{"service": service},
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "storeprov_grpc_handling_seconds", Help: "Time to handle a gRPC call.",
			ConstLabels: prometheus.Labels{"service": service},
			Buckets:     prometheus.DefBuckets,
		}, []string{"method"}),
	}
	m.handled = Register(reg, m.handled)
	m.latency = Register(reg, m.latency)
	return m
}

// Register registers c with reg and returns it, or returns the equal
// collector registered before, so that several servers of one service in a
// process (tests, the dev stack) share their metrics. It panics on any
// other registration error: that is a programming mistake.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("cannot register metrics: %v", err))
}

func (m *metrics) observe(method string, err error, start time.Time) {
	m.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}
