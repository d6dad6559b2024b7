// Package sandboxtest gives tests a real Kubernetes API server: the sandbox
// cluster of deploy/sandbox. It starts the cluster with `make sandbox-up`
// the first time a test process asks for it (reusing one that already
// runs) and hands out fresh namespaces that are deleted when the test ends.
//
// It is for tests only. A test that cannot get a cluster fails; it never
// skips.
package sandboxtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DirEnv names the environment variable that points at the sandbox
// directory (the Makefile sets it); without it the directory is
// .cache/sandbox at the root of the repository.
const DirEnv = "STOREPROV_SANDBOX_DIR"

var (
	once    sync.Once
	config  *rest.Config
	initErr error
)

// RESTConfig returns a client configuration for the sandbox cluster,
// starting the cluster if it does not run.
func RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	once.Do(func() { config, initErr = start() })
	if initErr != nil {
		t.Fatalf("sandbox cluster unavailable: %v", initErr)
	}
	return rest.CopyConfig(config)
}

// KubeconfigPath returns the sandbox's kubeconfig file, starting the
// cluster if it does not run.
func KubeconfigPath(t testing.TB) string {
	t.Helper()
	RESTConfig(t)
	dir, err := sandboxDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "kubeconfig")
}

// Clientset returns a typed client for the sandbox cluster.
func Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// Namespace creates a namespace named prefix-<random> with the given
// labels and deletes it when the test ends.
func Namespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	cs := Clientset(t)
	name := prefix + "-" + RandomSuffix()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cannot create namespace %s: %v", name, err)
	}
	CleanupNamespace(t, name)
	return name
}

// CleanupNamespace deletes the namespace when the test ends, whether or not
// the test created it. A namespace already gone is fine.
func CleanupNamespace(t testing.TB, name string) {
	t.Helper()
	cs := Clientset(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cannot delete namespace %s: %v", name, err)
		}
	})
}

// RandomSuffix returns 8 random lowercase hex characters, for names that
// must not collide between test runs.
func RandomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func start() (*rest.Config, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := sandboxDir()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("make", "-C", root, "sandbox-up", "SANDBOX_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("make sandbox-up: %w\n%s", err, out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		return nil, err
	}
	// Tests create many objects quickly; the default 5 QPS would throttle them.
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// sandboxDir is $STOREPROV_SANDBOX_DIR or <repository root>/.cache/sandbox.
func sandboxDir() (string, error) {
	if d := os.Getenv(DirEnv); d != "" {
		return filepath.Abs(d)
	}
	root, err := repoRoot()
	return filepath.Join(root, ".cache", "sandbox"), err
}

// repoRoot is the nearest directory above the working directory that holds go.work.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", errors.New("cannot find the repository root (go.work) above " + wd + ": set " + DirEnv)
		}
	}
}
