package reconcile

import (
	"context"
	"encoding/json"
	"fmt"

	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/rollout"
)

// rollBack rolls the release back to the revision that was ready, records
// the failed upgrade, waits until the rolled-back release is ready and
// returns the *UpgradeFailure to publish. It runs after the deadline, on
// the command's context (commandContext) bounded by RollbackTimeout: it
// stops when the command is superseded, its lease lost or the worker
// stopping, and the next holder settles what it left (Settle).
func (s *ReleaseStep) rollBack(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, readyRevision int, failed helmaction.Release, why *Problem) error {
	rbCtx, cancel := context.WithTimeout(commandContext(ctx), s.rollbackTimeout())
	defer cancel()
	s.log().Warn("upgrade did not become ready: rolling back", "namespace", ns, "revision", failed.Revision, "to", readyRevision, "reason", why.Reason, "message", why.Message)
	cause, err := json.Marshal(rollbackCause{Generation: cmd.GetGeneration(), Reason: why.Reason, Message: why.Message})
	if err != nil {
		return err
	}
	if err := s.annotate(rbCtx, ns, AnnotationRollbackCause, string(cause)); err != nil {
		return err
	}
	if _, err := s.Helm.Unlock(rbCtx, ns); err != nil {
		return err
	}
	rel, err := s.Helm.Rollback(rbCtx, ns, readyRevision)
	if err != nil {
		return &Error{Reason: why.Reason, Err: fmt.Errorf("%s; and %w", why.Error(), err)}
	}
	msg := fmt.Sprintf("the upgrade to chart %s %s (revision %d) did not become ready: %s; rolled back to revision %d (now revision %d)",
		failed.Chart, failed.ChartVersion, failed.Revision, why.Error(), readyRevision, rel.Revision)
	if why.Reason == lifecycle.ReasonUpgradeFailed {
		msg = fmt.Sprintf("the upgrade (revision %d) failed: %s; rolled back to revision %d (now revision %d)", failed.Revision, why.Message, readyRevision, rel.Revision)
	}
	// Recorded before the wait, so that the next attempt does not upgrade
	// again if this one is cut short.
	f, err := s.record(rbCtx, ns, cmd, lifecycle.ReasonUpgradeRolledBack, msg, rel.ChartVersion)
	if err != nil {
		return err
	}
	return s.waitKept(rbCtx, ns, rel, f, readyRevision)
}

// Settle implements Settler. Past the deadline, a store that was READY and
// whose newest revision is not its ready one (an upgrade, or its
// rollback, cut short by a stopped, killed or superseded worker) is
// rolled back to its ready revision and kept READY; one whose rollback is
// recorded already is reported once its kept revision is ready. A store
// never READY, or whose newest revision is its ready one, has nothing to
// settle.
func (s *ReleaseStep) Settle(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ctx, cancel := context.WithTimeout(ctx, s.rollbackTimeout())
	defer cancel()
	ns := storeid.Namespace(cmd.GetStoreId())
	nsObj, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	readyRevision := readyRevisionOf(nsObj)
	if readyRevision == 0 {
		return nil
	}
	if _, err := s.Helm.Unlock(ctx, ns); err != nil {
		return err
	}
	history, err := s.Helm.History(ctx, ns)
	if err != nil || len(history) == 0 {
		return err
	}
	last := history[len(history)-1]
	if f := upgradeFailureOf(nsObj); f != nil && f.Generation == cmd.GetGeneration() && last.Status == release.StatusDeployed {
		return s.waitKept(ctx, ns, last, f, readyRevision)
	}
	if last.Revision == readyRevision {
		return nil
	}
	why := &Problem{Reason: lifecycle.ReasonTimeout,
		Message: fmt.Sprintf("revision %d was not ready by the deadline (its attempt was cut short)", last.Revision)}
	var cause rollbackCause
	if raw, ok := nsObj.Annotations[AnnotationRollbackCause]; ok && json.Unmarshal([]byte(raw), &cause) == nil && cause.Generation == cmd.GetGeneration() {
		// The rollback that was cut short said why it started.
		why = &Problem{Reason: cause.Reason, Message: cause.Message}
	}
	return s.rollBack(ctx, ns, cmd, readyRevision, last, why)
}

// waitKept waits until the revision a store was kept on is ready and
// returns f, or a terminal error saying that neither the upgrade nor the
// rollback became ready.
func (s *ReleaseStep) waitKept(ctx context.Context, ns string, rel helmaction.Release, f *UpgradeFailure, readyRevision int) error {
	status, err := rollout.Wait(ctx, s.Client, ns, objects(rel.Resources))
	if err != nil {
		return err
	}
	if !status.Ready() {
		p := notReady(status)
		return &Error{Reason: p.Reason, Terminal: true, Err: fmt.Errorf(
			"%s; and the rolled-back revision %d is not ready either: %s", f.Message, rel.Revision, p.Message)}
	}
	if err := s.markReady(ctx, ns, rel.Revision, readyRevision); err != nil {
		return err
	}
	return f
}
