package reconcile

import (
	"context"
	"fmt"
	"reflect"

	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
)

// releaseKind is what determineRelease found.
type releaseKind int

const (
	// releaseAbsent: the release has no revision.
	releaseAbsent releaseKind = iota
	// releaseLocked: the last revision is pending-*: an action was cut
	// short, and Helm refuses any other until it is settled.
	releaseLocked
	// releaseBroken: revisions exist but none was ever deployed (failed
	// first installs), or an uninstall was cut short.
	releaseBroken
	// releaseOutOfSync: the last revision failed or differs from the spec.
	releaseOutOfSync
	// releaseInSync: the last revision is deployed with the spec's chart
	// and values.
	releaseInSync
	// releaseKept: an upgrade to this generation was rolled back or
	// refused; the store stays on its deployed revision.
	releaseKept
)

func (k releaseKind) String() string {
	return [...]string{"Absent", "Locked", "Broken", "OutOfSync", "InSync", "Kept"}[k]
}

// releaseState is the observed state of a store's release.
type releaseState struct {
	kind releaseKind
	// last is the newest revision; nil when Absent.
	last *helmaction.Release
	// why says what differs, for OutOfSync, Locked and Broken.
	why string
}

// determineRelease compares the release's history with the spec; it
// changes nothing.
func determineRelease(history []helmaction.Release, spec helmaction.Spec, kept *UpgradeFailure, generation int64) releaseState {
	if len(history) == 0 {
		return releaseState{kind: releaseAbsent}
	}
	last := history[len(history)-1]
	st := releaseState{last: &last}
	everDeployed := false
	for _, r := range history {
		everDeployed = everDeployed || r.Status == release.StatusDeployed || r.Status == release.StatusSuperseded
	}
	switch {
	case last.Status.IsPending():
		st.kind, st.why = releaseLocked, fmt.Sprintf("revision %d is %s", last.Revision, last.Status)
	case !everDeployed || last.Status == release.StatusUninstalling || last.Status == release.StatusUninstalled:
		st.kind, st.why = releaseBroken, fmt.Sprintf("revision %d is %s: %s", last.Revision, last.Status, last.Description)
	case kept != nil && kept.Generation == generation && last.Status == release.StatusDeployed:
		st.kind = releaseKept
	case last.Status != release.StatusDeployed:
		st.kind, st.why = releaseOutOfSync, fmt.Sprintf("revision %d is %s: %s", last.Revision, last.Status, last.Description)
	default:
		st.kind, st.why = releaseInSync, differs(last, spec)
		if st.why != "" {
			st.kind = releaseOutOfSync
		}
	}
	return st
}

// differs says how a deployed revision differs from the spec (whose chart
// version is resolved), or "". orderCheck.enabled is not compared: it
// says whether an install or upgrade runs the order check, not what the
// store runs, so that changing --order-check upgrades no store.
func differs(rel helmaction.Release, spec helmaction.Spec) string {
	if rel.Chart != spec.Chart || rel.ChartVersion != spec.ChartVersion {
		return fmt.Sprintf("revision %d runs chart %s %s, want %s %s", rel.Revision, rel.Chart, rel.ChartVersion, spec.Chart, spec.ChartVersion)
	}
	have, err1 := helmaction.Normalize(rel.Values)
	desired, err2 := helmaction.Normalize(spec.Values)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(withoutOrderCheck(have), withoutOrderCheck(desired)) {
		return fmt.Sprintf("revision %d has other values than generation's", rel.Revision)
	}
	return ""
}

// releaseObservation is what the release step reads of a store in one
// attempt: its namespace's annotations, the release's history and the
// release the command asks for. Observe reads it; Ensure starts from it.
type releaseObservation struct {
	// namespaceFound is false when the namespace did not exist: then there
	// is no history, no ready revision and no recorded failure.
	namespaceFound bool
	readyRevision  int
	kept           *UpgradeFailure
	history        []helmaction.Release
	// spec is the release the command asks for; specErr why there is none.
	spec    helmaction.Spec
	specErr error
	state   releaseState
}

// observe reads the store's namespace and release history once and
// decides the release's state; it changes nothing.
func (s *ReleaseStep) observe(ctx context.Context, cmd *eventsv1.ProvisionCommand) (*releaseObservation, error) {
	ns := storeid.Namespace(cmd.GetStoreId())
	o := &releaseObservation{}
	nsObj, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("cannot read namespace %s: %w", ns, err)
	default:
		o.namespaceFound = true
		o.readyRevision, o.kept = readyRevisionOf(nsObj), upgradeFailureOf(nsObj)
		if o.history, err = s.Helm.History(ctx, ns); err != nil {
			return nil, err
		}
	}
	if cmd.GetAction() != eventsv1.Action_ACTION_PROVISION {
		return o, nil
	}
	if o.spec, o.specErr = s.spec(cmd, o.history, o.readyRevision); o.specErr == nil {
		o.state = determineRelease(o.history, o.spec, o.kept, cmd.GetGeneration())
	}
	return o, nil
}
