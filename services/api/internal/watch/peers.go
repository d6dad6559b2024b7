package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/services/api/internal/ent"
)

// originHeader names the api replica that changed a store.
const originHeader = "Storeprov-Origin"

// Peers fans changes out across api replicas: every replica changes
// stores in the one database, but each holds its own watchers. Notify
// delivers a change to this replica's Hub and announces the store's id on
// NATS; Listen receives the other replicas' announcements, reads those
// stores and delivers them to the Hub.
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

// Listen subscribes to the other replicas' announcements, which are then
// delivered to the Hub until ctx is done. It returns once the NATS server
// has registered the subscription (a ping after the subscribe, answered
// only when the server has processed both), so that every change another
// replica commits after Listen returns reaches this replica's watchers:
// the api calls it before it serves. While NATS is unreachable it does
// not wait: the client subscribes when it connects, and Resubscribed then
// cuts the watchers off. Its error is a subscription the client refuses.
func (p *Peers) Listen(ctx context.Context) error {
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
	context.AfterFunc(ctx, func() { _ = sub.Unsubscribe() })
	if !p.Conn.IsConnected() {
		return nil
	}
	// Subscribe only queues the request: without the round trip, a change
	// published by another replica can reach the server first and be lost.
	flushCtx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := p.Conn.FlushWithContext(flushCtx); err != nil && ctx.Err() == nil {
		// Cut off meanwhile: Resubscribed runs when it is back.
		p.Log.Warn("the NATS server did not confirm the subscription to the other api replicas' changes", "err", err)
	}
	return nil
}

// Resubscribed cuts every watcher off, as if it lagged behind, once the
// NATS server has the subscription the client sent again when conn
// connected: the changes other replicas announced while this one was not
// subscribed are lost, so each watcher starts again from a fresh snapshot,
// read after the subscription is in place. The api calls it from the
// connection's connect and reconnect handlers, which may run before Conn
// is set.
func (p *Peers) Resubscribed(conn *nats.Conn) {
	if err := conn.FlushTimeout(flushTimeout); err != nil {
		p.Log.Warn("the NATS server did not confirm the subscription to the other api replicas' changes", "err", err)
	}
	p.Hub.DropAll()
}

// flushTimeout bounds the wait for the server's confirmation.
const flushTimeout = 5 * time.Second
