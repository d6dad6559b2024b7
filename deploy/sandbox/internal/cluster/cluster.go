// Package cluster starts and stops the sandbox Kubernetes cluster: the real
// control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler) run by kwokctl's binary runtime, kwok playing the kubelet
// on a few fake nodes, and a hostPath volume provisioner behind the default
// StorageClass.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	applystoragev1 "k8s.io/client-go/applyconfigurations/storage/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/storeprov/storeprov/deploy/sandbox/internal/hostpath"
)

// Name of the kwokctl cluster.
const Name = "storeprov"

// StorageClassName is the sandbox's default StorageClass.
const StorageClassName = "standard"

const fieldManager = "storeprov-sandbox"

// Config says where the sandbox keeps its binaries and state.
type Config struct {
	// Dir holds everything: bin/, kwok/ (cluster state), volumes/, the
	// kubeconfig and the provisioner's pid and log.
	Dir string
	// Nodes is the number of fake nodes to create.
	Nodes int
	// Log receives progress lines.
	Log io.Writer
}

// KubeconfigPath is where Up writes the cluster's kubeconfig.
func (c Config) KubeconfigPath() string { return filepath.Join(c.Dir, "kubeconfig") }

func (c Config) bin(name string) string { return filepath.Join(c.Dir, "bin", name) }
func (c Config) workdir() string        { return filepath.Join(c.Dir, "kwok") }
func (c Config) volumes() string        { return filepath.Join(c.Dir, "volumes") }
func (c Config) pidFile() string        { return filepath.Join(c.Dir, "provisioner.pid") }
func (c Config) clusterDir() string     { return filepath.Join(c.workdir(), "clusters", Name) }
func (c Config) kwokctlConfigPath() string {
	return filepath.Join(c.Dir, "kwokctl.yaml")
}

// ServiceCIDR is the sandbox's Service IP range. kwokctl leaves the
// apiserver's default, 10.0.0.0/24, whose 256 addresses run out at about 80
// stores (each has three Services); a /16 holds every fleet the benchmark
// and the tests create. It must be set when the cluster is created.
const ServiceCIDR = "10.96.0.0/16"

// kwokctlConfig is what kwokctl create reads with --config: the apiserver's
// Service IP range.
const kwokctlConfig = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
componentsPatches:
- name: kube-apiserver
  extraArgs:
  - key: service-cluster-ip-range
    value: ` + ServiceCIDR + `
`

func (c Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, "sandbox: "+format+"\n", args...)
}

// Up makes sure the sandbox cluster runs and is ready for workloads: nodes
// Ready, the default StorageClass present, the provisioner running. It
// reuses a running cluster and restarts a stopped one, so calling it again
// is cheap and safe.
func Up(ctx context.Context, c Config) error {
	start := time.Now()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kwokctl", "kubectl"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			return fmt.Errorf("sandbox binary %s is missing: run 'make sandbox-bin' first: %w", b, err)
		}
	}
	if !c.reachable(ctx) {
		if _, err := os.Stat(c.clusterDir()); err == nil {
			c.logf("restarting stopped cluster %s", Name)
			if err := c.kwokctl(ctx, "start", "cluster", "--name", Name, "--wait", "2m"); err != nil || !c.reachable(ctx) {
				c.logf("restart failed (%v): recreating the cluster", err)
				if err := c.deleteCluster(ctx); err != nil {
					return err
				}
			}
		}
	}
	if !c.reachable(ctx) {
		c.logf("creating cluster %s (kwokctl, binary runtime)", Name)
		if err := os.MkdirAll(c.Dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(c.kwokctlConfigPath(), []byte(kwokctlConfig), 0o644); err != nil {
			return err
		}
		err := c.kwokctl(ctx, "create", "cluster",
			"--config", c.kwokctlConfigPath(),
			"--name", Name,
			"--runtime", "binary",
			"--kubeconfig", c.KubeconfigPath(),
			"--kube-authorization", "--kube-admission",
			"--etcd-binary", c.bin("etcd"),
			"--kube-apiserver-binary", c.bin("kube-apiserver"),
			"--kube-controller-manager-binary", c.bin("kube-controller-manager"),
			"--kube-scheduler-binary", c.bin("kube-scheduler"),
			"--kwok-controller-binary", c.bin("kwok"),
			"--wait", "2m",
		)
		if err != nil {
			return fmt.Errorf("cannot create sandbox cluster: %w", err)
		}
	}
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	if err := c.ensureNodes(ctx, cs); err != nil {
		return err
	}
	if err := c.ensureStorageClass(ctx, cs); err != nil {
		return err
	}
	if err := c.ensureProvisioner(); err != nil {
		return err
	}
	if err := waitNodesReady(ctx, cs, c.Nodes); err != nil {
		return err
	}
	c.logf("ready in %s; kubeconfig: %s", time.Since(start).Round(100*time.Millisecond), c.KubeconfigPath())
	return nil
}

// Down stops the provisioner, deletes the cluster and all its state. Calling
// it when nothing runs is not an error.
func Down(ctx context.Context, c Config) error {
	c.stopProvisioner()
	if err := c.deleteCluster(ctx); err != nil {
		return err
	}
	for _, p := range []string{c.KubeconfigPath(), c.volumes(), c.pidFile()} {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	c.logf("cluster %s removed", Name)
	return nil
}

// Clientset returns a typed client for the sandbox cluster.
func (c Config) Clientset() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("cannot read sandbox kubeconfig: %w", err)
	}
	return kubernetes.NewForConfig(rc)
}

func (c Config) reachable(ctx context.Context) bool {
	cs, err := c.Clientset()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = cs.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err == nil
}

func (c Config) deleteCluster(ctx context.Context) error {
	if _, err := os.Stat(c.clusterDir()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := c.kwokctl(ctx, "delete", "cluster", "--name", Name, "--kubeconfig", c.KubeconfigPath()); err != nil {
		return fmt.Errorf("cannot delete sandbox cluster: %w", err)
	}
	return os.RemoveAll(c.clusterDir())
}

func (c Config) kwokctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.bin("kwokctl"), args...)
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+c.workdir(),
		"KWOK_KUBECTL_BINARY="+c.bin("kubectl"),
		"KWOK_KUBE_VERSION=v1.37.2",
	)
	cmd.Stdout, cmd.Stderr = c.Log, c.Log
	return cmd.Run()
}

// Node sizes are those of a common 16-core cloud machine, so quotas and
// requests behave as they would on a real cluster.
func (c Config) ensureNodes(ctx context.Context, cs kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("16"),
		corev1.ResourceMemory:           resource.MustParse("64Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("200Gi"),
	}
	allocatable := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("15800m"),
		corev1.ResourceMemory:           resource.MustParse("62Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("190Gi"),
	}
	for i := 1; i <= c.Nodes; i++ {
		name := "sandbox-node-" + strconv.Itoa(i)
		node := applycorev1.Node(name).
			WithAnnotations(map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}).
			WithLabels(map[string]string{
				"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				"type": "kwok", "topology.kubernetes.io/zone": "sandbox-" + strconv.Itoa((i-1)%3+1),
			})
		if _, err := cs.CoreV1().Nodes().Apply(ctx, node, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("cannot create node %s: %w", name, err)
		}
		status := applycorev1.Node(name).WithStatus(applycorev1.NodeStatus().
			WithCapacity(capacity).WithAllocatable(allocatable).
			WithNodeInfo(applycorev1.NodeSystemInfo().WithKubeletVersion("v1.37.2-kwok").WithOperatingSystem("linux").WithArchitecture("amd64")))
		if _, err := cs.CoreV1().Nodes().ApplyStatus(ctx, status, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("cannot set capacity of node %s: %w", name, err)
		}
	}
	return nil
}

func (c Config) ensureStorageClass(ctx context.Context, cs kubernetes.Interface) error {
	sc := applystoragev1.StorageClass(StorageClassName).
		WithAnnotations(map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}).
		WithProvisioner(hostpath.Name).
		WithReclaimPolicy(corev1.PersistentVolumeReclaimDelete).
		WithVolumeBindingMode("Immediate")
	if _, err := cs.StorageV1().StorageClasses().Apply(ctx, sc, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("cannot create storage class %s: %w", StorageClassName, err)
	}
	return nil
}

// ensureProvisioner starts this binary's "provision" command as a detached
// process unless the one recorded in the pid file still runs.
func (c Config) ensureProvisioner() error {
	if pid, ok := c.provisionerPID(); ok {
		c.logf("provisioner already running (pid %d)", pid)
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(c.Dir, "provisioner.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(self, "provision", "--dir", c.Dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start volume provisioner: %w", err)
	}
	if err := os.WriteFile(c.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	c.logf("volume provisioner started (pid %d)", cmd.Process.Pid)
	return cmd.Process.Release()
}

func (c Config) provisionerPID() (int, bool) {
	b, err := os.ReadFile(c.pidFile())
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	return pid, true
}

func (c Config) stopProvisioner() {
	if pid, ok := c.provisionerPID(); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		c.logf("volume provisioner stopped (pid %d)", pid)
	}
}

func waitNodesReady(ctx context.Context, cs kubernetes.Interface, want int) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "type=kwok"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready >= want, nil
	})
	if err != nil {
		return fmt.Errorf("sandbox nodes did not become Ready: %w", err)
	}
	return nil
}
