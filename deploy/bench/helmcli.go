package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/storeprov/storeprov/pkg/storeid"
)

// storeIDMark stands for the store id in the values the helm CLI installs.
const storeIDMark = "@STOREID@"

// releaseName is the Helm release of the baselines, as the platform
// names its own.
const releaseName = "store"

// captureRelease reads, from a store the platform installed, what the
// helm CLI baseline needs to install the same: the chart, the values and
// the Secrets (copied) the chart expects in its namespace.
func (r *run) captureRelease(ctx context.Context, id string) error {
	ns := storeid.Namespace(id)
	var releases []struct{ Name, Chart string }
	out, err := r.helm(ctx, "list", "--namespace", ns, "--output", "json")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, &releases); err != nil || len(releases) != 1 {
		return fmt.Errorf("helm list in %s: want one release, have %s (%v)", ns, out, err)
	}
	chart := releases[0].Chart[:strings.LastIndex(releases[0].Chart, "-")]
	r.chart = filepath.Join(r.cfg.Root, "helm", chart)
	values, err := r.helm(ctx, "get", "values", releases[0].Name, "--namespace", ns, "--output", "json")
	if err != nil {
		return err
	}
	r.values = bytes.ReplaceAll(values, []byte(id), []byte(storeIDMark))
	secrets, err := r.kube.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, s := range secrets.Items {
		if s.Type == corev1.SecretTypeOpaque {
			r.secrets = append(r.secrets, corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.Name}, Type: s.Type, Data: s.Data})
		}
	}
	return nil
}

// helmInstall prepares a namespace as the platform's guardrails would
// leave it for the chart (the namespace and the credentials Secrets,
// nothing else) and installs the captured release there with the helm
// CLI. It returns how long `helm install --wait --wait-for-jobs` took,
// the preparation excluded.
func (r *run) helmInstall(ctx context.Context) (time.Duration, error) {
	id := "h" + randomHex()
	ns := "helm-" + id
	if _, err := r.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"storeprov.dev/benchmark": "helm-baseline"},
	}}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	r.baselines = append(r.baselines, ns)
	for _, s := range r.secrets {
		if _, err := r.kube.CoreV1().Secrets(ns).Create(ctx, &s, metav1.CreateOptions{}); err != nil {
			return 0, err
		}
	}
	values, err := os.CreateTemp("", "bench-values-*.json")
	if err != nil {
		return 0, err
	}
	defer os.Remove(values.Name())
	if _, err := values.Write(bytes.ReplaceAll(r.values, []byte(storeIDMark), []byte(id))); err != nil {
		return 0, err
	}
	values.Close()
	start := time.Now()
	_, err = r.helm(ctx, "install", releaseName, r.chart, "--namespace", ns, "--values", values.Name(),
		"--wait", "--wait-for-jobs", "--timeout", r.cfg.Form.Settle.String())
	return time.Since(start), err
}

// helm runs the helm CLI on the sandbox and returns its output.
func (r *run) helm(ctx context.Context, args ...string) ([]byte, error) {
	return command(ctx, r.cfg.Helm, append(args, "--kubeconfig", r.cfg.Kubeconfig)...)
}

// kubectlDeleteNamespace is the deletion baseline: `kubectl delete
// namespace --wait`, timed.
func (r *run) kubectlDeleteNamespace(ctx context.Context, ns string) (time.Duration, error) {
	start := time.Now()
	_, err := command(ctx, r.cfg.Kubectl, "delete", "namespace", ns, "--wait", "--kubeconfig", r.cfg.Kubeconfig)
	return time.Since(start), err
}

func command(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args[:min(3, len(args))], " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// deleteNamespace deletes ns, waiting until it is gone when wait is set.
func deleteNamespace(ctx context.Context, kube kubernetes.Interface, ns string, wait bool) error {
	err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) || (err == nil && !wait) {
		return nil
	}
	if err != nil {
		return err
	}
	for {
		_, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
