package watch

import (
	"context"
	"log/slog"
	"sync/atomic"
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

	// unconfirmed is true from the start of Listen until the server is
	// known to have its subscription.
	unconfirmed atomic.Bool
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
// not wait: the client subscribes when it connects, and Connected then
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
	// Set before looking, so that a first connection made meanwhile is
	// seen by Connected or here.
	p.unconfirmed.Store(true)
	if !p.Conn.IsConnected() {
		return nil
	}
	// Subscribe only queues the request: without the round trip, a change
	// published by another replica can reach the server first and be lost.
	flushCtx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if err := p.Conn.FlushWithContext(flushCtx); err != nil {
		if ctx.Err() == nil {
			// Cut off meanwhile: Reconnected runs when it is back.
			p.Log.Warn("the NATS server did not confirm the subscription to the other api replicas' changes", "err", err)
		}
		return nil
	}
	p.unconfirmed.Store(false)
	return nil
}

// Reconnected is the connection's reconnect handler. The changes other
// replicas announced while this one was cut off are lost: once the NATS
// server has the subscription the client sent again, every watcher is cut
// off, as if it lagged behind, and starts again from a fresh snapshot,
// read after the subscription is in place.
func (p *Peers) Reconnected(conn *nats.Conn) {
	p.confirm(conn)
	p.unconfirmed.Store(false)
	p.Hub.DropAll()
}

// Connected is the connection's connect handler, which the client calls
// after its first connection, whether at once or after NATS was
// unreachable at start, and may call late; it may run before Conn is set.
// When Listen returned before the server had the subscription, the api
// may already serve watchers that missed changes: once the server has it,
// they are cut off as by Reconnected. Otherwise it cuts nothing off, so
// that the watchers of a replica that was subscribed at once are kept.
func (p *Peers) Connected(conn *nats.Conn) {
	p.confirm(conn)
	// Decided after the round trip: Listen may have confirmed the
	// subscription meanwhile, and served watchers since.
	if p.unconfirmed.Swap(false) {
		p.Hub.DropAll()
	}
}

// confirm waits until the NATS server has processed what conn sent.
func (p *Peers) confirm(conn *nats.Conn) {
	if err := conn.FlushTimeout(flushTimeout); err != nil {
		p.Log.Warn("the NATS server did not confirm the subscription to the other api replicas' changes", "err", err)
	}
}

// flushTimeout bounds the wait for the server's confirmation.
const flushTimeout = 5 * time.Second
