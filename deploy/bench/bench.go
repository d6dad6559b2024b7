// Package bench measures the platform against what it replaces: each
// figure is taken beside its baseline on the same cluster, the same chart
// and the same machine, in one run, and reported as a ratio. The baseline
// of provisioning is the helm CLI (`helm install --wait --wait-for-jobs`
// into a prepared namespace) and of deletion `kubectl delete namespace
// --wait`; both run the sandbox's own binaries.
//
// Timings on a shared machine are noisy, so nothing here asserts a figure:
// `make bench` prints and records them (docs/benchmarks.md), and the
// smoke form in `make test` only proves that every measurement still runs.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/database"
)

// Form is how much work each measurement does.
type Form struct {
	// Name is "full" or "smoke".
	Name string
	// Single is how many stores are created, and deleted, one at a time.
	Single int
	// Burst is how many stores are submitted at once.
	Burst int
	// Workers are the orchestrator counts of the scaling runs; the first
	// must be 1.
	Workers []int
	// Rate is the requests per second of the latency runs, For their
	// length, Users how many users share them.
	Rate  int
	For   time.Duration
	Users int
	// Idle is how many READY stores the memory figure is taken with.
	Idle int
	// Settle bounds each wait for stores: a deadline, not a measurement.
	Settle time.Duration
	// Nodes are the fake nodes the run adds to the sandbox's, for room.
	Nodes int
}

// Full is the form of `make bench`.
var Full = Form{Name: "full", Single: 5, Burst: 40, Workers: []int{1, 2, 4}, Rate: 200, For: 20 * time.Second, Users: 20, Idle: 200, Settle: 10 * time.Minute, Nodes: 20}

// Smoke is the form `make test` runs so the benchmark cannot rot: a few
// stores, a second of load; its figures mean nothing.
var Smoke = Form{Name: "smoke", Single: 1, Burst: 3, Workers: []int{1, 2}, Rate: 20, For: 2 * time.Second, Users: 2, Idle: 4, Settle: 4 * time.Minute}

// Concurrency is each orchestrator's --concurrency in every run, the
// default; the helm CLI baseline runs workers × Concurrency installs at
// once.
const Concurrency = 4

// Config is where the benchmark runs.
type Config struct {
	// Root is the repository root; BinDir receives the service binaries.
	Root, BinDir string
	// Kubeconfig of the sandbox cluster; Helm and Kubectl are its CLIs.
	Kubeconfig, Helm, Kubectl string
	// PostgresURL and NATSURL, when set, are a PostgreSQL server (the run
	// uses a fresh schema of it) and an external NATS server (the run uses
	// its own bus prefix); otherwise SQLite and an embedded server.
	PostgresURL, NATSURL string
	Form                 Form
	// Logs receives the services' output; Progress a line per step.
	Logs, Progress io.Writer
}

// Run stands up the platform as `make dev` does and takes every figure.
// It removes what it made (stores, namespaces, schema, streams) before it
// returns, also on error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Logs == nil {
		cfg.Logs = io.Discard
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if len(cfg.Form.Workers) == 0 || cfg.Form.Workers[0] != 1 {
		return nil, fmt.Errorf("form %s: the scaling runs must start with 1 worker, have %v", cfg.Form.Name, cfg.Form.Workers)
	}
	kc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cannot read kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	kc.QPS, kc.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(kc)
	if err != nil {
		return nil, err
	}
	removeNodes, err := addNodes(ctx, kube, cfg.Form.Nodes)
	defer removeNodes()
	if err != nil {
		return nil, err
	}
	dataDir, err := os.MkdirTemp("", "storeprov-bench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dataDir)

	db := "sqlite"
	apiDB, auditDB := "", ""
	if cfg.PostgresURL != "" {
		db = "postgres"
		var drop func()
		if apiDB, auditDB, drop, err = freshSchemas(ctx, cfg.PostgresURL); err != nil {
			return nil, err
		}
		defer drop()
	}
	prefix := "bench" + randomHex()
	if cfg.NATSURL != "" {
		defer removeTopology(cfg.NATSURL, prefix)
	}
	spans, err := startSpanCollector()
	if err != nil {
		return nil, err
	}
	defer spans.close()
	progress(cfg, "building the services and starting the platform (%s, %s NATS)", db, map[bool]string{true: "external", false: "embedded"}[cfg.NATSURL != ""])
	if err := devstack.Build(ctx, cfg.Root, cfg.BinDir); err != nil {
		return nil, err
	}
	stack, err := devstack.Start(ctx, devstack.Config{
		Root: cfg.Root, DataDir: dataDir, BinDir: cfg.BinDir, Kubeconfig: cfg.Kubeconfig,
		NATSURL: cfg.NATSURL, NATSPort: -1, APIDatabaseURL: apiDB, AuditDatabaseURL: auditDB,
		BusPrefix: prefix, Orchestrators: 2, Logs: cfg.Logs,
		OrchestratorArgs: []string{"--concurrency", fmt.Sprint(Concurrency)},
		// Idle stores are verified once a minute, so the memory figure
		// includes what a resync costs.
		APIArgs: []string{"--resync-interval", "1m"},
		// Every service sends its spans to the benchmark, at once.
		Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + spans.url, "OTEL_BSP_SCHEDULE_DELAY=200"},
	})
	if err != nil {
		return nil, fmt.Errorf("cannot start the platform: %w", err)
	}
	defer stack.Stop()

	r := &run{cfg: cfg, stack: stack, kube: kube, spans: spans, report: &Report{
		Form: cfg.Form.Name, Database: db, NATS: cfg.NATSURL != "", Started: time.Now(), Rate: cfg.Form.Rate, For: cfg.Form.For,
	}}
	defer r.cleanup()
	if err := r.measure(ctx); err != nil {
		return r.report, err
	}
	r.report.Took = time.Since(r.report.Started)
	return r.report, nil
}

// measure takes the figures in an order that leaves the cluster as each
// needs it: provisioning first (single, burst, scaling), then the idle
// fleet's memory, deletion, and last the api's latency with the
// orchestrators stopped, since its creates are never provisioned.
func (r *run) measure(ctx context.Context) error {
	var err error
	if r.users, err = newUsers(ctx, r.stack, r.cfg.Form.Users); err != nil {
		return err
	}
	if err := r.waitWorkers(ctx, 2); err != nil {
		return err
	}
	sleepCtx(ctx, 3*time.Second)
	if r.report.Memory.Empty, err = r.orchestratorsRSS(); err != nil {
		return err
	}
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"one store, create → READY", r.single},
		{"stores submitted at once", r.burst},
		{"scaling with workers", r.scaling},
		{"orchestrator memory with idle READY stores", r.memory},
		{"delete → DELETED", r.deletes},
		{"api latency", r.latency},
	}
	for _, s := range steps {
		progress(r.cfg, "%s", s.name)
		if err := s.do(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func progress(cfg Config, format string, args ...any) {
	fmt.Fprintf(cfg.Progress, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// freshSchemas makes two schemas on the PostgreSQL server at serverURL,
// one per service, and returns their URLs and a function that drops them.
func freshSchemas(ctx context.Context, serverURL string) (apiURL, auditURL string, drop func(), err error) {
	db, err := database.Open(ctx, serverURL)
	if err != nil {
		return "", "", nil, fmt.Errorf("PostgreSQL at the configured URL cannot be used: %w", err)
	}
	var schemas []string
	drop = func() {
		for _, s := range schemas {
			_, _ = db.ExecContext(context.Background(), "DROP SCHEMA "+s+" CASCADE")
		}
		db.Close()
	}
	var urls []string
	for range 2 {
		s := "bench_" + randomHex()
		if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+s); err != nil {
			drop()
			return "", "", nil, fmt.Errorf("cannot create schema %s: %w", s, err)
		}
		schemas = append(schemas, s)
		u, err := database.WithSearchPath(serverURL, s)
		if err != nil {
			drop()
			return "", "", nil, err
		}
		urls = append(urls, u)
	}
	return urls[0], urls[1], drop, nil
}

// removeTopology deletes the run's streams and buckets from the external
// NATS server: the latency runs leave thousands of commands there.
func removeTopology(url, prefix string) {
	nc, err := nats.Connect(url)
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = bus.Topology{Prefix: prefix}.Remove(ctx, js)
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DefaultBinDir is where `make bench` builds the services.
func DefaultBinDir(root string) string { return filepath.Join(root, ".cache", "bin") }

// PostgresURLEnv and NATSURLEnv name the servers a run uses when set, the
// same variables as the tests'.
const (
	PostgresURLEnv = "STOREPROV_TEST_POSTGRES_URL"
	NATSURLEnv     = "STOREPROV_TEST_NATS_URL"
)
