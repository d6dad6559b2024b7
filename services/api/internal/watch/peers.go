package watch

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/services/api/internal/ent"
)

// originHeader names the api replica that changed a store.
const originHeader = "Storeprov-Origin"

// Peers fans changes out across api replicas: every replica changes
// stores in the one database, but each holds its own watchers. Notify
// delivers a change to this replica's Hub and announces the store's id on
// NATS; Run receives the other replicas' announcements, reads those stores
// and delivers them to the Hub.
type Peers struct {
	Hub  *Hub
	Conn *nats.Conn
	// Topology gives the subject; Origin is this replica's unique name.
	Topology bus.Topology
	Origin   string
	// Load reads a store by id.
	Load func(ctx context.Context, id string) (*ent.Store, error)
	Log  *slog.Logger
}

// Notify implements stores.Notifier.
func (p *Peers) Notify(st *ent.Store) {
	p.Hub.Notify(st)
	msg := &nats.Msg{Subject: p.Topology.StoreChangedSubject(st.ID), Header: nats.Header{originHeader: {p.Origin}}}
	// While NATS is away the client buffers the announcement; if even that
	// fails, the other replicas' watchers are cut off when it comes back
	// (DropAll) and start again from a fresh snapshot.
	if err := p.Conn.PublishMsg(msg); err != nil {
		p.Log.Warn("cannot announce a store change to the other api replicas", "store", st.ID, "err", err)
	}
}

// Run delivers the other replicas' changes until ctx is done.
func (p *Peers) Run(ctx context.Context) error {
	prefix := p.Topology.StoreChangedSubject("")
	sub, err := p.Conn.Subscribe(prefix+"*", func(m *nats.Msg) {
		if m.Header.Get(originHeader) == p.Origin {
			return
		}
		id := m.Subject[len(prefix):]
		st, err := p.Load(ctx, id)
		if err != nil {
			p.Log.Warn("cannot read a store another api replica changed", "store", id, "err", err)
			return
		}
		p.Hub.Notify(st)
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}
