package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/deploy/devstack/devstacktest"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// The tests that need the platform share one: the api, audit and gateway
// built from this repository, with SQLite databases and an embedded NATS
// server, and no orchestrator, so that stores stay PROVISIONING. Each test
// works as users of its own (newUser) and sees only their stores.
var (
	stackOnce sync.Once
	stack     *devstack.Stack
	stackErr  error
	stackLogs devstack.Logs
	stackData string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stack != nil {
		stack.Stop()
	}
	if code != 0 && stackLogs.String() != "" {
		fmt.Fprintf(os.Stderr, "service logs:\n%s", stackLogs.String())
	}
	if stackData != "" {
		os.RemoveAll(stackData)
	}
	devstacktest.RemoveBinaries()
	os.Exit(code)
}

// startStack builds and starts the shared platform on first use, and
// fails the test when it cannot.
func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	stackOnce.Do(func() {
		stack, stackErr = newStack(context.Background())
	})
	if stackErr != nil {
		t.Fatalf("cannot start the api, audit and gateway: %v\n%s", stackErr, stackLogs.String())
	}
	return stack
}

func newStack(ctx context.Context) (*devstack.Stack, error) {
	root, err := devstacktest.Root()
	if err != nil {
		return nil, err
	}
	binDir, err := devstacktest.Binaries("api", "audit", "gateway")
	if err != nil {
		return nil, err
	}
	if stackData, err = os.MkdirTemp("", "storectl-test-data"); err != nil {
		return nil, err
	}
	return devstack.Start(ctx, devstack.Config{
		Root: root, DataDir: stackData, BinDir: binDir, NATSPort: -1,
		BusPrefix: "storectl", WithoutOrchestrators: true, Logs: &stackLogs,
	})
}

// result is what one run of storectl printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// storectl runs storectl with args against the shared platform, with token.
func storectl(t *testing.T, token string, args ...string) result {
	t.Helper()
	s := startStack(t)
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"--api", s.APIAddr, "--audit", s.AuditAddr, "--token", token}, args...), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// mustRun runs storectl as storectl does and fails the test unless it
// succeeds.
func mustRun(t *testing.T, token string, args ...string) string {
	t.Helper()
	r := storectl(t, token, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("storectl %s: exit status %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// runJSON runs storectl with -o json and reads its output, one message a
// line, with newMsg making each.
func runJSON[M proto.Message](t *testing.T, token string, newMsg func() M, args ...string) []M {
	t.Helper()
	out := mustRun(t, token, append([]string{"-o", "json"}, args...)...)
	var msgs []M
	for line := range strings.Lines(out) {
		m := newMsg()
		if err := protojson.Unmarshal([]byte(line), m); err != nil {
			t.Fatalf("storectl %s printed %q, not a %T: %v", strings.Join(args, " "), line, m, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func newStore() *storev1.Store { return &storev1.Store{} }

// adminToken is the first admin's token of the shared platform.
func adminToken(t *testing.T) string {
	t.Helper()
	return startStack(t).Token
}

var users atomic.Int64

// newUser makes a user of its own for the test, named after base, and
// returns its name and an API token of it.
func newUser(t *testing.T, base string) (name, token string) {
	t.Helper()
	name = fmt.Sprintf("%s-%d", base, users.Add(1))
	resp := runJSON(t, adminToken(t), func() *storev1.CreateTokenResponse { return &storev1.CreateTokenResponse{} },
		"token", "create", "--user", name, "--description", "storectl test")
	if len(resp) != 1 || resp[0].GetToken() == "" {
		t.Fatalf("token create --user %s printed %v, want one token", name, resp)
	}
	return name, resp[0].GetToken()
}
