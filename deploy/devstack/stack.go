// Package devstack runs the whole platform on one machine: an embedded NATS
// JetStream server (or an external one), and the api, audit, gateway and
// orchestrator services as separate processes built from this repository,
// against the sandbox cluster. `make dev` and the end-to-end tests use it.
//
// The embedded server requires each service to sign in as its role, with
// a password kept in NATSAuthFile in the data directory and handed to
// the service in $STOREPROV_NATS_PASSWORD, as a Deployment does.
package devstack

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/devidp"
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
	// Orchestrators is the number of orchestrator processes (default 2).
	Orchestrators int
	// WithoutOrchestrators starts none, so that the stack needs neither a
	// cluster nor a Kubeconfig, nor an orchestrator binary: stores stay
	// PROVISIONING, which suffices to test the api and its clients.
	WithoutOrchestrators bool
	// OrchestratorArgs are extra flags for every orchestrator; APIArgs for
	// the api.
	OrchestratorArgs []string
	APIArgs          []string
	// Env is added to every service's environment (OTEL_* settings, say).
	Env []string
	// Logs receives every service's output, each line prefixed by its name.
	Logs io.Writer
	// SignIn, when set, runs a development OpenID provider and lets the
	// dashboard sign in with it.
	SignIn *DevSignIn
}

// DevSignIn describes the development OpenID provider (package devidp).
type DevSignIn struct {
	// Port of the provider; 0 picks a free port. Users keep their identity
	// across restarts only on a fixed port, since it is part of the issuer.
	Port  int
	Users []devidp.User
	// AdminEmails are the emails of the users who are admins.
	AdminEmails []string
	// AllowedDomains are the email domains whose users may sign in.
	AllowedDomains []string
}

// Stack is a running platform.
type Stack struct {
	GatewayURL string
	APIAddr    string
	AuditAddr  string
	NATSURL    string
	// Token is the first admin's API token.
	Token string
	// Orchestrators are the orchestrator processes, for fault tests;
	// RestartOrchestrators replaces them and StartOrchestrator replaces
	// one.
	Orchestrators []*exec.Cmd
	// IdP is the development OpenID provider when Config.SignIn is set.
	IdP *devidp.Server

	nats *server.Server
	// natsOpts started the embedded server; RestartNATS starts it again
	// with them, on the port it got the first time.
	natsOpts bus.EmbeddedOptions
	// natsPasswords are the roles' passwords on the embedded server; none
	// for an external one.
	natsPasswords map[bus.Role]string
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	mu            sync.Mutex
	exited        []string
	// orchestratorRuns counts orchestrator starts, for worker ids.
	orchestratorRuns int

	// The orchestrators' configuration, context and processes, for
	// RestartOrchestrators, KillOrchestrator and StartOrchestrator.
	cfg               Config
	runCtx            context.Context
	orchestratorCtx   context.Context
	stopOrchestrators context.CancelFunc
	orchestratorArgs  []string
	orchestrators     []*process
	// api and apiArgs, for KillAPI and StartAPI.
	api     *process
	apiArgs []string
}

// process is one run of a service.
type process struct {
	cmd *exec.Cmd
	// stopped is closed once the process has exited.
	stopped <-chan struct{}
	// killed marks an exit the stack caused with Kill, not a crash.
	killed atomic.Bool
	// pulling is set once an orchestrator logged that it pulls commands;
	// metricsAddr is the admin address the service logged.
	pulling     atomic.Bool
	metricsAddr atomic.Value
}

// observe notes what a line of the process's output says about it.
func (p *process) observe(line string) {
	switch {
	case strings.Contains(line, `"msg":"worker pulling commands"`):
		p.pulling.Store(true)
	case strings.Contains(line, "metrics server listening"):
		if m := logAddr.FindStringSubmatch(line); m != nil {
			p.metricsAddr.Store(m[1])
		}
	}
}

// logAddr finds the address in a log line: JSON, as every service writes
// (package serve), or logfmt.
var logAddr = regexp.MustCompile(`"?addr"?[:=]"?([0-9.]+:[0-9]+)`)

// running reports whether the process has not exited.
func (p *process) running() bool {
	select {
	case <-p.stopped:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL, as `kill -9` does, and waits until the process has
// exited.
func (p *process) kill(ctx context.Context) error {
	p.killed.Store(true)
	if p.cmd.Process != nil {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
	}
	select {
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("process %d did not exit after SIGKILL: %w", p.cmd.Process.Pid, ctx.Err())
	}
}

// Build compiles the binaries named (api, audit, gateway, orchestrator,
// storectl), or all of them when none is named, into binDir. It builds in
// the workspace of root, even when the caller's environment sets GOWORK,
// as a test of one module alone (GOWORK=off) does.
func Build(ctx context.Context, root, binDir string, names ...string) error {
	if len(names) == 0 {
		for name := range commands {
			names = append(names, name)
		}
	}
	args := []string{"build", "-o", binDir + string(os.PathSeparator)}
	for _, name := range names {
		pkg, ok := commands[name]
		if !ok {
			return fmt.Errorf("no command %q to build: name api, audit, gateway, orchestrator or storectl", name)
		}
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// Start starts the stack and waits until the gateway answers and the admin
// token exists. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	switch {
	case cfg.WithoutOrchestrators:
		cfg.Orchestrators = 0
	case cfg.Orchestrators <= 0:
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
		if s.natsPasswords, err = natsPasswords(filepath.Join(cfg.DataDir, NATSAuthFile)); err != nil {
			return nil, err
		}
		s.natsOpts = bus.EmbeddedOptions{
			Dir: filepath.Join(cfg.DataDir, "nats"), Host: "127.0.0.1", Port: cfg.NATSPort,
			Topology: bus.Topology{Prefix: cfg.BusPrefix, Replicas: 1}, Passwords: s.natsPasswords,
		}
		s.nats, err = bus.RunEmbedded(s.natsOpts)
		if err != nil {
			return nil, err
		}
		s.natsOpts.Port = s.nats.Addr().(*net.TCPAddr).Port
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
	// The api writes its first admin's token once, when its database is
	// new: each database keeps its own file, and TokenFile is a copy of the
	// running one's, so that it always works with the running api.
	dbTokenFile := DatabaseTokenFile(cfg.DataDir, apiDB)
	common := []string{"--nats-url", s.NATSURL, "--bus-prefix", cfg.BusPrefix}

	var apiSignIn, gatewaySignIn []string
	if cfg.SignIn != nil {
		if apiSignIn, gatewaySignIn, err = s.startIdP(cfg); err != nil {
			return nil, err
		}
	}

	s.apiArgs = append(append([]string{
		"--database-url", apiDB, "--grpc-addr", s.APIAddr, "--metrics-addr", "127.0.0.1:0", "--admin-token-file", dbTokenFile,
	}, common...), append(apiSignIn, cfg.APIArgs...)...)
	s.api = s.run(runCtx, cfg, "api", s.apiArgs)
	s.run(runCtx, cfg, "audit", append([]string{
		"--database-url", auditDB, "--grpc-addr", s.AuditAddr, "--metrics-addr", "127.0.0.1:0", "--api-addr", s.APIAddr,
	}, common...))
	s.cfg, s.runCtx = cfg, runCtx
	s.startOrchestrators(cfg.OrchestratorArgs)
	s.run(runCtx, cfg, "gateway", append([]string{
		"--http-addr", "127.0.0.1:" + strconv.Itoa(cfg.GatewayPort), "--metrics-addr", "127.0.0.1:0",
		"--api-addr", s.APIAddr, "--audit-addr", s.AuditAddr,
	}, gatewaySignIn...))

	deadline := time.Now().Add(60 * time.Second)
	for {
		token, _ := os.ReadFile(dbTokenFile)
		if len(token) == 0 && reachable(s.GatewayURL) {
			// A database made before tokens were kept per database: adopt
			// the shared file when its token opens this api.
			if old, _ := os.ReadFile(filepath.Join(cfg.DataDir, TokenFile)); len(old) > 0 && checkToken(s.GatewayURL, strings.TrimSpace(string(old)), "") == nil {
				if err := writeFile(dbTokenFile, old); err != nil {
					return nil, err
				}
				token = old
			}
		}
		if len(token) > 0 && reachable(s.GatewayURL) && reachable("http://"+s.AuditAddr) {
			// The api writes the token just before it serves: until it
			// does, the gateway answers 503 and the check is made again.
			s.Token = strings.TrimSpace(string(token))
			err := checkToken(s.GatewayURL, s.Token, dbTokenFile)
			switch {
			case err == nil:
				if err := writeFile(filepath.Join(cfg.DataDir, TokenFile), token); err != nil {
					return nil, err
				}
				return s, nil
			case !errors.Is(err, errNotServing) || time.Now().After(deadline):
				return nil, err
			}
		}
		if exited := s.Exited(); len(exited) > 0 {
			return nil, fmt.Errorf("services exited during start: %s (see their logs)", strings.Join(exited, ", "))
		}
		if time.Now().After(deadline) {
			if len(token) == 0 {
				return nil, fmt.Errorf("the stack did not become ready within 60s: no first admin token for this database in %s (the api writes it only when the database is new); remove the database to start afresh", dbTokenFile)
			}
			return nil, errors.New("the stack did not become ready within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TokenFile is the file in the data directory holding the running api's
// first admin token (storectl reads .cache/dev/token).
const TokenFile = "token"

// DatabaseTokenFile is where the api whose database is databaseURL writes
// its first admin's token: tokens/<engine>-<hash of the URL> in dataDir,
// so that a SQLite and a PostgreSQL database each keep their own.
func DatabaseTokenFile(dataDir, databaseURL string) string {
	engine, _, _ := strings.Cut(databaseURL, ":")
	sum := sha256.Sum256([]byte(databaseURL))
	return filepath.Join(dataDir, "tokens", engine+"-"+hex.EncodeToString(sum[:6]))
}

// errNotServing means the gateway or the api behind it does not answer yet.
var errNotServing = errors.New("not serving yet")

// checkToken asks the gateway whether token still opens the api: a
// database made before its token file was kept per database, or a token
// that expired, is reported with what to do.
func checkToken(gatewayURL, token, file string) error {
	req, err := http.NewRequest(http.MethodGet, gatewayURL+"/v1/users/me", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot check the admin token: %w: %w", errNotServing, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("cannot check the admin token: GET /v1/users/me: %w: %s", errNotServing, body)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("the api refuses the first admin's token in %s (%s): it was written for another database, or expired; remove that database (and the file) to start afresh, or put a token of this database in the file", file, strings.TrimSpace(string(body)))
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cannot check the admin token: GET /v1/users/me: %s %s", resp.Status, body)
	}
	return nil
}

// writeFile replaces path with data, readable by the owner only.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startIdP starts the development OpenID provider with a client for the
// gateway and returns the api's and the gateway's flags that use it.
func (s *Stack) startIdP(cfg Config) (apiArgs, gatewayArgs []string, err error) {
	const clientID = "storeprov-dashboard"
	secret := rand.Text()
	secretFile := filepath.Join(cfg.DataDir, "oidc-client-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	callback := s.GatewayURL + "/auth/callback"
	s.IdP, err = devidp.Start(devidp.Config{
		Addr:    "127.0.0.1:" + strconv.Itoa(cfg.SignIn.Port),
		Users:   cfg.SignIn.Users,
		Clients: []devidp.Client{{ID: clientID, Secret: secret, RedirectURIs: []string{callback}}},
	})
	if err != nil {
		return nil, nil, err
	}
	apiArgs = []string{"--oidc-issuer", s.IdP.Issuer, "--oidc-client-id", clientID, "--oidc-admin-emails", strings.Join(cfg.SignIn.AdminEmails, ","),
		"--oidc-allowed-domains", strings.Join(cfg.SignIn.AllowedDomains, ",")}
	gatewayArgs = []string{
		"--oidc-issuer", s.IdP.Issuer, "--oidc-client-id", clientID, "--oidc-client-secret-file", secretFile,
		"--oidc-redirect-url", callback, "--oidc-provider-name", "Development IdP",
	}
	return apiArgs, gatewayArgs, nil
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
	if s.IdP != nil {
		_ = s.IdP.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
}

// RestartOrchestrators stops every orchestrator process (SIGTERM: each
// hands its unfinished commands back), waits until they have exited, and
// starts as many again with args in place of Config.OrchestratorArgs, as
// a rollout of a new orchestrator configuration does; the new processes
// take up the commands on the bus. It must not run concurrently with
// itself or Stop.
func (s *Stack) RestartOrchestrators(ctx context.Context, args []string) error {
	if err := s.StopOrchestrators(ctx); err != nil {
		return err
	}
	s.startOrchestrators(args)
	return nil
}

// StopOrchestrators stops every orchestrator process (SIGTERM) and waits
// until they have exited; commands wait on the bus until
// StartOrchestrators. Neither may run concurrently with Stop.
func (s *Stack) StopOrchestrators(ctx context.Context) error {
	s.stopOrchestrators()
	for _, p := range s.orchestrators {
		select {
		case <-p.stopped:
		case <-ctx.Done():
			return fmt.Errorf("orchestrators did not stop: %w", ctx.Err())
		}
	}
	return nil
}

// StartOrchestrators starts the orchestrators again with the stack's
// configuration, after StopOrchestrators.
func (s *Stack) StartOrchestrators() { s.startOrchestrators(s.cfg.OrchestratorArgs) }

// ScaleOrchestrators stops every orchestrator (SIGTERM) and starts n with
// the stack's configuration, as scaling a Deployment to n with a rollout
// does. It must not run concurrently with the other methods that stop or
// start orchestrators.
func (s *Stack) ScaleOrchestrators(ctx context.Context, n int) error {
	if n <= 0 {
		return fmt.Errorf("cannot scale to %d orchestrators: want at least one (StopOrchestrators stops them all)", n)
	}
	if err := s.StopOrchestrators(ctx); err != nil {
		return err
	}
	s.cfg.Orchestrators = n
	s.startOrchestrators(s.cfg.OrchestratorArgs)
	return nil
}

// KillOrchestrator kills orchestrator i (0-based) with SIGKILL, as a
// crash or an OOM kill would: it hands nothing back and keeps its store
// leases until they expire. It waits until the process has exited. The
// stack does not count the exit as a service that stopped on its own.
// Callers must not run it concurrently with the other methods that stop
// or start orchestrators.
func (s *Stack) KillOrchestrator(ctx context.Context, i int) error {
	if i < 0 || i >= len(s.orchestrators) {
		return fmt.Errorf("no orchestrator %d: the stack runs %d", i, len(s.orchestrators))
	}
	return s.orchestrators[i].kill(ctx)
}

// StartOrchestrator starts orchestrator i again after KillOrchestrator,
// with the arguments it had, under a new worker id (WorkerSlot maps it
// back to i). Starting one that still runs is an error.
func (s *Stack) StartOrchestrator(i int) error {
	if i < 0 || i >= len(s.orchestrators) {
		return fmt.Errorf("no orchestrator %d: the stack runs %d", i, len(s.orchestrators))
	}
	select {
	case <-s.orchestrators[i].stopped:
	default:
		return fmt.Errorf("orchestrator %d is running", i)
	}
	s.orchestrators[i] = s.startOrchestrator(i)
	s.Orchestrators[i] = s.orchestrators[i].cmd
	return nil
}

// WorkerSlot returns the index of the orchestrator that runs, or ran,
// under workerID (the holder named in a store's lease), and false for an
// id no orchestrator of this stack had.
func (s *Stack) WorkerSlot(workerID string) (int, bool) {
	name, _, ok := strings.Cut(workerID, "-run")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(strings.TrimPrefix(name, "orchestrator-"))
	if err != nil || i < 1 || i > len(s.orchestrators) {
		return 0, false
	}
	return i - 1, true
}

// OrchestratorsPulling is how many orchestrators run and have started
// pulling commands from the work queue.
func (s *Stack) OrchestratorsPulling() int {
	n := 0
	for _, p := range s.orchestrators {
		if p.running() && p.pulling.Load() {
			n++
		}
	}
	return n
}

// OrchestratorMetricsAddrs are the admin addresses (/metrics) of the
// running orchestrators that have logged theirs.
func (s *Stack) OrchestratorMetricsAddrs() []string {
	var addrs []string
	for _, p := range s.orchestrators {
		if a, ok := p.metricsAddr.Load().(string); ok && p.running() {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// KillAPI kills the api process with SIGKILL and waits until it has
// exited; StartAPI starts it again on the same address and database.
func (s *Stack) KillAPI(ctx context.Context) error { return s.api.kill(ctx) }

// StartAPI starts the api again after KillAPI.
func (s *Stack) StartAPI() error {
	select {
	case <-s.api.stopped:
	default:
		return errors.New("the api is running")
	}
	s.api = s.run(s.runCtx, s.cfg, "api", s.apiArgs)
	return nil
}

// ErrExternalNATS means the stack uses a NATS server it did not start,
// which it cannot stop or restart.
var ErrExternalNATS = errors.New("the stack uses an external NATS server: it can restart only its embedded one")

// RestartNATS shuts the embedded NATS server down, waits for down, and
// starts it again on the same port with the same JetStream storage, as
// a restart of the server's pod does. Services reconnect on their own.
// It returns ErrExternalNATS when Config.NATSURL was set. It must not run
// concurrently with itself or Stop.
func (s *Stack) RestartNATS(ctx context.Context, down time.Duration) error {
	if s.nats == nil {
		return ErrExternalNATS
	}
	s.nats.Shutdown()
	s.nats.WaitForShutdown()
	select {
	case <-time.After(down):
	case <-ctx.Done():
	}
	// The port was just released; another process may take it in
	// between, which a retry cannot fix, so say so.
	var err error
	for range 50 {
		var ns *server.Server
		if ns, err = bus.RunEmbedded(s.natsOpts); err == nil {
			s.nats = ns
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cannot start NATS again on port %d: %w", s.natsOpts.Port, err)
}

// BusPrefix is the prefix of the stack's streams and subjects.
func (s *Stack) BusPrefix() string { return s.cfg.BusPrefix }

// DataDir is the directory of the stack's databases, NATS data and logs.
func (s *Stack) DataDir() string { return s.cfg.DataDir }

// NATSPassword is role's password on the embedded NATS server; empty for
// an external server.
func (s *Stack) NATSPassword(role bus.Role) string { return s.natsPasswords[role] }

// startOrchestrators starts Config.Orchestrators orchestrator processes
// with args after the stack's flags.
func (s *Stack) startOrchestrators(args []string) {
	s.orchestratorCtx, s.stopOrchestrators = context.WithCancel(s.runCtx)
	s.orchestratorArgs = args
	s.Orchestrators, s.orchestrators = nil, nil
	for i := range s.cfg.Orchestrators {
		p := s.startOrchestrator(i)
		s.Orchestrators = append(s.Orchestrators, p.cmd)
		s.orchestrators = append(s.orchestrators, p)
	}
}

// startOrchestrator starts orchestrator i with a worker id of its own:
// orchestrator-<i+1>-run<n>, n counting its starts, as a Deployment's
// new pod gets a new name.
func (s *Stack) startOrchestrator(i int) *process {
	s.mu.Lock()
	s.orchestratorRuns++
	run := s.orchestratorRuns
	s.mu.Unlock()
	name := fmt.Sprintf("orchestrator-%d", i+1)
	flags := append([]string{"--kubeconfig", s.cfg.Kubeconfig, "--metrics-addr", "127.0.0.1:0",
		"--nats-url", s.NATSURL, "--bus-prefix", s.cfg.BusPrefix, "--worker-id", fmt.Sprintf("%s-run%d", name, run)}, s.orchestratorArgs...)
	return s.run(s.orchestratorCtx, s.cfg, name, flags)
}

// run starts a service process that lives until ctx is done or it is
// killed. A service that connects to the
// embedded NATS server finds its password in $STOREPROV_NATS_PASSWORD;
// no service inherits one from the stack's own environment.
func (s *Stack) run(ctx context.Context, cfg Config, name string, args []string) *process {
	bin := strings.SplitN(name, "-", 2)[0]
	cmd := exec.CommandContext(ctx, filepath.Join(cfg.BinDir, bin), args...)
	cmd.Dir = cfg.DataDir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, bus.PasswordEnv+"=") })
	cmd.Env = append(cmd.Env, cfg.Env...)
	if password := s.natsPasswords[bus.Role(bin)]; password != "" {
		cmd.Env = append(cmd.Env, bus.PasswordEnv+"="+password)
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	stopped := make(chan struct{})
	p := &process{cmd: cmd, stopped: stopped}
	s.wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.observe(sc.Text())
			fmt.Fprintf(cfg.Logs, "%-15s %s\n", "["+name+"]", sc.Text())
		}
	})
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(cfg.Logs, "[%s] cannot start: %v\n", name, err)
		pw.Close()
		s.markExited(name)
		close(stopped)
		return p
	}
	s.wg.Go(func() {
		defer close(stopped)
		err := cmd.Wait()
		pw.Close()
		switch {
		case p.killed.Load():
			fmt.Fprintf(cfg.Logs, "%-15s killed: %v\n", "["+name+"]", err)
		case ctx.Err() == nil:
			fmt.Fprintf(cfg.Logs, "%-15s exited: %v\n", "["+name+"]", err)
			s.markExited(name)
		}
	})
	return p
}

// NATSAuthFile, in the data directory, holds the password of each role on
// the embedded NATS server as a JSON object, role → password.
const NATSAuthFile = "nats-auth.json"

// natsPasswords reads the roles' passwords from path, or makes new random
// ones and writes them there (mode 0600) when it does not exist yet, so
// a data directory keeps its passwords across restarts.
func natsPasswords(path string) (map[bus.Role]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		passwords := map[bus.Role]string{}
		for _, role := range bus.Roles() {
			passwords[role] = rand.Text()
		}
		b, err := json.MarshalIndent(passwords, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("cannot keep the NATS passwords: %w", err)
		}
		return passwords, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the NATS passwords: %w", err)
	}
	var passwords map[bus.Role]string
	if err := json.Unmarshal(b, &passwords); err != nil {
		return nil, fmt.Errorf("%s is not a JSON object of role → password (%w): delete it to make new passwords", path, err)
	}
	for _, role := range bus.Roles() {
		if passwords[role] == "" {
			return nil, fmt.Errorf("%s has no password for %s: delete it to make new passwords", path, role)
		}
	}
	return passwords, nil
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

// freePorts replaces each zero port with one that is free now. The
// listeners stay open until every port is chosen, so no two are the same.
func freePorts(ports ...*int) error {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for _, p := range ports {
		if *p == 0 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			held = append(held, l)
			*p = l.Addr().(*net.TCPAddr).Port
		}
	}
	return nil
}
