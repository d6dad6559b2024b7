package reconcile

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
)

// Remove implements Step: it uninstalls the release and deletes the
// claims and Secrets left in the namespace (kept claims, StatefulSet
// claims, credentials), without waiting; GuardrailsStep then deletes the
// namespace and waits until it is gone. It refuses to touch a namespace
// the platform does not own.
func (s *ReleaseStep) Remove(ctx context.Context, cmd *eventsv1.ProvisionCommand) error {
	ns := storeid.Namespace(cmd.GetStoreId())
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
