package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/storeprov/storeprov/pkg/bus"
)

// Delays of a Bus.
const (
	// ReconnectWait is how long a connection waits between attempts to
	// reach NATS again; it never gives up.
	ReconnectWait = 500 * time.Millisecond
	// RetryInterval is how long EnsureTopology waits after a failed
	// attempt.
	RetryInterval = 2 * time.Second
	// AttemptTimeout bounds one attempt of EnsureTopology.
	AttemptTimeout = 10 * time.Second
)

// BusConfig says how a service connects to NATS.
type BusConfig struct {
	// URL is the NATS server (--nats-url).
	URL string
	// Credentials sign in as Role (--nats-user, --nats-password-file).
	Credentials bus.Credentials
	// Topology names the installation's streams, subjects and buckets.
	Topology bus.Topology
	// Role is the service's role: its permissions and its part of the
	// topology.
	Role bus.Role
	// Name names the connection on the server; the default is
	// storeprov-<service>.
	Name string
	// Options come after the common ones, such as the handlers of the
	// api's change fan-out.
	Options []nats.Option
}

// Bus is a service's NATS connection, with JetStream.
type Bus struct {
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Topology bus.Topology
	Role     bus.Role

	url     string
	log     *slog.Logger
	ensured atomic.Bool
}

// ConnectBus connects to NATS as c says, with the options every service
// uses (bus.Topology.ConnectOptions: its credentials and its own inbox)
// and reconnecting forever every ReconnectWait. It does not wait for the
// server: one that is down is tried again in the background, so ConnectBus
// fails only on a malformed URL or options. Check and EnsureTopology tell
// when the server is there. The caller must Close the Bus.
func (s *Service) ConnectBus(c BusConfig) (*Bus, error) {
	name := c.Name
	if name == "" {
		name = "storeprov-" + s.Name
	}
	opts := append(c.Topology.ConnectOptions(c.Role, c.Credentials, s.Log),
		nats.Name(name), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(ReconnectWait))
	nc, err := nats.Connect(c.URL, append(opts, c.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to NATS at %s: %w", c.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cannot use JetStream at %s: %w", c.URL, err)
	}
	return &Bus{Conn: nc, JS: js, Topology: c.Topology, Role: c.Role, url: c.URL, log: s.Log}, nil
}

// Close closes the connection, after sending what it still buffers (the
// acks and naks of the last messages handled).
func (b *Bus) Close() { b.Conn.Close() }

// EnsureTopology makes the Role's part of the topology exist
// (bus.Topology.Ensure with opts), then calls each of bind, which opens
// what the service uses of it (the orchestrator's lease buckets). It
// retries all of it every RetryInterval, each attempt bounded by
// AttemptTimeout and each failure logged, for as long as ctx lasts: NATS
// being down delays a service, it is no configuration error. It returns
// nil once it succeeded, and ctx's error when ctx ended first.
func (b *Bus) EnsureTopology(ctx context.Context, opts bus.Options, bind ...func(ctx context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, AttemptTimeout)
		err := b.Topology.Ensure(attempt, b.JS, b.Role, opts)
		for _, f := range bind {
			if err != nil {
				break
			}
			err = f(attempt)
		}
		cancel()
		if err == nil {
			b.ensured.Store(true)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Warn("cannot ensure the bus topology; retrying", "role", b.Role, "retry_in", RetryInterval, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(RetryInterval):
		}
	}
}

// Check is the readiness check "nats": the connection is up and
// EnsureTopology succeeded once.
func (b *Bus) Check() Check {
	return Check{Name: "nats", Func: func(context.Context) error {
		switch {
		case !b.Conn.IsConnected():
			return fmt.Errorf("not connected to %s", b.url)
		case !b.ensured.Load():
			return errNotEnsured
		}
		return nil
	}}
}

// errNotEnsured is the "nats" check's error before EnsureTopology
// succeeded.
var errNotEnsured = errors.New("the bus topology is not ensured yet")
