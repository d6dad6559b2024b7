// Package devstack runs the whole platform on one machine: an embedded NATS
// JetStream server (or an external one), and the api, audit, gateway and
// orchestrator services as separate processes built from this repository,
// against the sandbox cluster. `make dev` and the end-to-end tests use it.
package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/storeprov/storeprov/pkg/bus"
)

// Commands are the service binaries, by name, and their main packages.
var commands = map[string]string{
	"api":          "./services/api/cmd/api",
	"audit":        "./services/audit/cmd/audit",
	"gateway":      "./services/gateway/cmd/gateway",
	"orchestrator": "./services/orchestrator/cmd/orchestrator",
	"storectl":     "./cmd/storectl",
}

// Config describes a stack.
type Config struct {
	// Root is the repository root (it holds go.work).
	Root string
	// DataDir holds the databases, NATS data, logs and the admin token.
	DataDir string
	// BinDir receives the built binaries.
	BinDir string
	// Kubeconfig of the cluster the orchestrators manage.
	Kubeconfig string
	// NATSURL of an external server; empty starts an embedded one on NATSPort.
	NATSURL  string
	NATSPort int
	// APIDatabaseURL and AuditDatabaseURL; empty means SQLite files in DataDir.
	APIDatabaseURL   string
	AuditDatabaseURL string
	// BusPrefix isolates this stack's streams on a shared NATS server.
	BusPrefix string
	// Listen addresses; port 0 picks a free port.
	GatewayPort, APIPort, AuditPort int
	// Orchestrators is the number of orchestrator processes.
	Orchestrators int
	// OrchestratorArgs are extra flags for every orchestrator.
	OrchestratorArgs []string
	// Logs receives every service's output, each line prefixed by its name.
	Logs io.Writer
}

// Stack is a running platform.
type Stack struct {
	GatewayURL string
	APIAddr    string
	AuditAddr  string
	NATSURL    string
	// Token is the first admin's API token.
	Token string
	// Orchestrators are the orchestrator processes, for fault tests.
	Orchestrators []*exec.Cmd

	nats   *server.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	exited []string
}

// Build compiles the service binaries into cfg.BinDir.
func Build(ctx context.Context, root, binDir string) error {
	args := []string{"build", "-o", binDir + string(os.PathSeparator)}
	for _, pkg := range commands {
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// Start starts the stack and waits until the gateway answers and the admin
// token exists. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Orchestrators <= 0 {
		cfg.Orchestrators = 2
	}
	if cfg.BusPrefix == "" {
		cfg.BusPrefix = "storeprov"
	}
	if cfg.Logs == nil {
		cfg.Logs = io.Discard
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Stack{cancel: cancel}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	s.NATSURL = cfg.NATSURL
	if s.NATSURL == "" {
		s.nats, err = bus.RunEmbedded(filepath.Join(cfg.DataDir, "nats"), "127.0.0.1", cfg.NATSPort)
		if err != nil {
			return nil, err
		}
		s.NATSURL = s.nats.ClientURL()
	}
	if err := freePorts(&cfg.GatewayPort, &cfg.APIPort, &cfg.AuditPort); err != nil {
		return nil, err
	}
	s.APIAddr = "127.0.0.1:" + strconv.Itoa(cfg.APIPort)
	s.AuditAddr = "127.0.0.1:" + strconv.Itoa(cfg.AuditPort)
	s.GatewayURL = "http://127.0.0.1:" + strconv.Itoa(cfg.GatewayPort)
	apiDB := cfg.APIDatabaseURL
	if apiDB == "" {
		apiDB = "sqlite://" + filepath.Join(cfg.DataDir, "api.db")
	}
	auditDB := cfg.AuditDatabaseURL
	if auditDB == "" {
		auditDB = "sqlite://" + filepath.Join(cfg.DataDir, "audit.db")
	}
	tokenFile := filepath.Join(cfg.DataDir, "token")
	common := []string{"--nats-url", s.NATSURL, "--bus-prefix", cfg.BusPrefix}

	s.run(runCtx, cfg, "api", append([]string{
		"--database-url", apiDB, "--grpc-addr", s.APIAddr, "--metrics-addr", "127.0.0.1:0", "--admin-token-file", tokenFile,
	}, common...))
	s.run(runCtx, cfg, "audit", append([]string{
		"--database-url", auditDB, "--grpc-addr", s.AuditAddr, "--metrics-addr", "127.0.0.1:0", "--api-addr", s.APIAddr,
	}, common...))
	for i := range cfg.Orchestrators {
		args := append([]string{"--kubeconfig", cfg.Kubeconfig, "--metrics-addr", "127.0.0.1:0"}, common...)
		s.Orchestrators = append(s.Orchestrators, s.run(runCtx, cfg, fmt.Sprintf("orchestrator-%d", i+1), append(args, cfg.OrchestratorArgs...)))
	}
	s.run(runCtx, cfg, "gateway", []string{
		"--http-addr", "127.0.0.1:" + strconv.Itoa(cfg.GatewayPort), "--api-addr", s.APIAddr, "--audit-addr", s.AuditAddr,
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		token, _ := os.ReadFile(tokenFile)
		if len(token) > 0 && reachable(s.GatewayURL) && reachable("http://"+s.AuditAddr) {
			s.Token = strings.TrimSpace(string(token))
			return s, nil
		}
		if exited := s.Exited(); len(exited) > 0 {
			return nil, fmt.Errorf("services exited during start: %s (see their logs)", strings.Join(exited, ", "))
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the stack did not become ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Exited lists the services that stopped on their own.
func (s *Stack) Exited() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.exited...)
}

// Stop ends every service with SIGTERM (SIGKILL after 10 s), then NATS.
func (s *Stack) Stop() {
	s.cancel()
	s.wg.Wait()
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
}

// run starts a service process that lives until ctx is done.
func (s *Stack) run(ctx context.Context, cfg Config, name string, args []string) *exec.Cmd {
	bin := strings.SplitN(name, "-", 2)[0]
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, bin), args...)
	cmd.Dir = cfg.DataDir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	s.wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(cfg.Logs, "%-15s %s\n", "["+name+"]", sc.Text())
		}
	})
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(cfg.Logs, "[%s] cannot start: %v\n", name, err)
		pw.Close()
		s.markExited(name)
		return cmd
	}
	s.wg.Go(func() {
		err := cmd.Wait()
		pw.Close()
		if ctx.Err() == nil {
			fmt.Fprintf(cfg.Logs, "%-15s exited: %v\n", "["+name+"]", err)
			s.markExited(name)
		}
	})
	return cmd
}

func (s *Stack) markExited(name string) {
	s.mu.Lock()
	s.exited = append(s.exited, name)
	s.mu.Unlock()
}

// reachable reports whether something accepts TCP connections at the
// host:port of url.
func reachable(url string) bool {
	hostport := strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
	conn, err := net.DialTimeout("tcp", hostport, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// freePorts replaces each zero port with one that is free now.
func freePorts(ports ...*int) error {
	for _, p := range ports {
		if *p == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			*p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
	}
	return nil
}
