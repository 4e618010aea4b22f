package kubehost

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

func claim(ns, name, uid string, class *string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
}

// The PV controller (which binds a volume to the claim in its claimRef and
// marks it Released when the claim goes) is not in the fake clientset;
// TestBootRunsAPodAndTeardownLeavesNothing and the persistent
// delete-all-pods spec run the real one.
func TestProvisionerServesOnlyItsClassAndDeletesReleasedVolumes(t *testing.T) {
	ctx := context.Background()
	ours, other := StorageClass, "standard"
	cs := fake.NewClientset(
		claim("ns", "data-etcd-0", "u0", &ours),
		claim("ns", "other-class", "u1", &other),
		claim("ns", "no-class", "u2", nil),
	)
	dir := t.TempDir()
	p := &provisioner{cs: cs, dir: dir, logf: t.Logf}
	if err := createStorageClass(ctx, cs); err != nil {
		t.Fatal(err)
	}
	sc, err := cs.StorageV1().StorageClasses().Get(ctx, StorageClass, metav1.GetOptions{})
	if err != nil || sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Fatalf("StorageClass %s must exist as the default class: %v %v", StorageClass, sc, err)
	}
	for range 2 { // a second round must not make a second volume
		if err := p.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pvs.Items) != 1 {
		t.Fatalf("want one volume (for the claim of class %s only), got %d: %v", StorageClass, len(pvs.Items), pvs.Items)
	}
	pv := pvs.Items[0]
	ref := pv.Spec.ClaimRef
	if ref == nil || ref.Namespace != "ns" || ref.Name != "data-etcd-0" || ref.UID != "u0" {
		t.Errorf("volume must be bound to claim ns/data-etcd-0 (uid u0), claimRef = %+v", ref)
	}
	if pv.Spec.StorageClassName != StorageClass || pv.Spec.Capacity.Storage().String() != "1Gi" {
		t.Errorf("volume class %q capacity %s, want %s and 1Gi", pv.Spec.StorageClassName, pv.Spec.Capacity.Storage(), StorageClass)
	}
	hp := pv.Spec.HostPath
	if hp == nil || filepath.Dir(hp.Path) != dir {
		t.Fatalf("volume must be a hostPath under %s: %+v", dir, pv.Spec.PersistentVolumeSource)
	}
	st, err := os.Stat(hp.Path)
	if err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("volume dir %s must exist, writable by the chart's non-root user: %v %v", hp.Path, st, err)
	}

	// A Bound volume stays; once its claim is deleted the PV controller
	// marks it Released, and it goes with its directory.
	pv.Status.Phase = corev1.VolumeBound
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, &pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(hp.Path); err != nil {
		t.Fatalf("a bound volume's directory must stay: %v", err)
	}
	pv.Status.Phase = corev1.VolumeReleased
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, &pv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(hp.Path); !os.IsNotExist(err) {
		t.Errorf("a released volume's directory must go: %v", err)
	}
	if pvs, _ := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); len(pvs.Items) != 0 {
		t.Errorf("a released volume must be deleted, left: %v", pvs.Items)
	}
}
