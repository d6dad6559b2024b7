package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// TerminatingError reports a namespace still Terminating at its deadline,
// with what blocks it as the namespace controller sees it.
type TerminatingError struct {
	Namespace string
	// Blockers are the messages of the namespace's true conditions
	// NamespaceContentRemaining, NamespaceFinalizersRemaining and the
	// deletion failure conditions, such as "Some content in the namespace
	// has finalizers remaining: example.com/keep in 1 resource instances".
	Blockers []string
}

func (e *TerminatingError) Error() string {
	if len(e.Blockers) == 0 {
		return fmt.Sprintf("namespace %s is still terminating", e.Namespace)
	}
	return fmt.Sprintf("namespace %s is still terminating: %s", e.Namespace, strings.Join(e.Blockers, "; "))
}

// DeleteNamespace deletes the store's namespace and waits, watching it,
// until it is gone. A namespace already gone is not an error; one the
// platform did not create for this store is ErrNamespaceConflict and is
// not deleted, and an id that cannot name a namespace is an error wrapping
// storeid.ErrInvalid. If it is still there after timeout, it returns a
// *TerminatingError naming what blocks it; calling again later resumes the
// wait. It runs as phase.DeleteNamespace.
func (g *Guardrails) DeleteNamespace(ctx context.Context, storeID string, timeout time.Duration) (err error) {
	ns := storeid.Namespace(storeID)
	ctx, p := phase.Start(ctx, phase.DeleteNamespace, trace.WithAttributes(semconv.K8SNamespaceName(ns)))
	defer func() { p.End(err) }()
	if err := storeid.Validate(storeID); err != nil {
		return err
	}
	nsClient := g.Client.CoreV1().Namespaces()
	existing, err := nsClient.Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	if err := checkOwned(existing, storeID); err != nil {
		return err
	}
	// The precondition deletes the namespace just judged ours, never one
	// recreated under the same name since.
	background := metav1.DeletePropagationBackground
	err = nsClient.Delete(ctx, ns, metav1.DeleteOptions{
		PropagationPolicy: &background,
		Preconditions:     &metav1.Preconditions{UID: &existing.UID},
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot delete namespace %s: %w", ns, err)
	}

	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		gone, rv, err := g.namespaceGone(waitCtx, ns)
		if err != nil && waitCtx.Err() == nil {
			return err
		}
		if gone {
			return nil
		}
		if waitCtx.Err() != nil {
			break
		}
		w, err := nsClient.Watch(waitCtx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", ns).String(),
			ResourceVersion: rv,
		})
		if err == nil {
			waitForDeleted(waitCtx, w)
			w.Stop()
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return g.terminatingError(ctx, ns)
}

// namespaceGone reads the namespace once and returns the resource version
// to watch from.
func (g *Guardrails) namespaceGone(ctx context.Context, ns string) (bool, string, error) {
	list, err := g.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", ns).String(),
	})
	if err != nil {
		return false, "", fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	return len(list.Items) == 0, list.ResourceVersion, nil
}

// waitForDeleted returns when the watch reports a deletion, ends, or the
// context is done.
func waitForDeleted(ctx context.Context, w watch.Interface) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Deleted || ev.Type == watch.Error {
				return
			}
		}
	}
}

func (g *Guardrails) terminatingError(ctx context.Context, ns string) error {
	// The caller's deadline has passed; read the blockers with a fresh one.
	readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	obj, err := g.Client.CoreV1().Namespaces().Get(readCtx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return errors.Join(&TerminatingError{Namespace: ns}, err)
	}
	te := &TerminatingError{Namespace: ns}
	for _, c := range obj.Status.Conditions {
		switch c.Type {
		case corev1.NamespaceContentRemaining, corev1.NamespaceFinalizersRemaining,
			corev1.NamespaceDeletionContentFailure, corev1.NamespaceDeletionDiscoveryFailure,
			corev1.NamespaceDeletionGVParsingFailure:
			if c.Status == corev1.ConditionTrue {
				te.Blockers = append(te.Blockers, fmt.Sprintf("%s: %s", c.Type, c.Message))
			}
		}
	}
	return te
}
