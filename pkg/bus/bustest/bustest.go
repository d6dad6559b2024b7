// Package bustest gives tests a NATS JetStream server: always an embedded
// one, and also the external server named by $STOREPROV_TEST_NATS_URL when
// it is set. Each test gets a topology of its own (a random prefix), so
// tests never see each other's messages. A configured server that cannot
// be reached fails the test.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/storeprov/storeprov/pkg/bus"
)

// URLEnv names the environment variable of an external NATS server.
const URLEnv = "STOREPROV_TEST_NATS_URL"

// Env is one NATS server prepared for a test.
type Env struct {
	// URL to connect to.
	URL string
	// Conn and JS are a connection for the test's own use.
	Conn *nats.Conn
	JS   jetstream.JetStream
	// Topology has a prefix unique to the test and is already ensured.
	Topology bus.Topology
	// Server is the embedded server, nil for an external one. Tests may
	// shut it down and start it again with Restart.
	Server *server.Server
	dir    string
	port   int
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
	dir := t.TempDir()
	s, err := bus.RunEmbedded(dir, "127.0.0.1", -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	env := &Env{URL: s.ClientURL(), Server: s, dir: dir, port: s.Addr().(*net.TCPAddr).Port}
	env.connect(t)
	return env
}

// External connects to the server at url; it fails the test if it cannot.
func External(t testing.TB, url string) *Env {
	t.Helper()
	env := &Env{URL: url}
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
	s, err := bus.RunEmbedded(e.dir, "127.0.0.1", e.port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	e.Server = s
}

func (e *Env) connect(t testing.TB) {
	t.Helper()
	nc, err := nats.Connect(e.URL, nats.Timeout(5*time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("cannot connect to NATS at %s (set by %s or embedded): %v", e.URL, URLEnv, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.Conn, e.JS = nc, js
	e.Topology = bus.Topology{Prefix: "t" + randomHex(), Replicas: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Topology.Ensure(ctx, js, bus.Options{}); err != nil {
		t.Fatalf("cannot create the test topology on %s: %v", e.URL, err)
	}
}

func (e *Env) deleteTopology() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.JS.DeleteStream(ctx, e.Topology.CommandsStream())
	_ = e.JS.DeleteStream(ctx, e.Topology.EventsStream())
	_ = e.JS.DeleteKeyValue(ctx, e.Topology.LeaseBucket())
}

func randomHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
