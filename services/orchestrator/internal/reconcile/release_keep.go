package reconcile

import (
	"context"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
)

// keep records that the upgrade of cmd's generation was refused before
// anything changed, and returns it as an *UpgradeFailure.
func (s *ReleaseStep) keep(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, reason lifecycle.Reason, message string) error {
	history, err := s.Helm.History(ctx, ns)
	if err != nil {
		return err
	}
	var version string
	if d := deployed(history); d != nil {
		version = d.ChartVersion
	}
	f, err := s.record(ctx, ns, cmd, reason, message, version)
	if err != nil {
		return err
	}
	return f
}

// keptAgain reports an upgrade that was rolled back or refused already
// (a worker may have died before publishing it) once the kept revision is
// ready.
func (s *ReleaseStep) keptAgain(ctx context.Context, ns string, o *releaseObservation) error {
	if kept := deployed(o.history); kept != nil {
		return s.waitKept(ctx, ns, *kept, o.kept, o.readyRevision)
	}
	return o.kept
}
