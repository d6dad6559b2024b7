package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/serve/servetest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/app"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
)

func TestRunServesMetricsHealthAndStopsOnCancel(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		opts := app.DefaultOptions()
		opts.NATSURL = env.URL
		opts.NATS = env.Credentials(bus.RoleOrchestrator)
		opts.BusPrefix = env.Topology.Prefix
		opts.RESTConfig = sandboxtest.RESTConfig(t)
		opts.MetricsAddr = "127.0.0.1:0"
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		addr := make(chan string, 1)
		opts.OnReady = func(a app.Addrs) { addr <- a.Metrics }

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx, opts) }()
		t.Cleanup(cancel)
		var metricsAddr string
		select {
		case metricsAddr = <-addr:
		case err := <-done:
			t.Fatalf("Run returned before serving: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("metrics server did not start")
		}

		id := "a" + sandboxtest.RandomSuffix()
		sandboxtest.CleanupNamespace(t, storeid.Namespace(id))
		statuses := watchStatuses(t, env)
		publishProvision(t, env, id)
		statuses.wait(t, func(s map[string]storev1.Phase) bool { return s[id] == storev1.Phase_PHASE_READY }, 30*time.Second)

		if code, body := servetest.Get(t, "http://"+metricsAddr+"/healthz"); code != http.StatusOK || !strings.Contains(body, "ok") {
			t.Errorf("/healthz = %d %q, want 200 ok", code, body)
		}
		if code, body := servetest.Get(t, "http://"+metricsAddr+"/readyz"); code != http.StatusOK || body != "nats: ok\n" {
			t.Errorf("/readyz = %d %q, want 200 with the NATS check ok", code, body)
		}
		// The worker counts the command once it acked it, after the READY
		// status went out.
		servetest.WaitForMetrics(t, "http://"+metricsAddr+"/metrics",
			`storeprov_orchestrator_reconciles_total{action="provision",result="done"}`,
			`storeprov_orchestrator_reconcile_duration_seconds_bucket{action="provision"`,
			`storeprov_orchestrator_commands_in_flight`,
			`storeprov_orchestrator_lease_conflicts_total`,
		)

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
	})
}

func TestReadyzWaitsForNATSAndHealthzDoesNot(t *testing.T) {
	env := bustest.Embedded(t)
	env.Stop(t)
	opts := app.DefaultOptions()
	opts.NATSURL = env.URL
	opts.NATS = env.Credentials(bus.RoleOrchestrator)
	opts.BusPrefix = env.Topology.Prefix
	opts.RESTConfig = sandboxtest.RESTConfig(t)
	opts.MetricsAddr = "127.0.0.1:0"
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	addr := make(chan string, 1)
	opts.OnReady = func(a app.Addrs) { addr <- a.Metrics }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, opts) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the admin server did not start while NATS is down")
	}

	if code, body := servetest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while NATS is down = %d %q, want 200: the process lives", code, body)
	}
	if code, body := servetest.Get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: not connected") {
		t.Errorf("/readyz while NATS is down = %d %q, want 503 saying NATS is not connected", code, body)
	}
	env.Restart(t)
	servetest.WaitFor(t, base+"/readyz", http.StatusOK, 30*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func TestRunRejectsAnUnknownPlan(t *testing.T) {
	opts := app.DefaultOptions()
	opts.Plan = "platinum"
	err := app.Run(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), `unknown plan "platinum"`) || !strings.Contains(err.Error(), "standard") {
		t.Fatalf("Run with an unknown plan = %v, want an error listing the plans", err)
	}
}

// TestTwoProcessesShareCommands runs two orchestrator binaries on one bus
// and checks that both take a share of the work.
func TestTwoProcessesShareCommands(t *testing.T) {
	bin := buildOrchestrator(t)
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		kubeconfig := sandboxtest.KubeconfigPath(t)
		workers := []string{"proc-a-" + sandboxtest.RandomSuffix(), "proc-b-" + sandboxtest.RandomSuffix()}
		procs := make([]*process, len(workers))
		// The password reaches the binaries as in a Deployment: through
		// the environment.
		password := env.Credentials(bus.RoleOrchestrator).Password
		for i, id := range workers {
			procs[i] = startProcess(t, bin, password, "--worker-id", id, "--nats-url", env.URL, "--bus-prefix", env.Topology.Prefix,
				"--kubeconfig", kubeconfig, "--metrics-addr", "127.0.0.1:0", "--concurrency", "2")
		}
		for _, p := range procs {
			p.waitLog(t, "worker pulling commands", 60*time.Second)
		}

		statuses := watchStatuses(t, env)
		var stores []string
		for range 6 {
			id := "p" + sandboxtest.RandomSuffix()
			sandboxtest.CleanupNamespace(t, storeid.Namespace(id))
			stores = append(stores, id)
		}
		start := time.Now()
		for _, id := range stores {
			publishProvision(t, env, id)
		}
		statuses.wait(t, func(s map[string]storev1.Phase) bool {
			for _, id := range stores {
				if s[id] != storev1.Phase_PHASE_READY {
					return false
				}
			}
			return true
		}, 60*time.Second)
		t.Logf("6 commands to 6 READY stores with 2 processes: %s", time.Since(start).Round(time.Millisecond))

		leases, err := lease.Open(context.Background(), env.JS, env.Topology)
		if err != nil {
			t.Fatal(err)
		}
		handled := map[string][]string{}
		for _, id := range stores {
			rec, ok, err := leases.Get(context.Background(), id)
			if err != nil || !ok {
				t.Fatalf("lease of %s: %v %v", id, ok, err)
			}
			handled[rec.Holder] = append(handled[rec.Holder], id)
		}
		t.Logf("stores by worker (lease holder): %v", handled)
		for i, w := range workers {
			if len(handled[w]) == 0 {
				t.Errorf("worker %s handled no store; handled: %v", w, handled)
			}
			if n := procs[i].countLogs("command handled"); n != len(handled[w]) {
				t.Errorf("worker %s logged %d commands handled, its leases say %d", w, n, len(handled[w]))
			}
		}

		for _, p := range procs {
			p.stop(t)
		}
	})
}

// buildOrchestrator builds cmd/orchestrator with `go build`.
func buildOrchestrator(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "orchestrator")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/orchestrator")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a running orchestrator binary whose JSON log is collected.
type process struct {
	cmd  *exec.Cmd
	done chan error

	mu   sync.Mutex
	logs []map[string]any
}

// startProcess runs bin with args and natsPassword in $STOREPROV_NATS_PASSWORD.
func startProcess(t *testing.T, bin, natsPassword string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), bus.PasswordEnv+"="+natsPassword)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				line = map[string]any{"msg": sc.Text()}
			}
			p.mu.Lock()
			p.logs = append(p.logs, line)
			p.mu.Unlock()
		}
	}()
	go func() { <-scanned; p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done //nolint:errcheck // the exit of a killed process: its error says killed
		}
		if t.Failed() {
			p.mu.Lock()
			for _, l := range p.logs {
				t.Logf("%s: %v", filepath.Base(bin), l)
			}
			p.mu.Unlock()
		}
	})
	return p
}

func (p *process) waitLog(t *testing.T, msg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.countLogs(msg) == 0 {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("orchestrator exited before logging %q: %v", msg, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("orchestrator did not log %q within %s", msg, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *process) countLogs(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("orchestrator exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("orchestrator did not exit within 30s of SIGTERM")
	}
}

func publishProvision(t *testing.T, env *bustest.Env, id string) {
	t.Helper()
	cmd := &eventsv1.ProvisionCommand{
		StoreId: id, Generation: 1, Action: eventsv1.Action_ACTION_PROVISION,
		Spec:      &eventsv1.StoreSpec{DisplayName: "Shop", Engine: storev1.Engine_ENGINE_WOOCOMMERCE, Owner: "alice"},
		Actor:     "alice",
		IssueTime: timestamppb.Now(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, env.JS, env.Topology.CommandSubject(id), lifecycle.CommandID(id, 1), cmd); err != nil {
		t.Fatal(err)
	}
}

// statuses holds the latest phase of every store, from the events stream.
type statuses struct {
	mu     sync.Mutex
	phases map[string]storev1.Phase
}

func watchStatuses(t *testing.T, env *bustest.Env) *statuses {
	t.Helper()
	cons, err := env.JS.OrderedConsumer(context.Background(), env.Topology.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{env.Topology.Prefix + ".status.>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	s := &statuses{phases: map[string]storev1.Phase{}}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var ev eventsv1.StoreStatusChanged
		if bus.Decode(msg, &ev) != nil {
			return
		}
		s.mu.Lock()
		s.phases[ev.GetStoreId()] = ev.GetPhase()
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return s
}

func (s *statuses) wait(t *testing.T, ok func(map[string]storev1.Phase) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		done := ok(s.phases)
		snapshot := fmt.Sprint(s.phases)
		s.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, phases are %s", timeout, snapshot)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
