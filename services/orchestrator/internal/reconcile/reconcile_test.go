package reconcile_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/plan"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

func newReconciler(t *testing.T) (*reconcile.Reconciler, *kube.Guardrails) {
	t.Helper()
	pl, err := plan.Default().Get("standard")
	if err != nil {
		t.Fatal(err)
	}
	g := &kube.Guardrails{Client: sandboxtest.Clientset(t), Plan: pl, Network: kube.Network{
		IngressNamespaceLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"},
		AllowInternetEgress:    true,
	}}
	// DetermineState publishes nothing: no reporter needed.
	r := reconcile.New([]reconcile.Step{reconcile.GuardrailsStep{Guardrails: g}}, nil, reconcile.Options{ProvisionTimeout: time.Minute})
	return r, g
}

func provisionCmd(id string, issued time.Time) *eventsv1.ProvisionCommand {
	return &eventsv1.ProvisionCommand{StoreId: id, Generation: 1, Action: eventsv1.Action_ACTION_PROVISION, IssueTime: timestamppb.New(issued)}
}

func TestDetermineStateSaysWhatIsMissing(t *testing.T) {
	ctx := context.Background()
	r, g := newReconciler(t)
	id := "r" + sandboxtest.RandomSuffix()
	ns := storeid.Namespace(id)
	sandboxtest.CleanupNamespace(t, ns)
	cmd := provisionCmd(id, time.Now())

	st, err := r.DetermineState(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(reconcile.State{Kind: reconcile.Absent, Missing: []string{"namespace " + ns}}, st, cmpopts.IgnoreUnexported(reconcile.State{})); diff != "" {
		t.Errorf("state of a new store (-want +got):\n%s", diff)
	}

	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err = r.DetermineState(ctx, cmd); err != nil || st.Kind != reconcile.InSync {
		t.Errorf("state after Ensure = %v, %v; want InSync", st, err)
	}

	cs := sandboxtest.Clientset(t)
	if err := cs.CoreV1().LimitRanges(ns).Delete(ctx, "store-limits", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, kube.PolicyDefaultDeny, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err = r.DetermineState(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.State{Kind: reconcile.OutOfSync, Missing: []string{"limit range store-limits", "network policy " + kube.PolicyDefaultDeny}}
	if diff := cmp.Diff(want, st, cmpopts.IgnoreUnexported(reconcile.State{})); diff != "" {
		t.Errorf("state after drift (-want +got):\n%s", diff)
	}

	late := provisionCmd(id, time.Now().Add(-2*time.Minute))
	if st, err = r.DetermineState(ctx, late); err != nil || st.Kind != reconcile.TimedOut {
		t.Errorf("state of an incomplete store past its deadline = %v, %v; want TimedOut", st, err)
	}
	if err := g.Ensure(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err = r.DetermineState(ctx, late); err != nil || st.Kind != reconcile.InSync {
		t.Errorf("state of a complete store past its deadline = %v, %v; want InSync (it is ready)", st, err)
	}

	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err = r.DetermineState(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if st.Kind != reconcile.Terminating && st.Kind != reconcile.Absent {
		t.Errorf("state of a deleted namespace = %v, want Terminating (or Absent once gone)", st)
	}
}

func TestValidateRejectsCommandsThatCannotSucceed(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		spoil  func(*eventsv1.ProvisionCommand)
	}{
		{"bad store id", "namespaces need DNS labels", func(c *eventsv1.ProvisionCommand) { c.StoreId = "Shop_1" }},
		{"no generation", "generations start at 1", func(c *eventsv1.ProvisionCommand) { c.Generation = 0 }},
		{"no action", "nothing to do", func(c *eventsv1.ProvisionCommand) { c.Action = eventsv1.Action_ACTION_UNSPECIFIED }},
		{"no issue time", "the deadline cannot be measured", func(c *eventsv1.ProvisionCommand) { c.IssueTime = nil }},
	}
	if err := reconcile.Validate(provisionCmd("s1", time.Now())); err != nil {
		t.Fatalf("Validate of a valid command = %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := provisionCmd("s1", time.Now())
			tt.spoil(cmd)
			var re *reconcile.Error
			err := reconcile.Validate(cmd)
			if !errors.As(err, &re) || !re.Terminal || re.Reason != lifecycle.ReasonInvalidSpec {
				t.Errorf("%s: Validate = %v, want a terminal InvalidSpec error", tt.reason, err)
			}
		})
	}
}
