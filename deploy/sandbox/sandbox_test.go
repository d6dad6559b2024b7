package sandbox_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/storeprov/storeprov/deploy/sandbox/internal/cluster"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// The sandbox must behave like a real cluster for the workloads a store
// runs: these tests fail if any part of it is missing.

func TestDeploymentBecomesAvailable(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-deploy", nil)
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deployment Available", func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
				return d.Status.ReadyReplicas == 2, nil
			}
		}
		return false, nil
	})
}

func TestJobCompletes(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-job", nil)
	tmpl := podTemplate(map[string]string{"app": "setup"})
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "setup"},
		Spec:       batchv1.JobSpec{Template: tmpl, BackoffLimit: ptr.To[int32](1)},
	}
	if _, err := cs.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job Complete", func(ctx context.Context) (bool, error) {
		j, err := cs.BatchV1().Jobs(ns).Get(ctx, "setup", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

func TestStatefulSetBindsItsVolumeAndBecomesReady(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-sts", nil)
	labels := map[string]string{"app": "db"}
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: podTemplate(labels),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	s.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "statefulset Ready", func(ctx context.Context) (bool, error) {
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		return err == nil && s.Status.ReadyReplicas == 1, err
	})
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("PVC data-db-0 is %s, want Bound", pvc.Status.Phase)
	}
	if sc := ptr.Deref(pvc.Spec.StorageClassName, ""); sc != "standard" {
		t.Errorf("PVC got storage class %q, want the default standard", sc)
	}
}

func TestRestrictedNamespaceRejectsPrivilegedPod(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-psa", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	tmpl := podTemplate(nil)
	tmpl.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "privileged"}, Spec: tmpl.Spec}
	_, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("privileged pod in a restricted namespace: %v, want Forbidden by PodSecurity", err)
	}
}

func TestNamespaceDeletionFinishes(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-delete", nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "content"}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace gone", func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	t.Logf("namespace deletion took %s", time.Since(start).Round(100*time.Millisecond))
}

// A fleet of stores needs thousands of Service IPs; the apiserver's default
// range holds 256.
func TestServicesGetAddressesFromTheWideRange(t *testing.T) {
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	ns := sandboxtest.Namespace(t, "sbx-service", nil)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	got, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, wide, err := net.ParseCIDR(cluster.ServiceCIDR)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(got.Spec.ClusterIP); ip == nil || !wide.Contains(ip) {
		t.Errorf("Service got cluster IP %q, want one in %s (recreate the sandbox: make sandbox-down sandbox-up)", got.Spec.ClusterIP, cluster.ServiceCIDR)
	}
}

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "main",
			Image: "registry.invalid/sandbox/pause:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
			}},
		}}},
	}
}

// eventually polls cond until it is true, failing the test after two minutes.
func eventually(t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: %v (last error: %v)", what, err, fmt.Sprint(last))
	}
}
