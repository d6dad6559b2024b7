// Package kube creates and removes a store's namespace and its guardrails
// with client-go: the namespace store-<id>, a ResourceQuota and LimitRange
// sized from a plan, NetworkPolicies, and Secrets holding generated
// credentials. Everything but the Secrets is written with server-side apply
// under one field manager, so every call converges the objects to their
// desired state and restores drift.
package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
)

// Labels and annotations the orchestrator puts on what it owns.
const (
	// FieldManager is the server-side apply field manager of the orchestrator.
	FieldManager = "storeprov-orchestrator"
	// LabelManagedBy marks objects the platform owns.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy.
	ManagedByValue = "storeprov"
	// LabelStoreID names the store an object belongs to.
	LabelStoreID = "storeprov.dev/store-id"
	// LabelTier is set by the store charts on pods: web or database. The
	// NetworkPolicies select pods by it.
	LabelTier = "storeprov.dev/tier"
	// TierWeb is the tier of pods that serve HTTP (and setup jobs).
	TierWeb = "web"
	// TierDatabase is the tier of database and cache pods.
	TierDatabase = "database"
	// AnnotationCredentialsCreated records when the credentials were
	// generated, so a Secret deleted later is told apart from one never made.
	AnnotationCredentialsCreated = "storeprov.dev/credentials-created"
)

var (
	// ErrNamespaceTerminating means the store's namespace is being deleted,
	// so nothing can be created in it until it is gone.
	ErrNamespaceTerminating = errors.New("store namespace is terminating")
	// ErrCredentialsLost means a credentials Secret was deleted after it was
	// generated. It is not regenerated: the store's data still uses the old
	// credentials, so a new password would lock it out.
	ErrCredentialsLost = errors.New("store credentials were deleted")
	// ErrNamespaceConflict means a namespace named like the store's exists
	// but was not created by the platform for this store: it lacks the
	// managed-by label or names another store. The platform never adopts,
	// changes or deletes such a namespace.
	ErrNamespaceConflict = errors.New("namespace belongs to someone else")
)

// Network configures the store NetworkPolicies.
type Network struct {
	// IngressNamespaceLabels select the namespace of the ingress controller,
	// the only one allowed to reach a store's web tier.
	IngressNamespaceLabels map[string]string
	// AllowInternetEgress lets the web tier reach public addresses (plugin
	// and package downloads). Private, shared (100.64.0.0/10), link-local
	// (169.254.0.0/16, where clouds serve instance metadata) and loopback
	// ranges stay closed, and so do ClusterCIDRs.
	AllowInternetEgress bool
	// ClusterCIDRs are the cluster's pod and service ranges, also closed to
	// internet egress when they lie outside the private ranges.
	ClusterCIDRs []string
	// OrderCheck lets the pods of a store chart's order check (labelled
	// app.kubernetes.io/component=order-check) reach the web tier on its
	// server's port (named http), for the orchestrator's --order-check.
	// Nothing else changes: the check's pods are of the web tier already.
	OrderCheck bool
}

// Guardrails ensures and removes store namespaces.
type Guardrails struct {
	Client  kubernetes.Interface
	Plan    plan.Plan
	Network Network
	// Now returns the current time; tests may fix it.
	Now func() time.Time
}

// Ensure converges the store's namespace and guardrails to their desired
// state: it creates what is missing, restores what was changed or deleted
// out of band, and generates credentials only the first time. It is safe
// to call concurrently and after a partial failure. It returns
// ErrNamespaceTerminating while the namespace is being deleted,
// ErrCredentialsLost if a credentials Secret was deleted, and
// ErrNamespaceConflict, changing nothing, when a namespace of that name
// exists that the platform did not create for this store, and an error
// wrapping storeid.ErrInvalid, changing nothing, for an id that cannot
// name a namespace. It runs as phase.Guardrails.
func (g *Guardrails) Ensure(ctx context.Context, storeID string) (err error) {
	ns := storeid.Namespace(storeID)
	ctx, p := phase.Start(ctx, phase.Guardrails, trace.WithAttributes(semconv.K8SNamespaceName(ns)))
	defer func() { p.End(err) }()
	if err := storeid.Validate(storeID); err != nil {
		return err
	}
	if err := g.applyNamespace(ctx, storeID); err != nil {
		return err
	}
	steps := []struct {
		what string
		do   func(context.Context, string) error
	}{
		{"resource quota", g.applyQuota},
		{"limit range", g.applyLimitRange},
		{"network policies", g.applyNetworkPolicies},
		{"credentials", g.ensureCredentials},
	}
	// The objects are independent of one another and all must exist
	// before the chart is installed: they are written at once.
	g2, gctx := errgroup.WithContext(ctx)
	for _, s := range steps {
		g2.Go(func() error {
			if err := s.do(gctx, storeID); err != nil {
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					return fmt.Errorf("cannot ensure %s in %s: %w", s.what, ns, ErrNamespaceTerminating)
				}
				return fmt.Errorf("cannot ensure %s in %s: %w", s.what, ns, err)
			}
			return nil
		})
	}
	return g2.Wait()
}

// applyNamespace creates the store's namespace when it is absent and
// converges the labels of one the platform created for this store. A
// namespace it did not create is ErrNamespaceConflict and is left as it
// is: creating (never applying over) an absent one closes the race with
// someone creating it in between.
func (g *Guardrails) applyNamespace(ctx context.Context, storeID string) error {
	ns := storeid.Namespace(storeID)
	labels := map[string]string{
		LabelManagedBy:                               ManagedByValue,
		LabelStoreID:                                 storeID,
		"pod-security.kubernetes.io/enforce":         g.Plan.PodSecurity,
		"pod-security.kubernetes.io/enforce-version": "latest",
		"pod-security.kubernetes.io/warn":            "restricted",
		"pod-security.kubernetes.io/audit":           "restricted",
	}
	existing, err := g.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}
		_, err = g.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
		if !apierrors.IsAlreadyExists(err) {
			if err != nil {
				return fmt.Errorf("cannot create namespace %s: %w", ns, err)
			}
			return nil
		}
		// Created by someone else since the read: judge theirs.
		existing, err = g.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	if err := checkOwned(existing, storeID); err != nil {
		return err
	}
	if existing.DeletionTimestamp != nil {
		return fmt.Errorf("cannot ensure namespace %s: %w", ns, ErrNamespaceTerminating)
	}
	if _, err := g.Client.CoreV1().Namespaces().Apply(ctx, applycorev1.Namespace(ns).WithLabels(labels), applyOptions); err != nil {
		return fmt.Errorf("cannot apply namespace %s: %w", ns, err)
	}
	return nil
}

// checkOwned returns an error wrapping ErrNamespaceConflict unless ns was
// created by the platform for storeID.
func checkOwned(ns *corev1.Namespace, storeID string) error {
	managedBy, store := ns.Labels[LabelManagedBy], ns.Labels[LabelStoreID]
	if managedBy == ManagedByValue && store == storeID {
		return nil
	}
	return fmt.Errorf("%w: namespace %s exists with labels %s=%q and %s=%q, not created by storeprov for store %s; "+
		"the platform leaves it untouched: remove or rename it, then retry the store",
		ErrNamespaceConflict, ns.Name, LabelManagedBy, managedBy, LabelStoreID, store, storeID)
}

func (g *Guardrails) applyQuota(ctx context.Context, storeID string) error {
	ns := storeid.Namespace(storeID)
	cfg := applycorev1.ResourceQuota("store-quota", ns).
		WithLabels(ownerLabels(storeID)).
		WithSpec(applycorev1.ResourceQuotaSpec().WithHard(g.Plan.Quota))
	_, err := g.Client.CoreV1().ResourceQuotas(ns).Apply(ctx, cfg, applyOptions)
	return err
}

func (g *Guardrails) applyLimitRange(ctx context.Context, storeID string) error {
	ns := storeid.Namespace(storeID)
	item := func(t corev1.LimitType, b plan.Bounds) *applycorev1.LimitRangeItemApplyConfiguration {
		i := applycorev1.LimitRangeItem().WithType(t)
		if len(b.Default) > 0 {
			i.WithDefault(b.Default)
		}
		if len(b.DefaultRequest) > 0 {
			i.WithDefaultRequest(b.DefaultRequest)
		}
		if len(b.Min) > 0 {
			i.WithMin(b.Min)
		}
		if len(b.Max) > 0 {
			i.WithMax(b.Max)
		}
		return i
	}
	cfg := applycorev1.LimitRange("store-limits", ns).
		WithLabels(ownerLabels(storeID)).
		WithSpec(applycorev1.LimitRangeSpec().WithLimits(
			item(corev1.LimitTypeContainer, g.Plan.Limits.Container),
			item(corev1.LimitTypePersistentVolumeClaim, g.Plan.Limits.PersistentVolumeClaim),
		))
	_, err := g.Client.CoreV1().LimitRanges(ns).Apply(ctx, cfg, applyOptions)
	return err
}

func ownerLabels(storeID string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedByValue, LabelStoreID: storeID}
}

var applyOptions = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
