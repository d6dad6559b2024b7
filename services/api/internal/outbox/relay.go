// Package outbox publishes the messages that the api wrote to its outbox
// table to NATS JetStream. Each row is published with its msg_id as the
// Nats-Msg-Id, then marked sent; a crash between the two publishes it
// again, which JetStream's deduplication drops. While NATS is down rows
// wait in the table: a request is delayed, never lost. Each message
// carries on the trace of the request that wrote its row.
package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	entoutbox "github.com/storeprov/storeprov/services/api/internal/ent/outbox"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/storeprov/storeprov/services/api/internal/outbox"

// Relay moves outbox rows to JetStream.
type Relay struct {
	Client *ent.Client
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Interval between scans when nothing kicks the relay.
	Interval time.Duration
	// Published counts messages published.
	Published prometheus.Counter
	kick      chan struct{}
}

// NewRelay returns a relay; call Run.
func NewRelay(client *ent.Client, js jetstream.JetStream, logger *slog.Logger, published prometheus.Counter) *Relay {
	return &Relay{Client: client, JS: js, Logger: logger, Interval: time.Second, Published: published, kick: make(chan struct{}, 1)}
}

// Kick asks the relay to scan now; it never blocks.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes pending rows until ctx is done.
func (r *Relay) Run(ctx context.Context) {
	backoff := r.Interval
	for {
		err := r.publishPending(ctx)
		wait := r.Interval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.Logger.Warn("outbox relay cannot publish; will retry", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = r.Interval
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-time.After(wait):
		}
	}
}

// publish publishes one row in a span, outbox.publish, that continues the
// trace of the request that wrote the row; the message carries it on.
func (r *Relay) publish(ctx context.Context, row *ent.Outbox) error {
	ctx = tracing.Extract(ctx, propagation.MapCarrier(row.TraceContext))
	ctx, span := otel.Tracer(tracerName).Start(ctx, "outbox.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingDestinationName(row.Subject),
			semconv.MessagingMessageID(row.MsgID),
			attribute.String("storeprov.message_type", row.MessageType),
		))
	pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := bus.PublishEncoded(pubCtx, r.JS, row.Subject, row.MsgID, row.MessageType, row.Payload)
	cancel()
	tracing.End(span, err)
	return err
}

// publishPending publishes unsent rows in id order, stopping at the first
// failure so that messages of one store keep their order. The rows of a
// batch that were published are marked sent in one write, also when a
// later one failed: a relay that dies before that write publishes them
// again, and JetStream drops the copies by their message ids.
func (r *Relay) publishPending(ctx context.Context) error {
	for {
		rows, err := r.Client.Outbox.Query().Where(entoutbox.SentTimeIsNil()).Order(entoutbox.ByID()).Limit(100).All(ctx)
		if err != nil || len(rows) == 0 {
			return err
		}
		var sent []int64
		var failed error
		for _, row := range rows {
			if failed = r.publish(ctx, row); failed != nil {
				break
			}
			sent = append(sent, row.ID)
		}
		if len(sent) > 0 {
			if err := r.Client.Outbox.Update().Where(entoutbox.IDIn(sent...)).SetSentTime(time.Now().UTC()).Exec(ctx); err != nil {
				return err
			}
			if r.Published != nil {
				r.Published.Add(float64(len(sent)))
			}
		}
		if failed != nil {
			return failed
		}
		// Rows sent an hour ago can no longer be deduplicated anyway.
		if _, err := r.Client.Outbox.Delete().Where(entoutbox.SentTimeLT(time.Now().Add(-time.Hour))).Exec(ctx); err != nil {
			return err
		}
	}
}
