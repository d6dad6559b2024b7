// Package worker is the orchestrator's transport: it pulls provisioning
// commands from the durable consumer every orchestrator replica shares,
// handles at most Concurrency of them at once, fences each store with a
// lease, keeps each message alive with InProgress heartbeats while its
// store is reconciled, and turns the result into one ack decision
// (policy.decide).
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

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

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
	Fail(ctx context.Context, cmd *eventsv1.ProvisionCommand, reason, message string) error
}

// Options tune a worker.
type Options struct {
	// ID names the worker in leases, logs and metrics; unique per process.
	ID string
	// Concurrency bounds the commands handled at once.
	Concurrency int
	// ShutdownGrace is how long a stopping worker lets in-flight commands
	// finish before it cancels them and hands them back (nak).
	ShutdownGrace time.Duration
	// RetryBackoff is the delay before redelivery after the n-th attempt
	// failed transiently; the last value repeats.
	RetryBackoff []time.Duration
	// ConflictDelay, times the delivery count and capped by LeaseTTL, is
	// the delay before redelivery when another worker holds the lease.
	ConflictDelay time.Duration
	// LeaseTTL is how long a store's lease lasts without renewal; it is
	// renewed every LeaseTTL/3 while the store is reconciled.
	LeaseTTL time.Duration
}

// BindFlags registers the options' flags on fs and sets their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.ID, "worker-id", defaultID(), "name of this worker in store leases and logs, unique per process (the default is the hostname and a random suffix)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "commands handled at once by this worker")
	fs.DurationVar(&o.ShutdownGrace, "shutdown-grace", 20*time.Second, "on stop, how long in-flight commands may finish before they are handed back to other workers")
	o.RetryBackoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}
	fs.Var((*durations)(&o.RetryBackoff), "retry-backoff", "comma-separated delays before retrying a command after its 1st, 2nd, … transient failure; the last repeats")
	fs.DurationVar(&o.ConflictDelay, "conflict-delay", 2*time.Second, "delay before retrying a command whose store another worker is working on (grows with each delivery)")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", lease.DefaultTTL, "how long a store lease lasts without renewal; a crashed worker's stores are taken over after it")
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

// New returns a worker. Zero options take DefaultOptions' values; leases
// get opts.LeaseTTL.
func New(js jetstream.JetStream, topology bus.Topology, r Reconciler, leases *lease.Store, m *Metrics, log *slog.Logger, opts Options) *Worker {
	d := DefaultOptions()
	if opts.ID == "" {
		opts.ID = d.ID
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = d.Concurrency
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
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = d.LeaseTTL
	}
	leases.TTL = opts.LeaseTTL
	return &Worker{js: js, topology: topology, reconciler: r, leases: leases, metrics: m,
		log: log.With("worker", opts.ID), opts: opts}
}

// ID returns the worker's name, as written in the leases it holds.
func (w *Worker) ID() string { return w.opts.ID }

// pollWait bounds one pull request, so a stop is noticed promptly.
const pollWait = 5 * time.Second

// Run pulls and handles commands until ctx is done, then stops pulling,
// lets in-flight commands finish for up to ShutdownGrace, cancels the rest
// (their messages are handed back to other workers) and returns. It
// returns an error only if the consumer cannot be found at start.
func (w *Worker) Run(ctx context.Context) error {
	cons, err := w.js.Consumer(ctx, w.topology.CommandsStream(), bus.OrchestratorConsumer)
	if err != nil {
		return fmt.Errorf("cannot bind consumer %s on %s: %w", bus.OrchestratorConsumer, w.topology.CommandsStream(), err)
	}
	lim := limitsOf(cons.CachedInfo().Config)
	pol := policy{maxDeliver: lim.maxDeliver, retryBackoff: w.opts.RetryBackoff, conflictDelay: w.opts.ConflictDelay, leaseTTL: w.opts.LeaseTTL}
	w.log.Info("worker pulling commands", "stream", w.topology.CommandsStream(), "consumer", bus.OrchestratorConsumer,
		"concurrency", w.opts.Concurrency, "maxDeliver", lim.maxDeliver, "firstAckWait", lim.ackWait(1))

	// In-flight work outlives ctx by up to the grace period.
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)
	slots := make(chan struct{}, w.opts.Concurrency)
	var inFlight sync.WaitGroup
pull:
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break pull
		}
		msg, err := w.next(ctx, cons)
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				break pull
			}
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				w.log.Warn("cannot pull commands; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		inFlight.Go(func() {
			defer func() { <-slots }()
			w.handle(workCtx, msg, lim, pol)
		})
	}

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

func (w *Worker) next(ctx context.Context, cons jetstream.Consumer) (jetstream.Msg, error) {
	pollCtx, cancel := context.WithTimeout(ctx, pollWait)
	defer cancel()
	return cons.Next(jetstream.FetchContext(pollCtx))
}

// handle takes one message from receipt to its ack decision.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg, lim limits, pol policy) {
	w.metrics.InFlight.Inc()
	defer w.metrics.InFlight.Dec()
	start := time.Now()
	delivered, streamSeq := 1, uint64(0)
	if meta, err := msg.Metadata(); err == nil {
		delivered, streamSeq = int(meta.NumDelivered), meta.Sequence.Stream
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hb := w.startHeartbeat(ctx, msg, lim.ackWait(delivered)/3, cancel)
	defer hb.stop()

	var cmd eventsv1.ProvisionCommand
	var held *lease.Lease
	err := bus.Decode(msg, &cmd)
	if err != nil {
		err = &rejectedError{err}
	} else {
		err = reconcile.Validate(&cmd)
	}
	resync := cmd.GetActor() == lifecycle.ResyncActor
	if err == nil {
		held, err = w.leases.Acquire(ctx, cmd.GetStoreId(), w.opts.ID)
		if h, ok := errors.AsType[*lease.HeldError](err); ok && resync {
			// The holder is working on the store right now; waiting for it
			// would only delay the commands behind this one, and the next
			// resync looks at the store again.
			err = &staleError{busy: h}
		}
	}
	if err == nil {
		hb.setLease(held)
		rec := held.Record()
		switch {
		case resync && verifiable(rec, &cmd):
			err = w.reconciler.Verify(ctx, &cmd)
			w.metrics.Duration.WithLabelValues(actionLabel(&cmd)).Observe(time.Since(start).Seconds())
		case rec.Supersedes(cmd.GetGeneration(), cmd.GetAction()):
			err = &staleError{applied: rec}
		default:
			// A command never applied (lost, or given up on): a resync
			// re-enqueued it, and it is reconciled as the original.
			err = w.reconciler.Reconcile(ctx, &cmd)
			w.metrics.Duration.WithLabelValues(actionLabel(&cmd)).Observe(time.Since(start).Seconds())
		}
	}
	hb.stop()
	if ctx.Err() != nil {
		// The heartbeat lost the lease or the worker is stopping: say so,
		// whatever the reconcile made of its cancelled context.
		err = errors.Join(context.Cause(ctx), err)
	}
	if _, ok := errors.AsType[*lease.HeldError](err); ok {
		w.metrics.LeaseConflicts.Inc()
	}

	d := pol.decide(err, delivered)
	if d.outcome == outcomeFailed || d.outcome == outcomeExhausted {
		if ferr := w.fail(ctx, &cmd, d); ferr != nil {
			// Without its FAILED status the store would look stuck: retry
			// the command, which comes to the same outcome, while it may be.
			err = fmt.Errorf("cannot publish FAILED %s status: %w", d.reason, ferr)
			d = pol.decide(err, delivered)
		}
	}
	w.apply(ctx, msg, &cmd, held, d, lim, delivered, streamSeq)
	w.metrics.Reconciles.WithLabelValues(actionLabel(&cmd), string(d.outcome)).Inc()

	log := w.log.With("store", cmd.GetStoreId(), "generation", cmd.GetGeneration(), "action", actionLabel(&cmd),
		"delivery", delivered, "result", string(d.outcome), "duration", time.Since(start).Round(time.Millisecond))
	switch d.outcome {
	case outcomeDone, outcomeStale:
		log.Info("command handled")
	case outcomeRetry, outcomeLater, outcomeRequeued:
		log.Info("command handed back", "delay", d.delay, "err", err)
	default:
		log.Warn("command failed", "reason", d.reason, "err", err)
	}
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
	case outcomeDone, outcomeStale, outcomeFailed:
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

// heartbeat keeps a message and its store's lease alive while the store
// is reconciled.
type heartbeat struct {
	mu       sync.Mutex
	held     *lease.Lease
	renewed  time.Time
	stopOnce func()
}

func (h *heartbeat) setLease(l *lease.Lease) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held, h.renewed = l, time.Now()
}

func (h *heartbeat) stop() { h.stopOnce() }

// startHeartbeat calls InProgress every interval and renews the lease
// every LeaseTTL/3 until stopped. When the lease is lost it cancels the
// work with lease.ErrLost as the cause.
func (w *Worker) startHeartbeat(ctx context.Context, msg jetstream.Msg, interval time.Duration, cancelWork context.CancelCauseFunc) *heartbeat {
	interval = max(interval, 50*time.Millisecond)
	renewEvery := w.opts.LeaseTTL / 3
	hb := &heartbeat{}
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
			hb.mu.Lock()
			held, due := hb.held, time.Since(hb.renewed) >= renewEvery
			hb.mu.Unlock()
			if held == nil || !due {
				continue
			}
			// A fresh context: a renewal cut short could leave the lease
			// renewed on the server and our revision stale.
			renewCtx, cancelRenew := context.WithTimeout(context.WithoutCancel(ctx), renewEvery)
			err := held.Renew(renewCtx)
			cancelRenew()
			switch {
			case errors.Is(err, lease.ErrLost):
				cancelWork(err)
				return
			case err != nil:
				w.log.Warn("cannot renew store lease", "err", err)
			default:
				hb.mu.Lock()
				hb.renewed = time.Now()
				hb.mu.Unlock()
			}
		}
	}()
	hb.stopOnce = sync.OnceFunc(func() { cancel(); <-done })
	return hb
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
