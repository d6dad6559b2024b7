package kube

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	applynetworkingv1 "k8s.io/client-go/applyconfigurations/networking/v1"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/storeid"
)

// Names of the store NetworkPolicies.
const (
	PolicyDefaultDeny         = "default-deny"
	PolicyAllowDNS            = "allow-dns"
	PolicyIngressToWeb        = "allow-ingress-to-web"
	PolicyWebToDatabase       = "allow-web-to-database"
	PolicyWebToDatabaseEgress = "allow-web-to-database-egress"
	PolicyInternetEgress      = "allow-web-internet-egress"
	everywhereCIDR            = "0.0.0.0/0"
	dnsPort                   = 53
	kubeSystemNamespace       = "kube-system"
	namespaceNameLabelKey     = "kubernetes.io/metadata.name"
)

// Names of the policies that let the order check's pods reach the web
// tier's server, when Network.OrderCheck.
const (
	PolicyOrderCheckToWeb  = "allow-order-check-to-web"
	PolicyOrderCheckEgress = "allow-order-check-egress"
)

// closedRanges are never reachable through internet egress: private
// (RFC 1918), shared address space (RFC 6598, used by carrier NAT and some
// clusters' pod networks), link-local (cloud instance metadata at
// 169.254.169.254) and loopback.
var closedRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8"}

// egressExceptions are closedRanges and the cluster's own IPv4 ranges
// outside them, in that order: an exception must lie inside 0.0.0.0/0, and
// internet egress opens no IPv6 at all.
func (n Network) egressExceptions() []string {
	except := slices.Clone(closedRanges)
	for _, c := range n.ClusterCIDRs {
		prefix, err := netip.ParsePrefix(c)
		if err != nil || !prefix.Addr().Is4() {
			continue
		}
		prefix = prefix.Masked()
		covered := slices.ContainsFunc(except, func(e string) bool {
			closed := netip.MustParsePrefix(e)
			return closed.Bits() <= prefix.Bits() && closed.Contains(prefix.Addr())
		})
		if !covered {
			except = append(except, prefix.String())
		}
	}
	return except
}

// applyNetworkPolicies converges the store's policies: deny everything,
// then allow DNS, the ingress controller to the web tier, the web tier to
// the database tier, and (when configured) the web tier to the internet
// and the order check's pods to the web tier's server. A policy no longer
// configured is removed.
func (g *Guardrails) applyNetworkPolicies(ctx context.Context, storeID string) error {
	ns := storeid.Namespace(storeID)
	web := tierSelector(TierWeb)
	database := tierSelector(TierDatabase)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	dns := intstr.FromInt32(dnsPort)

	spec := applynetworkingv1.NetworkPolicySpec
	policies := map[string]*applynetworkingv1.NetworkPolicySpecApplyConfiguration{
		// Selecting every pod for both directions with no rule denies all.
		PolicyDefaultDeny: spec().
			WithPodSelector(applymetav1.LabelSelector()).
			WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
		PolicyAllowDNS: spec().
			WithPodSelector(applymetav1.LabelSelector()).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(applynetworkingv1.NetworkPolicyEgressRule().
				WithTo(applynetworkingv1.NetworkPolicyPeer().WithNamespaceSelector(
					applymetav1.LabelSelector().WithMatchLabels(map[string]string{namespaceNameLabelKey: kubeSystemNamespace}))).
				WithPorts(
					applynetworkingv1.NetworkPolicyPort().WithProtocol(udp).WithPort(dns),
					applynetworkingv1.NetworkPolicyPort().WithProtocol(tcp).WithPort(dns),
				)),
		PolicyIngressToWeb: spec().
			WithPodSelector(web).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(applynetworkingv1.NetworkPolicyIngressRule().
				WithFrom(applynetworkingv1.NetworkPolicyPeer().WithNamespaceSelector(
					applymetav1.LabelSelector().WithMatchLabels(g.Network.IngressNamespaceLabels)))),
		PolicyWebToDatabase: spec().
			WithPodSelector(database).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(applynetworkingv1.NetworkPolicyIngressRule().
				WithFrom(applynetworkingv1.NetworkPolicyPeer().WithPodSelector(web))),
		// Pairs with PolicyWebToDatabase: default-deny closes both directions.
		PolicyWebToDatabaseEgress: spec().
			WithPodSelector(web).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(applynetworkingv1.NetworkPolicyEgressRule().
				WithTo(applynetworkingv1.NetworkPolicyPeer().WithPodSelector(database))),
	}
	if g.Network.AllowInternetEgress {
		policies[PolicyInternetEgress] = spec().
			WithPodSelector(web).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(applynetworkingv1.NetworkPolicyEgressRule().
				WithTo(applynetworkingv1.NetworkPolicyPeer().WithIPBlock(
					applynetworkingv1.IPBlock().WithCIDR(everywhereCIDR).
						WithExcept(g.Network.egressExceptions()...))))
	}
	if g.Network.OrderCheck {
		// Both directions, on the server's port only: the check's pods
		// are of the web tier, which default-deny keeps from one another.
		check := applymetav1.LabelSelector().WithMatchLabels(map[string]string{charts.LabelComponent: charts.ComponentOrderCheck})
		port := intstr.FromString(charts.WebPortName)
		policies[PolicyOrderCheckToWeb] = spec().
			WithPodSelector(web).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(applynetworkingv1.NetworkPolicyIngressRule().
				WithFrom(applynetworkingv1.NetworkPolicyPeer().WithPodSelector(check)).
				WithPorts(applynetworkingv1.NetworkPolicyPort().WithProtocol(tcp).WithPort(port)))
		policies[PolicyOrderCheckEgress] = spec().
			WithPodSelector(check).
			WithPolicyTypes(networkingv1.PolicyTypeEgress).
			WithEgress(applynetworkingv1.NetworkPolicyEgressRule().
				WithTo(applynetworkingv1.NetworkPolicyPeer().WithPodSelector(web)).
				WithPorts(applynetworkingv1.NetworkPolicyPort().WithProtocol(tcp).WithPort(port)))
	}
	var unwanted []string
	if !g.Network.AllowInternetEgress {
		unwanted = append(unwanted, PolicyInternetEgress)
	}
	if !g.Network.OrderCheck {
		unwanted = append(unwanted, PolicyOrderCheckToWeb, PolicyOrderCheckEgress)
	}
	eg, ectx := errgroup.WithContext(ctx)
	for name, sp := range policies {
		eg.Go(func() error {
			p := applynetworkingv1.NetworkPolicy(name, ns).WithLabels(ownerLabels(storeID)).WithSpec(sp)
			if _, err := g.Client.NetworkingV1().NetworkPolicies(ns).Apply(ectx, p, applyOptions); err != nil {
				return fmt.Errorf("cannot apply network policy %s: %w", name, err)
			}
			return nil
		})
	}
	for _, name := range unwanted {
		eg.Go(func() error {
			err := g.Client.NetworkingV1().NetworkPolicies(ns).Delete(ectx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("cannot remove network policy %s: %w", name, err)
			}
			return nil
		})
	}
	return eg.Wait()
}

func tierSelector(tier string) *applymetav1.LabelSelectorApplyConfiguration {
	return applymetav1.LabelSelector().WithMatchLabels(map[string]string{LabelTier: tier})
}
