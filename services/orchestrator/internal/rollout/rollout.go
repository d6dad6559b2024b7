// Package rollout tells whether the workloads of a store's release are
// ready, waits for them by watching the namespace (never by polling at a
// fixed interval), and, when they are not, says why in the cluster's own
// words: a quota that refused pods, a pod no node can take, an image that
// cannot be pulled, a crash loop, a claim not bound, a Job that failed;
// a failed order check in the check's own words.
//
// Ready means: every Deployment rolled out with all replicas available,
// every StatefulSet rolled out with all replicas ready, every Job
// Complete, every PersistentVolumeClaim Bound. Ingresses are not waited
// on: a cluster without an ingress controller never gives them an address.
package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// Kinds of the objects waited on.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindJob         = "Job"
	KindClaim       = "PersistentVolumeClaim"
)

// Object names an object of the release. Objects of other kinds than the
// four above are ignored.
type Object struct {
	Kind string
	Name string
}

// Problem is why workloads are not ready, as the cluster reports it.
type Problem struct {
	// Reason is a lifecycle reason: QuotaExceeded, PodsRejected,
	// Unschedulable, ImagePullBackOff, CrashLoopBackOff, PVCPending,
	// SetupJobFailed or OrderCheckFailed.
	Reason lifecycle.Reason
	// Message names the object and quotes the cluster.
	Message string
	// Terminal means waiting longer cannot help: a Job gave up.
	Terminal bool
}

func (p *Problem) Error() string { return string(p.Reason) + ": " + p.Message }

// Status is what was found.
type Status struct {
	// Pending describes each object that is not ready, such as
	// "deployment store-wordpress: 0 of 1 replicas available"; empty when
	// everything is ready.
	Pending []string
	// Absent lists the objects that do not exist at all (deleted out of
	// band, or never created).
	Absent []Object
	// Problem is the most specific reason found, nil when nothing but time
	// explains what is pending.
	Problem *Problem
	// OrderCheckPassed is when the order-check Job among the objects
	// completed (a Job of component order-check, see package charts);
	// zero when there is none or it has not completed.
	OrderCheckPassed time.Time
}

// Ready reports whether every object is ready.
func (s Status) Ready() bool { return len(s.Pending) == 0 }

// Check reads the objects once and returns their status, diagnosed when
// not ready. An error means the namespace could not be read.
func Check(ctx context.Context, cs kubernetes.Interface, namespace string, objects []Object) (Status, error) {
	snap, err := list(ctx, cs, namespace)
	if err != nil {
		return Status{}, err
	}
	st := evaluate(objects, snap)
	if !st.Ready() && st.Problem == nil {
		if snap.events, err = failedCreates(ctx, cs, namespace); err != nil {
			return Status{}, err
		}
		st = evaluate(objects, snap)
	}
	return st, nil
}

// Wait watches the namespace until the objects are ready, a terminal
// problem shows, or ctx is done, and returns the status then. When ctx
// ended first, the status is read once more (with a short context of its
// own) and diagnosed; the caller tells this case by !Ready() and
// ctx.Err(). An error means the namespace could not be watched or read.
// It runs as phase.Readiness, a span that records the diagnosis.
func Wait(ctx context.Context, cs kubernetes.Interface, namespace string, objects []Object) (Status, error) {
	ctx, p := phase.Start(ctx, phase.Readiness, trace.WithAttributes(semconv.K8SNamespaceName(namespace), attribute.Int("storeprov.objects", len(objects))))
	st, err := wait(ctx, cs, namespace, objects)
	p.Span().SetAttributes(attribute.Bool("storeprov.ready", err == nil && st.Ready()))
	failed := err
	if err == nil && !st.Ready() && st.Problem != nil {
		p.Span().SetAttributes(attribute.String("storeprov.reason", string(st.Problem.Reason)))
		failed = st.Problem
	}
	p.End(failed)
	return st, err
}

// wait is Wait without its phase.
func wait(ctx context.Context, cs kubernetes.Interface, namespace string, objects []Object) (Status, error) {
	watchCtx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace))
	// Shutdown waits for the informers, which stop when watchCtx is done.
	defer func() { cancel(); factory.Shutdown() }()
	changed := make(chan struct{}, 1)
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal(changed) },
		UpdateFunc: func(any, any) { signal(changed) },
		DeleteFunc: func(any) { signal(changed) },
	}
	var (
		deployments = factory.Apps().V1().Deployments()
		sets        = factory.Apps().V1().StatefulSets()
		replicaSets = factory.Apps().V1().ReplicaSets()
		jobs        = factory.Batch().V1().Jobs()
		pods        = factory.Core().V1().Pods()
		claims      = factory.Core().V1().PersistentVolumeClaims()
	)
	for _, inf := range []cache.SharedIndexInformer{deployments.Informer(), sets.Informer(), replicaSets.Informer(), jobs.Informer(), pods.Informer(), claims.Informer()} {
		if _, err := inf.AddEventHandler(notify); err != nil {
			return Status{}, fmt.Errorf("cannot watch namespace %s: %w", namespace, err)
		}
	}
	factory.Start(watchCtx.Done())
	for typ, ok := range factory.WaitForCacheSync(watchCtx.Done()) {
		if !ok && ctx.Err() == nil {
			return Status{}, fmt.Errorf("cannot watch %v in namespace %s", typ, namespace)
		}
	}
	read := func() (snapshot, error) {
		var s snapshot
		var err error
		all := labels.Everything()
		if s.deployments, err = deployments.Lister().Deployments(namespace).List(all); err != nil {
			return s, err
		}
		if s.statefulSets, err = sets.Lister().StatefulSets(namespace).List(all); err != nil {
			return s, err
		}
		if s.replicaSets, err = replicaSets.Lister().ReplicaSets(namespace).List(all); err != nil {
			return s, err
		}
		if s.jobs, err = jobs.Lister().Jobs(namespace).List(all); err != nil {
			return s, err
		}
		if s.pods, err = pods.Lister().Pods(namespace).List(all); err != nil {
			return s, err
		}
		s.claims, err = claims.Lister().PersistentVolumeClaims(namespace).List(all)
		return s, err
	}
	for {
		if ctx.Err() == nil {
			snap, err := read()
			if err != nil {
				return Status{}, fmt.Errorf("cannot read namespace %s: %w", namespace, err)
			}
			if st := evaluate(objects, snap); st.Ready() || st.Problem != nil && st.Problem.Terminal {
				return st, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// Diagnose with what the cluster says now, events included.
			cancel()
			readCtx, cancelRead := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancelRead()
			return Check(readCtx, cs, namespace, objects)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// snapshot is what the namespace holds.
type snapshot struct {
	deployments  []*appsv1.Deployment
	statefulSets []*appsv1.StatefulSet
	replicaSets  []*appsv1.ReplicaSet
	jobs         []*batchv1.Job
	pods         []*corev1.Pod
	claims       []*corev1.PersistentVolumeClaim
	// events are Warning FailedCreate events, read only to diagnose.
	events []corev1.Event
}

func list(ctx context.Context, cs kubernetes.Interface, ns string) (snapshot, error) {
	var s snapshot
	fail := func(what string, err error) (snapshot, error) {
		return snapshot{}, fmt.Errorf("cannot list %s in %s: %w", what, ns, err)
	}
	opts := metav1.ListOptions{}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, opts)
	if err != nil {
		return fail("deployments", err)
	}
	sets, err := cs.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return fail("statefulsets", err)
	}
	rss, err := cs.AppsV1().ReplicaSets(ns).List(ctx, opts)
	if err != nil {
		return fail("replicasets", err)
	}
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		return fail("jobs", err)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return fail("pods", err)
	}
	claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, opts)
	if err != nil {
		return fail("persistent volume claims", err)
	}
	s.deployments = pointers(deps.Items)
	s.statefulSets = pointers(sets.Items)
	s.replicaSets = pointers(rss.Items)
	s.jobs = pointers(jobs.Items)
	s.pods = pointers(pods.Items)
	s.claims = pointers(claims.Items)
	return s, nil
}

func failedCreates(ctx context.Context, cs kubernetes.Interface, ns string) ([]corev1.Event, error) {
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"reason": "FailedCreate", "type": corev1.EventTypeWarning,
	}.AsSelector().String()})
	if err != nil {
		return nil, fmt.Errorf("cannot list events in %s: %w", ns, err)
	}
	// Newest first: the latest refusal is the one that matters.
	slices.SortFunc(evs.Items, func(a, b corev1.Event) int { return eventTime(b).Compare(eventTime(a)) })
	return evs.Items, nil
}

func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// evaluate finds what is not ready among objects and diagnoses it.
func evaluate(objects []Object, s snapshot) Status {
	var st Status
	// Controllers whose FailedCreate events and ReplicaSets explain them.
	var stuck []*metav1.ObjectMeta
	// A failed order check comes after any other failed Job, whose failure
	// it may only echo (no product to buy without the setup).
	var orderCheck *Problem
	for _, o := range objects {
		var pending string
		var meta *metav1.ObjectMeta
		var found bool
		switch o.Kind {
		case KindDeployment:
			d := find(s.deployments, o.Name, func(d *appsv1.Deployment) string { return d.Name })
			if found = d != nil; found {
				pending, meta = deploymentPending(d), &d.ObjectMeta
			}
		case KindStatefulSet:
			ss := find(s.statefulSets, o.Name, func(ss *appsv1.StatefulSet) string { return ss.Name })
			if found = ss != nil; found {
				pending, meta = statefulSetPending(ss), &ss.ObjectMeta
			}
		case KindJob:
			j := find(s.jobs, o.Name, func(j *batchv1.Job) string { return j.Name })
			if found = j != nil; found {
				pending, meta = jobPending(j), &j.ObjectMeta
				if j.Labels[charts.LabelComponent] == charts.ComponentOrderCheck {
					st.OrderCheckPassed = completed(j)
				}
				failed := condition(j, batchv1.JobFailed)
				switch {
				case failed == nil:
				case j.Labels[charts.LabelComponent] == charts.ComponentOrderCheck:
					orderCheck = first(orderCheck, orderCheckFailed(j, failed, s.pods))
				default:
					st.Problem = first(st.Problem, &Problem{Reason: lifecycle.ReasonSetupJobFailed, Terminal: true,
						Message: fmt.Sprintf("job %s failed: %s: %s", j.Name, failed.Reason, failed.Message)})
				}
			}
		case KindClaim:
			c := find(s.claims, o.Name, func(c *corev1.PersistentVolumeClaim) string { return c.Name })
			if found = c != nil; found && c.Status.Phase != corev1.ClaimBound {
				pending = fmt.Sprintf("claim %s is %s", c.Name, c.Status.Phase)
			}
		default:
			continue
		}
		if !found {
			st.Absent = append(st.Absent, o)
			st.Pending = append(st.Pending, fmt.Sprintf("%s %s not found", strings.ToLower(o.Kind), o.Name))
			continue
		}
		if pending != "" {
			st.Pending = append(st.Pending, pending)
			if meta != nil {
				stuck = append(stuck, meta)
			}
		}
	}
	if st.Ready() {
		return st
	}
	st.Problem = first(st.Problem, orderCheck)
	st.Problem = first(st.Problem, createFailure(s, stuck))
	st.Problem = first(st.Problem, claimPending(s))
	st.Problem = first(st.Problem, podProblem(s))
	return st
}

func first(ps ...*Problem) *Problem {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func find[T any](items []*T, name string, nameOf func(*T) string) *T {
	for _, it := range items {
		if nameOf(it) == name {
			return it
		}
	}
	return nil
}

// orderCheckFailed is the problem of a failed order-check Job: the
// check's own line ("order check failed at <step>: <detail>"), which it
// leaves as its container's termination message, from the newest of the
// Job's pods that left one; the Job's condition when none did (its pods
// deleted, or killed before they could write it).
func orderCheckFailed(j *batchv1.Job, failed *batchv1.JobCondition, pods []*corev1.Pod) *Problem {
	var newest *corev1.Pod
	var message string
	for _, p := range pods {
		if !ownedBy(p.OwnerReferences, map[string]bool{j.Name: true}) {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			t := c.State.Terminated
			if t == nil || strings.TrimSpace(t.Message) == "" {
				continue
			}
			if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) {
				newest, message = p, strings.TrimSpace(t.Message)
			}
		}
	}
	if newest == nil {
		return &Problem{Reason: lifecycle.ReasonOrderCheckFailed, Terminal: true, Message: fmt.Sprintf(
			"job %s failed: %s: %s; its pods left no termination message", j.Name, failed.Reason, failed.Message)}
	}
	return &Problem{Reason: lifecycle.ReasonOrderCheckFailed, Terminal: true,
		Message: fmt.Sprintf("%s (job %s, pod %s)", message, j.Name, newest.Name)}
}

func deploymentPending(d *appsv1.Deployment) string {
	want := replicas(d.Spec.Replicas)
	s := d.Status
	switch {
	case d.Generation > s.ObservedGeneration:
		return fmt.Sprintf("deployment %s: generation %d not observed yet", d.Name, d.Generation)
	case s.UpdatedReplicas < want:
		return fmt.Sprintf("deployment %s: %d of %d replicas updated", d.Name, s.UpdatedReplicas, want)
	case s.Replicas > s.UpdatedReplicas:
		return fmt.Sprintf("deployment %s: %d old replicas still running", d.Name, s.Replicas-s.UpdatedReplicas)
	case s.AvailableReplicas < want:
		return fmt.Sprintf("deployment %s: %d of %d replicas available", d.Name, s.AvailableReplicas, want)
	}
	return ""
}

func statefulSetPending(ss *appsv1.StatefulSet) string {
	want := replicas(ss.Spec.Replicas)
	s := ss.Status
	rolling := ss.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	switch {
	case ss.Generation > s.ObservedGeneration:
		return fmt.Sprintf("statefulset %s: generation %d not observed yet", ss.Name, ss.Generation)
	case s.ReadyReplicas < want:
		return fmt.Sprintf("statefulset %s: %d of %d replicas ready", ss.Name, s.ReadyReplicas, want)
	case rolling && s.UpdatedReplicas < want:
		return fmt.Sprintf("statefulset %s: %d of %d replicas updated", ss.Name, s.UpdatedReplicas, want)
	case rolling && s.UpdateRevision != "" && s.CurrentRevision != s.UpdateRevision:
		return fmt.Sprintf("statefulset %s: rolling out revision %s", ss.Name, s.UpdateRevision)
	}
	return ""
}

func jobPending(j *batchv1.Job) string {
	if c := condition(j, batchv1.JobComplete); c != nil {
		return ""
	}
	if c := condition(j, batchv1.JobFailed); c != nil {
		return fmt.Sprintf("job %s failed", j.Name)
	}
	return fmt.Sprintf("job %s: not complete (%d active, %d failed)", j.Name, j.Status.Active, j.Status.Failed)
}

// completed returns when j completed, or zero.
func completed(j *batchv1.Job) time.Time {
	c := condition(j, batchv1.JobComplete)
	switch {
	case c == nil:
		return time.Time{}
	case j.Status.CompletionTime != nil:
		return j.Status.CompletionTime.Time
	}
	return c.LastTransitionTime.Time
}

func condition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// createFailure explains controllers that cannot create their pods: the
// ReplicaFailure condition of a Deployment's ReplicaSets, or the
// FailedCreate events of StatefulSets, Jobs and ReplicaSets.
func createFailure(s snapshot, stuck []*metav1.ObjectMeta) *Problem {
	owners := map[string]bool{} // kind/name of stuck controllers and their ReplicaSets
	for _, m := range stuck {
		owners[m.Name] = true
	}
	var messages []struct{ object, message string }
	for _, rs := range s.replicaSets {
		if !ownedBy(rs.OwnerReferences, owners) || replicas(rs.Spec.Replicas) == 0 {
			continue
		}
		owners[rs.Name] = true
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				messages = append(messages, struct{ object, message string }{"replicaset " + rs.Name, c.Message})
			}
		}
	}
	for _, e := range s.events {
		if owners[e.InvolvedObject.Name] {
			messages = append(messages, struct{ object, message string }{strings.ToLower(e.InvolvedObject.Kind) + " " + e.InvolvedObject.Name, e.Message})
		}
	}
	if len(messages) == 0 {
		return nil
	}
	for _, m := range messages {
		if strings.Contains(m.message, "exceeded quota") {
			return &Problem{Reason: lifecycle.ReasonQuotaExceeded, Message: fmt.Sprintf("%s cannot create pods: %s", m.object, m.message)}
		}
	}
	m := messages[0]
	return &Problem{Reason: lifecycle.ReasonPodsRejected, Message: fmt.Sprintf("%s cannot create pods: %s", m.object, m.message)}
}

func ownedBy(refs []metav1.OwnerReference, owners map[string]bool) bool {
	for _, r := range refs {
		if owners[r.Name] {
			return true
		}
	}
	return false
}

func claimPending(s snapshot) *Problem {
	for _, c := range s.claims {
		if c.Status.Phase == corev1.ClaimPending && c.DeletionTimestamp == nil {
			class := "the default storage class"
			if c.Spec.StorageClassName != nil {
				class = fmt.Sprintf("storage class %q", *c.Spec.StorageClassName)
			}
			return &Problem{Reason: lifecycle.ReasonPVCPending, Message: fmt.Sprintf("claim %s is Pending: no volume of %s was bound to it", c.Name, class)}
		}
	}
	return nil
}

// podProblem explains pods that are not ready: unschedulable first (it
// blocks everything after it), then image pulls, then crash loops.
func podProblem(s snapshot) *Problem {
	var unschedulable, pull, crash *Problem
	for _, p := range s.pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && unschedulable == nil {
				unschedulable = &Problem{Reason: lifecycle.ReasonUnschedulable, Message: fmt.Sprintf("pod %s cannot be scheduled: %s", p.Name, c.Message)}
			}
		}
		statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			switch {
			case (w.Reason == "ImagePullBackOff" || w.Reason == "ErrImagePull" || w.Reason == "InvalidImageName") && pull == nil:
				pull = &Problem{Reason: lifecycle.ReasonImagePullBackOff, Message: fmt.Sprintf("pod %s cannot pull image %s for container %s: %s: %s", p.Name, cs.Image, cs.Name, w.Reason, w.Message)}
			case w.Reason == "CrashLoopBackOff" && crash == nil:
				crash = &Problem{Reason: lifecycle.ReasonCrashLoopBackOff, Message: fmt.Sprintf("container %s of pod %s keeps crashing (%d restarts): %s", cs.Name, p.Name, cs.RestartCount, w.Message)}
			}
		}
	}
	return first(unschedulable, pull, crash)
}

// AnnotationResync is the annotation Resync writes.
const AnnotationResync = "storeprov.dev/resync"

// Resync makes the controllers of the objects that are not ready try
// again now: it annotates each such Deployment, StatefulSet and Job with
// value. A controller that failed to create pods (quota, admission) backs
// off exponentially, up to a quarter of an hour, and nothing else wakes it
// when the cause is fixed elsewhere (a quota raised); an update of the
// object it controls does (a Deployment's annotations are copied to its
// ReplicaSet, whose update wakes the ReplicaSet controller). Objects that
// are ready or absent are left alone.
func Resync(ctx context.Context, cs kubernetes.Interface, namespace string, objects []Object, value string) error {
	snap, err := list(ctx, cs, namespace)
	if err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, AnnotationResync, value)
	for _, o := range objects {
		var err error
		switch o.Kind {
		case KindDeployment:
			if d := find(snap.deployments, o.Name, func(d *appsv1.Deployment) string { return d.Name }); d != nil && deploymentPending(d) != "" {
				_, err = cs.AppsV1().Deployments(namespace).Patch(ctx, o.Name, types.MergePatchType, patch, metav1.PatchOptions{})
			}
		case KindStatefulSet:
			if ss := find(snap.statefulSets, o.Name, func(ss *appsv1.StatefulSet) string { return ss.Name }); ss != nil && statefulSetPending(ss) != "" {
				_, err = cs.AppsV1().StatefulSets(namespace).Patch(ctx, o.Name, types.MergePatchType, patch, metav1.PatchOptions{})
			}
		case KindJob:
			if j := find(snap.jobs, o.Name, func(j *batchv1.Job) string { return j.Name }); j != nil && jobPending(j) != "" && condition(j, batchv1.JobFailed) == nil {
				_, err = cs.BatchV1().Jobs(namespace).Patch(ctx, o.Name, types.MergePatchType, patch, metav1.PatchOptions{})
			}
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot annotate %s %s/%s: %w", strings.ToLower(o.Kind), namespace, o.Name, err)
		}
	}
	return nil
}
