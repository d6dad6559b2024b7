package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// benchNodeLabel marks the fake nodes a run adds.
const benchNodeLabel = "storeprov.dev/benchmark-node"

// addNodes adds n fake nodes shaped as the sandbox's first one, which
// kwok runs like the others: the sandbox's three nodes hold about ninety
// stores, and a full run keeps more than two hundred stores and their
// baselines at once. It waits until kwok reports them Ready and returns
// a function that removes them.
func addNodes(ctx context.Context, kube kubernetes.Interface, n int) (remove func(), err error) {
	remove = func() {}
	if n == 0 {
		return remove, nil
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
	if err != nil || len(nodes.Items) == 0 {
		return remove, fmt.Errorf("cannot find a sandbox node to copy (label type=kwok): %v", err)
	}
	template := nodes.Items[0]
	var names []string
	remove = func() {
		for _, name := range names {
			_ = kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	}
	for i := 1; i <= n; i++ {
		name := "bench-node-" + strconv.Itoa(i)
		labels := map[string]string{}
		for k, v := range template.Labels {
			labels[k] = v
		}
		labels["kubernetes.io/hostname"], labels[benchNodeLabel] = name, "true"
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: template.Annotations}}
		created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		}
		if err != nil {
			return remove, fmt.Errorf("cannot add node %s: %w", name, err)
		}
		names = append(names, name)
		// kwok writes the node's status too: size it on its latest version.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			created.Status.Capacity, created.Status.Allocatable = template.Status.Capacity, template.Status.Allocatable
			created.Status.NodeInfo = template.Status.NodeInfo
			_, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				if latest, getErr := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); getErr == nil {
					created = latest
				}
			}
			return err
		})
		if err != nil {
			return remove, fmt.Errorf("cannot size node %s: %w", name, err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: benchNodeLabel})
		ready := 0
		if err == nil {
			for _, nd := range list.Items {
				for _, c := range nd.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		if ready >= n {
			return remove, nil
		}
		if time.Now().After(deadline) {
			return remove, fmt.Errorf("only %d of %d added nodes became Ready within 2 minutes", ready, n)
		}
		sleepCtx(ctx, time.Second)
	}
}
