// Package statusfeed applies the orchestrator's status events to the api's
// stores, from the durable consumer bus.APIStatusConsumer.
package statusfeed

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/tracing"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/storeprov/storeprov/services/api/internal/statusfeed"

// Applier records a status change; the store repository implements it.
type Applier interface {
	ApplyStatus(ctx context.Context, ev *eventsv1.StoreStatusChanged) (bool, error)
}

// Consume applies status events until ctx is done. An event is acked once
// applied (or found stale); a database error redelivers it after a delay;
// an undecodable message is terminated. Each is applied in a span,
// statusfeed.apply, of the trace the event carries: the trace of the
// command whose outcome it reports.
func Consume(ctx context.Context, js jetstream.JetStream, topo bus.Topology, applier Applier, logger *slog.Logger) error {
	cons, err := js.Consumer(ctx, topo.EventsStream(), bus.APIStatusConsumer)
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ctx, span := otel.Tracer(tracerName).Start(tracing.Extract(ctx, tracing.Header(msg.Headers())), "statusfeed.apply",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(msg.Subject())))
		var ev eventsv1.StoreStatusChanged
		if err := bus.Decode(msg, &ev); err != nil {
			logger.Error("dropping undecodable status event", "err", err)
			_ = msg.Term()
			tracing.End(span, err)
			return
		}
		span.SetAttributes(tracing.StoreID.String(ev.GetStoreId()), tracing.Generation.Int64(ev.GetObservedGeneration()),
			attribute.String("storeprov.phase", ev.GetPhase().String()), attribute.String("storeprov.reason", ev.GetReason()))
		applied, err := applier.ApplyStatus(ctx, &ev)
		span.SetAttributes(attribute.Bool("storeprov.applied", applied))
		tracing.End(span, err)
		if err != nil {
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
