package kubehost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// StorageClass is the cluster's default StorageClass. Its claims get a
// hostPath PersistentVolume under the cluster's temp dir from the
// provisioner loop in this process (there is no CSI driver or external
// provisioner on the host), so charts with persistence work as they do on
// kind with its local-path provisioner.
const StorageClass = "kube-host"

// provisionerName is the StorageClass's provisioner and the
// pv.kubernetes.io/provisioned-by annotation of the volumes it makes: the
// PV controller leaves binding to the claim named in claimRef and deleting
// a Released volume to us, as it does for any external provisioner.
const provisionerName = "etcd-chaos.io/kube-host"

// provisioner makes a volume for every Pending claim of StorageClass and
// deletes the volume (and its directory) of every claim that is gone.
type provisioner struct {
	cs  kubernetes.Interface
	dir string // volumes live in dir/<pv name>
	// logf receives what the loop could not do; it retries on the next
	// round.
	logf func(string, ...any)
}

// createStorageClass makes StorageClass, marked as the default class, so
// that a claim naming no class (the chart's default) gets it at admission.
func createStorageClass(ctx context.Context, cs kubernetes.Interface) error {
	bind := storagev1.VolumeBindingImmediate
	reclaim := corev1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        StorageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"},
		},
		Provisioner:       provisionerName,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &bind,
	}
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create StorageClass %s: %w", StorageClass, err)
	}
	return nil
}

// run provisions and deletes until ctx ends, once a second: claims come
// rarely (a StatefulSet's members at install), and a second is nothing
// next to a pod start.
func (p *provisioner) run(ctx context.Context) {
	for {
		if err := p.sync(ctx); err != nil && ctx.Err() == nil {
			p.logf("kube-host volume provisioner: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// sync does one round: a volume for each Pending claim of our class that
// has none yet, and away with each of our volumes whose claim was deleted.
func (p *provisioner) sync(ctx context.Context) error {
	pvs, err := p.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list PersistentVolumes: %w", err)
	}
	pvcs, err := p.cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list PersistentVolumeClaims: %w", err)
	}
	var errs []error
	claimed := map[string]bool{} // claim UIDs that have a volume of ours
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		if pv.Annotations["pv.kubernetes.io/provisioned-by"] != provisionerName {
			continue
		}
		if pv.Spec.ClaimRef != nil {
			claimed[string(pv.Spec.ClaimRef.UID)] = true
		}
		if pv.Status.Phase == corev1.VolumeReleased || pv.Status.Phase == corev1.VolumeFailed {
			errs = append(errs, p.delete(ctx, pv))
		}
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || claimed[string(pvc.UID)] ||
			pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != StorageClass || pvc.DeletionTimestamp != nil {
			continue
		}
		errs = append(errs, p.provision(ctx, pvc))
	}
	return errors.Join(errs...)
}

// provision creates a directory and a hostPath volume bound to the claim
// (claimRef with the claim's UID, so no other claim can take it).
func (p *provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	name := "pvc-" + string(pvc.UID)
	path := filepath.Join(p.dir, name)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("volume for claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	// World-writable, as kind's local-path provisioner makes its
	// directories: the kubelet applies no fsGroup to a hostPath volume,
	// and the chart's containers run as a non-root user.
	if err := os.Chmod(path, 0o777); err != nil {
		return err
	}
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	dirType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              StorageClass,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &dirType},
			},
		},
	}
	if _, err := p.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create volume for claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return nil
}

// delete removes a volume whose claim is gone, and its directory.
func (p *provisioner) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	if hp := pv.Spec.HostPath; hp != nil && filepath.Dir(hp.Path) == p.dir {
		if err := os.RemoveAll(hp.Path); err != nil {
			return fmt.Errorf("remove volume %s: %w", pv.Name, err)
		}
	}
	err := p.cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete volume %s: %w", pv.Name, err)
	}
	return nil
}
