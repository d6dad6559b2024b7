// Package stores keeps the desired state of stores: it validates requests,
// enforces ownership and quotas, and writes every change together with the
// messages that announce it (provisioning command, audit event) to the
// outbox in one transaction. It applies status events from the
// orchestrator when they are newer than what it holds.
package stores

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	entdialect "entgo.io/ent/dialect"
	"github.com/Masterminds/semver/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/pkg/tracing"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	entstore "github.com/storeprov/storeprov/services/api/internal/ent/store"
	entuser "github.com/storeprov/storeprov/services/api/internal/ent/user"
)

// tracerName is the instrumentation scope of the package's spans.
const tracerName = "github.com/storeprov/storeprov/services/api/internal/stores"

// MaxDisplayNameLength is the longest display name accepted.
const MaxDisplayNameLength = 63

var (
	// ErrNotFound means the store does not exist or the caller may not see it.
	ErrNotFound = errors.New("store not found")
	// ErrQuotaExceeded means the caller already has as many stores as allowed.
	ErrQuotaExceeded = errors.New("store quota exceeded")
	// ErrWrongPhase means the store is not in a phase that allows the request.
	ErrWrongPhase = errors.New("store is in the wrong phase")
	// ErrRequestIDReused means a create's request id was used for another
	// request (another display name or engine) within RequestIDWindow.
	ErrRequestIDReused = errors.New("request id already used for another request")
)

// RequestIDWindow is how long a create's request id returns the store it
// created.
const RequestIDWindow = 24 * time.Hour

// MaxRequestIDLength bounds a create's request id.
const MaxRequestIDLength = 128

// InvalidFieldError reports a request field with a value that is not
// allowed; Error says what is allowed.
type InvalidFieldError struct {
	Field  string
	Reason string
}

func (e *InvalidFieldError) Error() string { return e.Field + ": " + e.Reason }

// Notifier is told about every store that changed, after the change committed.
type Notifier interface{ Notify(*ent.Store) }

// Service is the store repository.
type Service struct {
	Client *ent.Client
	// Dialect of the database behind Client.
	Dialect  string
	Topology bus.Topology
	// Notifier receives committed changes; may be nil.
	Notifier Notifier
	// Kick wakes the outbox relay after a commit; may be nil.
	Kick func()
	Now  func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Create validates the request, checks the caller's store quota and records
// a new store in phase PROVISIONING with its provisioning command and audit
// event. It returns *InvalidFieldError or ErrQuotaExceeded on a bad request.
//
// The quota check holds the caller's user row locked (FOR UPDATE on
// PostgreSQL; SQLite transactions take the database's write lock), so
// concurrent creates of one user through any number of api replicas are
// serialised and never pass the quota together.
//
// A non-empty requestID makes the create idempotent: within
// RequestIDWindow, the same id from the same user returns the store it
// created (replayed is true), and with another display name or engine
// fails with ErrRequestIDReused.
//
// It runs in a span, stores.create, whose trace the provisioning command
// and audit event continue (see announce).
func (s *Service) Create(ctx context.Context, caller auth.Principal, displayName string, engine storev1.Engine, requestID string) (*ent.Store, bool, error) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, "stores.create", trace.WithAttributes(attribute.String("storeprov.engine", engine.String())))
	st, replayed, err := s.create(ctx, caller, displayName, engine, requestID)
	if st != nil {
		span.SetAttributes(tracing.StoreID.String(st.ID), tracing.Generation.Int64(st.Generation), attribute.Bool("storeprov.replayed", replayed))
	}
	tracing.End(span, err)
	return st, replayed, err
}

// create is Create without its span.
func (s *Service) create(ctx context.Context, caller auth.Principal, displayName string, engine storev1.Engine, requestID string) (_ *ent.Store, replayed bool, _ error) {
	displayName = strings.TrimSpace(displayName)
	if err := validateDisplayName(displayName); err != nil {
		return nil, false, err
	}
	if err := validateEngine(engine); err != nil {
		return nil, false, err
	}
	if err := validateRequestID(requestID); err != nil {
		return nil, false, err
	}
	var created *ent.Store
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		q := tx.User.Query().Where(entuser.Name(caller.Name))
		if s.Dialect == entdialect.Postgres {
			q = q.ForUpdate()
		}
		user, err := q.Only(ctx)
		if err != nil {
			return fmt.Errorf("cannot read user %s: %w", caller.Name, err)
		}
		now := s.now()
		if requestID != "" {
			prior, err := tx.Store.Query().Where(entstore.Owner(caller.Name), entstore.RequestID(requestID)).Only(ctx)
			switch {
			case ent.IsNotFound(err):
			case err != nil:
				return err
			case now.Sub(prior.CreateTime) < RequestIDWindow:
				if prior.DisplayName != displayName || prior.Engine != engine {
					return fmt.Errorf("%w: request id %q created store %s (%q, %s) at %s; use a new request id for another store",
						ErrRequestIDReused, requestID, prior.ID, prior.DisplayName, prior.Engine, prior.CreateTime.Format(time.RFC3339))
				}
				created, replayed = prior, true
				return nil
			default:
				// Older than the window: the id is free again.
				if err := tx.Store.UpdateOne(prior).ClearRequestID().Exec(ctx); err != nil {
					return err
				}
			}
		}
		active, err := tx.Store.Query().Where(entstore.Owner(caller.Name), entstore.PhaseNEQ(storev1.Phase_PHASE_DELETED)).Count(ctx)
		if err != nil {
			return err
		}
		if active >= int(user.StoreQuota) {
			return fmt.Errorf("%w: %s has %d of %d stores; delete one first or ask an admin for a higher quota", ErrQuotaExceeded, caller.Name, active, user.StoreQuota)
		}
		c := tx.Store.Create().
			SetID(storeid.New()).
			SetDisplayName(displayName).
			SetEngine(engine).
			SetOwner(caller.Name).
			SetPhase(storev1.Phase_PHASE_PROVISIONING).
			SetGeneration(1).
			SetLastAction(lifecycle.ActionCreate).
			SetCreateTime(now).
			SetUpdateTime(now)
		if requestID != "" {
			c.SetRequestID(requestID)
		}
		created, err = c.Save(ctx)
		if err != nil {
			return fmt.Errorf("cannot insert store: %w", err)
		}
		return s.announce(ctx, tx, created, eventsv1.Action_ACTION_PROVISION, caller.Name, lifecycle.ActionCreate, "created "+engine.String()+" store "+fmt.Sprintf("%q", displayName))
	})
	if err != nil {
		return nil, false, err
	}
	if !replayed {
		s.committed(created)
	}
	return created, replayed, nil
}

// validateRequestID accepts an empty id (no idempotency) or up to
// MaxRequestIDLength printable ASCII characters.
func validateRequestID(id string) error {
	if len(id) > MaxRequestIDLength {
		return &InvalidFieldError{"request_id", fmt.Sprintf("is %d characters long: use at most %d, such as a UUID", len(id), MaxRequestIDLength)}
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return &InvalidFieldError{"request_id", "may hold only printable ASCII characters without spaces, such as a UUID"}
		}
	}
	return nil
}

// Get returns a store the caller may see.
func (s *Service) Get(ctx context.Context, caller auth.Principal, id string) (*ent.Store, error) {
	st, err := s.Client.Store.Get(ctx, id)
	if ent.IsNotFound(err) || err == nil && !visible(caller, st) {
		return nil, fmt.Errorf("%w: no store %q", ErrNotFound, id)
	}
	return st, err
}

// Delete moves a store to DELETING and queues its removal. A store already
// DELETING or DELETED is returned unchanged.
func (s *Service) Delete(ctx context.Context, caller auth.Principal, id string) (*ent.Store, error) {
	return s.transition(ctx, "stores.delete", caller, id, func(st *ent.Store) (eventsv1.Action, string, bool, error) {
		switch st.Phase {
		case storev1.Phase_PHASE_DELETING, storev1.Phase_PHASE_DELETED:
			return 0, "", false, nil
		}
		return eventsv1.Action_ACTION_DELETE, lifecycle.ActionDelete, true, nil
	}, storev1.Phase_PHASE_DELETING, nil)
}

// Retry provisions a FAILED store again under a new generation. It returns
// ErrWrongPhase for a store that is not FAILED.
func (s *Service) Retry(ctx context.Context, caller auth.Principal, id string) (*ent.Store, error) {
	return s.transition(ctx, "stores.retry", caller, id, func(st *ent.Store) (eventsv1.Action, string, bool, error) {
		if st.Phase != storev1.Phase_PHASE_FAILED {
			return 0, "", false, fmt.Errorf("%w: store %s is %s; only a FAILED store can be retried", ErrWrongPhase, id, strings.TrimPrefix(st.Phase.String(), "PHASE_"))
		}
		return eventsv1.Action_ACTION_PROVISION, lifecycle.ActionRetry, true, nil
	}, storev1.Phase_PHASE_PROVISIONING, nil)
}

// Upgrade moves a store to chartVersion and values (Helm value overrides
// by dotted path, replacing the previous ones) under a new generation,
// PROVISIONING, with an "upgrade" command and audit event. An empty
// chartVersion is resolved here, once, by upgradeVersion: the newest of
// the chart version built into the api and the one the store runs. The
// version is recorded as the store's desired chart version, which every
// later command carries (see Command), so that nothing but another
// upgrade moves the store. Only a READY store, or one that FAILED after
// an upgrade, may be upgraded: ErrWrongPhase otherwise. A value the
// tenant policy of the engine's chart refuses (see validateValues), or a
// malformed version, is an *InvalidFieldError.
func (s *Service) Upgrade(ctx context.Context, caller auth.Principal, id, chartVersion string, values map[string]string) (*ent.Store, error) {
	if err := validateChartVersion(chartVersion); err != nil {
		return nil, err
	}
	var version string
	return s.transition(ctx, "stores.upgrade", caller, id, func(st *ent.Store) (eventsv1.Action, string, bool, error) {
		failedUpgrade := st.Phase == storev1.Phase_PHASE_FAILED && st.LastAction == lifecycle.ActionUpgrade
		if st.Phase != storev1.Phase_PHASE_READY && !failedUpgrade {
			return 0, "", false, fmt.Errorf("%w: store %s is %s; only a READY store, or one whose upgrade FAILED, can be upgraded",
				ErrWrongPhase, id, strings.TrimPrefix(st.Phase.String(), "PHASE_"))
		}
		if err := validateValues(st.Engine, values); err != nil {
			return 0, "", false, err
		}
		var err error
		if version, err = upgradeVersion(st, chartVersion); err != nil {
			return 0, "", false, err
		}
		return eventsv1.Action_ACTION_PROVISION, lifecycle.ActionUpgrade, true, nil
	}, storev1.Phase_PHASE_PROVISIONING, func(u *ent.StoreUpdateOne) {
		u.SetDesiredChartVersion(version).SetChartValues(values)
	})
}

// upgradeVersion is the chart version an upgrade of st asking for
// version moves it to: version itself when it names one. An empty one
// means the newest of the version of the engine's chart built into the
// api (charts.Version; the orchestrators of the same release embed the
// same) and the version the store runs, so that an upgrade without a
// version never moves a store back, for example off a version an operator
// added to the orchestrators (--charts-dir), which only an upgrade naming
// it reaches.
func upgradeVersion(st *ent.Store, version string) (string, error) {
	if version != "" {
		return version, nil
	}
	name, err := chartOf(st.Engine)
	if err != nil {
		return "", err
	}
	built, err := charts.Version(name)
	if err != nil {
		return "", err
	}
	runs, err := semver.StrictNewVersion(cmp.Or(st.ChartVersion, st.DesiredChartVersion))
	if err != nil {
		// Never installed, or a version no chart can have.
		return built, nil
	}
	if b, err := semver.StrictNewVersion(built); err == nil && b.LessThan(runs) {
		return runs.Original(), nil
	}
	return built, nil
}

// transition bumps the generation of a store and moves it to phase when
// decide says so, recording the command and audit event in the same
// transaction, in a span named spanName whose trace they continue.
func (s *Service) transition(ctx context.Context, spanName string, caller auth.Principal, id string,
	decide func(*ent.Store) (action eventsv1.Action, auditAction string, change bool, err error), phase storev1.Phase,
	spec func(*ent.StoreUpdateOne),
) (result *ent.Store, err error) {
	ctx, span := otel.Tracer(tracerName).Start(ctx, spanName, trace.WithAttributes(tracing.StoreID.String(id)))
	defer func() {
		if result != nil {
			span.SetAttributes(tracing.Generation.Int64(result.Generation))
		}
		tracing.End(span, err)
	}()
	changed := false
	err = s.inTx(ctx, func(tx *ent.Tx) error {
		st, err := s.lockStore(ctx, tx, id)
		if ent.IsNotFound(err) || err == nil && !visible(caller, st) {
			return fmt.Errorf("%w: no store %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		action, auditAction, change, err := decide(st)
		if err != nil || !change {
			result = st
			return err
		}
		u := st.Update().
			SetPhase(phase).
			SetGeneration(st.Generation + 1).
			// Lease tokens order the holders of one generation: a new
			// generation starts afresh, so a lease bucket that was
			// recreated (its revisions restarted) cannot silence a store.
			SetLeaseToken(0).
			SetFailureReason("").
			SetFailureMessage("").
			SetLastAction(auditAction).
			SetUpdateTime(s.now())
		if spec != nil {
			spec(u)
		}
		if result, err = u.Save(ctx); err != nil {
			return err
		}
		changed = true
		return s.announce(ctx, tx, result, action, caller.Name, auditAction, detailOf(auditAction, result))
	})
	if err != nil {
		return nil, err
	}
	if changed {
		s.committed(result)
	}
	return result, nil
}

// announce writes the provisioning command and the audit event of a change
// to the outbox, each with the trace context of ctx's span, which the
// relay's publish continues.
func (s *Service) announce(ctx context.Context, tx *ent.Tx, st *ent.Store, action eventsv1.Action, actor, auditAction, detail string) error {
	now := timestamppb.New(s.now())
	cmd := Command(st, action, actor, now.AsTime())
	audit := &eventsv1.AuditEvent{Entry: &auditv1.AuditEntry{
		Id:         lifecycle.AuditEventID(st.ID, st.Generation, auditAction),
		Action:     auditAction,
		Actor:      actor,
		StoreId:    st.ID,
		StoreOwner: st.Owner,
		Time:       now,
		Detail:     detail,
	}}
	rows := []struct {
		subject, msgID string
		msg            proto.Message
	}{
		{s.Topology.CommandSubject(st.ID), lifecycle.CommandID(st.ID, st.Generation), cmd},
		{s.Topology.AuditSubject(bus.RoleAPI, st.ID), audit.Entry.Id, audit},
	}
	traceContext := propagation.MapCarrier{}
	tracing.Inject(ctx, traceContext)
	for _, r := range rows {
		payload, err := proto.Marshal(r.msg)
		if err != nil {
			return err
		}
		row := tx.Outbox.Create().
			SetSubject(r.subject).
			SetMsgID(r.msgID).
			SetPayload(payload).
			SetMessageType(bus.MessageType(r.msg)).
			SetCreateTime(s.now())
		if len(traceContext) > 0 {
			row.SetTraceContext(traceContext)
		}
		if err := row.Exec(ctx); err != nil {
			return fmt.Errorf("cannot write outbox: %w", err)
		}
	}
	return nil
}

// Command is the provisioning command that converges st to its current
// generation and desired spec, asked for by actor at issueTime (from which
// the orchestrator measures the provisioning deadline). Its chart version
// is the one the store's latest upgrade chose or, for a store never
// upgraded, the one it runs (recorded from the orchestrator's status at
// its first install): a resync, retry or delete never moves a store to
// another chart. It is empty only before a store's first install, when
// the orchestrator installs its newest and reports which.
func Command(st *ent.Store, action eventsv1.Action, actor string, issueTime time.Time) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{
		StoreId:    st.ID,
		Generation: st.Generation,
		Action:     action,
		Spec: &eventsv1.StoreSpec{
			DisplayName:  st.DisplayName,
			Engine:       st.Engine,
			Owner:        st.Owner,
			ChartVersion: cmp.Or(st.DesiredChartVersion, st.ChartVersion),
			Values:       st.ChartValues,
		},
		Actor:     actor,
		IssueTime: timestamppb.New(issueTime),
	}
}

// ApplyStatus records a status change reported by the orchestrator, unless
// it is older than what the store holds (an older generation; in the same
// generation an older lease token, made by a worker fenced out since, or
// an earlier time under the same lease; or a store already DELETED) or
// speaks of a generation the api never issued, which no orchestrator can
// have worked on: a forgery. An event without a lease token (zero) is
// ordered by generation and time alone. It reports whether the store
// changed.
func (s *Service) ApplyStatus(ctx context.Context, ev *eventsv1.StoreStatusChanged) (bool, error) {
	var updated *ent.Store
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		st, err := s.lockStore(ctx, tx, ev.GetStoreId())
		if ent.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		evTime := ev.GetTime().AsTime()
		switch {
		case ev.GetObservedGeneration() < st.Generation,
			ev.GetObservedGeneration() > st.Generation,
			st.Phase == storev1.Phase_PHASE_DELETED,
			// Within a generation a later lease wins whatever the hosts'
			// clocks say; time orders the events of one lease.
			ev.GetLeaseToken() != 0 && ev.GetLeaseToken() < st.LeaseToken,
			st.StatusTime != nil && st.ObservedGeneration == ev.GetObservedGeneration() && evTime.Before(*st.StatusTime) &&
				!(ev.GetLeaseToken() > st.LeaseToken),
			ev.GetPhase() == storev1.Phase_PHASE_UNSPECIFIED:
			return nil
		}
		u := st.Update().
			SetPhase(ev.GetPhase()).
			SetObservedGeneration(ev.GetObservedGeneration()).
			SetStatusTime(evTime).
			SetUpdateTime(s.now())
		if ev.GetPhase() == storev1.Phase_PHASE_FAILED || keptAfterFailedUpgrade(ev) || blockedDeletion(ev) {
			u.SetFailureReason(lifecycle.Reason(ev.GetReason())).SetFailureMessage(ev.GetMessage())
		} else {
			u.SetFailureReason("").SetFailureMessage("")
		}
		if ev.GetUrl() != "" {
			u.SetURL(ev.GetUrl())
		}
		if ev.GetChartVersion() != "" {
			u.SetChartVersion(ev.GetChartVersion())
		}
		// An event without the time (a release without an order check)
		// leaves the last one: it still says when the store last sold.
		if ev.GetOrderCheckTime() != nil {
			u.SetOrderCheckTime(ev.GetOrderCheckTime().AsTime())
		}
		if ev.GetLeaseToken() > st.LeaseToken {
			u.SetLeaseToken(ev.GetLeaseToken())
		}
		updated, err = u.Save(ctx)
		return err
	})
	if err != nil || updated == nil {
		return false, err
	}
	s.committed(updated)
	return true, nil
}

// keptAfterFailedUpgrade reports a READY status that also records a
// failure: an upgrade rolled back or refused, the store still serving its
// previous revision.
func keptAfterFailedUpgrade(ev *eventsv1.StoreStatusChanged) bool {
	switch lifecycle.Reason(ev.GetReason()) {
	case lifecycle.ReasonUpgradeRolledBack, lifecycle.ReasonUpgradeFailed, lifecycle.ReasonValuesRefused:
		return ev.GetPhase() == storev1.Phase_PHASE_READY
	}
	return false
}

// blockedDeletion reports a DELETING status that says what the deletion
// waits for (a finalizer, say), which the store shows in its failure
// reason and message until the deletion finishes.
func blockedDeletion(ev *eventsv1.StoreStatusChanged) bool {
	return ev.GetPhase() == storev1.Phase_PHASE_DELETING && lifecycle.Reason(ev.GetReason()) == lifecycle.ReasonNamespaceTerminating
}

// detailOf is the audit detail of a transition: what an upgrade asks for.
func detailOf(auditAction string, st *ent.Store) string {
	if auditAction != lifecycle.ActionUpgrade {
		return ""
	}
	version := st.DesiredChartVersion
	if version == "" {
		version = "newest"
	}
	keys := make([]string, 0, len(st.ChartValues))
	for k := range st.ChartValues {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, k+"="+st.ChartValues[k])
	}
	if len(pairs) == 0 {
		return "upgrade to chart version " + version + " with default values"
	}
	return "upgrade to chart version " + version + " with " + strings.Join(pairs, ", ")
}

// lockStore reads a store for update. PostgreSQL locks the row; SQLite
// transactions already hold the database's write lock from BEGIN
// (_txlock=immediate) and have no FOR UPDATE.
func (s *Service) lockStore(ctx context.Context, tx *ent.Tx, id string) (*ent.Store, error) {
	q := tx.Store.Query().Where(entstore.ID(id))
	if s.Dialect == entdialect.Postgres {
		q = q.ForUpdate()
	}
	return q.Only(ctx)
}

func (s *Service) committed(st *ent.Store) {
	if s.Notifier != nil {
		s.Notifier.Notify(st)
	}
	if s.Kick != nil {
		s.Kick()
	}
}

func (s *Service) inTx(ctx context.Context, f func(*ent.Tx) error) error {
	tx, err := s.Client.Tx(ctx)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// visible reports whether caller may see st.
func visible(caller auth.Principal, st *ent.Store) bool {
	return caller.Admin || st.Owner == caller.Name
}

func validateDisplayName(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return &InvalidFieldError{"store.display_name", "is required: give the store a name of 1 to 63 characters"}
	case n > MaxDisplayNameLength:
		return &InvalidFieldError{"store.display_name", fmt.Sprintf("is %d characters long: use at most %d", n, MaxDisplayNameLength)}
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return &InvalidFieldError{"store.display_name", "contains control characters: use printable characters only"}
	}
	return nil
}

func validateEngine(e storev1.Engine) error {
	switch e {
	case storev1.Engine_ENGINE_WOOCOMMERCE, storev1.Engine_ENGINE_MEDUSA:
		return nil
	case storev1.Engine_ENGINE_UNSPECIFIED:
		return &InvalidFieldError{"store.engine", "is required: use ENGINE_WOOCOMMERCE or ENGINE_MEDUSA"}
	}
	return &InvalidFieldError{"store.engine", fmt.Sprintf("%d is not an engine: use ENGINE_WOOCOMMERCE or ENGINE_MEDUSA", e)}
}

// chartVersionPattern is a semantic version.
var chartVersionPattern = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func validateChartVersion(v string) error {
	if v != "" && (len(v) > 64 || !chartVersionPattern.MatchString(v)) {
		return &InvalidFieldError{"chart_version", fmt.Sprintf("%q is not a chart version: use a semantic version such as 0.2.0, or leave it empty for the newest", v)}
	}
	return nil
}

// validateValues checks an upgrade's value overrides against the tenant
// policy of the embedded chart of engine (charts.TenantPolicy): the
// values a store's owner may set, and their bounds. The orchestrator
// checks them again against the chart version it installs.
func validateValues(engine storev1.Engine, values map[string]string) error {
	chartName, err := chartOf(engine)
	if err != nil {
		return err
	}
	policy, err := charts.TenantPolicyFor(chartName)
	if err != nil {
		return err
	}
	if err := policy.Check(values); err != nil {
		var refused *charts.RefusedError
		if errors.As(err, &refused) {
			return &InvalidFieldError{refused.Field(), refused.Reason}
		}
		return err
	}
	return nil
}

// chartOf is the name of the chart of engine.
func chartOf(engine storev1.Engine) (string, error) {
	switch engine {
	case storev1.Engine_ENGINE_WOOCOMMERCE:
		return charts.WordPress, nil
	case storev1.Engine_ENGINE_MEDUSA:
		return charts.Medusa, nil
	}
	return "", fmt.Errorf("store has engine %s, which has no chart", engine)
}
