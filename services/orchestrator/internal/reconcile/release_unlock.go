package reconcile

import "context"

// unlock settles a release whose last action a stopped worker left
// pending-*, which Helm refuses any other action on: it marks it failed,
// so that the next action (an upgrade, or a rollback) can run.
func (s *ReleaseStep) unlock(ctx context.Context, ns string) error {
	rel, err := s.Helm.Unlock(ctx, ns)
	if err != nil {
		return err
	}
	if rel != nil {
		s.log().Warn("repaired a release left pending by a stopped worker", "namespace", ns, "revision", rel.Revision, "was", rel.Description)
	}
	return nil
}
