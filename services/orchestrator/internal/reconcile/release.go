package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
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
	Generation int64            `json:"generation"`
	Reason     lifecycle.Reason `json:"reason"`
	Message    string           `json:"message"`
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
	// OrderCheck says which installs and upgrades run the chart's order
	// check; zero means OrderCheckNever. The guardrails must let the check
	// reach the store's server (kube.Network.OrderCheck).
	OrderCheck OrderCheck
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
	Generation   int64            `json:"generation"`
	Reason       lifecycle.Reason `json:"reason"`
	Message      string           `json:"message"`
	ChartVersion string           `json:"chartVersion"`
}

func (e *UpgradeFailure) Error() string { return string(e.Reason) + ": " + e.Message }

// Name implements Step.
func (*ReleaseStep) Name() string { return "release" }

// Observe implements Step: the release's revision and readiness. For a
// provision, it reports a release that differs from the command's spec
// as missing. What it read goes to Ensure with the Observation.
func (s *ReleaseStep) Observe(ctx context.Context, cmd *eventsv1.ProvisionCommand) (Observation, error) {
	ns := storeid.Namespace(cmd.GetStoreId())
	missing := "helm release " + ns + "/" + helmaction.ReleaseName
	o, err := s.observe(ctx, cmd)
	if err != nil {
		return Observation{}, err
	}
	obs := Observation{detail: o}
	if len(o.history) == 0 {
		obs.Missing = []string{missing}
		return obs, nil
	}
	obs.Exists = true
	if cmd.GetAction() == eventsv1.Action_ACTION_DELETE {
		return obs, nil
	}
	if o.specErr != nil {
		obs.Missing = append(obs.Missing, fmt.Sprintf("%s: %v", missing, o.specErr))
		return obs, nil
	}
	st := o.state
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
	current := deployed(o.history)
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

// Ensure implements Step; see ReleaseStep. It takes the action the
// release's state calls for, one per state, then waits until the
// release's workloads are ready:
//
//	Locked             → unlock, then decide again
//	Absent, Broken     → install (reinstall)
//	OutOfSync          → upgrade
//	InSync             → repair what drifted (recreate, nudge)
//	Kept               → report the kept revision again once it is ready
func (s *ReleaseStep) Ensure(ctx context.Context, cmd *eventsv1.ProvisionCommand, seen Observation) (Observation, error) {
	ns := storeid.Namespace(cmd.GetStoreId())
	o, _ := seen.detail.(*releaseObservation)
	// A namespace that did not exist when seen was made by the guardrails
	// of this attempt, under its lease: it has no release yet, and what
	// was seen holds.
	if o == nil || o.state.kind == releaseLocked {
		// Not seen, or a release to unlock first: read it now.
		if o != nil {
			if err := s.unlock(ctx, ns); err != nil {
				return Observation{}, err
			}
		}
		var err error
		if o, err = s.observe(ctx, cmd); err != nil {
			return Observation{}, err
		}
	}
	if o.specErr != nil {
		if o.readyRevision > 0 {
			// A READY store keeps running what it runs.
			reason := lifecycle.ReasonUpgradeFailed
			if re := (*Error)(nil); errors.As(o.specErr, &re) && re.Reason == lifecycle.ReasonValuesRefused {
				reason = re.Reason
			}
			return Observation{}, s.keep(ctx, ns, cmd, reason, "the upgrade was refused: "+o.specErr.Error())
		}
		return Observation{}, o.specErr
	}
	var (
		rel helmaction.Release
		err error
	)
	switch o.state.kind {
	case releaseKept:
		return Observation{}, s.keptAgain(ctx, ns, o)
	case releaseLocked:
		// Unlocked just before: another action started since.
		return Observation{}, fmt.Errorf("release %s/%s is locked: %s", ns, helmaction.ReleaseName, o.state.why)
	case releaseInSync:
		rel, err = s.repair(ctx, ns, cmd, o)
	case releaseBroken, releaseAbsent:
		if o.state.kind == releaseAbsent || o.readyRevision == 0 || o.state.last.Status != release.StatusFailed {
			rel, err = s.reinstall(ctx, ns, o.spec, o.state, o.readyRevision)
			break
		}
		// Only failed revisions, yet the store served: its first install
		// was cut short after its objects were written. Upgrade over them
		// rather than uninstall a working store.
		fallthrough
	case releaseOutOfSync:
		rel, err = s.upgrade(ctx, ns, cmd, o)
	}
	if err != nil {
		return Observation{}, err
	}
	passed, err := s.waitReady(ctx, ns, cmd, rel, o.readyRevision)
	if err != nil {
		return Observation{}, err
	}
	return Observation{Exists: true, ChartVersion: rel.ChartVersion, OrderCheckPassed: passed}, nil
}

// waitReady waits until the workloads of rel are ready and records it as
// the store's ready revision; it returns when rel's order check passed
// (zero when rel runs none). At the deadline it returns why they are not:
// for a store that was READY, the rollback's *UpgradeFailure.
func (s *ReleaseStep) waitReady(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, rel helmaction.Release, readyRevision int) (time.Time, error) {
	status, err := rollout.Wait(ctx, s.Client, ns, objects(rel.Resources))
	if err != nil {
		return time.Time{}, err
	}
	if status.Ready() {
		return status.OrderCheckPassed, s.markReady(ctx, ns, rel.Revision, readyRevision)
	}
	problem := notReady(status)
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Stopping or lease lost: no verdict, another attempt resumes.
		return time.Time{}, ctx.Err()
	}
	if readyRevision > 0 && rel.Revision != readyRevision {
		return time.Time{}, s.rollBack(ctx, ns, cmd, readyRevision, rel, problem)
	}
	if status.Problem != nil && status.Problem.Terminal {
		return time.Time{}, &Error{Reason: problem.Reason, Terminal: true, Err: problem}
	}
	return time.Time{}, problem
}

// record writes the failed upgrade of cmd's generation on the namespace.
func (s *ReleaseStep) record(ctx context.Context, ns string, cmd *eventsv1.ProvisionCommand, reason lifecycle.Reason, message, chartVersion string) (*UpgradeFailure, error) {
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
// the one asked for. On a chart version that has an order check, it sets
// orderCheck.enabled as OrderCheck asks for an install or upgrade of the
// store, which was READY once when readyRevision is not zero.
func (s *ReleaseStep) spec(cmd *eventsv1.ProvisionCommand, history []helmaction.Release, readyRevision int) (helmaction.Spec, error) {
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
	store := helmaction.StoreValues{StoreID: cmd.GetStoreId(), BaseDomain: s.BaseDomain, Title: cmd.GetSpec().GetDisplayName()}
	hasCheck, err := s.Helm.Charts().HasOrderCheck(chartName, version)
	if err != nil {
		return helmaction.Spec{}, invalid(err)
	}
	if hasCheck {
		run := s.OrderCheck.runs(readyRevision > 0)
		store.OrderCheck = &run
	}
	values, err := helmaction.Values(s.Values, cmd.GetSpec().GetValues(), policy, store)
	var refused *charts.RefusedError
	switch {
	case errors.As(err, &refused):
		return helmaction.Spec{}, &Error{Reason: lifecycle.ReasonValuesRefused, Terminal: true, Err: fmt.Errorf(
			"chart %s %s refuses the store's values: %w", chartName, version, err)}
	case err != nil:
		return helmaction.Spec{}, invalid(err)
	}
	return helmaction.Spec{
		Namespace:    storeid.Namespace(cmd.GetStoreId()),
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
