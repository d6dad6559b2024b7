package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/storeprov/storeprov/pkg/storeid"
)

// Observation is what exists of a store's namespace and guardrails.
type Observation struct {
	// Exists is true when the namespace exists, terminating or not.
	Exists bool
	// Terminating is true when the namespace is being deleted.
	Terminating bool
	// Missing names each object Ensure would still create, such as
	// "resource quota store-quota"; it is empty when everything exists.
	Missing []string
}

// Observe reads which of the store's namespace and guardrails exist; it
// changes nothing. It checks presence, and the contents of the quota
// only: Ensure restores every drifted value. An error means the cluster
// could not be read, wraps ErrNamespaceConflict when the namespace is
// not the platform's for this store, or wraps storeid.ErrInvalid for an id
// that cannot name a namespace.
func (g *Guardrails) Observe(ctx context.Context, storeID string) (Observation, error) {
	if err := storeid.Validate(storeID); err != nil {
		return Observation{}, err
	}
	ns := storeid.Namespace(storeID)
	nsObj, err := g.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Observation{Missing: []string{"namespace " + ns}}, nil
	}
	if err != nil {
		return Observation{}, fmt.Errorf("cannot read namespace %s: %w", ns, err)
	}
	if err := checkOwned(nsObj, storeID); err != nil {
		return Observation{}, err
	}
	obs := Observation{Exists: true, Terminating: nsObj.DeletionTimestamp != nil}

	exists := func(what string, get func() error) error {
		err := get()
		if apierrors.IsNotFound(err) {
			obs.Missing = append(obs.Missing, what)
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read %s in %s: %w", what, ns, err)
		}
		return nil
	}
	core := g.Client.CoreV1()
	checks := []struct {
		what string
		get  func() error
	}{
		{"resource quota store-quota", func() error {
			q, err := core.ResourceQuotas(ns).Get(ctx, "store-quota", metav1.GetOptions{})
			if err == nil && !sameQuantities(q.Spec.Hard, g.Plan.Quota) {
				// A raised quota is a store escaping its plan; a lowered
				// one starves it. Either is drift that Ensure restores.
				obs.Missing = append(obs.Missing, "resource quota store-quota (changed out of band)")
			}
			return err
		}},
		{"limit range store-limits", func() error {
			_, err := core.LimitRanges(ns).Get(ctx, "store-limits", metav1.GetOptions{})
			return err
		}},
		{"secret " + SecretDatabase, func() error {
			_, err := core.Secrets(ns).Get(ctx, SecretDatabase, metav1.GetOptions{})
			return err
		}},
		{"secret " + SecretAdmin, func() error {
			_, err := core.Secrets(ns).Get(ctx, SecretAdmin, metav1.GetOptions{})
			return err
		}},
	}
	for _, c := range checks {
		if err := exists(c.what, c.get); err != nil {
			return Observation{}, err
		}
	}

	policies, err := g.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return Observation{}, fmt.Errorf("cannot list network policies in %s: %w", ns, err)
	}
	have := map[string]bool{}
	for _, p := range policies.Items {
		have[p.Name] = true
	}
	want := []string{PolicyDefaultDeny, PolicyAllowDNS, PolicyIngressToWeb, PolicyWebToDatabase, PolicyWebToDatabaseEgress}
	if g.Network.AllowInternetEgress {
		want = append(want, PolicyInternetEgress)
	}
	if g.Network.OrderCheck {
		want = append(want, PolicyOrderCheckToWeb, PolicyOrderCheckEgress)
	}
	for _, name := range want {
		if !have[name] {
			obs.Missing = append(obs.Missing, "network policy "+name)
		}
	}
	return obs, nil
}

// sameQuantities reports whether have holds exactly the resources of want,
// each of an equal quantity.
func sameQuantities(have, want corev1.ResourceList) bool {
	if len(have) != len(want) {
		return false
	}
	for name, q := range want {
		h, ok := have[name]
		if !ok || h.Cmp(q) != 0 {
			return false
		}
	}
	return true
}
