package reconcile

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
)

// reinstall installs the release from scratch: after uninstalling the
// failed revisions of a release that was never deployed, and after wiping
// the volumes of a store that never served.
func (s *ReleaseStep) reinstall(ctx context.Context, ns string, spec helmaction.Spec, st releaseState, readyRevision int) (helmaction.Release, error) {
	if st.kind != releaseAbsent {
		s.log().Info("reinstalling release", "namespace", ns, "why", st.why)
		if err := s.Helm.Uninstall(ctx, ns); err != nil {
			return helmaction.Release{}, err
		}
	}
	// A failed first install may have left claims whose volumes a
	// database initialised and then abandoned half-way, or initialised with
	// what a retry will not reproduce: reinstalling on them can break the
	// new install. Deleting them cannot lose a store's data: readyRevision
	// is zero only for a store that never became READY (the annotation is
	// written before READY is ever published and never removed), so no
	// one ever used the store and nothing but a failed setup wrote to the
	// volumes. A store that was READY keeps its claims, and the chart
	// adopts them again.
	if readyRevision == 0 {
		if err := s.wipeClaims(ctx, ns); err != nil {
			return helmaction.Release{}, err
		}
	}
	rel, err := s.Helm.Install(ctx, spec)
	if err != nil {
		return helmaction.Release{}, helmError(err)
	}
	return rel, nil
}

// wipeClaims deletes every claim in the namespace and waits until they
// are gone (their pods must go first), so that an install does not find
// one Terminating.
func (s *ReleaseStep) wipeClaims(ctx context.Context, ns string) error {
	n, err := s.deleteClaims(ctx, ns)
	if err != nil || n == 0 {
		return err
	}
	s.log().Info("deleted the claims of a store that never became ready, before reinstalling it", "namespace", ns, "claims", n)
	claims := s.Client.CoreV1().PersistentVolumeClaims(ns)
	for {
		list, err := claims.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("cannot list claims in %s: %w", ns, err)
		}
		if len(list.Items) == 0 {
			return nil
		}
		w, err := claims.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			return fmt.Errorf("cannot watch claims in %s: %w", ns, err)
		}
		waitForEvent(ctx, w, watch.Deleted)
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("claims in %s were not deleted in time: %w", ns, ctx.Err())
		}
	}
}

func waitForEvent(ctx context.Context, w watch.Interface, t watch.EventType) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == t || ev.Type == watch.Error {
				return
			}
		}
	}
}
