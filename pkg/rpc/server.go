// Package rpc builds the gRPC servers of the services the same way: bearer
// token authentication (package auth checks the token), a rate limit and a
// cap on open streams per user, Prometheus metrics, a span per call (continuing
// the caller's trace), panic recovery, the standard health service and
// server reflection (so grpcurl works against every service). Its metrics
// go to the registry a service gives it, which package serve's admin
// server exports.
package rpc

import (
	"context"
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
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/metrics"
	"github.com/storeprov/storeprov/pkg/tracing"
)

// Options configure NewServer.
type Options struct {
	// Service names the service in metrics and logs.
	Service string
	// Auth authenticates every method not listed in Public; nil disables
	// authentication.
	Auth auth.Authenticator
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
	m := newCallMetrics(opts.Service, opts.Registry)
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
		p, err := auth.Check(ctx, opts.Auth)
		if err != nil {
			return nil, err
		}
		if !limiter.allow(p.Name) {
			return nil, status.Errorf(codes.ResourceExhausted, "rate limit exceeded: at most %g requests per second per user; retry in a moment", opts.RateLimit)
		}
		return auth.WithPrincipal(ctx, p), nil
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
		if p, ok := auth.PrincipalFrom(ctx); ok && info.IsServerStream {
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

type callMetrics struct {
	handled *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newCallMetrics(service string, reg prometheus.Registerer) *callMetrics {
	m := &callMetrics{
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
	m.handled = metrics.Register(reg, m.handled)
	m.latency = metrics.Register(reg, m.latency)
	return m
}

func (m *callMetrics) observe(method string, err error, start time.Time) {
	m.handled.WithLabelValues(method, status.Code(err).String()).Inc()
	m.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}
