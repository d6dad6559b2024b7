// Package recorder moves audit events from NATS JetStream into the audit
// log. It consumes the durable pull consumer bus.AuditConsumer, records
// each event at most once by its id, and decides per message: ack once the
// entry is committed (or was already there), nak with a delay when the
// database failed, term when the message can never be recorded.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/audit/internal/store"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/storeprov/storeprov/services/audit/internal/recorder"

// Log is where events are recorded.
type Log interface {
	// Append records e unless its id and lease token are recorded already
	// (inserted is then false). It returns an error wrapping store.ErrInvalidEntry for an
	// entry that can never be recorded; any other error may be retried.
	Append(ctx context.Context, e *auditv1.AuditEntry) (inserted bool, err error)
	// Owner returns the owner of a store as the api recorded it in the
	// store's "create" entry; found is false until that entry is recorded.
	Owner(ctx context.Context, storeID string) (owner string, found bool, err error)
}

// ownerWaits is how many times an orchestrator's event waits (RetryDelay
// each) for the api's "create" entry of its store before it is recorded
// with no owner, visible to admins only.
const ownerWaits = 6

// Options tune a Recorder. Zero values mean the defaults.
type Options struct {
	// Concurrency bounds the events recorded at once (default 8).
	Concurrency int
	// RetryDelay is how long a message waits before redelivery after a
	// database error, and between attempts to resume consuming (default 5s).
	RetryDelay time.Duration
	// Timeout bounds the recording of one event (default 10s); it must stay
	// below the consumer's AckWait.
	Timeout time.Duration
	// Registry receives the recorder's metrics; nil means none are exported.
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Outcomes of a message, the values of the "outcome" label of
// storeprov_audit_events_total.
const (
	OutcomeRecorded  = "recorded"  // a new entry was committed
	OutcomeDuplicate = "duplicate" // the event id was recorded already
	OutcomeFailed    = "failed"    // the database failed; redelivered later
	OutcomeInvalid   = "invalid"   // undecodable or incomplete; dropped
	OutcomeWaiting   = "waiting"   // waits for its store's create entry; redelivered later
)

// Recorder consumes audit events into a Log.
type Recorder struct {
	js       jetstream.JetStream
	topology bus.Topology
	log      Log
	opts     Options
	events   *prometheus.CounterVec
}

// New returns a recorder of the audit events of topology, which must have
// been ensured. It fails only when its metrics cannot be registered.
func New(js jetstream.JetStream, topology bus.Topology, log Log, opts Options) (*Recorder, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Recorder{js: js, topology: topology, log: log, opts: opts}
	r.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "storeprov_audit_events_total",
		Help: "Audit events taken from NATS, by outcome: recorded, duplicate, failed (retried), invalid (dropped) or waiting (for the store's create entry; retried).",
	}, []string{"outcome"})
	for _, o := range []string{OutcomeRecorded, OutcomeDuplicate, OutcomeFailed, OutcomeInvalid, OutcomeWaiting} {
		r.events.WithLabelValues(o)
	}
	if opts.Registry != nil {
		if err := opts.Registry.Register(r.events); err != nil {
			return nil, fmt.Errorf("cannot register audit recorder metrics: %w", err)
		}
	}
	return r, nil
}

// Run records events until ctx is cancelled, then stops fetching, waits
// for the events in progress and returns nil. Losing NATS does not stop
// it: it resumes when the server is back. Messages fetched but not yet
// started when it stops are redelivered after the consumer's AckWait.
func (r *Recorder) Run(ctx context.Context) error {
	var (
		inFlight sync.WaitGroup
		mu       sync.Mutex
		stopping bool
		slots    = make(chan struct{}, r.opts.Concurrency)
	)
	defer func() {
		mu.Lock()
		stopping = true
		mu.Unlock()
		inFlight.Wait()
	}()
	// handle blocks the delivery while every slot is busy, so at most
	// Concurrency events are recorded at once and the rest wait in NATS.
	handle := func(msg jetstream.Msg) {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		mu.Lock()
		if stopping {
			mu.Unlock()
			<-slots
			return
		}
		inFlight.Add(1)
		mu.Unlock()
		go func() {
			defer inFlight.Done()
			defer func() { <-slots }()
			// Recording finishes even during shutdown, so that what is
			// committed is also acked.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
			defer cancel()
			r.record(mctx, msg)
		}()
	}
	for {
		err := r.consume(ctx, handle)
		if ctx.Err() != nil {
			return nil
		}
		r.opts.Logger.Warn("audit events are not being consumed; retrying", "retry_in", r.opts.RetryDelay, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.opts.RetryDelay):
		}
	}
}

// consume delivers messages to handle until ctx is cancelled or the
// consumption ends on its own (the consumer was deleted, the connection
// closed).
func (r *Recorder) consume(ctx context.Context, handle jetstream.MessageHandler) error {
	stream := r.topology.EventsStream()
	consumer, err := r.js.Consumer(ctx, stream, bus.AuditConsumer)
	if err != nil {
		return fmt.Errorf("cannot find consumer %s on stream %s: %w", bus.AuditConsumer, stream, err)
	}
	cc, err := consumer.Consume(handle,
		jetstream.PullMaxMessages(2*r.opts.Concurrency),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.opts.Logger.Debug("audit consumer", "error", err)
		}))
	if err != nil {
		return fmt.Errorf("cannot consume %s on stream %s: %w", bus.AuditConsumer, stream, err)
	}
	select {
	case <-ctx.Done():
		cc.Stop()
		return nil
	case <-cc.Closed():
		return fmt.Errorf("consuming %s on stream %s stopped", bus.AuditConsumer, stream)
	}
}

// record decides the fate of one message, in a span, audit.record, of
// the trace the event carries: that of the request or command it is
// about.
func (r *Recorder) record(ctx context.Context, msg jetstream.Msg) {
	ctx, span := otel.Tracer(tracerName).Start(tracing.Extract(ctx, tracing.Header(msg.Headers())), "audit.record",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(msg.Subject())))
	tracing.End(span, r.settle(ctx, msg, span))
}

// settle records msg, acks, naks or terminates it, and returns why it was
// not recorded: nil when it was, or waits for its store's create entry.
func (r *Recorder) settle(ctx context.Context, msg jetstream.Msg, span trace.Span) error {
	logger := r.opts.Logger.With("subject", msg.Subject())
	var ev eventsv1.AuditEvent
	if err := bus.Decode(msg, &ev); err != nil {
		r.drop(msg, logger, err)
		return err
	}
	entry := ev.GetEntry()
	span.SetAttributes(tracing.StoreID.String(entry.GetStoreId()), attribute.String("storeprov.audit.action", entry.GetAction()))
	if entry != nil {
		// Each lease is an attempt of its own: a second failure of one
		// generation under a new lease is a new entry, not a duplicate.
		entry.LeaseToken = ev.GetLeaseToken()
	}
	if entry != nil && entry.GetTime() == nil {
		// The publisher forgot the time: the time JetStream stored the
		// message is the closest known.
		if md, err := msg.Metadata(); err == nil {
			entry.Time = timestamppb.New(md.Timestamp)
		}
	}
	if entry != nil && r.topology.AuditPublisher(msg.Subject()) != bus.RoleAPI {
		// Only the api knows who owns a store: the owner any other
		// publisher writes is replaced by the one the api recorded.
		owner, found, err := r.log.Owner(ctx, entry.GetStoreId())
		if err == nil && !found && delivered(msg) < ownerWaits {
			r.events.WithLabelValues(OutcomeWaiting).Inc()
			logger.Debug("audit event before its store's create entry; waiting", "event", entry.GetId(), "store", entry.GetStoreId())
			_ = msg.NakWithDelay(r.opts.RetryDelay)
			span.SetAttributes(attribute.Bool("storeprov.audit.waiting", true))
			return nil
		}
		if err != nil {
			r.retry(msg, logger, entry, err)
			return err
		}
		if !found {
			logger.Warn("recording an audit event of a store the api never announced, with no owner", "event", entry.GetId(), "store", entry.GetStoreId())
		}
		entry.StoreOwner = owner
	}
	inserted, err := r.log.Append(ctx, entry)
	switch {
	case errors.Is(err, store.ErrInvalidEntry):
		r.drop(msg, logger, err)
		return err
	case err != nil:
		r.retry(msg, logger, entry, err)
		return err
	default:
		outcome := OutcomeRecorded
		if !inserted {
			outcome = OutcomeDuplicate
		}
		r.events.WithLabelValues(outcome).Inc()
		if err := msg.Ack(); err != nil {
			// Redelivery will find the entry recorded and ack it then.
			logger.Debug("cannot ack audit event", "event", entry.GetId(), "error", err)
		}
		span.SetAttributes(attribute.String("storeprov.audit.outcome", outcome))
		return nil
	}
}

// retry hands a message back for redelivery after a database error.
func (r *Recorder) retry(msg jetstream.Msg, logger *slog.Logger, entry *auditv1.AuditEntry, reason error) {
	r.events.WithLabelValues(OutcomeFailed).Inc()
	logger.Warn("cannot record audit event; it will be redelivered", "event", entry.GetId(), "retry_in", r.opts.RetryDelay, "error", reason)
	if err := msg.NakWithDelay(r.opts.RetryDelay); err != nil {
		logger.Debug("cannot nak audit event; it will be redelivered after AckWait", "event", entry.GetId(), "error", err)
	}
}

// delivered is how many times msg was delivered, this time included.
func delivered(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 1
	}
	return md.NumDelivered
}

// drop terminates a message that no redelivery can make recordable.
func (r *Recorder) drop(msg jetstream.Msg, logger *slog.Logger, reason error) {
	r.events.WithLabelValues(OutcomeInvalid).Inc()
	logger.Error("dropping audit message that cannot be recorded", "error", reason, "data_bytes", len(msg.Data()))
	// Plain Term: servers before 2.10 ignore a Term carrying a reason.
	if err := msg.Term(); err != nil {
		logger.Debug("cannot terminate audit message", "error", err)
	}
}
