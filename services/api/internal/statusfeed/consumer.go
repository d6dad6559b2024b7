// Package statusfeed applies the orchestrator's status events to the api's
// stores, from the durable consumer bus.APIStatusConsumer.
package statusfeed

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
)

// Applier records a status change; the store repository implements it.
type Applier interface {
	ApplyStatus(ctx context.Context, ev *eventsv1.StoreStatusChanged) (bool, error)
}

// Consume applies status events until ctx is done. An event is acked once
// applied (or found stale); a database error redelivers it after a delay;
// an undecodable message is terminated.
func Consume(ctx context.Context, js jetstream.JetStream, topo bus.Topology, applier Applier, logger *slog.Logger) error {
	cons, err := js.Consumer(ctx, topo.EventsStream(), bus.APIStatusConsumer)
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var ev eventsv1.StoreStatusChanged
		if err := bus.Decode(msg, &ev); err != nil {
			logger.Error("dropping undecodable status event", "err", err)
			_ = msg.Term()
			return
		}
		if _, err := applier.ApplyStatus(ctx, &ev); err != nil {
			logger.Warn("cannot apply status event; will retry", "store", ev.GetStoreId(), "err", err)
			_ = msg.NakWithDelay(2 * time.Second)
			return
		}
		_ = msg.Ack()
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	cc.Drain()
	return nil
}
