// Package serve is what every storeprov service does the same way around
// its own work, so that each service's app.Run is wiring only:
//
//	Options     the flags every service has: --log-level, --shutdown-grace
//	            and --otlp-endpoint, bound by Options.BindFlags
//	Service     one process of a service: its JSON logger, its own
//	            Prometheus registry, its tracing, its admin HTTP server
//	            and its lifecycle
//	ListenAdmin /metrics, /healthz (liveness: the process is alive and
//	            every task runs) and /readyz (readiness: the checks the
//	            service gives, such as its database and NATS, pass)
//	Task        a server or loop that runs as long as the service; Run
//	            runs them in an errgroup and stops them within a deadline
//	Bus         the NATS connection every service opens the same way, and
//	            the one loop that ensures its part of the bus topology
//
// A service reads:
//
//	svc, err := serve.New(ctx, "audit", opts.Options)
//	…
//	defer svc.Close()
//	nc, err := svc.ConnectBus(serve.BusConfig{URL: …, Role: bus.RoleAudit, …})
//	…
//	addr, err := svc.ListenAdmin(opts.MetricsAddr, serve.Check{Name: "database", Func: db.Ping})
//	…
//	return svc.Run(ctx, serve.GRPC(grpcServer, lis), serve.Task{Name: "recorder", Run: …})
package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/storeprov/storeprov/pkg/metrics"
	"github.com/storeprov/storeprov/pkg/rpc"
	"github.com/storeprov/storeprov/pkg/tracing"
)

// DefaultShutdownGrace is --shutdown-grace when the service sets no other
// default.
const DefaultShutdownGrace = 10 * time.Second

// CutWait is how long Run waits, after the grace period, for the tasks
// that were cut or handed their work back to return. Past it, Run gives up
// on them and returns ErrShutdownDeadline, so a service stops within
// --shutdown-grace plus CutWait: a pod's terminationGracePeriodSeconds
// must be at least that.
const CutWait = 15 * time.Second

// ErrShutdownDeadline means tasks were still running CutWait after the
// grace period; the process should exit anyway.
var ErrShutdownDeadline = errors.New("tasks did not stop within the shutdown deadline")

// Options are the flags every service has. A service embeds them in its
// own options and calls BindFlags from its own BindFlags.
type Options struct {
	// LogLevel is the lowest level logged (--log-level); the zero value is
	// info.
	LogLevel slog.Level
	// ShutdownGrace is how long a stopping service lets its work in
	// progress finish (--shutdown-grace): calls being served, commands
	// being handled. Past it, servers cut what remains and workers hand
	// their work back. Zero means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Tracing names the OTLP collector spans go to (--otlp-endpoint).
	Tracing tracing.Options
	// Logger, when set, is used instead of JSON lines on stderr at
	// LogLevel: for tests and in-process stacks. It is no flag.
	Logger *slog.Logger
}

// BindFlags registers --log-level, --shutdown-grace and --otlp-endpoint
// on fs, writing into o. The default of --shutdown-grace is o's
// ShutdownGrace when set before the call (the orchestrator lets commands
// run longer than the others let calls), DefaultShutdownGrace otherwise.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.Var((*level)(&o.LogLevel), "log-level", "lowest level logged: debug, info, warn or error")
	grace := o.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	fs.DurationVar(&o.ShutdownGrace, "shutdown-grace", grace, "on SIGTERM, how long work in progress (calls being served, commands being handled) may finish before it is cut or handed back to another replica")
	o.Tracing.BindFlags(fs)
}

// level is a flag.Value of a slog.Level that says which levels exist.
type level slog.Level

func (l *level) String() string {
	if l == nil {
		return slog.LevelInfo.String()
	}
	return slog.Level(*l).String()
}

func (l *level) Set(s string) error {
	var v slog.Level
	if err := v.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%q is not a level: use debug, info, warn or error", s)
	}
	*l = level(v)
	return nil
}

// Service is one process of a service: what New sets up before the
// service builds its own dependencies, the admin server ListenAdmin binds,
// and the lifecycle Run drives.
type Service struct {
	// Name is the service's short name: service=<Name> on every log line,
	// storeprov-<Name> in traces and NATS connection names.
	Name string
	// Log writes JSON lines to stderr at Options.LogLevel (or is
	// Options.Logger), with service=<Name>.
	Log *slog.Logger
	// Registry is the service's own: it has the Go and process collectors,
	// and the service registers its metrics there. /metrics serves it.
	Registry *prometheus.Registry

	grace       time.Duration
	cutWait     time.Duration
	stopTracing func(context.Context) error
	checks      []Check
	admin       *http.Server
	adminLis    net.Listener
	// state is what /readyz says before checking: starting, running or
	// stopping.
	state atomic.Int32
}

// The states of a Service.
const (
	starting int32 = iota
	running
	stopping
)

// New sets up the service name from o: its logger, its metrics registry
// and its tracing (tracing.Setup with storeprov-<name>). It fails only on
// a malformed --otlp-endpoint. The caller must Close the service.
func New(ctx context.Context, name string, o Options) (*Service, error) {
	log := newLogger(o, os.Stderr, name)
	stopTracing, err := tracing.Setup(ctx, "storeprov-"+name, o.Tracing.Endpoint)
	if err != nil {
		return nil, err
	}
	grace := o.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	return &Service{Name: name, Log: log, Registry: metrics.NewRegistry(), grace: grace, cutWait: CutWait, stopTracing: stopTracing}, nil
}

// ExitOnError ends the process of service when err, what its Run
// returned, is not nil: it logs err as the last line, "service failed" at
// error level, as New's logger would, and exits with status 1.
func (o Options) ExitOnError(service string, err error) {
	if err == nil {
		return
	}
	newLogger(o, os.Stderr, service).Error("service failed", "err", err)
	os.Exit(1)
}

// newLogger returns o.Logger, or one writing JSON lines to w at
// o.LogLevel, with service=name.
func newLogger(o Options, w io.Writer, name string) *slog.Logger {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: o.LogLevel}))
	}
	return log.With("service", name)
}

// Close releases what New and ListenAdmin took: the admin listener, when
// Run never served it, and tracing, whose buffered spans it flushes for up
// to tracing.FlushTimeout (a loss is logged).
func (s *Service) Close() {
	if s.adminLis != nil {
		_ = s.adminLis.Close() // already closed once Run served it
	}
	if err := s.stopTracing(context.Background()); err != nil {
		s.Log.Warn("spans lost at shutdown", "err", err)
	}
}

// Task is one part of a service that runs as long as the service does: a
// server or a loop.
type Task struct {
	// Name says which part it is, in errors.
	Name string
	// Run runs until ctx is done, then returns nil; an error fails the
	// whole service. A Run that returns while ctx is not done fails the
	// service too: every task is meant to run as long as the service. A
	// task with a Stop is done once both returned.
	Run func(ctx context.Context) error
	// Stop, when set, makes Run return, for servers that do not watch
	// ctx. It is called once the service stops, with a context that ends
	// Options.ShutdownGrace later: work in progress may finish until then,
	// and Stop must cut what remains when it ends.
	Stop func(ctx context.Context)
}

// Loop is the task of a loop that runs until ctx is done.
func Loop(name string, run func(ctx context.Context)) Task {
	return Task{Name: name, Run: func(ctx context.Context) error { run(ctx); return nil }}
}

// GRPC is the task of serving srv on lis. On stop the health service says
// NOT_SERVING, srv stops accepting calls, calls in progress (streams
// included) may finish until the grace period ends, and the rest are cut.
func GRPC(srv *rpc.Server, lis net.Listener) Task {
	return Task{
		Name: "gRPC server",
		Run: func(context.Context) error {
			// ErrServerStopped: the service stopped before Serve began.
			if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("gRPC server failed: %w", err)
			}
			return nil
		},
		Stop: func(ctx context.Context) {
			srv.Health.Shutdown()
			stopped := make(chan struct{})
			go func() { srv.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-ctx.Done():
				srv.Stop()
			}
		},
	}
}

// HTTP is the task of serving srv on lis. On stop srv stops accepting
// connections, requests in progress may finish until the grace period
// ends, and the connections left are closed.
func HTTP(name string, srv *http.Server, lis net.Listener) Task {
	return Task{
		Name: name,
		Run: func(context.Context) error {
			if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("%s failed: %w", name, err)
			}
			return nil
		},
		Stop: func(ctx context.Context) {
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
		},
	}
}

// Run serves the admin server (if ListenAdmin bound one) and runs tasks,
// each in an errgroup, until ctx is done or one fails. Then it stops:
// /readyz answers 503, every Stop is called, and tasks get the grace
// period (Options.ShutdownGrace) to finish their work and CutWait more to
// return; the admin server stops last, so that /metrics and /healthz
// answer while the rest stops.
//
// Run returns nil when ctx ended it and every task returned, the first
// task's error when one failed, and an error wrapping ErrShutdownDeadline,
// without waiting further, when tasks still run past the deadline.
func (s *Service) Run(ctx context.Context, tasks ...Task) error {
	g, gctx := errgroup.WithContext(ctx)
	var left sync.Map // names of the tasks still running
	var tasksRan sync.WaitGroup
	// stopped[i] is closed once tasks[i].Stop returned: a server's Serve
	// returns as soon as its Stop begins, its drain goes on in Stop.
	stopped := make([]chan struct{}, len(tasks))
	for i, t := range tasks {
		stopped[i] = make(chan struct{})
		left.Store(i, t.Name)
		tasksRan.Add(1)
		g.Go(func() error {
			defer tasksRan.Done()
			defer left.Delete(i)
			err := t.Run(gctx)
			if err == nil && gctx.Err() == nil {
				err = fmt.Errorf("%s stopped while the service runs", t.Name)
			}
			if err == nil && t.Stop != nil {
				<-stopped[i]
			}
			return err
		})
	}
	if s.admin != nil {
		g.Go(func() error {
			if err := s.admin.Serve(s.adminLis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics server failed: %w", err)
			}
			return nil
		})
	}
	tasksDone := make(chan struct{})
	go func() { tasksRan.Wait(); close(tasksDone) }()
	s.state.Store(running)

	<-gctx.Done()
	s.state.Store(stopping)
	s.Log.Info("service stopping", "grace", s.grace.String())
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.grace)
	defer cancel()
	for i, t := range tasks {
		if t.Stop != nil {
			go func() { t.Stop(stopCtx); close(stopped[i]) }()
		}
	}
	deadline := time.NewTimer(s.grace + s.cutWait)
	defer deadline.Stop()
	var late error
	select {
	case <-tasksDone:
	case <-deadline.C:
		var names []string
		left.Range(func(_, name any) bool { names = append(names, name.(string)); return true })
		slices.Sort(names)
		late = fmt.Errorf("%w: %s still running %s after the stop", ErrShutdownDeadline, strings.Join(names, ", "), s.grace+s.cutWait)
	}
	if s.admin != nil {
		// Scrapes in progress are short; past a second they are cut.
		adminCtx, cancelAdmin := context.WithTimeout(context.Background(), time.Second)
		if s.admin.Shutdown(adminCtx) != nil {
			_ = s.admin.Close()
		}
		cancelAdmin()
	}
	if late != nil {
		if ctx.Err() == nil {
			// A task's failure began the stop: it comes first.
			return errors.Join(context.Cause(gctx), late)
		}
		return late
	}
	err := g.Wait()
	if err == nil {
		s.Log.Info("service stopped")
	}
	return err
}
