package watch_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

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
