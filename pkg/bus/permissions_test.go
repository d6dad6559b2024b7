package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
)

// roleConn is a connection as one role that records what the server
// refused it.
type roleConn struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	refused chan error
}

func connectAs(t *testing.T, env *bustest.Env, role bus.Role) *roleConn {
	t.Helper()
	c := &roleConn{refused: make(chan error, 16)}
	opts := append(env.Topology.ConnectOptions(role, env.Credentials(role), slog.New(slog.DiscardHandler)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.refused <- err
			}
		}))
	nc, err := nats.Connect(env.URL, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	c.js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.nc = nc
	return c
}

// expectRefused waits for the server to refuse subject.
func (c *roleConn) expectRefused(t *testing.T, subject, reason string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-c.refused:
			if strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
			t.Logf("refused something else: %v", err)
		case <-deadline:
			t.Fatalf("the server did not refuse %s (%s)", subject, reason)
		}
	}
}

// expectNothingRefused checks that the server refused nothing so far.
func (c *roleConn) expectNothingRefused(t *testing.T) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.refused:
		t.Errorf("refused: %v", err)
	default:
	}
}

func publishCommand(ctx context.Context, js jetstream.JetStream, topo bus.Topology, id string) error {
	return bus.Publish(ctx, js, topo.CommandSubject(id), "cmd-"+id, &eventsv1.ProvisionCommand{StoreId: id, Generation: 1})
}

func publishStatus(ctx context.Context, js jetstream.JetStream, topo bus.Topology, id string) error {
	return bus.Publish(ctx, js, topo.StatusSubject(id), "status-"+id, &eventsv1.StoreStatusChanged{StoreId: id, ObservedGeneration: 1})
}

// publishAudit publishes an audit event as the orchestrator does.
func publishAudit(ctx context.Context, js jetstream.JetStream, topo bus.Topology, id string) error {
	return bus.Publish(ctx, js, topo.AuditSubject(bus.RoleOrchestrator, id), "audit-"+id, &eventsv1.AuditEvent{})
}

// publishAPIAudit publishes an audit event as the api does.
func publishAPIAudit(ctx context.Context, js jetstream.JetStream, topo bus.Topology, id string) error {
	return bus.Publish(ctx, js, topo.AuditSubject(bus.RoleAPI, id), "audit-"+id, &eventsv1.AuditEvent{})
}

// takeOne pulls one message from the role's consumer and acks it.
func takeOne(t *testing.T, ctx context.Context, js jetstream.JetStream, stream, consumer string) jetstream.Msg {
	t.Helper()
	cons, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		t.Fatalf("bind %s on %s: %v", consumer, stream, err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("next from %s: %v", consumer, err)
	}
	if err := msg.InProgress(); err != nil {
		t.Fatal(err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("ack on %s: %v", consumer, err)
	}
	return msg
}

func TestEachRoleCanDoItsServicesWork(t *testing.T) {
	env := bustest.Embedded(t)
	topo := env.Topology
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("orchestrator", func(t *testing.T) {
		c := connectAs(t, env, bus.RoleOrchestrator)
		if err := topo.Ensure(ctx, c.js, bus.RoleOrchestrator, bus.Options{}); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if err := publishCommand(ctx, env.JS, topo, "o1"); err != nil {
			t.Fatal(err)
		}
		if got := takeOne(t, ctx, c.js, topo.CommandsStream(), bus.OrchestratorConsumer); got.Subject() != topo.CommandSubject("o1") {
			t.Errorf("pulled %s, want the command for o1", got.Subject())
		}
		for _, publish := range []func(context.Context, jetstream.JetStream, bus.Topology, string) error{publishStatus, publishAudit, publishCommand} {
			if err := publish(ctx, c.js, topo, "o2"); err != nil {
				t.Errorf("publish: %v", err)
			}
		}
		kv, err := c.js.KeyValue(ctx, topo.LeaseBucket())
		if err != nil {
			t.Fatal(err)
		}
		rev, err := kv.Create(ctx, "o1", []byte("held"))
		if err != nil {
			t.Fatalf("create lease: %v", err)
		}
		if _, err := kv.Update(ctx, "o1", []byte("renewed"), rev); err != nil {
			t.Fatalf("renew lease: %v", err)
		}
		if e, err := kv.Get(ctx, "o1"); err != nil || string(e.Value()) != "renewed" {
			t.Fatalf("read lease = %v, %v; want renewed", e, err)
		}
		c.expectNothingRefused(t)
	})

	t.Run("api", func(t *testing.T) {
		c := connectAs(t, env, bus.RoleAPI)
		if err := topo.Ensure(ctx, c.js, bus.RoleAPI, bus.Options{}); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if err := publishCommand(ctx, c.js, topo, "a1"); err != nil {
			t.Errorf("publish a command: %v", err)
		}
		if err := publishAPIAudit(ctx, c.js, topo, "a1"); err != nil {
			t.Errorf("publish an audit event: %v", err)
		}
		changed, err := c.nc.SubscribeSync(topo.StoreChangedSubject("*"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Publish(topo.StoreChangedSubject("a1"), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := changed.NextMsg(5 * time.Second); err != nil {
			t.Errorf("store change not received: %v", err)
		}
		if err := publishStatus(ctx, env.JS, topo, "a1"); err != nil {
			t.Fatal(err)
		}
		takeOne(t, ctx, c.js, topo.EventsStream(), bus.APIStatusConsumer)
		c.expectNothingRefused(t)
	})

	t.Run("audit", func(t *testing.T) {
		c := connectAs(t, env, bus.RoleAudit)
		if err := topo.Ensure(ctx, c.js, bus.RoleAudit, bus.Options{}); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		takeOne(t, ctx, c.js, topo.EventsStream(), bus.AuditConsumer)
		c.expectNothingRefused(t)
	})
}

func TestEachRoleIsRefusedOutsideItsPermissions(t *testing.T) {
	env := bustest.Embedded(t)
	topo := env.Topology
	ctx := context.Background()
	// A message for each stream, so that a refused purge or delete would
	// have something to remove.
	if err := publishCommand(ctx, env.JS, topo, "victim"); err != nil {
		t.Fatal(err)
	}
	if err := publishAudit(ctx, env.JS, topo, "victim"); err != nil {
		t.Fatal(err)
	}
	api := func(verb, rest string) string { return "$JS.API." + verb + "." + rest }
	request := func(subject string) func(*roleConn) {
		return func(c *roleConn) { _, _ = c.nc.Request(subject, []byte("{}"), 500*time.Millisecond) }
	}
	publish := func(subject string) func(*roleConn) {
		return func(c *roleConn) { _ = c.nc.Publish(subject, []byte("forged")) }
	}
	subscribe := func(subject string) func(*roleConn) {
		return func(c *roleConn) { _, _ = c.nc.SubscribeSync(subject) }
	}
	cases := []struct {
		name   string
		role   bus.Role
		do     func(*roleConn)
		reason string
		// refused is the subject the server must refuse.
		refused string
	}{
		{name: "audit publishes a command", role: bus.RoleAudit, reason: "only the api issues commands",
			do: publish(topo.CommandSubject("victim")), refused: topo.CommandSubject("victim")},
		{name: "audit forges a status", role: bus.RoleAudit, reason: "only the orchestrator reports status",
			do: publish(topo.StatusSubject("victim")), refused: topo.StatusSubject("victim")},
		{name: "audit forges an audit entry", role: bus.RoleAudit, reason: "the audit service records entries, it does not write them",
			do: publish(topo.AuditSubject(bus.RoleAPI, "victim")), refused: topo.AuditSubject(bus.RoleAPI, "victim")},
		{name: "orchestrator speaks for the api in the audit log", role: bus.RoleOrchestrator, reason: "only the api says who owns a store",
			do: publish(topo.AuditSubject(bus.RoleAPI, "victim")), refused: topo.AuditSubject(bus.RoleAPI, "victim")},
		{name: "api speaks for the orchestrator in the audit log", role: bus.RoleAPI, reason: "each publisher writes under its own name",
			do: publish(topo.AuditSubject(bus.RoleOrchestrator, "victim")), refused: topo.AuditSubject(bus.RoleOrchestrator, "victim")},
		{name: "api forges a READY status", role: bus.RoleAPI, reason: "only the orchestrator reports status",
			do: publish(topo.StatusSubject("victim")), refused: topo.StatusSubject("victim")},
		{name: "api writes a lease key", role: bus.RoleAPI, reason: "leases fence orchestrators only",
			do: publish("$KV." + topo.LeaseBucket() + ".victim"), refused: "$KV." + topo.LeaseBucket() + ".victim"},
		{name: "api reads a lease", role: bus.RoleAPI, reason: "leases fence orchestrators only",
			do:      request(api("DIRECT.GET", "KV_"+topo.LeaseBucket()+".$KV."+topo.LeaseBucket()+".victim")),
			refused: api("DIRECT.GET", "KV_"+topo.LeaseBucket()+".$KV."+topo.LeaseBucket()+".victim")},
		{name: "api shrinks the commands stream", role: bus.RoleAPI, reason: "updating limits drops messages; only the orchestrator owns the layout",
			do: request(api("STREAM.UPDATE", topo.CommandsStream())), refused: api("STREAM.UPDATE", topo.CommandsStream())},
		{name: "api widens its consumer to audit events", role: bus.RoleAPI, reason: "its consumer's filter is fixed in the subject",
			do:      request(api("CONSUMER.CREATE", topo.EventsStream()+"."+bus.APIStatusConsumer+"."+topo.Prefix+".audit.>")),
			refused: api("CONSUMER.CREATE", topo.EventsStream()+"."+bus.APIStatusConsumer+"."+topo.Prefix+".audit.>")},
		{name: "api pulls commands", role: bus.RoleAPI, reason: "another role's consumer",
			do:      request(api("CONSUMER.MSG.NEXT", topo.CommandsStream()+"."+bus.OrchestratorConsumer)),
			refused: api("CONSUMER.MSG.NEXT", topo.CommandsStream()+"."+bus.OrchestratorConsumer)},
		{name: "api lists streams", role: bus.RoleAPI, reason: "no role needs to",
			do: request("$JS.API.STREAM.NAMES"), refused: "$JS.API.STREAM.NAMES"},
		{name: "api reads the orchestrator's replies", role: bus.RoleAPI, reason: "each role has its own inbox",
			do: subscribe(topo.InboxPrefix(bus.RoleOrchestrator) + ".>"), refused: topo.InboxPrefix(bus.RoleOrchestrator) + ".>"},
		{name: "api reads every inbox", role: bus.RoleAPI, reason: "each role has its own inbox",
			do: subscribe("_INBOX.>"), refused: "_INBOX.>"},
		{name: "orchestrator purges a stream", role: bus.RoleOrchestrator, reason: "no role may purge",
			do: request(api("STREAM.PURGE", topo.EventsStream())), refused: api("STREAM.PURGE", topo.EventsStream())},
		{name: "orchestrator deletes a stream", role: bus.RoleOrchestrator, reason: "no role may delete a stream",
			do: request(api("STREAM.DELETE", topo.CommandsStream())), refused: api("STREAM.DELETE", topo.CommandsStream())},
		{name: "orchestrator deletes a message", role: bus.RoleOrchestrator, reason: "no role may delete messages",
			do: request(api("STREAM.MSG.DELETE", topo.EventsStream())), refused: api("STREAM.MSG.DELETE", topo.EventsStream())},
		{name: "orchestrator deletes the audit consumer", role: bus.RoleOrchestrator, reason: "another role's consumer",
			do:      request(api("CONSUMER.DELETE", topo.EventsStream()+"."+bus.AuditConsumer)),
			refused: api("CONSUMER.DELETE", topo.EventsStream()+"."+bus.AuditConsumer)},
		{name: "orchestrator acks the api's status events", role: bus.RoleOrchestrator, reason: "another role's consumer",
			do:      publish("$JS.ACK." + topo.EventsStream() + "." + bus.APIStatusConsumer + ".1.1.1.1.0"),
			refused: "$JS.ACK." + topo.EventsStream() + "." + bus.APIStatusConsumer + ".1.1.1.1.0"},
		{name: "orchestrator announces store changes", role: bus.RoleOrchestrator, reason: "api replicas trust those announcements",
			do: publish(topo.StoreChangedSubject("victim")), refused: topo.StoreChangedSubject("victim")},
		{name: "audit reads commands as they pass", role: bus.RoleAudit, reason: "it consumes audit events only",
			do: subscribe(topo.Prefix + ".commands.>"), refused: topo.Prefix + ".commands.>"},
		{name: "audit creates a consumer on the commands stream", role: bus.RoleAudit, reason: "its own consumer only",
			do:      request(api("CONSUMER.CREATE", topo.CommandsStream()+".spy")),
			refused: api("CONSUMER.CREATE", topo.CommandsStream()+".spy")},
		{name: "audit updates the events stream", role: bus.RoleAudit, reason: "only the orchestrator owns the layout",
			do: request(api("STREAM.UPDATE", topo.EventsStream())), refused: api("STREAM.UPDATE", topo.EventsStream())},
	}
	t.Run("refused", func(t *testing.T) {
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				c := connectAs(t, env, tt.role)
				tt.do(c)
				c.expectRefused(t, tt.refused, tt.reason)
			})
		}
	})

	t.Run("nothing was removed", func(t *testing.T) {
		for _, stream := range []string{topo.CommandsStream(), topo.EventsStream()} {
			s, err := env.JS.Stream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if n := s.CachedInfo().State.Msgs; n != 1 {
				t.Errorf("%s holds %d messages, want the 1 published", stream, n)
			}
		}
	})
}

func TestConnectionsWithoutTheRightPasswordAreRefused(t *testing.T) {
	env := bustest.Embedded(t)
	for _, tt := range []struct {
		name string
		opts []nats.Option
	}{
		{"anonymous", nil},
		{"a role with a wrong password", []nats.Option{nats.UserInfo(string(bus.RoleAPI), "guessed")}},
		{"another role's password", []nats.Option{nats.UserInfo(string(bus.RoleAPI), env.Credentials(bus.RoleOrchestrator).Password)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(env.URL, tt.opts...)
			if err == nil {
				nc.Close()
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("connect = %v, want an authorization violation", err)
			}
		})
	}
}

func TestRunEmbeddedRefusesAnOpenServer(t *testing.T) {
	topo := bus.Topology{Prefix: "open"}
	for _, tt := range []struct {
		name      string
		passwords map[bus.Role]string
		want      string
	}{
		{"no users", nil, "no password for the orchestrator user"},
		{"a role without a password", map[bus.Role]string{bus.RoleOrchestrator: "o", bus.RoleAPI: "a"}, "no password for the audit user"},
		{"an unknown role", map[bus.Role]string{bus.RoleOrchestrator: "o", bus.RoleAPI: "a", bus.RoleAudit: "x", "gateway": "g"}, `unknown role "gateway"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := bus.RunEmbedded(bus.EmbeddedOptions{Dir: t.TempDir(), Host: "127.0.0.1", Port: -1, Topology: topo, Passwords: tt.passwords})
			if err == nil {
				s.Shutdown()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RunEmbedded = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if p := topo.Permissions("gateway"); p.Publish != nil || p.Subscribe != nil {
		t.Errorf("permissions of an unknown role = %+v, want none", p)
	}
}

func TestAuditPublisherReadsTheSubject(t *testing.T) {
	topo := bus.Topology{Prefix: "sp"}
	for subject, want := range map[string]bus.Role{
		topo.AuditSubject(bus.RoleAPI, "s1"):          bus.RoleAPI,
		topo.AuditSubject(bus.RoleOrchestrator, "s1"): bus.RoleOrchestrator,
		"sp.audit.s1":            "",
		"sp.audit.mallory.s1":    "",
		"other.audit.api.s1":     "",
		topo.StatusSubject("s1"): "",
	} {
		if got := topo.AuditPublisher(subject); got != want {
			t.Errorf("AuditPublisher(%q) = %q, want %q", subject, got, want)
		}
	}
}
