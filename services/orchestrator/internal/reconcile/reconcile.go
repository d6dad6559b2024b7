// Package reconcile converges one store to what a provisioning command
// asks. Reconcile is level-triggered: it observes what exists
// (DetermineState), picks one action in one switch, and acts through
// Steps, publishing each change of phase as a status event and each
// outcome as an audit event. It never depends on which event woke it, so
// running it again after a crash, a retry or a duplicate is harmless.
//
// It knows nothing of message delivery: the worker decides from the
// returned *Error whether to retry, and calls Fail when it gives up.
package reconcile

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// Reporter publishes what the reconciler observed. Both methods must write
// even when ctx is cancelled (a fresh short context), and return an error
// only when the event may not have been stored.
type Reporter interface {
	Status(ctx context.Context, s *eventsv1.StoreStatusChanged) error
	Audit(ctx context.Context, e *auditv1.AuditEntry) error
}

// Options tune the reconciler.
type Options struct {
	// BaseDomain: a store is served at http://store-<id>.<BaseDomain>.
	BaseDomain string
	// ProvisionTimeout, measured from the command's issue_time, is how
	// long a store may take to become READY before it is FAILED (Timeout).
	ProvisionTimeout time.Duration
	// DeleteTimeout bounds one attempt's wait for a namespace to be gone;
	// give it to the steps that wait for deletion (GuardrailsStep).
	DeleteTimeout time.Duration
	// RollbackTimeout bounds the rollback of an upgrade that did not
	// become ready, which runs after the deadline; give it to
	// ReleaseStep.
	RollbackTimeout time.Duration
	// OrderCheck says which installs and upgrades run the store chart's
	// order check; give it to ReleaseStep, and let the check through the
	// namespaces' NetworkPolicies (kube.Network.OrderCheck) when Enabled.
	OrderCheck OrderCheck
}

// BindFlags registers the options' flags on fs and sets their defaults.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.BaseDomain, "base-domain", "127.0.0.1.nip.io", "domain under which each store is served, as store-<id>.<domain>")
	fs.DurationVar(&o.ProvisionTimeout, "provision-timeout", 10*time.Minute, "a store not READY this long after its command was issued is FAILED with reason Timeout")
	fs.DurationVar(&o.DeleteTimeout, "delete-timeout", DefaultDeleteTimeout, "how long one delete attempt waits for a store's namespace to be gone before retrying")
	fs.DurationVar(&o.RollbackTimeout, "rollback-timeout", DefaultRollbackTimeout, "how long the rollback of an upgrade that did not become ready may take, after the provisioning deadline")
	o.OrderCheck = OrderCheckNever
	fs.Var(&o.OrderCheck, "order-check", "which installs and upgrades run the store chart's order check, a Job that places a storefront order and cancels or deletes it (Medusa and WooCommerce): "+
		"never, install (a store's first install, until it is READY once) or always (every install and upgrade, a resync's repair included). "+
		"A failed check fails a new store with reason OrderCheckFailed naming the step and rolls an upgrade back; the store network policies let the check reach the store's server. "+
		"The sandbox runs with it off: kwok runs no container")
}

// Reconciler converges stores. Its fields must not change once it runs.
type Reconciler struct {
	// Steps in provisioning order; deletion runs them in reverse.
	Steps    []Step
	Reporter Reporter
	Options  Options
	// Now returns the current time; tests may fix it.
	Now func() time.Time
}

// New returns a reconciler of steps, in provisioning order. Zero options
// take the defaults of BindFlags.
func New(steps []Step, reporter Reporter, opts Options) *Reconciler {
	var defaults Options
	defaults.BindFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	if opts.BaseDomain == "" {
		opts.BaseDomain = defaults.BaseDomain
	}
	if opts.ProvisionTimeout <= 0 {
		opts.ProvisionTimeout = defaults.ProvisionTimeout
	}
	if opts.DeleteTimeout <= 0 {
		opts.DeleteTimeout = defaults.DeleteTimeout
	}
	if opts.RollbackTimeout <= 0 {
		opts.RollbackTimeout = defaults.RollbackTimeout
	}
	if opts.OrderCheck == "" {
		opts.OrderCheck = defaults.OrderCheck
	}
	return &Reconciler{Steps: steps, Reporter: reporter, Options: opts}
}

// Kind is what DetermineState found.
type Kind int

// Kinds of state.
const (
	// Absent: nothing of the store exists.
	Absent Kind = iota
	// Terminating: the store's namespace is being deleted.
	Terminating
	// OutOfSync: the store exists but something is missing or not ready.
	OutOfSync
	// InSync: everything of the store exists.
	InSync
	// TimedOut: a provision whose deadline passed before the store was in
	// sync. Never returned for a delete.
	TimedOut
)

func (k Kind) String() string {
	switch k {
	case Absent:
		return "Absent"
	case Terminating:
		return "Terminating"
	case OutOfSync:
		return "OutOfSync"
	case InSync:
		return "InSync"
	case TimedOut:
		return "TimedOut"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// State is the observed state of a store.
type State struct {
	Kind Kind
	// Missing names what is absent or not ready, across all steps.
	Missing []string
	// Problem is the first step's explanation of what is not ready, if any.
	Problem *Problem
	// ChartVersion is the chart version of the store's deployed release.
	ChartVersion string
	// seen are the steps' observations, in the order of Steps, for their
	// Ensure.
	seen []Observation
}

// seenBy returns what the i-th step observed, or a zero Observation.
func (st State) seenBy(i int) Observation {
	if i < len(st.seen) {
		return st.seen[i]
	}
	return Observation{}
}

// DetermineState observes every step and sums up what it found, as
// phase.Observe; it changes nothing. An error means the state could not
// be read.
func (r *Reconciler) DetermineState(ctx context.Context, cmd *eventsv1.ProvisionCommand) (_ State, err error) {
	ctx, p := phase.Start(ctx, phase.Observe)
	defer func() { p.End(err) }()
	var st State
	exists, terminating := false, false
	for _, s := range r.Steps {
		o, err := s.Observe(ctx, cmd)
		if err != nil {
			return State{}, fmt.Errorf("cannot observe %s: %w", s.Name(), err)
		}
		exists = exists || o.Exists
		terminating = terminating || o.Terminating
		st.Missing = append(st.Missing, o.Missing...)
		if st.Problem == nil {
			st.Problem = o.Problem
		}
		if o.ChartVersion != "" {
			st.ChartVersion = o.ChartVersion
		}
		st.seen = append(st.seen, o)
	}
	switch {
	case terminating:
		st.Kind = Terminating
	case !exists:
		st.Kind = Absent
	case len(st.Missing) > 0:
		st.Kind = OutOfSync
	default:
		st.Kind = InSync
	}
	if cmd.GetAction() == eventsv1.Action_ACTION_PROVISION && st.Kind != InSync && !r.now().Before(r.deadline(cmd)) {
		st.Kind = TimedOut
	}
	p.Span().SetAttributes(attribute.String("storeprov.state", st.Kind.String()))
	return st, nil
}

// Reconcile converges the store to cmd and publishes what happened:
// PROVISIONING then READY (with an audit "ready"), or DELETING then
// DELETED (with an audit "deleted"). An upgrade of a READY store that was
// rolled back or refused (a step's *UpgradeFailure) is published as READY
// with its reason and message, and an audit "failure". A nil error means
// the outcome was published. Any other error is an *Error: Terminal ones
// (invalid spec, credentials lost, a deadline passed: with the reason the
// cluster gives, such as QuotaExceeded) will not pass by retrying and the
// caller must call Fail; the others are worth retrying later.
func (r *Reconciler) Reconcile(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ctx = withCommandContext(ctx)
	deleting := cmd.GetAction() == eventsv1.Action_ACTION_DELETE
	st, err := r.DetermineState(ctx, cmd)
	if deleting && errors.Is(err, kube.ErrNamespaceConflict) {
		// The store never owned that namespace: nothing of it to remove.
		return r.deletedUntouched(ctx, cmd, err)
	}
	if err != nil {
		return classify(err)
	}
	switch {
	case deleting && st.Kind == Absent:
		return r.deleted(ctx, cmd)
	case deleting:
		return r.delete(ctx, cmd)
	case st.Kind == TimedOut:
		return r.settle(ctx, cmd, st)
	case st.Kind == Terminating:
		return &Error{Reason: lifecycle.ReasonNamespaceTerminating, Err: fmt.Errorf(
			"store %s is still being deleted: it can be provisioned again once namespace %s is gone", cmd.GetStoreId(), storeid.Namespace(cmd.GetStoreId()))}
	default: // Absent, OutOfSync, InSync: converge, which also repairs drift.
		return r.provision(ctx, cmd, st)
	}
}

// Verify checks a store whose generation cmd was already applied (the
// worker calls it for a resync command) and repairs what drifted since:
// it applies the guardrails again (restoring a quota, limits or policies
// changed or deleted out of band) and, through the release step, recreates
// release objects deleted out of band (an upgrade at the same chart and
// values) and nudges workloads that are not ready.
//
// It never publishes PROVISIONING, and publishes nothing at all when it
// found nothing drifted (a healthy store's status and audit log stay as
// they are), unless cmd asks to republish: then it publishes READY again,
// for an api that missed it. When it repaired drift it publishes READY with reason
// DriftRepaired and audits the repair. A store it cannot repair gets the
// error the worker classifies as for Reconcile: a terminal *Error, or a
// transient one whose retries end in FAILED, never a READY store left
// broken.
func (r *Reconciler) Verify(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ctx = withCommandContext(ctx)
	if cmd.GetAction() != eventsv1.Action_ACTION_PROVISION {
		return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: fmt.Errorf(
			"resync command for store %s has action %s: only a provisioned store is verified", cmd.GetStoreId(), cmd.GetAction())}
	}
	before, err := r.DetermineState(ctx, cmd)
	if err != nil {
		return classify(err)
	}
	if before.Kind == Terminating {
		return &Error{Reason: lifecycle.ReasonNamespaceTerminating, Err: fmt.Errorf(
			"store %s is being deleted out of band: namespace %s is terminating", cmd.GetStoreId(), storeid.Namespace(cmd.GetStoreId()))}
	}
	if before.Kind == Absent {
		// Installing again would bring up an empty store with new
		// credentials and call it repaired: the owner decides instead.
		return &Error{Reason: lifecycle.ReasonStoreLost, Terminal: true, Err: fmt.Errorf(
			"namespace %s was deleted out of band, and the store's data with it: retry the store to provision it again, empty, or delete it",
			storeid.Namespace(cmd.GetStoreId()))}
	}
	// The repair may take as long as a provision, from now: the command's
	// issue time is when the resync queued it.
	stepCtx, cancel := context.WithTimeout(ctx, r.Options.ProvisionTimeout)
	defer cancel()
	var (
		kept  *UpgradeFailure
		after released
	)
	for i, s := range r.Steps {
		o, err := s.Ensure(stepCtx, cmd, before.seenBy(i))
		switch {
		case err == nil:
			after.note(o)
			continue
		case errors.As(err, &kept):
			// A store kept on its ready revision after a failed upgrade
			// (before, or while repairing) is ready on it.
			after.ChartVersion = kept.ChartVersion
			continue
		case errors.Is(stepCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			return r.timedOutAfter(ctx, cmd, err)
		}
		return classify(err)
	}
	url := storeid.URL(cmd.GetStoreId(), r.Options.BaseDomain)
	switch {
	case before.Kind == InSync && cmd.GetRepublish():
		// The api missed this generation's outcome: say it again.
		if kept != nil {
			return classify(r.publish(ctx, cmd, storev1.Phase_PHASE_READY, kept.Reason, kept.Message, url, after))
		}
		return classify(r.publish(ctx, cmd, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, "store is ready at "+url+" (reported again)", url, after))
	case before.Kind == InSync:
		return nil
	}
	msg := "repaired drift: " + strings.Join(before.Missing, ", ")
	if len(before.Missing) == 0 {
		msg = "repaired drift: store " + before.Kind.String()
	}
	reason, message := lifecycle.ReasonDriftRepaired, msg
	if kept != nil {
		// Still READY with the failed upgrade's reason, which the api
		// keeps as the store's failure reason.
		reason, message = kept.Reason, kept.Message
		msg += "; the store stays on its ready revision: " + kept.Error()
	}
	if err := r.publish(ctx, cmd, storev1.Phase_PHASE_READY, reason, message, url, after); err != nil {
		return classify(err)
	}
	return classify(r.Reporter.Audit(ctx, &auditv1.AuditEntry{
		Id:         lifecycle.RepairAuditEventID(cmd.GetStoreId(), cmd.GetGeneration(), cmd.GetIssueTime().AsTime().UnixNano()),
		Action:     lifecycle.ActionRepaired,
		Actor:      lifecycle.SystemActor,
		StoreId:    cmd.GetStoreId(),
		Time:       timestamppb.New(r.now()),
		Detail:     msg,
		StoreOwner: cmd.GetSpec().GetOwner(),
	}))
}

// Fail publishes the store as FAILED with reason and message, and an
// audit "failure", for the generation of cmd. The caller calls it when it
// gives up on cmd; an error means the events may not be stored.
func (r *Reconciler) Fail(ctx context.Context, cmd *eventsv1.ProvisionCommand, reason lifecycle.Reason, message string) error {
	if err := r.status(ctx, cmd, storev1.Phase_PHASE_FAILED, reason, message, ""); err != nil {
		return err
	}
	return r.audit(ctx, cmd, lifecycle.ActionFailure, string(reason)+": "+message)
}

// Superseded records in the audit log that cmd was cancelled before it
// finished because the newer command by was queued for its store; by
// runs next and publishes the store's status.
func (r *Reconciler) Superseded(ctx context.Context, cmd, by *eventsv1.ProvisionCommand) error {
	return r.audit(ctx, cmd, lifecycle.ActionSuperseded, fmt.Sprintf(
		"generation %d (%s) stopped unfinished: generation %d (%s, by %s) superseded it",
		cmd.GetGeneration(), actionWord(cmd), by.GetGeneration(), actionWord(by), by.GetActor()))
}

func actionWord(cmd *eventsv1.ProvisionCommand) string {
	if cmd.GetAction() == eventsv1.Action_ACTION_DELETE {
		return "delete"
	}
	return "provision"
}

// Validate returns a terminal *Error (InvalidSpec) when cmd cannot succeed
// as written, saying what is wrong.
func Validate(cmd *eventsv1.ProvisionCommand) error {
	var problem error
	switch idErr := storeid.Validate(cmd.GetStoreId()); {
	case idErr != nil:
		problem = idErr
	case cmd.GetGeneration() < 1:
		problem = fmt.Errorf("command for store %s has generation %d: generations start at 1", cmd.GetStoreId(), cmd.GetGeneration())
	case cmd.GetAction() != eventsv1.Action_ACTION_PROVISION && cmd.GetAction() != eventsv1.Action_ACTION_DELETE:
		problem = fmt.Errorf("command for store %s has action %s: use ACTION_PROVISION or ACTION_DELETE", cmd.GetStoreId(), cmd.GetAction())
	case cmd.GetAction() == eventsv1.Action_ACTION_PROVISION && cmd.GetIssueTime() == nil:
		problem = fmt.Errorf("provision command for store %s has no issue_time: it is needed to measure the provisioning deadline", cmd.GetStoreId())
	}
	if problem == nil {
		return nil
	}
	return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: problem}
}

// inSyncGrace bounds the steps of a store found in sync after its
// deadline (a redelivery): converging it takes no waiting, and a store
// that is ready is READY, not FAILED, whenever it is looked at.
const inSyncGrace = time.Minute

func (r *Reconciler) provision(ctx context.Context, cmd *eventsv1.ProvisionCommand, st State) error {
	ns := storeid.Namespace(cmd.GetStoreId())
	names := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		names[i] = s.Name()
	}
	msg := fmt.Sprintf("converging generation %d in namespace %s: %s", cmd.GetGeneration(), ns, strings.Join(names, ", "))
	if err := r.status(ctx, cmd, storev1.Phase_PHASE_PROVISIONING, lifecycle.ReasonProvisioning, msg, ""); err != nil {
		return classify(err)
	}
	url := storeid.URL(cmd.GetStoreId(), r.Options.BaseDomain)
	deadline := r.deadline(cmd)
	if st.Kind == InSync && !r.now().Before(deadline) {
		deadline = r.now().Add(inSyncGrace)
	}
	stepCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var ready released
	for i, s := range r.Steps {
		o, err := s.Ensure(stepCtx, cmd, st.seenBy(i))
		var (
			kept    *UpgradeFailure
			verdict *Error
		)
		switch {
		case err == nil:
			ready.note(o)
			continue
		case errors.As(err, &kept):
			return r.upgradeKept(ctx, cmd, kept, url)
		case errors.As(err, &verdict) && verdict.Terminal:
			// The step's own verdict, even past the deadline (a rollback
			// that did not become ready either): it says more than "not
			// ready in time" would.
			return err
		case errors.Is(stepCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			// A rollback that failed may still be finished now.
			if settled, err := r.runSettlers(ctx, cmd); settled {
				return err
			}
			return r.timedOutAfter(ctx, cmd, err)
		}
		return classify(err)
	}
	// Every step is in sync: its Ensure said so after waiting for it.
	msg = "store is ready at " + url
	if ready.ChartVersion != "" {
		msg += " (chart " + ready.ChartVersion + ")"
	}
	if err := r.publish(ctx, cmd, storev1.Phase_PHASE_READY, lifecycle.ReasonReady, msg, url, ready); err != nil {
		return classify(err)
	}
	return classify(r.audit(ctx, cmd, lifecycle.ActionReady, msg))
}

// released collects what the steps' Ensure report of the release a
// READY event speaks of: its chart version, and when its order check
// passed (zero when it ran none).
type released struct {
	ChartVersion     string
	OrderCheckPassed time.Time
}

func (c *released) note(o Observation) {
	if o.ChartVersion != "" {
		c.ChartVersion = o.ChartVersion
	}
	if !o.OrderCheckPassed.IsZero() {
		c.OrderCheckPassed = o.OrderCheckPassed
	}
}

// upgradeKept publishes a READY store whose upgrade did not take, with
// why, and records the failure in the audit log.
func (r *Reconciler) upgradeKept(ctx context.Context, cmd *eventsv1.ProvisionCommand, f *UpgradeFailure, url string) error {
	if err := r.publish(ctx, cmd, storev1.Phase_PHASE_READY, f.Reason, f.Message, url, released{ChartVersion: f.ChartVersion}); err != nil {
		return classify(err)
	}
	return classify(r.audit(ctx, cmd, lifecycle.ActionFailure, string(f.Reason)+": "+f.Message))
}

func (r *Reconciler) delete(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	msg := fmt.Sprintf("deleting generation %d: everything in namespace %s", cmd.GetGeneration(), storeid.Namespace(cmd.GetStoreId()))
	if err := r.status(ctx, cmd, storev1.Phase_PHASE_DELETING, lifecycle.ReasonDeleting, msg, ""); err != nil {
		return classify(err)
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		err := r.Steps[i].Remove(ctx, cmd)
		var te *kube.TerminatingError
		if errors.As(err, &te) {
			// Still DELETING, but say what it waits for; a later attempt resumes.
			_ = r.status(ctx, cmd, storev1.Phase_PHASE_DELETING, lifecycle.ReasonNamespaceTerminating, te.Error(), "")
		}
		if err != nil {
			return classify(err)
		}
	}
	return r.deleted(ctx, cmd)
}

func (r *Reconciler) deleted(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	return r.reportDeleted(ctx, cmd, fmt.Sprintf("namespace %s and everything in it are gone", storeid.Namespace(cmd.GetStoreId())))
}

// reportDeleted publishes DELETED and audits it, saying msg.
func (r *Reconciler) reportDeleted(ctx context.Context, cmd *eventsv1.ProvisionCommand, msg string) error {
	if err := r.status(ctx, cmd, storev1.Phase_PHASE_DELETED, lifecycle.ReasonDeleted, msg, ""); err != nil {
		return classify(err)
	}
	return classify(r.audit(ctx, cmd, lifecycle.ActionDeleted, msg))
}

// deletedUntouched reports a store deleted whose namespace name is taken
// by a namespace the platform does not own (conflict): it removes nothing.
func (r *Reconciler) deletedUntouched(ctx context.Context, cmd *eventsv1.ProvisionCommand, conflict error) error {
	return r.reportDeleted(ctx, cmd, fmt.Sprintf("nothing to remove: %v", conflict))
}

// settle handles a provision found past its deadline: a step that can
// settle what an attempt cut short left half done (Settler) does so, and
// a store it keeps READY is published so; otherwise the store is FAILED
// as timed out.
func (r *Reconciler) settle(ctx context.Context, cmd *eventsv1.ProvisionCommand, st State) error {
	if settled, err := r.runSettlers(ctx, cmd); settled {
		return err
	}
	return r.timedOut(cmd, st, nil)
}

// runSettlers runs the steps' Settle after the deadline. It reports
// whether one settled the store (published READY, kept on its ready
// revision) or failed to, with the error to return; false when none had
// anything to settle.
func (r *Reconciler) runSettlers(ctx context.Context, cmd *eventsv1.ProvisionCommand) (bool, error) {
	for _, s := range r.Steps {
		settler, ok := s.(Settler)
		if !ok {
			continue
		}
		err := settler.Settle(ctx, cmd)
		var kept *UpgradeFailure
		switch {
		case errors.As(err, &kept):
			return true, r.upgradeKept(ctx, cmd, kept, storeid.URL(cmd.GetStoreId(), r.Options.BaseDomain))
		case err != nil:
			return true, classify(err)
		}
	}
	return false, nil
}

// timedOutAfter reports a deadline that passed while a step was working,
// with what was still missing then (read with a fresh context).
func (r *Reconciler) timedOutAfter(ctx context.Context, cmd *eventsv1.ProvisionCommand, last error) error {
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := r.DetermineState(readCtx, cmd)
	if err != nil {
		return r.timedOut(cmd, State{}, errors.Join(last, err))
	}
	return r.timedOut(cmd, st, last)
}

// timedOut is the terminal error of a store not ready at its deadline. Its
// reason is the cluster's explanation when a step found one (the *Problem
// a step returned, or the one it observed), Timeout otherwise. Its
// message says what is missing and never just "context deadline
// exceeded".
func (r *Reconciler) timedOut(cmd *eventsv1.ProvisionCommand, st State, last error) error {
	reason := lifecycle.ReasonTimeout
	problem := st.Problem
	if p, ok := errors.AsType[*Problem](last); ok {
		problem = p
	}
	if errors.Is(last, context.DeadlineExceeded) || errors.Is(last, context.Canceled) {
		last = nil // the deadline itself, which the message says anyway
	}
	var details []string
	if problem != nil {
		reason = problem.Reason
		details = append(details, problem.Message)
	}
	if len(st.Missing) > 0 && (problem == nil || problem.Reason != lifecycle.ReasonTimeout) {
		details = append(details, "missing "+strings.Join(st.Missing, ", "))
	}
	if len(details) == 0 {
		details = append(details, "nothing observed missing")
	}
	err := fmt.Errorf("store %s was not ready within %s of its request at %s: %s",
		cmd.GetStoreId(), r.Options.ProvisionTimeout, cmd.GetIssueTime().AsTime().UTC().Format(time.RFC3339), strings.Join(details, "; "))
	if last != nil && problem == nil {
		err = fmt.Errorf("%w (last error: %w)", err, last)
	}
	return &Error{Reason: reason, Terminal: true, Err: err}
}

func (r *Reconciler) status(ctx context.Context, cmd *eventsv1.ProvisionCommand, phase storev1.Phase, reason lifecycle.Reason, message, url string) error {
	return r.publish(ctx, cmd, phase, reason, message, url, released{})
}

func (r *Reconciler) publish(ctx context.Context, cmd *eventsv1.ProvisionCommand, phase storev1.Phase, reason lifecycle.Reason, message, url string, rel released) error {
	ev := &eventsv1.StoreStatusChanged{
		StoreId:            cmd.GetStoreId(),
		Phase:              phase,
		Reason:             string(reason),
		Message:            message,
		ObservedGeneration: cmd.GetGeneration(),
		Time:               timestamppb.New(r.now()),
		Url:                url,
		ChartVersion:       rel.ChartVersion,
	}
	if !rel.OrderCheckPassed.IsZero() {
		ev.OrderCheckTime = timestamppb.New(rel.OrderCheckPassed)
	}
	return r.Reporter.Status(ctx, ev)
}

func (r *Reconciler) audit(ctx context.Context, cmd *eventsv1.ProvisionCommand, action, detail string) error {
	return r.Reporter.Audit(ctx, &auditv1.AuditEntry{
		Id:         lifecycle.AuditEventID(cmd.GetStoreId(), cmd.GetGeneration(), action),
		Action:     action,
		Actor:      lifecycle.SystemActor,
		StoreId:    cmd.GetStoreId(),
		Time:       timestamppb.New(r.now()),
		Detail:     detail,
		StoreOwner: cmd.GetSpec().GetOwner(),
	})
}

func (r *Reconciler) deadline(cmd *eventsv1.ProvisionCommand) time.Time {
	return cmd.GetIssueTime().AsTime().Add(r.Options.ProvisionTimeout)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
