package serve

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/serve/servetest"
	"github.com/storeprov/storeprov/pkg/tracing"
)

// newService is a Service that logs to the test, with grace and a cut
// wait short enough for tests.
func newService(t *testing.T, grace, cutWait time.Duration) *Service {
	t.Helper()
	s, err := New(context.Background(), "test", Options{ShutdownGrace: grace, Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.cutWait = cutWait
	t.Cleanup(s.Close)
	return s
}

// testLog writes log lines to the test's log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// runningService is a Run in a goroutine.
type runningService struct {
	cancel context.CancelFunc
	done   chan error
}

func start(s *Service, tasks ...Task) *runningService {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningService{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx, tasks...) }()
	return r
}

// stop cancels Run's context and returns how long Run took to return and
// what it returned, failing the test after within.
func (r *runningService) stop(t *testing.T, within time.Duration) (time.Duration, error) {
	t.Helper()
	began := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		return time.Since(began), err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s of the stop", within)
		return 0, nil
	}
}

func TestAdminServesMetricsLivenessAndReadiness(t *testing.T) {
	s := newService(t, time.Second, time.Second)
	handled := prometheus.NewCounter(prometheus.CounterOpts{Name: "storeprov_test_handled_total", Help: "Test."})
	s.Registry.MustRegister(handled)
	handled.Add(3)
	addr, err := s.ListenAdmin("127.0.0.1:0", Check{Name: "database", Func: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("ListenAdmin = %s, want the bound address", addr)
	}
	base := "http://" + addr

	r := start(s, Loop("loop", func(ctx context.Context) { <-ctx.Done() }))
	// Before Run runs, or while it starts: alive, not ready.
	if code, _ := servetest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while starting = %d, want 200", code)
	}
	if body := servetest.WaitFor(t, base+"/readyz", http.StatusOK, 10*time.Second); body != "database: ok\n" {
		t.Errorf("/readyz = %q, want the database check's line", body)
	}
	code, metrics := servetest.Get(t, base+"/metrics")
	for _, want := range []string{"storeprov_test_handled_total 3", "go_goroutines", "process_cpu_seconds_total"} {
		if code != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("/metrics = %d, lacks %q", code, want)
		}
	}
	if code, _ := servetest.Get(t, base+"/v1/stores"); code != http.StatusNotFound {
		t.Errorf("/v1/stores on the admin port = %d, want 404", code)
	}
	if _, err := r.stop(t, 5*time.Second); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Errorf("the admin address %s still accepts connections after Run returned", addr)
	}
}

func TestReadyzReflectsAFailingCheck(t *testing.T) {
	s := newService(t, time.Second, time.Second)
	var down atomic.Bool
	addr, err := s.ListenAdmin("127.0.0.1:0",
		Check{Name: "nats", Func: func(context.Context) error { return nil }},
		Check{Name: "database", Func: func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	r := start(s, Loop("loop", func(ctx context.Context) { <-ctx.Done() }))
	servetest.WaitFor(t, base+"/readyz", http.StatusOK, 10*time.Second)

	down.Store(true)
	code, body := servetest.Get(t, base+"/readyz")
	if diff := cmp.Diff("nats: ok\ndatabase: connection refused\n", body); code != http.StatusServiceUnavailable || diff != "" {
		t.Errorf("/readyz with the database down = %d, want 503; body (-want +got):\n%s", code, diff)
	}
	if code, _ := servetest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the database down = %d, want 200: a dependency down is no reason to restart", code)
	}
	down.Store(false)
	if code, body := servetest.Get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with the database back = %d %q, want 200", code, body)
	}
	if _, err := r.stop(t, 5*time.Second); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

func TestReadyzIs503WhileStoppingAndHealthzStays200(t *testing.T) {
	s := newService(t, 5*time.Second, time.Second)
	addr, err := s.ListenAdmin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	release := make(chan struct{})
	r := start(s, Task{Name: "drain", Run: func(ctx context.Context) error {
		<-ctx.Done()
		<-release // work in progress finishing
		return nil
	}})
	if body := servetest.WaitFor(t, base+"/readyz", http.StatusOK, 10*time.Second); body != "ok\n" {
		t.Errorf("/readyz without checks = %q, want ok", body)
	}
	r.cancel()
	if body := servetest.WaitFor(t, base+"/readyz", http.StatusServiceUnavailable, 10*time.Second); body != "stopping\n" {
		t.Errorf("/readyz while stopping = %q, want stopping", body)
	}
	if code, _ := servetest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while stopping = %d, want 200", code)
	}
	close(release)
	if _, err := r.stop(t, 5*time.Second); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestStopGivesTasksTheGraceThenGivesUpOnThoseStillRunning(t *testing.T) {
	const grace, cutWait = 300 * time.Millisecond, time.Second
	s := newService(t, grace, cutWait)
	stopDeadline := make(chan time.Time, 1)
	r := start(s, Task{
		Name: "stuck server",
		Run:  func(ctx context.Context) error { <-ctx.Done(); time.Sleep(time.Hour); return nil },
		Stop: func(ctx context.Context) { d, _ := ctx.Deadline(); stopDeadline <- d },
	}, Task{
		Name: "cut server",
		// Returns once cut at the end of the grace, as a server does.
		Run: func(ctx context.Context) error { <-ctx.Done(); time.Sleep(grace + 50*time.Millisecond); return nil },
	})
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	took, err := r.stop(t, 10*time.Second)
	if !errors.Is(err, ErrShutdownDeadline) || !strings.Contains(err.Error(), ": stuck server still running") {
		t.Errorf("Run = %v, want ErrShutdownDeadline naming the stuck server only", err)
	}
	if want := grace + cutWait; took < want || took > want+500*time.Millisecond {
		t.Errorf("Run returned %s after the stop, want the grace and the cut wait, %s", took, want)
	}
	select {
	case d := <-stopDeadline:
		if end := d.Sub(began); end < grace || end > grace+200*time.Millisecond {
			t.Errorf("Stop's context ends %s after the stop, want the grace %s", end, grace)
		}
	default:
		t.Error("Stop was not called")
	}
}

func TestRunReturnsOnceTasksStoppedWithinTheGrace(t *testing.T) {
	s := newService(t, 10*time.Second, 10*time.Second)
	r := start(s, Loop("loop", func(ctx context.Context) { <-ctx.Done(); time.Sleep(100 * time.Millisecond) }))
	took, err := r.stop(t, 5*time.Second)
	if err != nil || took > 2*time.Second {
		t.Errorf("Run = %v after %s, want nil as soon as the loop returned", err, took)
	}
}

func TestAFailingTaskStopsTheOthersAndIsReturned(t *testing.T) {
	tests := []struct {
		name    string
		run     func(ctx context.Context) error
		wantErr string
	}{
		{name: "error", run: func(context.Context) error { return errors.New("consumer deleted") }, wantErr: "consumer deleted"},
		{name: "returned early", run: func(context.Context) error { return nil }, wantErr: "failing stopped while the service runs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, time.Second, time.Second)
			var stopped atomic.Bool
			done := make(chan error, 1)
			go func() {
				done <- s.Run(context.Background(),
					Loop("other", func(ctx context.Context) { <-ctx.Done(); stopped.Store(true) }),
					Task{Name: "failing", Run: func(ctx context.Context) error { time.Sleep(50 * time.Millisecond); return tt.run(ctx) }})
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Run = %v, want an error saying %q", err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after a task failed")
			}
			if !stopped.Load() {
				t.Error("the other task was not stopped")
			}
		})
	}
}

func TestHTTPTaskDrainsRequestsInProgressWithinTheGrace(t *testing.T) {
	tests := []struct {
		name     string
		grace    time.Duration
		handling time.Duration
		// wantAnswer is whether the client gets its answer.
		wantAnswer bool
	}{
		{name: "finishes within the grace", grace: 5 * time.Second, handling: 300 * time.Millisecond, wantAnswer: true},
		{name: "cut at the end of the grace", grace: 300 * time.Millisecond, handling: time.Hour, wantAnswer: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t, tt.grace, 5*time.Second)
			inHandler := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(inHandler)
				select {
				case <-time.After(tt.handling):
				case <-r.Context().Done():
				}
				_, _ = io.WriteString(w, "done")
			})}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			r := start(s, HTTP("public HTTP server", srv, lis))
			answered := make(chan bool, 1)
			go func() {
				resp, err := http.Get("http://" + lis.Addr().String())
				if err != nil {
					answered <- false
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answered <- string(b) == "done"
			}()
			<-inHandler
			took, err := r.stop(t, 10*time.Second)
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
			if got := <-answered; got != tt.wantAnswer {
				t.Errorf("client answered = %v, want %v", got, tt.wantAnswer)
			}
			if took > tt.grace+time.Second {
				t.Errorf("Run returned %s after the stop, want within the grace %s", took, tt.grace)
			}
		})
	}
}

func TestEnsureTopologyRetriesUntilNATSIsUp(t *testing.T) {
	env := bustest.Embedded(t)
	// The audit role creates the events stream once NATS is there.
	if err := env.JS.DeleteStream(context.Background(), env.Topology.EventsStream()); err != nil {
		t.Fatal(err)
	}
	env.Stop(t)
	s := newService(t, time.Second, time.Second)
	b, err := s.ConnectBus(BusConfig{URL: env.URL, Credentials: env.Credentials(bus.RoleAudit), Topology: env.Topology, Role: bus.RoleAudit})
	if err != nil {
		t.Fatalf("ConnectBus with NATS down = %v, want a connection that retries", err)
	}
	t.Cleanup(b.Close)
	check := b.Check()
	if err := check.Func(context.Background()); err == nil {
		t.Error("nats check with NATS down = nil, want an error")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ensured := make(chan error, 1)
	go func() { ensured <- b.EnsureTopology(ctx, bus.Options{}) }()
	select {
	case err := <-ensured:
		t.Fatalf("EnsureTopology with NATS down = %v, want it to wait", err)
	case <-time.After(RetryInterval + time.Second):
	}

	env.Restart(t)
	select {
	case err := <-ensured:
		if err != nil {
			t.Fatalf("EnsureTopology = %v, want nil once NATS is up", err)
		}
	case <-time.After(AttemptTimeout + 2*RetryInterval + 10*time.Second):
		t.Fatal("EnsureTopology did not succeed after NATS came back")
	}
	if _, err := env.JS.Stream(context.Background(), env.Topology.EventsStream()); err != nil {
		t.Errorf("events stream after EnsureTopology: %v", err)
	}
	if err := check.Func(context.Background()); err != nil {
		t.Errorf("nats check once ensured = %v, want nil", err)
	}
}

func TestEnsureTopologyReturnsWhenItsContextEnds(t *testing.T) {
	env := bustest.Embedded(t)
	env.Stop(t)
	s := newService(t, time.Second, time.Second)
	b, err := s.ConnectBus(BusConfig{URL: env.URL, Credentials: env.Credentials(bus.RoleAPI), Topology: env.Topology, Role: bus.RoleAPI})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := b.EnsureTopology(ctx, bus.Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EnsureTopology = %v, want its context's error", err)
	}
}

func TestEnsureTopologyRetriesWhatBindOpens(t *testing.T) {
	env := bustest.Embedded(t)
	s := newService(t, time.Second, time.Second)
	b, err := s.ConnectBus(BusConfig{URL: env.URL, Credentials: env.Credentials(bus.RoleOrchestrator), Topology: env.Topology, Role: bus.RoleOrchestrator})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	attempts := 0
	err = b.EnsureTopology(context.Background(), bus.Options{}, func(ctx context.Context) error {
		if attempts++; attempts < 2 {
			return errors.New("bucket not there yet")
		}
		_, err := b.JS.KeyValue(ctx, b.Topology.LeaseBucket())
		return err
	})
	if err != nil || attempts != 2 {
		t.Errorf("EnsureTopology = %v after %d attempts, want nil after 2", err, attempts)
	}
}

func TestFlagsSetOptions(t *testing.T) {
	tests := []struct {
		name string
		// preset is what the service sets before BindFlags.
		preset  Options
		args    []string
		want    Options
		wantErr string
	}{
		{name: "defaults", want: Options{LogLevel: slog.LevelInfo, ShutdownGrace: DefaultShutdownGrace}},
		{name: "the service's own grace", preset: Options{ShutdownGrace: 20 * time.Second}, want: Options{ShutdownGrace: 20 * time.Second}},
		{
			name: "every flag",
			args: []string{"--log-level", "debug", "--shutdown-grace", "3s", "--otlp-endpoint", "http://127.0.0.1:4318"},
			want: Options{LogLevel: slog.LevelDebug, ShutdownGrace: 3 * time.Second, Tracing: tracing.Options{Endpoint: "http://127.0.0.1:4318"}},
		},
		{name: "unknown level", args: []string{"--log-level", "verbose"}, wantErr: `"verbose" is not a level: use debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tracing.EndpointEnv, "")
			got := tt.preset
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			got.BindFlags(fs)
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Parse = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLogsAreJSONLinesAtTheLevelWithTheServiceName(t *testing.T) {
	var out strings.Builder
	log := newLogger(Options{LogLevel: slog.LevelWarn}, &out, "audit")
	log.Info("dropped below the level")
	log.Warn("kept", "store", "s1")
	var got []map[string]any
	for line := range strings.Lines(out.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		delete(m, "time")
		got = append(got, m)
	}
	want := []map[string]any{{"level": "WARN", "msg": "kept", "service": "audit", "store": "s1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}
