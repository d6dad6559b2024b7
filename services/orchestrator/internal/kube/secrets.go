package kube

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/storeprov/storeprov/pkg/storeid"
)

// Names and keys of the credentials Secrets the store charts read through
// their existingSecret values.
const (
	SecretDatabase          = "store-database"
	KeyDatabaseRootPassword = "root-password"
	KeyDatabaseUser         = "username"
	KeyDatabasePassword     = "password"
	KeyDatabaseName         = "database"

	SecretAdmin      = "store-admin"
	KeyAdminUser     = "username"
	KeyAdminPassword = "password"
	KeyAdminEmail    = "email"
)

// ensureCredentials creates the credentials Secrets the first time and
// never touches their data again. The namespace is annotated once they
// exist; a Secret missing after that was deleted out of band and is
// reported as ErrCredentialsLost instead of being silently regenerated.
func (g *Guardrails) ensureCredentials(ctx context.Context, storeID string) error {
	ns := storeid.Namespace(storeID)
	nsObj, err := g.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	_, generatedBefore := nsObj.Annotations[AnnotationCredentialsCreated]

	// Passwords are 26 random base32 characters (130 bits): no quoting
	// needed in shells, URLs or config files.
	secrets := map[string]func() map[string][]byte{
		SecretDatabase: func() map[string][]byte {
			return map[string][]byte{
				KeyDatabaseRootPassword: []byte(rand.Text()),
				KeyDatabaseUser:         []byte("store"),
				KeyDatabasePassword:     []byte(rand.Text()),
				KeyDatabaseName:         []byte("store"),
			}
		},
		SecretAdmin: func() map[string][]byte {
			return map[string][]byte{
				KeyAdminUser:     []byte("admin"),
				KeyAdminPassword: []byte(rand.Text()),
				KeyAdminEmail:    []byte("admin@store-" + storeID + ".invalid"),
			}
		},
	}
	for name, generate := range secrets {
		_, err := g.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			continue
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("cannot read secret %s: %w", name, err)
		case generatedBefore:
			return fmt.Errorf("secret %s/%s: %w; restore it from a backup, or delete and recreate the store", ns, name, ErrCredentialsLost)
		}
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: ownerLabels(storeID)},
			Type:       corev1.SecretTypeOpaque,
			Data:       generate(),
		}
		// Create, not apply: when two reconciles race, the loser gets
		// AlreadyExists and keeps the winner's credentials.
		if _, err := g.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("cannot create secret %s: %w", name, err)
		}
	}
	if generatedBefore {
		return nil
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationCredentialsCreated, g.now().UTC().Format(time.RFC3339))
	if _, err := g.Client.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("cannot annotate namespace %s: %w", ns, err)
	}
	return nil
}

func (g *Guardrails) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}
