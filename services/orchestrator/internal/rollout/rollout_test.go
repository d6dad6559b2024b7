package rollout

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/storeprov/storeprov/pkg/lifecycle"
)

// The objects of a WordPress store, as its manifest lists them.
var storeObjects = []Object{
	{KindClaim, "store-wp-content"},
	{KindDeployment, "store-wordpress"},
	{"Service", "store-wordpress"},
	{KindJob, "store-setup-1"},
	{KindStatefulSet, "store-mariadb"},
}

// readyStore is a snapshot where everything is ready.
func readyStore() snapshot {
	one := int32(1)
	return snapshot{
		deployments: []*appsv1.Deployment{{
			ObjectMeta: metav1.ObjectMeta{Name: "store-wordpress", Generation: 2},
			Spec:       appsv1.DeploymentSpec{Replicas: &one},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1, ReadyReplicas: 1},
		}},
		replicaSets: []*appsv1.ReplicaSet{{
			ObjectMeta: metav1.ObjectMeta{Name: "store-wordpress-abc", OwnerReferences: []metav1.OwnerReference{{Kind: "Deployment", Name: "store-wordpress"}}},
			Spec:       appsv1.ReplicaSetSpec{Replicas: &one},
		}},
		statefulSets: []*appsv1.StatefulSet{{
			ObjectMeta: metav1.ObjectMeta{Name: "store-mariadb", Generation: 1},
			Spec:       appsv1.StatefulSetSpec{Replicas: &one},
			Status:     appsv1.StatefulSetStatus{ObservedGeneration: 1, Replicas: 1, ReadyReplicas: 1, UpdatedReplicas: 1, CurrentRevision: "r1", UpdateRevision: "r1"},
		}},
		jobs: []*batchv1.Job{{
			ObjectMeta: metav1.ObjectMeta{Name: "store-setup-1"},
			Status:     batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
		}},
		claims: []*corev1.PersistentVolumeClaim{
			{ObjectMeta: metav1.ObjectMeta{Name: "store-wp-content"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
			{ObjectMeta: metav1.ObjectMeta{Name: "data-store-mariadb-0"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
		},
	}
}

func waitingPod(reason, message string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "store-wordpress-abc-x1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "wordpress", Image: "wordpress:6.8", RestartCount: 4,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
		}}},
	}
}

func TestEvaluateSaysWhyWorkloadsAreNotReady(t *testing.T) {
	const quotaMessage = `pods "store-wordpress-abc-x1" is forbidden: exceeded quota: store-quota, requested: requests.cpu=2, used: requests.cpu=250m, limited: requests.cpu=2`
	tests := []struct {
		name     string
		reason   lifecycle.Reason // want Problem.Reason; "" for no problem
		terminal bool
		pending  []string
		spoil    func(*snapshot)
	}{
		{name: "everything ready", spoil: func(*snapshot) {}},
		{
			name: "deployment's replica set refused by the quota", reason: lifecycle.ReasonQuotaExceeded,
			pending: []string{"deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.replicaSets[0].Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: quotaMessage}}
			},
		},
		{
			name: "deployment's pods refused by the limit range", reason: lifecycle.ReasonPodsRejected,
			pending: []string{"deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.replicaSets[0].Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue, Message: "maximum cpu usage per Container is 2, but limit is 3"}}
			},
		},
		{
			name: "statefulset refused by the quota, told by an event", reason: lifecycle.ReasonQuotaExceeded,
			pending: []string{"statefulset store-mariadb: 0 of 1 replicas ready"},
			spoil: func(s *snapshot) {
				s.statefulSets[0].Status.ReadyReplicas = 0
				s.events = []corev1.Event{
					{InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "other"}, Message: "unrelated"},
					{InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "store-mariadb"}, Message: quotaMessage},
				}
			},
		},
		{
			name: "setup job failed", reason: lifecycle.ReasonSetupJobFailed, terminal: true,
			pending: []string{"job store-setup-1 failed"},
			spoil: func(s *snapshot) {
				s.jobs[0].Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}
			},
		},
		{
			name: "pod that no node takes", reason: lifecycle.ReasonUnschedulable,
			pending: []string{"deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.pods = []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
					Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient memory."}}}}}
			},
		},
		{
			name: "image that cannot be pulled", reason: lifecycle.ReasonImagePullBackOff,
			pending: []string{"deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.pods = []*corev1.Pod{waitingPod("ErrImagePull", "manifest unknown")}
			},
		},
		{
			name: "container crash loop", reason: lifecycle.ReasonCrashLoopBackOff,
			pending: []string{"deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.pods = []*corev1.Pod{waitingPod("CrashLoopBackOff", "back-off 40s restarting failed container")}
			},
		},
		{
			name: "claim not bound, which also makes its pod unschedulable", reason: lifecycle.ReasonPVCPending,
			pending: []string{"claim store-wp-content is Pending", "deployment store-wordpress: 0 of 1 replicas available"},
			spoil: func(s *snapshot) {
				s.deployments[0].Status.AvailableReplicas = 0
				s.claims[0].Status.Phase = corev1.ClaimPending
				s.pods = []*corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
					Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "pod has unbound immediate PersistentVolumeClaims"}}}}}
			},
		},
		{
			name:    "rollout not observed yet: nothing but time explains it",
			pending: []string{"deployment store-wordpress: generation 3 not observed yet"},
			spoil:   func(s *snapshot) { s.deployments[0].Generation = 3 },
		},
		{
			name:    "old replicas still running",
			pending: []string{"deployment store-wordpress: 1 old replicas still running"},
			spoil:   func(s *snapshot) { s.deployments[0].Status.Replicas = 2 },
		},
		{
			name:    "statefulset rolling out",
			pending: []string{"statefulset store-mariadb: rolling out revision r2"},
			spoil:   func(s *snapshot) { s.statefulSets[0].Status.UpdateRevision = "r2" },
		},
		{
			name:    "job deleted out of band",
			pending: []string{"job store-setup-1 not found"},
			spoil:   func(s *snapshot) { s.jobs = nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := readyStore()
			tt.spoil(&s)
			st := evaluate(storeObjects, s)
			if diff := cmp.Diff(tt.pending, st.Pending); diff != "" {
				t.Errorf("pending (-want +got):\n%s", diff)
			}
			var reason lifecycle.Reason
			var terminal bool
			if st.Problem != nil {
				reason, terminal = st.Problem.Reason, st.Problem.Terminal
				if st.Problem.Message == "" {
					t.Errorf("problem %s has no message", reason)
				}
			}
			if reason != tt.reason || terminal != tt.terminal {
				t.Errorf("problem = %v, want reason %q terminal %v", st.Problem, tt.reason, tt.terminal)
			}
		})
	}
}

// The order check of a store whose chart runs one, as its manifest lists
// it beside the other objects.
var orderCheckObject = Object{KindJob, "store-order-check-1"}

// orderCheckJob is the Job of the order check, failed when failed is set.
func orderCheckJob(failed bool) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "store-order-check-1", Labels: map[string]string{
		"app.kubernetes.io/component": "order-check", "app.kubernetes.io/instance": "store",
	}}}
	if failed {
		j.Status = batchv1.JobStatus{Failed: 2, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"},
		}}
	} else {
		j.Status = batchv1.JobStatus{Active: 1}
	}
	return j
}

// checkPod is a pod of the order check that exited with message as its
// termination message, created at minute.
func checkPod(name string, minute int, message string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, CreationTimestamp: metav1.Date(2026, 11, 29, 10, minute, 0, 0, time.UTC),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "store-order-check-1"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name:  "order-check",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: message}},
		}}},
	}
}

func TestFailedOrderCheckIsReportedInTheChecksOwnWords(t *testing.T) {
	const refused = "order check failed at create-cart: POST /store/carts: HTTP 400: Publishable key needs to have a sales channel configured"
	tests := []struct {
		name    string
		want    *Problem
		pending []string
		spoil   func(*snapshot)
	}{
		{
			name:    "failed twice: the newest pod's line, naming the step",
			want:    &Problem{Reason: lifecycle.ReasonOrderCheckFailed, Terminal: true, Message: refused + " (job store-order-check-1, pod store-order-check-1-b)"},
			pending: []string{"job store-order-check-1 failed"},
			spoil: func(s *snapshot) {
				s.jobs = append(s.jobs, orderCheckJob(true))
				other := checkPod("store-setup-1-x", 3, "not the check's")
				other.OwnerReferences[0].Name = "store-setup-1"
				s.pods = append(s.pods,
					checkPod("store-order-check-1-b", 2, refused+"\n"),
					checkPod("store-order-check-1-a", 1, "order check failed at health: GET /health: ECONNREFUSED after 600s\n"),
					other,
				)
			},
		},
		{
			name: "failed with no termination message left: the Job's condition",
			want: &Problem{Reason: lifecycle.ReasonOrderCheckFailed, Terminal: true,
				Message: "job store-order-check-1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit; its pods left no termination message"},
			pending: []string{"job store-order-check-1 failed"},
			spoil:   func(s *snapshot) { s.jobs = append(s.jobs, orderCheckJob(true)) },
		},
		{
			name: "failed after the setup failed: the setup's failure, the cause",
			want: &Problem{Reason: lifecycle.ReasonSetupJobFailed, Terminal: true,
				Message: "job store-setup-1 failed: BackoffLimitExceeded: Job has reached the specified backoff limit"},
			pending: []string{"job store-order-check-1 failed", "job store-setup-1 failed"},
			spoil: func(s *snapshot) {
				s.jobs[0].Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}
				s.jobs = append(s.jobs, orderCheckJob(true))
				s.pods = append(s.pods, checkPod("store-order-check-1-a", 1, "order check failed at publishable-key: no publishable API key titled \"storeprov\" after 600s"))
			},
		},
		{
			name:    "still running: nothing but time explains it",
			pending: []string{"job store-order-check-1: not complete (1 active, 0 failed)"},
			spoil:   func(s *snapshot) { s.jobs = append(s.jobs, orderCheckJob(false)) },
		},
	}
	// The order check sorts before the setup, as a manifest lists them.
	objects := append([]Object{orderCheckObject}, storeObjects...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := readyStore()
			tt.spoil(&s)
			st := evaluate(objects, s)
			if diff := cmp.Diff(tt.pending, st.Pending); diff != "" {
				t.Errorf("pending (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, st.Problem); diff != "" {
				t.Errorf("problem (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPassedOrderCheckSaysWhenItCompleted(t *testing.T) {
	done := metav1.Date(2026, 11, 29, 10, 7, 0, 0, time.UTC)
	objects := append([]Object{orderCheckObject}, storeObjects...)
	s := readyStore()
	passed := orderCheckJob(false)
	passed.Status = batchv1.JobStatus{Succeeded: 1, CompletionTime: &done,
		Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}
	s.jobs = append(s.jobs, passed)
	if st := evaluate(objects, s); !st.Ready() || !st.OrderCheckPassed.Equal(done.Time) {
		t.Errorf("store with a passed check: ready %v, order check passed %v; want ready, %v", st.Ready(), st.OrderCheckPassed, done.Time)
	}
	// Without the check (a release that runs none), or while it runs.
	if st := evaluate(storeObjects, readyStore()); !st.OrderCheckPassed.IsZero() {
		t.Errorf("store without a check: order check passed %v, want zero", st.OrderCheckPassed)
	}
	s = readyStore()
	s.jobs = append(s.jobs, orderCheckJob(false))
	if st := evaluate(objects, s); !st.OrderCheckPassed.IsZero() {
		t.Errorf("store whose check runs: order check passed %v, want zero", st.OrderCheckPassed)
	}
}
