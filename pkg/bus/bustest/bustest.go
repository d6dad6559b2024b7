// Package bustest gives tests a NATS JetStream server: always an embedded
// one, and also the external server named by $STOREPROV_TEST_NATS_URL when
// it is set. Each test gets a topology of its own (a random prefix), so
// tests never see each other's messages. A configured server that cannot
// be reached fails the test.
//
// The embedded server runs as in production: each role signs in with its
// own password and gets bus.Topology.Permissions, so a service under test
// that needs a right its role lacks fails. The test's own connection signs
// in as TestUser, who may do anything. The external server has no
// accounts: every connection there may do anything.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/storeprov/storeprov/pkg/bus"
)

// URLEnv names the environment variable of an external NATS server.
const URLEnv = "STOREPROV_TEST_NATS_URL"

// TestUser is the embedded server's user of Env.Conn, allowed every
// subject; only tests have it.
const TestUser = "test"

// Env is one NATS server prepared for a test.
type Env struct {
	// URL to connect to.
	URL string
	// Conn and JS are a connection for the test's own use, allowed every
	// subject.
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Topology has a prefix unique to the test and is already ensured.
	Topology bus.Topology
	// Server is the embedded server, nil for an external one. Tests may
	// shut it down and start it again with Restart.
	Server *server.Server
	dir    string
	port   int
	// passwords of the roles and of TestUser on the embedded server.
	passwords    map[bus.Role]string
	testPassword string
}

// Each runs f as a subtest on the embedded server and, when
// $STOREPROV_TEST_NATS_URL is set, on the external one.
func Each(t *testing.T, f func(t *testing.T, env *Env)) {
	t.Run("embedded-nats", func(t *testing.T) { f(t, Embedded(t)) })
	if url := os.Getenv(URLEnv); url != "" {
		t.Run("external-nats", func(t *testing.T) { f(t, External(t, url)) })
	}
}

// Embedded starts an in-process server that stops when the test ends.
func Embedded(t testing.TB) *Env {
	t.Helper()
	env := &Env{
		dir:          t.TempDir(),
		port:         -1,
		Topology:     newTopology(),
		passwords:    map[bus.Role]string{},
		testPassword: rand.Text(),
	}
	for _, role := range bus.Roles() {
		env.passwords[role] = rand.Text()
	}
	env.start(t)
	env.URL = env.Server.ClientURL()
	env.port = env.Server.Addr().(*net.TCPAddr).Port
	env.connect(t)
	return env
}

// External connects to the server at url; it fails the test if it cannot.
func External(t testing.TB, url string) *Env {
	t.Helper()
	env := &Env{URL: url, Topology: newTopology()}
	env.connect(t)
	t.Cleanup(func() { env.deleteTopology() })
	return env
}

// Stop shuts the embedded server down, as a crash or outage would.
func (e *Env) Stop(t testing.TB) {
	t.Helper()
	if e.Server == nil {
		t.Fatal("Stop needs the embedded server")
	}
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// Restart starts the embedded server again on the same address and data
// directory.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	if e.Server == nil {
		t.Fatal("Restart needs the embedded server")
	}
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	e.start(t)
}

// Credentials are what the service of role signs in with: its password
// on the embedded server, none on the external one.
func (e *Env) Credentials(role bus.Role) bus.Credentials {
	return bus.Credentials{User: string(role), Password: e.passwords[role]}
}

// ConnectAs connects as role, with the options its service uses, until
// the test ends.
func (e *Env) ConnectAs(t testing.TB, role bus.Role) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) }) // runs after the connection closed
	opts := append(e.Topology.ConnectOptions(role, e.Credentials(role), slog.New(slog.NewTextHandler(w, nil))),
		nats.Timeout(5*time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	return e.dial(t, opts...)
}

func (e *Env) start(t testing.TB) {
	t.Helper()
	s, err := bus.RunEmbedded(bus.EmbeddedOptions{
		Dir: e.dir, Host: "127.0.0.1", Port: e.port, Topology: e.Topology,
		Passwords: e.passwords, Superusers: map[string]string{TestUser: e.testPassword},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	e.Server = s
}

// connect opens the test's own connection and ensures the topology as
// every role would.
func (e *Env) connect(t testing.TB) {
	t.Helper()
	opts := []nats.Option{nats.Timeout(5 * time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	if e.testPassword != "" {
		opts = append(opts, nats.UserInfo(TestUser, e.testPassword))
	}
	e.Conn, e.JS = e.dial(t, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, role := range bus.Roles() {
		if err := e.Topology.Ensure(ctx, e.JS, role, bus.Options{}); err != nil {
			t.Fatalf("cannot create the test topology on %s: %v", e.URL, err)
		}
	}
}

func (e *Env) dial(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(e.URL, opts...)
	if err != nil {
		t.Fatalf("cannot connect to NATS at %s (set by %s or embedded): %v", e.URL, URLEnv, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func newTopology() bus.Topology { return bus.Topology{Prefix: "t" + randomHex(), Replicas: 1} }

// testWriter sends a connection's log lines to the test's log until the
// test ends.
type testWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (e *Env) deleteTopology() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.Topology.Remove(ctx, e.JS)
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
