// Package worker is the orchestrator's transport: it pulls users'
// provisioning commands and, apart from them, resync commands, from the
// durable consumers every orchestrator replica shares; handles at most
// Concurrency users' commands and ResyncConcurrency resync commands at
// once; fences each store with a lease (lease.Keep); cancels a command as
// soon as a newer one for its store is queued (watchSupersede); keeps each
// message alive with InProgress heartbeats while its store is reconciled;
// and turns the result into one ack decision (policy.decide). Each
// delivery is a span of the trace its message carries, and the time of
// its phases goes to Metrics.Phases.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/storeprov/storeprov/services/orchestrator/internal/worker"

// Reconciler converges a store to a command; *reconcile.Reconciler is one.
type Reconciler interface {
	// Reconcile returns nil once the outcome is published, or an error the
	// worker classifies (a *reconcile.Error says whether it is terminal).
	Reconcile(ctx context.Context, cmd *eventsv1.ProvisionCommand) error
	// Verify checks and repairs a store whose generation cmd was already
	// applied, for a resync command; it returns errors as Reconcile does.
	Verify(ctx context.Context, cmd *eventsv1.ProvisionCommand) error
	// Fail publishes the store as FAILED; the worker calls it when it
	// gives up on cmd.
	Fail(ctx context.Context, cmd *eventsv1.ProvisionCommand, reason lifecycle.Reason, message string) error
	// Superseded records in the audit log that cmd was cancelled, unfinished,
	// for the newer command by.
	Superseded(ctx context.Context, cmd, by *eventsv1.ProvisionCommand) error
}

// Options tune a worker.
type Options struct {
	// ID names the worker in leases, logs and metrics; unique per process.
	ID string
	// Concurrency bounds the users' commands handled at once.
	Concurrency int
	// ResyncConcurrency bounds the resync commands handled at once, on top
	// of Concurrency: maintenance never takes a user's slot.
	ResyncConcurrency int
	// ShutdownGrace is how long a stopping worker lets in-flight commands
	// finish before it cancels them and hands them back (nak); whatever
	// they are doing, a rollback included, the next holder resumes it.
	ShutdownGrace time.Duration
	// SupersedeCheck is how often a command in progress looks for a newer
	// command of its store, which cancels it.
	SupersedeCheck time.Duration
	// RetryBackoff is the delay before redelivery after the n-th attempt
	// failed transiently; the last value repeats.
	RetryBackoff []time.Duration
	// ConflictDelay, times the delivery count and capped by LeaseTTL, is
	// the delay before redelivery when another worker holds the lease.
	ConflictDelay time.Duration
	// LeaseTTL is how long a store's lease lasts without renewal: the
	// lease bucket's TTL, which the orchestrator sets at start (New takes
	// the TTL of the lease store it is given). See lease.Keep.
	LeaseTTL time.Duration
}

// DefaultShutdownGrace is ShutdownGrace when none is set: the
// orchestrator's default --shutdown-grace.
const DefaultShutdownGrace = 20 * time.Second

// BindFlags registers the options' flags on fs and sets their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ID, "worker-id", defaultID(), "name of this worker in store leases and logs, unique per process (the default is the hostname and a random suffix)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "users' commands handled at once by this worker")
	fs.IntVar(&o.ResyncConcurrency, "resync-concurrency", 1, "resync commands handled at once by this worker, besides users' commands")
	// --shutdown-grace is the service's (serve.Options), which app copies.
	o.ShutdownGrace = DefaultShutdownGrace
	fs.DurationVar(&o.SupersedeCheck, "supersede-check", time.Second, "how often a command in progress looks for a newer command of its store, which cancels it")
	o.RetryBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}
	fs.Var((*durations)(&o.RetryBackoff), "retry-backoff", "comma-separated delays before retrying a command after its 1st, 2nd, … transient failure; the last repeats")
	fs.DurationVar(&o.ConflictDelay, "conflict-delay", 2*time.Second, "delay before retrying a command whose store another worker is working on (grows with each delivery)")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", lease.DefaultTTL, "how long a store lease lasts without renewal (the lease bucket's TTL, the same for every worker); a crashed worker's stores are taken over after it")
}

// DefaultOptions returns the defaults of BindFlags.
func DefaultOptions() Options {
	var o Options
	o.BindFlags(flag.NewFlagSet("worker", flag.ContinueOnError))
	return o
}

// Worker handles provisioning commands.
type Worker struct {
	js         jetstream.JetStream
	topology   bus.Topology
	reconciler Reconciler
	leases     *lease.Store
	metrics    *Metrics
	log        *slog.Logger
	opts       Options
}

// New returns a worker. Zero options take DefaultOptions' values; the
// lease TTL is the lease store's.
func New(js jetstream.JetStream, topology bus.Topology, r Reconciler, leases *lease.Store, m *Metrics, log *slog.Logger, opts Options) *Worker {
	d := DefaultOptions()
	if opts.ID == "" {
		opts.ID = d.ID
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = d.Concurrency
	}
	if opts.ResyncConcurrency <= 0 {
		opts.ResyncConcurrency = d.ResyncConcurrency
	}
	if opts.SupersedeCheck <= 0 {
		opts.SupersedeCheck = d.SupersedeCheck
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = d.ShutdownGrace
	}
	if len(opts.RetryBackoff) == 0 {
		opts.RetryBackoff = d.RetryBackoff
	}
	if opts.ConflictDelay <= 0 {
		opts.ConflictDelay = d.ConflictDelay
	}
	if leases.TTL > 0 {
		opts.LeaseTTL = leases.TTL
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = d.LeaseTTL
	}
	return &Worker{js: js, topology: topology, reconciler: r, leases: leases, metrics: m,
		log: log.With("worker", opts.ID), opts: opts}
}

// ID returns the worker's name, as written in the leases it holds.
func (w *Worker) ID() string { return w.opts.ID }

// pollWait bounds one pull request, so a stop is noticed promptly.
const pollWait = 5 * time.Second

// queue is one consumer the worker pulls from, with its own slots.
type queue struct {
	stream, consumer string
	slots            int
}

// Run pulls and handles commands from both queues until ctx is done, then
// stops pulling, lets in-flight commands finish for up to ShutdownGrace,
// cancels the rest (their messages are handed back to other workers) and
// returns. It returns an error only if a consumer cannot be found at
// start.
func (w *Worker) Run(ctx context.Context) error {
	commands, err := w.js.Stream(ctx, w.topology.CommandsStream())
	if err != nil {
		return fmt.Errorf("cannot bind stream %s: %w", w.topology.CommandsStream(), err)
	}
	queues := []queue{
		{w.topology.CommandsStream(), bus.OrchestratorConsumer, w.opts.Concurrency},
		{w.topology.ResyncStream(), bus.ResyncConsumer, w.opts.ResyncConcurrency},
	}
	consumers := make([]jetstream.Consumer, len(queues))
	for i, q := range queues {
		if consumers[i], err = w.js.Consumer(ctx, q.stream, q.consumer); err != nil {
			return fmt.Errorf("cannot bind consumer %s on %s: %w", q.consumer, q.stream, err)
		}
	}

	// In-flight work outlives ctx by up to the grace period.
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)
	var pulling, inFlight sync.WaitGroup
	for i, q := range queues {
		pulling.Go(func() { w.pull(ctx, workCtx, q, consumers[i], commands, &inFlight) })
	}
	pulling.Wait()

	done := make(chan struct{})
	go func() { inFlight.Wait(); close(done) }()
	w.log.Info("worker stopping: finishing in-flight commands", "grace", w.opts.ShutdownGrace)
	select {
	case <-done:
	case <-time.After(w.opts.ShutdownGrace):
		w.log.Warn("grace period over: handing in-flight commands back")
		cancelWork(errShutdown)
		<-done
	}
	w.log.Info("worker stopped")
	return nil
}

// pull handles q's commands, at most q.slots at once, until ctx is done;
// their work runs on workCtx.
func (w *Worker) pull(ctx, workCtx context.Context, q queue, cons jetstream.Consumer, commands jetstream.Stream, inFlight *sync.WaitGroup) {
	lim := limitsOf(cons.CachedInfo().Config)
	pol := policy{maxDeliver: lim.maxDeliver, retryBackoff: w.opts.RetryBackoff, conflictDelay: w.opts.ConflictDelay, leaseTTL: w.opts.LeaseTTL}
	w.log.Info("worker pulling commands", "stream", q.stream, "consumer", q.consumer,
		"concurrency", q.slots, "maxDeliver", lim.maxDeliver, "firstAckWait", lim.ackWait(1))
	slots := make(chan struct{}, q.slots)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		msg, err := w.next(ctx, cons)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				w.log.Warn("cannot pull commands; retrying", "consumer", q.consumer, "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		inFlight.Go(func() {
			defer func() { <-slots }()
			w.handle(workCtx, msg, lim, pol, commands)
		})
	}
}

func (w *Worker) next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	pollCtx, cancel := context.WithTimeout(ctx, pollWait)
	defer cancel()
	return cons.Next(jetstream.FetchContext(pollCtx))
}

// handle takes one message from receipt to its ack decision, in a span,
// orchestrator.command, of the trace the message carries (that of the
// request that queued the command), whose children are the command's
// phases (package phase) and whose events carry it on.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, lim limits, pol policy, commands jetstream.Stream) {
	w.metrics.InFlight.Inc()
	defer w.metrics.InFlight.Dec()
	start := time.Now()
	delivered, streamSeq := 1, uint64(0)
	if meta, err := msg.Metadata(); err == nil {
		delivered, streamSeq = int(meta.NumDelivered), meta.Sequence.Stream
	}
	ctx, span := otel.Tracer(tracerName).Start(tracing.Extract(ctx, tracing.Header(msg.Headers())), "orchestrator.command",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(msg.Subject()),
			attribute.Int("storeprov.delivery", delivered), attribute.String("storeprov.worker", w.opts.ID)))

	hb := w.startHeartbeat(ctx, msg, lim.ackWait(delivered)/3)
	defer hb()

	var cmd eventsv1.ProvisionCommand
	var held *lease.Lease
	err := bus.Decode(msg, &cmd)
	if err != nil {
		err = &rejectedError{err}
	} else {
		err = reconcile.Validate(&cmd)
	}
	resync := cmd.GetActor() == lifecycle.ResyncActor
	span.SetAttributes(tracing.StoreID.String(cmd.GetStoreId()), tracing.Generation.Int64(cmd.GetGeneration()),
		tracing.Action.String(actionLabel(&cmd)), attribute.Bool("storeprov.resync", resync))
	ctx = phase.WithObserver(ctx, w.metrics.phases(actionLabel(&cmd)))
	if err == nil {
		held, err = w.acquire(ctx, cmd.GetStoreId())
		if h, ok := errors.AsType[*lease.HeldError](err); ok && resync {
			// The holder is working on the store right now; waiting for it
			// would only delay the commands behind this one, and the next
			// resync looks at the store again.
			err = &staleError{busy: h}
		}
	}
	// fenced carries the lease, so that what is published for the command
	// (its FAILED status, a superseded audit) carries its token too.
	fenced := ctx
	if err == nil {
		work, stopKeep := held.Keep(ctx)
		fenced = work
		// A resync carries the store's current generation: only a user's
		// newer command supersedes it, as it does any other.
		work, stopWatch := w.watchSupersede(work, commands, &cmd)
		rec := held.Record()
		switch {
		case resync && verifiable(rec, &cmd):
			err = w.reconciler.Verify(work, &cmd)
			w.metrics.Duration.WithLabelValues(actionLabel(&cmd)).Observe(time.Since(start).Seconds())
		case rec.Supersedes(cmd.GetGeneration(), cmd.GetAction()) && !republishDeleted(rec, &cmd):
			err = &staleError{applied: rec}
		default:
			// A command never applied (lost, or given up on): a resync
			// re-enqueued it, and it is reconciled as the original.
			err = w.reconciler.Reconcile(work, &cmd)
			w.metrics.Duration.WithLabelValues(actionLabel(&cmd)).Observe(time.Since(start).Seconds())
		}
		if err != nil && work.Err() != nil {
			// Superseded, lease lost or the worker stopping: say so,
			// whatever the reconcile made of its cancelled context. A
			// command that finished is done, however late the cancel.
			err = errors.Join(context.Cause(work), err)
		}
		// Each cancels its context: read the cause first.
		stopWatch()
		stopKeep()
	}
	if _, ok := errors.AsType[*lease.HeldError](err); ok {
		w.metrics.LeaseConflicts.Inc()
	}

	d := pol.decide(err, delivered)
	switch d.outcome {
	case outcomeFailed, outcomeExhausted:
		if ferr := w.fail(fenced, &cmd, d); ferr != nil {
			// Without its FAILED status the store would look stuck: retry
			// the command, which comes to the same outcome, while it may be.
			err = fmt.Errorf("cannot publish FAILED %s status: %w", d.reason, ferr)
			d = pol.decide(err, delivered)
		}
	case outcomeSuperseded:
		if s, ok := errors.AsType[*supersededError](err); ok {
			if aerr := w.superseded(fenced, &cmd, s.by); aerr != nil {
				w.log.Warn("cannot record a superseded command in the audit log", "store", cmd.GetStoreId(), "err", aerr)
			}
		}
	}
	w.apply(ctx, msg, &cmd, held, d, lim, delivered, streamSeq)
	w.metrics.Reconciles.WithLabelValues(actionLabel(&cmd), string(d.outcome)).Inc()

	span.SetAttributes(attribute.String("storeprov.result", string(d.outcome)))
	switch d.outcome {
	case outcomeDone, outcomeStale, outcomeSuperseded:
		tracing.End(span, nil)
	default:
		tracing.End(span, err)
	}

	log := w.log.With("store", cmd.GetStoreId(), "generation", cmd.GetGeneration(), "action", actionLabel(&cmd),
		"delivery", delivered, "result", string(d.outcome), "duration", time.Since(start).Round(time.Millisecond))
	switch d.outcome {
	case outcomeDone, outcomeStale, outcomeSuperseded:
		log.Info("command handled", "err", err)
	case outcomeRetry, outcomeLater, outcomeRequeued:
		log.Info("command handed back", "delay", d.delay, "err", err)
	default:
		log.Warn("command failed", "reason", d.reason, "err", err)
	}
}

// acquire takes the store's lease, as phase.Lease.
func (w *Worker) acquire(ctx context.Context, storeID string) (*lease.Lease, error) {
	ctx, p := phase.Start(ctx, phase.Lease)
	held, err := w.leases.Acquire(ctx, storeID, w.opts.ID)
	p.End(err)
	return held, err
}

// superseded records cmd as superseded by the newer command, on a fresh
// context.
func (w *Worker) superseded(ctx context.Context, cmd, by *eventsv1.ProvisionCommand) error {
	fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return w.reconciler.Superseded(fresh, cmd, by)
}

// fail publishes the FAILED status that d gives up with, on a fresh
// context.
func (w *Worker) fail(ctx context.Context, cmd *eventsv1.ProvisionCommand, d decision) error {
	fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return w.reconciler.Fail(fresh, cmd, d.reason, d.message)
}

// apply carries out d: it releases the lease (recording the command when
// its outcome is final), then acks, naks, requeues or terminates the
// message. A FAILED status is already published.
func (w *Worker) apply(ctx context.Context, msg jetstream.Msg, cmd *eventsv1.ProvisionCommand, held *lease.Lease, d decision, lim limits, delivered int, streamSeq uint64) {
	fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if held != nil {
		var applied *eventsv1.ProvisionCommand
		if d.applied() {
			applied = cmd
		}
		if err := held.Release(fresh, applied); err != nil {
			w.log.Warn("cannot release store lease", "store", cmd.GetStoreId(), "err", err)
		}
	}

	var err error
	switch d.outcome {
	case outcomeDone, outcomeStale, outcomeFailed, outcomeSuperseded:
		err = msg.Ack()
	case outcomeRetry, outcomeLater:
		err = msg.NakWithDelay(lim.nakDelay(d.delay, delivered))
	case outcomeExhausted, outcomeRejected:
		// Not TermWithReason: servers before 2.10.4 ignore it and redeliver.
		err = msg.Term()
	case outcomeRequeued:
		id := fmt.Sprintf("%s/requeue/%d", lifecycle.CommandID(cmd.GetStoreId(), cmd.GetGeneration()), streamSeq)
		if err = bus.Publish(fresh, w.js, msg.Subject(), id, cmd); err == nil {
			err = msg.Ack()
		}
	}
	if err != nil {
		w.log.Warn("cannot settle command message", "store", cmd.GetStoreId(), "result", string(d.outcome), "err", err)
	}
}

// startHeartbeat calls InProgress every interval, so that the server does
// not redeliver the message while its store is reconciled, until the
// returned function is called. The store's lease is kept by lease.Keep.
func (w *Worker) startHeartbeat(ctx context.Context, msg jetstream.Msg, interval time.Duration) (stop func()) {
	interval = max(interval, 50*time.Millisecond)
	hbCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-tick.C:
			}
			if err := msg.InProgress(); err != nil {
				w.log.Debug("cannot send heartbeat", "err", err)
			}
		}
	}()
	return sync.OnceFunc(func() { cancel(); <-done })
}

// limits are the consumer's delivery settings as the server applies them.
type limits struct {
	maxDeliver int
	ackWaits   []time.Duration
}

// limitsOf reads the consumer's config. With BackOff set, the server
// replaces AckWait by BackOff[n-1] for the n-th delivery, so heartbeats
// must follow BackOff, not AckWait.
func limitsOf(cfg jetstream.ConsumerConfig) limits {
	l := limits{maxDeliver: cfg.MaxDeliver, ackWaits: cfg.BackOff}
	if l.maxDeliver <= 0 {
		l.maxDeliver = bus.CommandMaxDeliver
	}
	if len(l.ackWaits) == 0 {
		l.ackWaits = []time.Duration{cfg.AckWait}
	}
	return l
}

// ackWait is how long the server waits for an ack or heartbeat of the
// delivered-th delivery before redelivering.
func (l limits) ackWait(delivered int) time.Duration {
	return l.ackWaits[min(max(delivered, 1), len(l.ackWaits))-1]
}

// nakDelay is the delay to put in a Nak of the delivered-th delivery so
// that it comes back after want. With BackOff set, the server redelivers
// a Nak with delay d after d + BackOff[n-1] - BackOff[0] (it backdates the
// message by AckWait, which it set to BackOff[0], then waits BackOff[n-1]),
// so that difference is taken away. Zero or less means a plain Nak:
// redeliver at once.
func (l limits) nakDelay(want time.Duration, delivered int) time.Duration {
	return want - (l.ackWait(delivered) - l.ackWaits[0])
}

// republishDeleted reports whether a resync command asks to publish again
// the outcome of the delete the record holds as applied: the api missed
// its DELETED. Reconciling the delete again finds nothing left and says
// so.
func republishDeleted(rec lease.Record, cmd *eventsv1.ProvisionCommand) bool {
	return cmd.GetRepublish() && cmd.GetAction() == eventsv1.Action_ACTION_DELETE &&
		rec.AppliedGeneration == cmd.GetGeneration() && rec.AppliedAction == lease.ActionDelete
}

// verifiable reports whether a resync command asks to verify a store
// whose generation was applied: a provision of exactly the generation the
// record holds as provisioned. A newer generation or a delete makes it
// stale; an older record means the command was never applied.
func verifiable(rec lease.Record, cmd *eventsv1.ProvisionCommand) bool {
	return cmd.GetAction() == eventsv1.Action_ACTION_PROVISION &&
		rec.AppliedGeneration == cmd.GetGeneration() && rec.AppliedAction == lease.ActionProvision
}

func actionLabel(cmd *eventsv1.ProvisionCommand) string {
	if name := lease.ActionName(cmd.GetAction()); name != "" {
		return name
	}
	return "unknown"
}

func defaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "orchestrator"
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// durations is a flag.Value of comma-separated durations.
type durations []time.Duration

func (d *durations) String() string {
	if d == nil {
		return ""
	}
	parts := make([]string, len(*d))
	for i, v := range *d {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

func (d *durations) Set(s string) error {
	var out []time.Duration
	for part := range strings.SplitSeq(s, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a positive duration such as 5s or 2m", part)
		}
		out = append(out, v)
	}
	*d = out
	return nil
}
