package reconcile

import (
	"context"
	"time"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
)

// Step is one part of a store that Reconcile converges. Steps run in order
// to provision (the namespace first, the Helm release later) and in
// reverse order to delete. Every method must be idempotent and safe to
// call again after a partial failure or from a second worker.
type Step interface {
	// Name names the step in logs and messages.
	Name() string
	// Observe reports what of the step exists; it changes nothing. An error
	// means the state could not be read.
	Observe(ctx context.Context, cmd *eventsv1.ProvisionCommand) (Observation, error)
	// Ensure creates or repairs what the step owns, starting from what
	// Observe found in this attempt (seen; a zero Observation makes it
	// read the cluster itself), and returns what is there once it is in
	// sync. A nil error means the step is in sync: Reconcile reads nothing
	// again before it reports the store READY.
	Ensure(ctx context.Context, cmd *eventsv1.ProvisionCommand, seen Observation) (Observation, error)
	// Remove deletes what the step owns and returns once it is gone.
	Remove(ctx context.Context, cmd *eventsv1.ProvisionCommand) error
}

// Settler is a Step that can settle, after the provisioning deadline,
// what an attempt cut short left half done: the release step rolls back
// an upgrade of a READY store that a stopped or killed worker left
// unfinished. Reconcile calls Settle for a provision found TimedOut; it
// returns an *UpgradeFailure when the store is kept READY, nil when there
// is nothing to settle, or another error.
type Settler interface {
	Settle(ctx context.Context, cmd *eventsv1.ProvisionCommand) error
}

// commandKey keys the context of a whole command in the contexts of its
// steps.
type commandKey struct{}

// withCommandContext stores ctx in itself, for commandContext.
func withCommandContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, commandKey{}, ctx)
}

// commandContext returns the context of the whole command ctx belongs to:
// cancelled when the command's work is (a newer command superseded it,
// its lease was lost, the worker is stopping), but not by the provisioning
// deadline. Steps use it for what must go on after that deadline: rolling
// back an upgrade, recording a failed one. Outside Reconcile and Verify
// it is ctx without its cancellation.
func commandContext(ctx context.Context) context.Context {
	if c, ok := ctx.Value(commandKey{}).(context.Context); ok {
		return c
	}
	return context.WithoutCancel(ctx)
}

// Observation is what a step found.
type Observation struct {
	// Exists is true when anything of the step exists.
	Exists bool
	// Terminating is true when what exists is being deleted, so nothing can
	// be created until it is gone.
	Terminating bool
	// Missing names what is absent or not ready yet, for humans: "namespace
	// store-x", "network policy default-deny". Empty when in sync.
	Missing []string
	// Problem is why what is missing is not ready, as the cluster says it;
	// nil when nothing but time explains it.
	Problem *Problem
	// ChartVersion is the chart version of the deployed release, if the
	// step has one.
	ChartVersion string
	// OrderCheckPassed is when the order check of the release Ensure made
	// ready completed; zero when that release ran none.
	OrderCheckPassed time.Time
	// detail is the step's own reading, which Reconcile hands back to the
	// step's Ensure so that the cluster is read once per attempt.
	detail any
}

// Problem is why a store is not ready, read from the cluster: the reason
// and message of its FAILED status if the deadline passes. A step returns
// it from Ensure when the deadline passed while it waited.
type Problem struct {
	// Reason is a lifecycle reason, such as QuotaExceeded.
	Reason lifecycle.Reason
	// Message names the object and quotes the cluster.
	Message string
}

func (p *Problem) Error() string { return string(p.Reason) + ": " + p.Message }

// GuardrailsStep converges a store's namespace and its guardrails (quota,
// limits, network policies, credentials) with package kube. It comes
// first: removing it deletes the namespace and whatever is left in it.
type GuardrailsStep struct {
	Guardrails *kube.Guardrails
	// DeleteTimeout bounds one wait for the namespace to be gone; past it
	// Remove returns the *kube.TerminatingError naming the blocker. Zero
	// means DefaultDeleteTimeout.
	DeleteTimeout time.Duration
}

// DefaultDeleteTimeout is the default of Options.DeleteTimeout.
const DefaultDeleteTimeout = 2 * time.Minute

// Name implements Step.
func (GuardrailsStep) Name() string { return "guardrails" }

// Observe implements Step.
func (s GuardrailsStep) Observe(ctx context.Context, cmd *eventsv1.ProvisionCommand) (Observation, error) {
	o, err := s.Guardrails.Observe(ctx, cmd.GetStoreId())
	if err != nil {
		return Observation{}, err
	}
	return Observation{Exists: o.Exists, Terminating: o.Terminating, Missing: o.Missing}, nil
}

// Ensure implements Step: it writes every guardrail, whatever was seen,
// so that one changed out of band is put back.
func (s GuardrailsStep) Ensure(ctx context.Context, cmd *eventsv1.ProvisionCommand, _ Observation) (Observation, error) {
	if err := s.Guardrails.Ensure(ctx, cmd.GetStoreId()); err != nil {
		return Observation{}, err
	}
	return Observation{Exists: true}, nil
}

// Remove implements Step.
func (s GuardrailsStep) Remove(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	timeout := s.DeleteTimeout
	if timeout <= 0 {
		timeout = DefaultDeleteTimeout
	}
	return s.Guardrails.DeleteNamespace(ctx, cmd.GetStoreId(), timeout)
}
