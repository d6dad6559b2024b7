package worker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/orchestrator/internal/kube"
	"github.com/storeprov/storeprov/services/orchestrator/internal/reconcile"
)

// What the Medusa image's order check prints when the server refuses a
// step (helm's TestOrderCheckScriptReportsTheStepThatFailed runs the real
// script against a server that refuses the cart).
const (
	refusedCart = "order check failed at create-cart: POST /store/carts: HTTP 400: Publishable key needs to have a sales channel configured"
	refusedItem = "order check failed at add-item: POST /store/carts/cart_01/line-items: HTTP 400: Variant variant_01 does not have the required inventory"
)

// holdGate is the scheduling gate that keeps a held order check's pods
// off every node.
const holdGate = "storeprov.dev/test-hold-order-check"

// orderChecks runs the order checks of one store as the test says. The
// sandbox's kwok nodes run no container and complete every Job's pod, so
// the check's pods are held: a MutatingAdmissionPolicy gives each a
// scheduling gate as it is created, and verdict then settles it. An empty
// verdict lets the check pass (the gate is removed; kwok completes the
// pod); any other is the line the real script prints when it fails, and
// the pod ends as the kubelet reports such an exit: Failed, its container
// terminated with exit code 1 and that line as termination message.
type orderChecks struct {
	mu sync.Mutex
	// settled lists "job/verdict" per pod, in order ("pass" for "").
	settled []string
	seen    map[string]bool
}

// holdOrderChecks holds the order checks of store id until the test ends.
// onlyJobFails is a verdict for holdOrderChecks: the check Job named job
// fails with line, every other one passes.
func onlyJobFails(job, line string) func(string) string {
	return func(j string) string {
		if j == job {
			return line
		}
		return ""
	}
}

func holdOrderChecks(t *testing.T, id string, verdict func(job string) string) *orderChecks {
	t.Helper()
	cs := sandboxtest.Clientset(t)
	ctx, cancel := context.WithCancel(context.Background())
	name := "storeprov-test-hold-order-check-" + id
	selector := map[string]string{charts.LabelComponent: charts.ComponentOrderCheck, kube.LabelStoreID: id}
	policy := &admissionv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			FailurePolicy:      ptr(admissionv1.Fail),
			ReinvocationPolicy: admissionv1.NeverReinvocationPolicy,
			Mutations: []admissionv1.Mutation{{
				PatchType: admissionv1.PatchTypeApplyConfiguration,
				ApplyConfiguration: &admissionv1.ApplyConfiguration{Expression: fmt.Sprintf(
					`Object{spec: Object.spec{schedulingGates: [Object.spec.schedulingGates{name: %q}]}}`, holdGate)},
			}},
		},
	}
	binding := &admissionv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName:     name,
			MatchResources: &admissionv1.MatchResources{ObjectSelector: &metav1.LabelSelector{MatchLabels: selector}},
		},
	}
	adm := cs.AdmissionregistrationV1()
	if _, err := adm.MutatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot hold the order checks: %v", err)
	}
	if _, err := adm.MutatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot hold the order checks: %v", err)
	}
	checks := &orderChecks{seen: map[string]bool{}}
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
		bg := context.Background()
		_ = adm.MutatingAdmissionPolicyBindings().Delete(bg, name, metav1.DeleteOptions{})
		_ = adm.MutatingAdmissionPolicies().Delete(bg, name, metav1.DeleteOptions{})
	})

	// The API server applies a new policy a moment later: a pod created
	// before would run unheld. Wait until a dry run is held.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hold-probe-", Labels: selector},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	eventually(t, 30*time.Second, func() bool {
		p, err := cs.CoreV1().Pods(metav1.NamespaceDefault).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && len(p.Spec.SchedulingGates) == 1 && p.Spec.SchedulingGates[0].Name == holdGate
	}, func() string { return "the admission policy holding order checks never applied" })

	go func() {
		defer close(done)
		for ctx.Err() == nil {
			checks.settle(ctx, t, cs, storeid.Namespace(id), verdict)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return checks
}

// settle settles the held pods of ns not settled yet.
func (c *orderChecks) settle(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string, verdict func(job string) string) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: charts.LabelComponent + "=" + charts.ComponentOrderCheck})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		held := slices.ContainsFunc(p.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == holdGate })
		if c.seen[p.Name] || !held || p.Status.Phase != corev1.PodPending {
			continue
		}
		job := p.Labels["batch.kubernetes.io/job-name"]
		line := verdict(job)
		if line == "" {
			patch := []byte(`[{"op":"remove","path":"/spec/schedulingGates"}]`)
			_, err = cs.CoreV1().Pods(ns).Patch(ctx, p.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
		} else {
			now := metav1.Now()
			p.Status.Phase = corev1.PodFailed
			p.Status.ContainerStatuses = nil
			for _, ctr := range p.Spec.Containers {
				p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
					Name: ctr.Name, Image: ctr.Image,
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
						ExitCode: 1, Reason: "Error", Message: line + "\n", StartedAt: now, FinishedAt: now,
					}},
				})
			}
			_, err = cs.CoreV1().Pods(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{})
		}
		outcome := "pass"
		if line != "" {
			outcome, _, _ = strings.Cut(line, ":")
		}
		switch {
		case err == nil:
			c.mu.Lock()
			c.seen[p.Name] = true
			c.settled = append(c.settled, job+"/"+outcome)
			c.mu.Unlock()
		case ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
			t.Errorf("cannot settle order check pod %s/%s: %v", ns, p.Name, err)
		}
	}
}

// outcomes lists "job/outcome" per settled pod, in order.
func (c *orderChecks) outcomes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.settled)
}

func ptr[T any](v T) *T { return &v }

// medusaCommand is generation of a Medusa store named name.
func medusaCommand(id string, generation int64, name string) *eventsv1.ProvisionCommand {
	cmd := storeCommand(id, generation, provision, storev1.Engine_ENGINE_MEDUSA)
	cmd.Spec.DisplayName = name
	return cmd
}

func TestOrderCheckThatFailsFailsTheFirstInstallNamingTheStep(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true,
		reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute, OrderCheck: reconcile.OrderCheckInstall}})
	id := newStore(t)
	ns := storeid.Namespace(id)
	checks := holdOrderChecks(t, id, func(string) string { return refusedCart })
	events := watch(t, env, id)
	publish(t, env, medusaCommand(id, 1, "Corner Shop"), "")

	failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, 2*time.Minute)
	if lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonOrderCheckFailed || !strings.Contains(failed.GetMessage(), refusedCart+" (job store-order-check-1, pod store-order-check-1-") {
		t.Errorf("FAILED = %s: %q; want OrderCheckFailed quoting the check's line, naming the step create-cart", failed.GetReason(), failed.GetMessage())
	}
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "FAILED/OrderCheckFailed"}, events.phases(1)); diff != "" {
		t.Errorf("status events (-want +got):\n%s", diff)
	}
	eventually(t, 5*time.Second, func() bool { return events.audit(1, lifecycle.ActionFailure, id) != nil },
		func() string { return "no failure audit event" })
	// The Job tried twice (backoffLimit 1), and failed both times.
	want := []string{"store-order-check-1/order check failed at create-cart", "store-order-check-1/order check failed at create-cart"}
	if diff := cmp.Diff(want, checks.outcomes()); diff != "" {
		t.Errorf("order checks run (-want +got):\n%s", diff)
	}
	// The check ran because the orchestrator asked for it, and the
	// namespace lets it reach the server.
	hist := helmHistory(t, id)
	if len(hist) != 1 || fmt.Sprint(hist[0].Values["orderCheck"]) != "map[enabled:true]" {
		t.Errorf("release = %v with orderCheck %v, want one revision with the check enabled", statuses(hist), hist[0].Values["orderCheck"])
	}
	cs := sandboxtest.Clientset(t)
	for _, name := range []string{kube.PolicyOrderCheckToWeb, kube.PolicyOrderCheckEgress} {
		if _, err := cs.NetworkingV1().NetworkPolicies(ns).Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("network policy %s: %v", name, err)
		}
	}
}

func TestOrderCheckThatFailsAnUpgradeRollsItBack(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true,
		reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute, RollbackTimeout: time.Minute, OrderCheck: reconcile.OrderCheckAlways}})
	id := newStore(t)
	// The upgrade's check (revision 2) cannot sell; the others can.
	checks := holdOrderChecks(t, id, onlyJobFails("store-order-check-2", refusedItem))
	events := watch(t, env, id)
	publish(t, env, medusaCommand(id, 1, "Corner Shop"), "")
	if ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 2*time.Minute); lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
		t.Fatalf("first install = %s: %s, want Ready", ready.GetReason(), ready.GetMessage())
	}

	publish(t, env, medusaCommand(id, 2, "Corner Shop & Co"), "")
	kept := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, 2*time.Minute)
	if lifecycle.Reason(kept.GetReason()) != lifecycle.ReasonUpgradeRolledBack ||
		!strings.Contains(kept.GetMessage(), string(lifecycle.ReasonOrderCheckFailed)+": "+refusedItem+" (job store-order-check-2, pod ") ||
		!strings.Contains(kept.GetMessage(), "rolled back to revision 1") {
		t.Errorf("status after the upgrade = %s: %q; want UpgradeRolledBack quoting the check, at add-item, and the revision", kept.GetReason(), kept.GetMessage())
	}
	if diff := cmp.Diff([]string{"PROVISIONING/Provisioning", "READY/UpgradeRolledBack"}, events.phases(2)); diff != "" {
		t.Errorf("status events of the upgrade (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:superseded", "3:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
	// Install, upgrade (twice: backoffLimit 1), and the rolled-back
	// revision's check again, which sells.
	want := []string{
		"store-order-check-1/pass",
		"store-order-check-2/order check failed at add-item", "store-order-check-2/order check failed at add-item",
		"store-order-check-1/pass",
	}
	if diff := cmp.Diff(want, checks.outcomes()); diff != "" {
		t.Errorf("order checks run (-want +got):\n%s", diff)
	}
}

func TestOrderCheckOnInstallRunsOnlyUntilTheStoreIsReady(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true,
		reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute, OrderCheck: reconcile.OrderCheckInstall}})
	id := newStore(t)
	checks := holdOrderChecks(t, id, func(string) string { return "" })
	events := watch(t, env, id)
	publish(t, env, medusaCommand(id, 1, "Corner Shop"), "")
	ready := events.waitStatus(t, 1, storev1.Phase_PHASE_READY, 2*time.Minute)
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
		t.Fatalf("first install = %s: %s, want Ready", ready.GetReason(), ready.GetMessage())
	}
	// The READY event says when the check passed: when its Job completed.
	job, err := sandboxtest.Clientset(t).BatchV1().Jobs(storeid.Namespace(id)).Get(context.Background(), "store-order-check-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ready.GetOrderCheckTime(); got == nil || job.Status.CompletionTime == nil || !got.AsTime().Equal(job.Status.CompletionTime.Time) {
		t.Errorf("READY after the check carries order check time %v, want the Job's completion %v", got, job.Status.CompletionTime)
	}
	publish(t, env, medusaCommand(id, 2, "Corner Shop & Co"), "")
	ready = events.waitStatus(t, 2, storev1.Phase_PHASE_READY, 2*time.Minute)
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady {
		t.Fatalf("upgrade = %s: %s, want Ready", ready.GetReason(), ready.GetMessage())
	}
	if ready.GetOrderCheckTime() != nil {
		t.Errorf("READY of an upgrade that ran no check carries order check time %v, want none (the api keeps the last)", ready.GetOrderCheckTime().AsTime())
	}
	hist := helmHistory(t, id)
	var got []string
	for _, r := range hist {
		got = append(got, fmt.Sprintf("%d:%v", r.Revision, r.Values["orderCheck"]))
	}
	if diff := cmp.Diff([]string{"1:map[enabled:true]", "2:map[enabled:false]"}, got); diff != "" {
		t.Errorf("order check of each revision (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"store-order-check-1/pass"}, checks.outcomes()); diff != "" {
		t.Errorf("order checks run (-want +got):\n%s", diff)
	}
}

// A retry of a store whose check failed runs the check again, in a new
// Job: the failed one never runs again and is named by the release
// revision, so the retry upgrades the release (a setup Job that failed is
// run afresh the same way).
func TestRetryAfterAFailedOrderCheckRunsAFreshCheck(t *testing.T) {
	t.Parallel()
	env := bustest.Embedded(t)
	startWorker(t, env, setup{worker: fastRetries(), release: true,
		reconcile: reconcile.Options{ProvisionTimeout: 2 * time.Minute, OrderCheck: reconcile.OrderCheckInstall}})
	id := newStore(t)
	// The first install's check cannot sell; the retry's can.
	checks := holdOrderChecks(t, id, onlyJobFails("store-order-check-1", refusedCart))
	events := watch(t, env, id)
	publish(t, env, medusaCommand(id, 1, "Corner Shop"), "")
	if failed := events.waitStatus(t, 1, storev1.Phase_PHASE_FAILED, 2*time.Minute); lifecycle.Reason(failed.GetReason()) != lifecycle.ReasonOrderCheckFailed {
		t.Fatalf("first install = %s: %s, want OrderCheckFailed", failed.GetReason(), failed.GetMessage())
	}

	publish(t, env, medusaCommand(id, 2, "Corner Shop"), "")
	ready := events.waitStatus(t, 2, storev1.Phase_PHASE_READY, 2*time.Minute)
	if lifecycle.Reason(ready.GetReason()) != lifecycle.ReasonReady || ready.GetOrderCheckTime() == nil {
		t.Errorf("retry = %s: %q with order check time %v; want Ready with the time its check passed", ready.GetReason(), ready.GetMessage(), ready.GetOrderCheckTime())
	}
	want := []string{
		"store-order-check-1/order check failed at create-cart", "store-order-check-1/order check failed at create-cart",
		"store-order-check-2/pass",
	}
	if diff := cmp.Diff(want, checks.outcomes()); diff != "" {
		t.Errorf("order checks run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"1:superseded", "2:deployed"}, statuses(helmHistory(t, id))); diff != "" {
		t.Errorf("release history (-want +got):\n%s", diff)
	}
	// Helm deleted the failed Job with the revision that had it.
	_, err := sandboxtest.Clientset(t).BatchV1().Jobs(storeid.Namespace(id)).Get(context.Background(), "store-order-check-1", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the failed check's Job after the retry: %v, want it deleted", err)
	}
}
