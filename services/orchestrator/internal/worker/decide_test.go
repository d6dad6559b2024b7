package worker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

func TestDecideMapsErrorTypesToAckDecisions(t *testing.T) {
	p := policy{
		maxDeliver:    8,
		retryBackoff:  []time.Duration{time.Second, 5 * time.Second, 15 * time.Second},
		conflictDelay: 2 * time.Second,
		leaseTTL:      30 * time.Second,
	}
	transient := &reconcile.Error{Reason: lifecycle.ReasonRetriesExhausted, Err: errors.New("connection refused")}
	stuck := &reconcile.Error{Reason: lifecycle.ReasonNamespaceStuck, Err: &kube.TerminatingError{Namespace: "store-a", Blockers: []string{"finalizer x"}}}
	tests := []struct {
		name      string
		reason    string
		err       error
		delivered int
		want      decision
	}{
		{"success", "converged: ack", nil, 1, decision{outcome: outcomeDone}},
		{"undecodable", "cannot become valid by redelivery", &rejectedError{errors.New("bad bytes")}, 1,
			decision{outcome: outcomeRejected, reason: "undecodable", message: "bad bytes"}},
		{"stale", "a newer command was applied", &staleError{}, 1, decision{outcome: outcomeStale}},
		{"resync of a busy store", "the holder is on it; the next resync looks again", &staleError{busy: &lease.HeldError{StoreID: "a"}}, 1, decision{outcome: outcomeStale}},
		{"terminal", "a user must fix it", &reconcile.Error{Reason: lifecycle.ReasonCredentialsLost, Terminal: true, Err: kube.ErrCredentialsLost}, 1,
			decision{outcome: outcomeFailed, reason: lifecycle.ReasonCredentialsLost, message: kube.ErrCredentialsLost.Error()}},
		{"terminal on the last delivery", "terminal wins over exhausted", &reconcile.Error{Reason: lifecycle.ReasonTimeout, Terminal: true, Err: errors.New("late")}, 8,
			decision{outcome: outcomeFailed, reason: lifecycle.ReasonTimeout, message: "late"}},
		{"transient first", "backoff by delivery", transient, 1, decision{outcome: outcomeRetry, delay: time.Second}},
		{"transient third", "backoff grows", transient, 3, decision{outcome: outcomeRetry, delay: 15 * time.Second}},
		{"transient past the list", "the last backoff repeats", transient, 7, decision{outcome: outcomeRetry, delay: 15 * time.Second}},
		{"unclassified", "unknown errors are transient", errors.New("boom"), 2, decision{outcome: outcomeRetry, delay: 5 * time.Second}},
		{"transient last", "give up with RetriesExhausted", transient, 8,
			decision{outcome: outcomeExhausted, reason: lifecycle.ReasonRetriesExhausted, message: "gave up after 8 attempts: connection refused"}},
		{"stuck last", "give up naming the blocker", stuck, 8,
			decision{outcome: outcomeExhausted, reason: lifecycle.ReasonNamespaceStuck, message: "gave up after 8 attempts: namespace store-a is still terminating: finalizer x"}},
		{"held", "another worker has the store", &lease.HeldError{StoreID: "a"}, 1, decision{outcome: outcomeLater, delay: 2 * time.Second}},
		{"held again", "conflict delay grows, capped by the lease TTL", &lease.HeldError{StoreID: "a"}, 7, decision{outcome: outcomeLater, delay: 14 * time.Second}},
		{"held last", "contention never drops a command", &lease.HeldError{StoreID: "a"}, 8, decision{outcome: outcomeRequeued}},
		{"lost", "the new holder will finish", fmt.Errorf("renew: %w", lease.ErrLost), 2, decision{outcome: outcomeLater, delay: 2 * time.Second}},
		{"shutdown", "hand it back at once", errors.Join(errShutdown, transient), 2, decision{outcome: outcomeLater}},
		{"shutdown last", "requeued, not lost", errors.Join(errShutdown, transient), 8, decision{outcome: outcomeRequeued}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.decide(tt.err, tt.delivered)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(decision{})); diff != "" {
				t.Errorf("%s: decide (-want +got):\n%s", tt.reason, diff)
			}
		})
	}
}

func TestAckWaitFollowsConsumerBackOff(t *testing.T) {
	l := limits{maxDeliver: 8, ackWaits: []time.Duration{time.Second, 5 * time.Second}}
	for delivered, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 5 * time.Second, 8: 5 * time.Second} {
		if got := l.ackWait(delivered); got != want {
			t.Errorf("ackWait(%d) = %s, want %s", delivered, got, want)
		}
	}
	backoff := limits{maxDeliver: 8, ackWaits: []time.Duration{time.Second, 5 * time.Second, 15 * time.Second}}
	noBackoff := limits{maxDeliver: 8, ackWaits: []time.Duration{30 * time.Second}}
	tests := []struct {
		name      string
		l         limits
		want      time.Duration
		delivered int
		nak       time.Duration
	}{
		{"first delivery", backoff, 2 * time.Second, 1, 2 * time.Second},
		{"server adds BackOff[1]-BackOff[0]", backoff, 10 * time.Second, 2, 6 * time.Second},
		{"server adds BackOff[2]-BackOff[0]", backoff, 20 * time.Second, 5, 6 * time.Second},
		{"shorter than the server's wait: at once", backoff, 100 * time.Millisecond, 3, -13900 * time.Millisecond},
		{"no BackOff: as is", noBackoff, 7 * time.Second, 4, 7 * time.Second},
	}
	for _, tt := range tests {
		if got := tt.l.nakDelay(tt.want, tt.delivered); got != tt.nak {
			t.Errorf("%s: nakDelay(%s, %d) = %s, want %s", tt.name, tt.want, tt.delivered, got, tt.nak)
		}
	}
}
