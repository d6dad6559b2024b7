// Package watch fans committed store changes out to WatchStores streams,
// those of this api replica (Hub) and, through NATS, of the others (Peers).
package watch

import (
	"sync"

	"github.com/storeprov/storeprov/services/api/internal/ent"
)

// Buffer is how many changes a watcher may lag behind before it is cut off
// (it then ends its stream; the client watches again and gets a fresh list).
const Buffer = 256

// Hub delivers every change to every subscriber. The zero value is ready.
type Hub struct {
	mu   sync.Mutex
	subs map[chan *ent.Store]struct{}
}

// Subscribe returns a channel of changes, closed when the subscriber lags
// too far behind or cancel is called.
func (h *Hub) Subscribe() (<-chan *ent.Store, func()) {
	ch := make(chan *ent.Store, Buffer)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan *ent.Store]struct{}{}
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() { h.drop(ch) }
}

// Notify delivers st to every subscriber without blocking.
func (h *Hub) Notify(st *ent.Store) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- st:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// DropAll cuts every subscriber off, as if it lagged behind: each starts
// again from a fresh snapshot. The api calls it when it reconnects to NATS,
// since changes announced meanwhile by other replicas may be lost.
func (h *Hub) DropAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

func (h *Hub) drop(ch chan *ent.Store) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[ch]; ok {
		delete(h.subs, ch)
		close(ch)
	}
}
