package watch_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	"github.com/storeprov/storeprov/services/api/internal/watch"
)

// A replica's watchers see a change another replica announces as soon as
// Listen has returned: the api serves watches only then, so a change
// committed after a watch's snapshot is never lost because the NATS
// server had not yet registered the replica's subscription.
func TestListenSeesAChangeAnnouncedRightAfterIt(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		log := slog.New(slog.DiscardHandler)
		conn, _ := env.ConnectAs(t, bus.RoleAPI)
		announcer := &watch.Peers{Hub: &watch.Hub{}, Conn: conn, Topology: env.Topology, Origin: "announcer", Log: log}
		for i := range 30 {
			conn, _ := env.ConnectAs(t, bus.RoleAPI)
			hub := &watch.Hub{}
			changes, unsubscribe := hub.Subscribe()
			listener := &watch.Peers{Hub: hub, Conn: conn, Topology: env.Topology, Origin: "listener", Log: log,
				Load: func(_ context.Context, id string) (*ent.Store, error) { return &ent.Store{ID: id}, nil }}
			ctx, cancel := context.WithCancel(context.Background())
			if err := listener.Listen(ctx); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("store%d", i)
			announcer.Notify(&ent.Store{ID: id})
			select {
			case st := <-changes:
				if st.ID != id {
					t.Errorf("attempt %d: the listener's watcher got store %s, want %s", i, st.ID, id)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("attempt %d: the listener's watcher never got store %s, announced right after Listen returned", i, id)
			}
			cancel()
			unsubscribe()
			conn.Close()
		}
	})
}

// The connect handler runs after the first connection, at once or after
// NATS was unreachable at start, possibly late. It cuts the watchers off
// only when Listen could not confirm the subscription: those of a replica
// that connected at once missed nothing.
func TestConnectedCutsWatchersOffOnlyWhenListenReturnedUnsubscribed(t *testing.T) {
	env := bustest.Embedded(t)
	log := slog.New(slog.DiscardHandler)
	load := func(_ context.Context, id string) (*ent.Store, error) { return &ent.Store{ID: id}, nil }
	conn, _ := env.ConnectAs(t, bus.RoleAPI)

	hub := &watch.Hub{}
	connected := &watch.Peers{Hub: hub, Conn: conn, Topology: env.Topology, Origin: "connected", Log: log, Load: load}
	if err := connected.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	changes, unsubscribe := hub.Subscribe()
	defer unsubscribe()
	connected.Connected(conn)
	hub.Notify(&ent.Store{ID: "kept"})
	if st, ok := <-changes; !ok {
		t.Error("a late connect handler cut off a watcher of a replica that was subscribed at once")
	} else if st.ID != "kept" {
		t.Errorf("watcher got store %s, want kept", st.ID)
	}

	// Nothing listens on port 1: the client keeps trying in the background.
	down, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	offlineHub := &watch.Hub{}
	offline := &watch.Peers{Hub: offlineHub, Conn: down, Topology: env.Topology, Origin: "offline", Log: log, Load: load}
	if err := offline.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	missed, unsubscribeMissed := offlineHub.Subscribe()
	defer unsubscribeMissed()
	// As when the connection comes up (conn stands in for it, to be flushed).
	offline.Connected(conn)
	if _, ok := <-missed; ok {
		t.Error("a watcher served before the replica could subscribe was not cut off when it connected")
	}
}

// The connect handler of a replica that connected at once may run while
// Listen waits for the server: it never cuts off a watcher served after
// Listen returned.
func TestConnectedDuringListenKeepsLaterWatchers(t *testing.T) {
	env := bustest.Embedded(t)
	log := slog.New(slog.DiscardHandler)
	load := func(_ context.Context, id string) (*ent.Store, error) { return &ent.Store{ID: id}, nil }
	for i := range 50 {
		conn, _ := env.ConnectAs(t, bus.RoleAPI)
		hub := &watch.Hub{}
		p := &watch.Peers{Hub: hub, Conn: conn, Topology: env.Topology, Origin: "p", Log: log, Load: load}
		ctx, cancel := context.WithCancel(context.Background())
		handled := make(chan struct{})
		go func() { p.Connected(conn); close(handled) }()
		if err := p.Listen(ctx); err != nil {
			t.Fatal(err)
		}
		changes, unsubscribe := hub.Subscribe()
		<-handled
		hub.Notify(&ent.Store{ID: "kept"})
		if _, ok := <-changes; !ok {
			t.Fatalf("attempt %d: the connect handler cut off a watcher served after Listen returned", i)
		}
		unsubscribe()
		cancel()
		conn.Close()
	}
}
