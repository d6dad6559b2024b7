// Package hostpath is the sandbox cluster's dynamic volume provisioner: it
// answers every PersistentVolumeClaim of its StorageClass with a hostPath
// PersistentVolume backed by a directory under its root, so StatefulSets
// bind their claims and schedule as they would on a real cluster.
package hostpath

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Name is the provisioner name a StorageClass uses to select this provisioner.
const Name = "sandbox.storeprov.dev/hostpath"

// Provisioner creates and removes volume directories under Root.
type Provisioner struct {
	// Root is the directory that holds one directory per volume.
	Root string
}

var _ controller.Provisioner = (*Provisioner)(nil)

// Provision creates the volume's directory and returns a PersistentVolume
// bound to the claim. It is safe to call again for the same volume.
func (p *Provisioner) Provision(_ context.Context, opts controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	dir := filepath.Join(p.Root, opts.PVName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("cannot create volume directory %s: %w", dir, err)
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	reclaim := corev1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			VolumeMode:                    opts.PVC.Spec.VolumeMode,
			MountOptions:                  opts.StorageClass.MountOptions,
			Capacity: corev1.ResourceList{
				corev1.ResourceStorage: opts.PVC.Spec.Resources.Requests[corev1.ResourceStorage],
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
		},
	}
	return pv, controller.ProvisioningFinished, nil
}

// Delete removes the volume's directory. A directory already gone is not an error.
func (p *Provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return fmt.Errorf("volume %s has no hostPath: it was not provisioned by %s", pv.Name, Name)
	}
	dir := filepath.Join(p.Root, filepath.Base(pv.Spec.HostPath.Path))
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cannot remove volume directory %s: %w", dir, err)
	}
	return nil
}
