package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"helm.sh/helm/v3/pkg/release"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/rollout"
)

// upgradeFailed handles an upgrade Helm refused or could not apply. A
// store that was READY is rolled back to its ready revision if Helm
// recorded a new one, and stays READY; any other store fails or retries
// as the error says.
func (s *ReleaseStep) upgradeFailed(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, readyRevision int, upgradeErr error) error {
	classified := helmError(upgradeErr)
	if readyRevision == 0 {
		return classified
	}
	history, err := s.Helm.History(commandContext(ctx), ns)
	if err != nil {
		return err
	}
	if len(history) == 0 {
		return classified
	}
	if last := history[len(history)-1]; last.Revision != readyRevision && last.Status == release.StatusFailed {
		return s.rollBack(ctx, ns, cmd, readyRevision, last, &Problem{Reason: lifecycle.ReasonUpgradeFailed, Message: upgradeErr.Error()})
	}
	var re *Error
	if errors.As(classified, &re) && re.Terminal {
		return s.keep(commandContext(ctx), ns, cmd, lifecycle.ReasonUpgradeFailed, "the upgrade was refused: "+upgradeErr.Error())
	}
	return classified
}

// upgrade upgrades a release that differs from the spec, or whose last
// revision failed.
func (s *ReleaseStep) upgrade(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, o *releaseObservation) (helmaction.Release, error) {
	s.log().Info("upgrading release", "namespace", ns, "why", o.state.why)
	rel, err := s.Helm.Upgrade(ctx, o.spec)
	if err != nil {
		return helmaction.Release{}, s.upgradeFailed(ctx, ns, cmd, o.readyRevision, err)
	}
	return rel, nil
}

// repair brings back what drifted from a release in sync: objects
// deleted out of band come back with an upgrade of the same spec (Helm
// recreates what its manifest has and the cluster lacks), and workloads
// not ready are nudged so that a retry after the cause was fixed (a quota
// raised) does not wait for the controllers' backoff, which grows to
// minutes. A Job that gave up (a setup or an order check that failed) is
// run afresh by an upgrade of the same spec too: a failed Job never runs
// again, and its name carries the release revision, so only a new
// revision brings a new Job (Helm deletes the old one). Without it a retry
// would find the old Job failed and fail at once.
func (s *ReleaseStep) repair(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, o *releaseObservation) (helmaction.Release, error) {
	rel := *o.state.last
	status, err := rollout.Check(ctx, s.Client, ns, objects(rel.Resources))
	if err != nil {
		return helmaction.Release{}, err
	}
	switch {
	case len(status.Absent) > 0:
		s.log().Info("release objects missing: upgrading to recreate them", "namespace", ns, "missing", fmt.Sprint(status.Absent))
		if rel, err = s.Helm.Upgrade(ctx, o.spec); err != nil {
			return helmaction.Release{}, s.upgradeFailed(ctx, ns, cmd, o.readyRevision, err)
		}
	case status.Problem != nil && status.Problem.Terminal:
		s.log().Info("a job of the release gave up: upgrading so that the new revision runs its jobs afresh", "namespace", ns,
			"reason", status.Problem.Reason, "revision", rel.Revision)
		if rel, err = s.Helm.Upgrade(ctx, o.spec); err != nil {
			return helmaction.Release{}, s.upgradeFailed(ctx, ns, cmd, o.readyRevision, err)
		}
	case !status.Ready():
		if err := rollout.Resync(ctx, s.Client, ns, objects(rel.Resources), time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return helmaction.Release{}, err
		}
	}
	return rel, nil
}
