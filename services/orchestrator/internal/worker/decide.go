package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// outcome is what becomes of a command message.
type outcome string

// Outcomes, also the "result" label of the reconciles metric.
const (
	// outcomeDone: converged and published; ack.
	outcomeDone outcome = "done"
	// outcomeStale: a newer command was applied already; ack, change nothing.
	outcomeStale outcome = "stale"
	// outcomeSuperseded: a newer command for the store was queued while
	// this one worked; it was cancelled, unfinished, for the newer one to
	// run at once. Ack; audit it as superseded.
	outcomeSuperseded outcome = "superseded"
	// outcomeFailed: terminal error; publish FAILED, ack.
	outcomeFailed outcome = "failed"
	// outcomeExhausted: transient errors outlasted every delivery; publish
	// FAILED, terminate.
	outcomeExhausted outcome = "exhausted"
	// outcomeRetry: transient error; redeliver after a backoff.
	outcomeRetry outcome = "retry"
	// outcomeLater: not this worker's turn (lease held or lost, shutting
	// down); redeliver soon.
	outcomeLater outcome = "later"
	// outcomeRequeued: outcomeLater on the last allowed delivery; publish a
	// copy of the command and ack, so that contention never drops it.
	outcomeRequeued outcome = "requeued"
	// outcomeRejected: the message is not a command; terminate.
	outcomeRejected outcome = "rejected"
)

// decision is what to do with a message.
type decision struct {
	outcome outcome
	// reason and message of the FAILED status, for failed and exhausted;
	// for rejected, why the message was not a command, logged only.
	reason  lifecycle.Reason
	message string
	// delay before redelivery, for retry and later.
	delay time.Duration
}

// applied reports whether the command's outcome is final, so the lease
// records it as applied.
func (d decision) applied() bool {
	return d.outcome == outcomeDone || d.outcome == outcomeFailed || d.outcome == outcomeExhausted
}

// errShutdown is the cause of the work context's cancellation when the
// grace period after a stop has passed.
var errShutdown = errors.New("worker is shutting down")

// rejectedError wraps a message that cannot be a command.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string { return e.err.Error() }
func (e *rejectedError) Unwrap() error { return e.err }

// staleError reports a command made obsolete by one already applied, or
// a resync command dropped because another worker holds the store (busy).
type staleError struct {
	applied lease.Record
	busy    *lease.HeldError
}

func (e *staleError) Error() string {
	if e.busy != nil {
		return "resync skipped: " + e.busy.Error()
	}
	return fmt.Sprintf("generation %d (%s) was applied already", e.applied.AppliedGeneration, e.applied.AppliedAction)
}

// policy holds the delivery limits decide works with.
type policy struct {
	// maxDeliver is the consumer's MaxDeliver: no delivery comes after it.
	maxDeliver int
	// retryBackoff is the delay after the n-th delivery failed
	// transiently; the last one repeats.
	retryBackoff []time.Duration
	// conflictDelay, times the delivery count and capped by leaseTTL, is
	// the delay after finding the lease held.
	conflictDelay, leaseTTL time.Duration
}

// decide maps the result of handling a command, delivered for the
// delivered-th time, to what becomes of its message. It is the only place
// where retry versus give-up is decided, by the error's type:
//
//	nil                          → done (ack)
//	*rejectedError               → rejected (terminate, no status)
//	*staleError                  → stale (ack; a resync whose store is busy too)
//	*supersededError             → superseded (ack, audit)
//	shutdown, lease held or lost → later (nak soon), requeued on the last delivery
//	terminal *reconcile.Error    → failed (FAILED with its reason, ack)
//	anything else, last delivery → exhausted (FAILED, terminate)
//	anything else                → retry (nak with backoff)
func (p policy) decide(err error, delivered int) decision {
	var (
		rejected   *rejectedError
		stale      *staleError
		superseded *supersededError
		held       *lease.HeldError
		rerr       *reconcile.Error
	)
	last := delivered >= p.maxDeliver
	later := func(delay time.Duration) decision {
		if last {
			return decision{outcome: outcomeRequeued}
		}
		return decision{outcome: outcomeLater, delay: delay}
	}
	switch {
	case err == nil:
		return decision{outcome: outcomeDone}
	case errors.As(err, &rejected):
		return decision{outcome: outcomeRejected, reason: "undecodable", message: err.Error()}
	case errors.As(err, &stale):
		return decision{outcome: outcomeStale}
	case errors.As(err, &superseded):
		return decision{outcome: outcomeSuperseded}
	case errors.Is(err, errShutdown):
		return later(0)
	case errors.Is(err, lease.ErrLost):
		return later(p.conflictDelay)
	case errors.As(err, &held):
		return later(min(p.conflictDelay*time.Duration(max(delivered, 1)), p.leaseTTL))
	case errors.As(err, &rerr) && rerr.Terminal:
		return decision{outcome: outcomeFailed, reason: rerr.Reason, message: err.Error()}
	case last:
		reason := lifecycle.ReasonRetriesExhausted
		if rerr != nil && rerr.Reason != "" {
			reason = rerr.Reason
		}
		return decision{outcome: outcomeExhausted, reason: reason,
			message: fmt.Sprintf("gave up after %d attempts: %v", delivered, err)}
	default:
		return decision{outcome: outcomeRetry, delay: p.backoff(delivered)}
	}
}

// backoff is the delay after the delivered-th attempt failed.
func (p policy) backoff(delivered int) time.Duration {
	if len(p.retryBackoff) == 0 {
		return time.Second
	}
	return p.retryBackoff[min(max(delivered, 1), len(p.retryBackoff))-1]
}
