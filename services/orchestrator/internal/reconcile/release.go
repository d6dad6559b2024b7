package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
	"github.com/storeprov/storeprov/services/orchestrator/internal/helmaction"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/rollout"
)

// Annotations the release step keeps on a store's namespace: facts that
// must outlive any one reconcile and that Helm's history does not hold.
const (
	// AnnotationReadyRevision is the last release revision whose workloads
	// were seen ready. It is written before READY is published, so a store
	// that was ever READY has it: its volumes are never wiped, and a failed
	// upgrade rolls back to this revision.
	AnnotationReadyRevision = "storeprov.dev/ready-revision"
	// AnnotationUpgradeFailure records the upgrade of a generation that was
	// rolled back or refused (JSON of upgradeFailure), so that the same
	// generation is not upgraded again on a redelivery.
	AnnotationUpgradeFailure = "storeprov.dev/upgrade-failure"
	// AnnotationRollbackCause records, before a rollback starts, why the
	// upgrade of a generation is rolled back (JSON of rollbackCause), so
	// that a worker finishing a rollback cut short reports the cluster's
	// reason rather than a bare Timeout.
	AnnotationRollbackCause = "storeprov.dev/rollback-cause"
)

// rollbackCause is the value of AnnotationRollbackCause.
type rollbackCause struct {
	Generation int64  `json:"generation"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
}

// DefaultRollbackTimeout is the default of ReleaseStep.RollbackTimeout.
const DefaultRollbackTimeout = 5 * time.Minute

// ReleaseStep installs, upgrades, repairs and removes a store's Helm
// release and waits, by watching the namespace, until its workloads are
// ready. It comes after GuardrailsStep: the chart reads the credentials
// Secrets and must fit the quota.
//
// Ensure is level-triggered. It repairs a release a dead worker left
// pending, reinstalls one whose every revision failed (wiping the volumes
// of a store that never served), upgrades one that differs from the
// command's spec, and then waits until the workloads are ready or the
// deadline of ctx passes. At the deadline it returns a *Problem read from
// the cluster (QuotaExceeded, Unschedulable, …), never a bare timeout. For
// a store that was READY, an upgrade that does not become ready is rolled
// back, and Ensure returns an *UpgradeFailure: the store stays READY.
type ReleaseStep struct {
	Helm   *helmaction.Client
	Client kubernetes.Interface
	// BaseDomain: a store is served at store-<id>.<BaseDomain>.
	BaseDomain string
	// Values are the installation's values for every store (ingress,
	// storageClass…), under the command's overrides.
	Values map[string]any
	// RollbackTimeout bounds a rollback and the wait for the rolled-back
	// release, which run after the provisioning deadline. Zero means
	// DefaultRollbackTimeout.
	RollbackTimeout time.Duration
	// Log may be nil.
	Log *slog.Logger
}

// UpgradeFailure is an upgrade of a READY store that did not take: it was
// rolled back (ReasonUpgradeRolledBack) or refused before anything
// changed (ReasonValuesRefused for values the chart's tenant policy
// refuses, ReasonUpgradeFailed otherwise). The store is ready on its
// previous revision; the reconciler publishes READY with this reason and
// message.
type UpgradeFailure struct {
	Generation   int64  `json:"generation"`
	Reason       string `json:"reason"`
	Message      string `json:"message"`
	ChartVersion string `json:"chartVersion"`
}

func (e *UpgradeFailure) Error() string { return e.Reason + ": " + e.Message }

// Name implements Step.
func (*ReleaseStep) Name() string { return "release" }

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
// version is resolved), or "".
func differs(rel helmaction.Release, spec helmaction.Spec) string {
	if rel.Chart != spec.Chart || rel.ChartVersion != spec.ChartVersion {
		return fmt.Sprintf("revision %d runs chart %s %s, want %s %s", rel.Revision, rel.Chart, rel.ChartVersion, spec.Chart, spec.ChartVersion)
	}
	have, err1 := helmaction.Normalize(rel.Values)
	desired, err2 := helmaction.Normalize(spec.Values)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(have, desired) {
		return fmt.Sprintf("revision %d has other values than generation's", rel.Revision)
	}
	return ""
}

// Observe implements Step: the release's revision and readiness. For a
// provision, it reports a release that differs from the command's spec
// as missing.
func (s *ReleaseStep) Observe(ctx context.Context, cmd *eventsv1.ProvisionCommand) (Observation, error) {
	ns := kube.NamespaceFor(cmd.GetStoreId())
	missing := "helm release " + ns + "/" + helmaction.ReleaseName
	nsObj, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Observation{Missing: []string{missing}}, nil
	}
	if err != nil {
		return Observation{}, fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	history, err := s.Helm.History(ctx, ns)
	if err != nil {
		return Observation{}, err
	}
	if len(history) == 0 {
		return Observation{Missing: []string{missing}}, nil
	}
	obs := Observation{Exists: true}
	if cmd.GetAction() == eventsv1.Action_ACTION_DELETE {
		return obs, nil
	}
	spec, err := s.spec(cmd, history)
	if err != nil {
		obs.Missing = append(obs.Missing, fmt.Sprintf("%s: %v", missing, err))
		return obs, nil
	}
	st := determineRelease(history, spec, upgradeFailureOf(nsObj), cmd.GetGeneration())
	switch st.kind {
	case releaseLocked, releaseBroken, releaseOutOfSync:
		obs.Missing = append(obs.Missing, fmt.Sprintf("%s (%s)", missing, st.why))
		if p := helmProblem(st.last.Description); p != nil && st.kind != releaseLocked {
			obs.Problem = p
		}
	}
	if st.kind == releaseLocked || st.kind == releaseBroken {
		return obs, nil
	}
	current := deployed(history)
	if current == nil {
		return obs, nil
	}
	obs.ChartVersion = current.ChartVersion
	status, err := rollout.Check(ctx, s.Client, ns, objects(current.Resources))
	if err != nil {
		return Observation{}, err
	}
	obs.Missing = append(obs.Missing, status.Pending...)
	if obs.Problem == nil && status.Problem != nil {
		obs.Problem = &Problem{Reason: status.Problem.Reason, Message: status.Problem.Message}
	}
	return obs, nil
}

// Ensure implements Step; see ReleaseStep.
func (s *ReleaseStep) Ensure(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ns := kube.NamespaceFor(cmd.GetStoreId())
	nsObj, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	readyRevision := readyRevisionOf(nsObj)
	if rel, err := s.Helm.Unlock(ctx, ns); err != nil {
		return err
	} else if rel != nil {
		s.log().Warn("repaired a release left pending by a stopped worker", "namespace", ns, "revision", rel.Revision, "was", rel.Description)
	}
	history, err := s.Helm.History(ctx, ns)
	if err != nil {
		return err
	}
	spec, err := s.spec(cmd, history)
	if err != nil {
		if readyRevision > 0 {
			// A READY store keeps running what it runs.
			reason := lifecycle.ReasonUpgradeFailed
			if re := (*Error)(nil); errors.As(err, &re) && re.Reason == lifecycle.ReasonValuesRefused {
				reason = re.Reason
			}
			return s.keep(ctx, ns, cmd, reason, "the upgrade was refused: "+err.Error())
		}
		return err
	}
	st := determineRelease(history, spec, upgradeFailureOf(nsObj), cmd.GetGeneration())
	var rel helmaction.Release
	switch st.kind {
	case releaseKept:
		// Rolled back already (a worker may have died before publishing
		// it): report it again once the kept revision is ready.
		if kept := deployed(history); kept != nil {
			return s.waitKept(ctx, ns, *kept, upgradeFailureOf(nsObj), readyRevision)
		}
		return upgradeFailureOf(nsObj)
	case releaseInSync:
		rel = *st.last
		// Objects deleted out of band come back with an upgrade of the
		// same spec; Helm recreates what its manifest has and the
		// cluster lacks.
		status, err := rollout.Check(ctx, s.Client, ns, objects(rel.Resources))
		if err != nil {
			return err
		}
		switch {
		case len(status.Absent) > 0:
			s.log().Info("release objects missing: upgrading to recreate them", "namespace", ns, "missing", fmt.Sprint(status.Absent))
			if rel, err = s.Helm.Upgrade(ctx, spec); err != nil {
				return s.upgradeFailed(ctx, ns, cmd, readyRevision, err)
			}
		case !status.Ready():
			// A retry after the cause was fixed (a quota raised) must not
			// wait for the controllers' backoff, which grows to minutes.
			if err := rollout.Resync(ctx, s.Client, ns, objects(rel.Resources), time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
	case releaseLocked:
		// Unlock ran just before: another action started since.
		return fmt.Errorf("release %s/%s is locked: %s", ns, helmaction.ReleaseName, st.why)
	case releaseBroken, releaseAbsent:
		if st.kind == releaseAbsent || readyRevision == 0 || st.last.Status != release.StatusFailed {
			if rel, err = s.reinstall(ctx, ns, spec, st, readyRevision); err != nil {
				return err
			}
			break
		}
		// Only failed revisions, yet the store served: its first install
		// was cut short after its objects were written. Upgrade over them
		// rather than uninstall a working store.
		fallthrough
	case releaseOutOfSync:
		s.log().Info("upgrading release", "namespace", ns, "why", st.why)
		if rel, err = s.Helm.Upgrade(ctx, spec); err != nil {
			return s.upgradeFailed(ctx, ns, cmd, readyRevision, err)
		}
	}

	status, err := rollout.Wait(ctx, s.Client, ns, objects(rel.Resources))
	if err != nil {
		return err
	}
	if status.Ready() {
		return s.markReady(ctx, ns, rel.Revision, readyRevision)
	}
	problem := notReady(status)
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Stopping or lease lost: no verdict, another attempt resumes.
		return ctx.Err()
	}
	if readyRevision > 0 && rel.Revision != readyRevision {
		return s.rollBack(ctx, ns, cmd, readyRevision, rel, problem)
	}
	if status.Problem != nil && status.Problem.Terminal {
		return &Error{Reason: problem.Reason, Terminal: true, Err: problem}
	}
	return problem
}

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
	ns := kube.NamespaceFor(cmd.GetStoreId())
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

// keep records that the upgrade of cmd's generation was refused before
// anything changed, and returns it as an *UpgradeFailure.
func (s *ReleaseStep) keep(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, reason, message string) error {
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

// record writes the failed upgrade of cmd's generation on the namespace.
func (s *ReleaseStep) record(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, reason, message, chartVersion string) (*UpgradeFailure, error) {
	f := &UpgradeFailure{Generation: cmd.GetGeneration(), Reason: reason, Message: message, ChartVersion: chartVersion}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	if err := s.annotate(ctx, ns, AnnotationUpgradeFailure, string(b)); err != nil {
		return nil, err
	}
	return f, nil
}

// markReady records revision as the store's ready revision.
func (s *ReleaseStep) markReady(ctx context.Context, ns string, revision, recorded int) error {
	if revision == recorded {
		return nil
	}
	return s.annotate(ctx, ns, AnnotationReadyRevision, strconv.Itoa(revision))
}

func (s *ReleaseStep) annotate(ctx context.Context, ns, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	if _, err := s.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("cannot annotate namespace %s: %w", ns, err)
	}
	return nil
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

// Remove implements Step: it uninstalls the release and deletes the
// claims and Secrets left in the namespace (kept claims, StatefulSet
// claims, credentials), without waiting; GuardrailsStep then deletes the
// namespace and waits until it is gone. It refuses to touch a namespace
// the platform does not own.
func (s *ReleaseStep) Remove(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ns := kube.NamespaceFor(cmd.GetStoreId())
	nsObj, err := s.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	if nsObj.Labels[kube.LabelManagedBy] != kube.ManagedByValue || nsObj.Labels[kube.LabelStoreID] != cmd.GetStoreId() {
		return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: fmt.Errorf(
			"namespace %s is not labelled %s=%s and %s=%s: it is not this store's, and nothing in it is deleted",
			ns, kube.LabelManagedBy, kube.ManagedByValue, kube.LabelStoreID, cmd.GetStoreId())}
	}
	if _, err := s.Helm.Unlock(ctx, ns); err != nil {
		return err
	}
	if err := s.Helm.Uninstall(ctx, ns); err != nil {
		return err
	}
	if _, err := s.deleteClaims(ctx, ns); err != nil {
		return err
	}
	secrets := s.Client.CoreV1().Secrets(ns)
	list, err := secrets.List(ctx, metav1.ListOptions{
		// Service account tokens belong to the namespace controller.
		FieldSelector: fields.OneTermNotEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)).String(),
	})
	if err != nil {
		return fmt.Errorf("cannot list secrets in %s: %w", ns, err)
	}
	for _, sec := range list.Items {
		if err := secrets.Delete(ctx, sec.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot delete secret %s/%s: %w", ns, sec.Name, err)
		}
	}
	return nil
}

// deleteClaims deletes every claim in the namespace, one by one (the
// orchestrator's role has no deletecollection), and returns how many
// there were. It does not wait for them to be gone.
func (s *ReleaseStep) deleteClaims(ctx context.Context, ns string) (int, error) {
	claims := s.Client.CoreV1().PersistentVolumeClaims(ns)
	list, err := claims.List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("cannot list claims in %s: %w", ns, err)
	}
	for _, c := range list.Items {
		if err := claims.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("cannot delete claim %s/%s: %w", ns, c.Name, err)
		}
	}
	return len(list.Items), nil
}

// spec translates a command into the release it asks for, with the chart
// version resolved in the catalog: the one the command names; when it
// names none, the version of the release's deployed revision in history,
// or the newest for a store with none. The api sends the version a store
// runs with every command; a command without one (from an older api) thus
// never moves a store off its chart, whatever newer version this
// orchestrator has: only a command naming a version does. An error
// is a terminal *Error: ValuesRefused when that chart version's tenant
// policy refuses the command's values, naming the key; InvalidSpec
// otherwise, listing the versions the catalog holds when it does not hold
// the one asked for.
func (s *ReleaseStep) spec(cmd *eventsv1.ProvisionCommand, history []helmaction.Release) (helmaction.Spec, error) {
	invalid := func(err error) error { return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: err} }
	var chartName string
	switch e := cmd.GetSpec().GetEngine(); e {
	case storev1.Engine_ENGINE_WOOCOMMERCE:
		chartName = charts.WordPress
	case storev1.Engine_ENGINE_MEDUSA:
		chartName = charts.Medusa
	default:
		return helmaction.Spec{}, invalid(fmt.Errorf("store %s has engine %s: use ENGINE_WOOCOMMERCE or ENGINE_MEDUSA", cmd.GetStoreId(), e))
	}
	want := cmd.GetSpec().GetChartVersion()
	if d := deployed(history); want == "" && d != nil && d.Chart == chartName {
		want = d.ChartVersion
	}
	version, err := s.Helm.Charts().Resolve(chartName, want)
	if err != nil {
		return helmaction.Spec{}, invalid(err)
	}
	// The api checked the values against its own chart; the version
	// installed may be another, with another policy.
	policy, err := s.Helm.Charts().TenantPolicy(chartName, version)
	if err != nil {
		return helmaction.Spec{}, invalid(err)
	}
	values, err := helmaction.Values(s.Values, cmd.GetSpec().GetValues(), policy, helmaction.StoreValues{
		StoreID: cmd.GetStoreId(), BaseDomain: s.BaseDomain, Title: cmd.GetSpec().GetDisplayName(),
	})
	var refused *charts.RefusedError
	switch {
	case errors.As(err, &refused):
		return helmaction.Spec{}, &Error{Reason: lifecycle.ReasonValuesRefused, Terminal: true, Err: fmt.Errorf(
			"chart %s %s refuses the store's values: %w", chartName, version, err)}
	case err != nil:
		return helmaction.Spec{}, invalid(err)
	}
	return helmaction.Spec{
		Namespace:    kube.NamespaceFor(cmd.GetStoreId()),
		Chart:        chartName,
		ChartVersion: version,
		Values:       values,
	}, nil
}

func (s *ReleaseStep) rollbackTimeout() time.Duration {
	if s.RollbackTimeout > 0 {
		return s.RollbackTimeout
	}
	return DefaultRollbackTimeout
}

func (s *ReleaseStep) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// helmError classifies an error of a Helm action: values no chart revision
// takes are terminal, a quota refusal is QuotaExceeded (the quota may be
// raised), anything else is retried.
func helmError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, helmaction.ErrInvalidValues), errors.Is(err, catalog.ErrVersionUnavailable), errors.Is(err, catalog.ErrUnknownChart):
		return &Error{Reason: lifecycle.ReasonInvalidSpec, Terminal: true, Err: err}
	case strings.Contains(err.Error(), "exceeded quota"):
		return &Error{Reason: lifecycle.ReasonQuotaExceeded, Err: err}
	}
	return &Error{Reason: lifecycle.ReasonRetriesExhausted, Err: err}
}

// helmProblem reads a failed revision's description for a reason.
func helmProblem(description string) *Problem {
	if strings.Contains(description, "exceeded quota") {
		return &Problem{Reason: lifecycle.ReasonQuotaExceeded, Message: description}
	}
	return nil
}

// notReady turns a status that is not ready into the Problem to report.
func notReady(st rollout.Status) *Problem {
	if st.Problem != nil {
		return &Problem{Reason: st.Problem.Reason, Message: st.Problem.Message}
	}
	return &Problem{Reason: lifecycle.ReasonTimeout, Message: "still waiting for " + strings.Join(st.Pending, ", ")}
}

func objects(rs []helmaction.Resource) []rollout.Object {
	out := make([]rollout.Object, 0, len(rs))
	for _, r := range rs {
		out = append(out, rollout.Object{Kind: r.Kind, Name: r.Name})
	}
	return out
}

// deployed returns the newest deployed revision, or nil.
func deployed(history []helmaction.Release) *helmaction.Release {
	for i := len(history) - 1; i >= 0; i-- {
		if history[i].Status == release.StatusDeployed {
			return &history[i]
		}
	}
	return nil
}

func readyRevisionOf(ns *corev1.Namespace) int {
	n, _ := strconv.Atoi(ns.Annotations[AnnotationReadyRevision])
	return n
}

func upgradeFailureOf(ns *corev1.Namespace) *UpgradeFailure {
	raw, ok := ns.Annotations[AnnotationUpgradeFailure]
	if !ok {
		return nil
	}
	var f UpgradeFailure
	if json.Unmarshal([]byte(raw), &f) != nil {
		return nil
	}
	return &f
}
