package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kind"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
)

// KubeOptions configure the kind and kube backends.
type KubeOptions struct {
	Kubeconfig string
	// Namespace to install into; empty: a new "etcd-chaos-<random>" one.
	Namespace    string
	Release      string
	ChartRef     string
	ChartVersion string
	// Values are files in charts/etcd-values (or paths), layered in order
	// after base.yaml, which every install and upgrade needs (chart.Layered).
	Values []string
	Set    []string
	// KindCluster names the kind cluster, created or reused.
	KindCluster string
	NodeImage   string
	// Keep leaves the kind cluster in place after Close, for debugging.
	Keep bool
	// KeepRelease leaves the release and its namespace in place after
	// Close. The suites leave it off and keep only a failed spec's release
	// (kube.Cluster.KeepRelease), so that a kept cluster does not fill up.
	KeepRelease bool
	// ShareKind keeps one kind cluster for every Open in this process until
	// CloseSharedKind, so a suite pays for cluster creation once.
	ShareKind bool
}

// InstallOptions turns b into what kube.Provider.Install takes.
func (b Backend) InstallOptions() kube.InstallOptions {
	o := b.Kube
	values := o.Values
	if len(values) == 0 {
		values = kube.DefaultValuesFiles
	}
	// The same layering as kube.Provider.Install and every upgrade apply.
	values = chart.Layered(values, nil).Files
	set := append([]string(nil), o.Set...)
	if b.Members > 0 {
		set = append(set, fmt.Sprintf("replicaCount=%d", b.Members))
	}
	ns := o.Namespace
	if ns == "" {
		ns = "etcd-chaos-" + randomSuffix()
	}
	release := o.Release
	if release == "" {
		release = "etcd"
	}
	version := o.ChartVersion
	if version == "" {
		version = chart.DefaultVersion
	}
	return kube.InstallOptions{Namespace: ns, Release: release, ChartRef: o.ChartRef, ChartVersion: version, ValuesFiles: values, Set: set}
}

func randomSuffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var shared struct {
	sync.Mutex
	kind *kind.Cluster
}

// kubeCluster is a release on Kubernetes that, when Open made a kind cluster
// just for it, deletes that kind cluster on Close too.
type kubeCluster struct {
	*kube.Cluster
	ownKind *kind.Cluster
}

func (c *kubeCluster) Close(ctx context.Context) error {
	err := c.Cluster.Close(ctx)
	if c.ownKind != nil {
		err = errors.Join(err, c.ownKind.Close(ctx))
	}
	return err
}

func openKube(ctx context.Context, b Backend) (cluster.Cluster, error) {
	logf := func(format string, args ...any) {
		if b.Progress != nil {
			fmt.Fprintf(b.Progress, format+"\n", args...)
		}
	}
	if b.Progress == nil {
		b.Progress = io.Discard
	}
	var p *kube.Provider
	var own *kind.Cluster
	switch b.Name {
	case "kube":
		// An empty Kubeconfig follows client-go's loading rules, as kubectl
		// does: $KUBECONFIG, then ~/.kube/config.
		p = kube.NewProvider(kube.WithKubeconfig(b.Kube.Kubeconfig), kube.WithKeep(b.Kube.KeepRelease), kube.WithLogf(logf))
	case "kind":
		kc, err := kindCluster(ctx, b, logf)
		if err != nil {
			return nil, err
		}
		if !b.Kube.ShareKind {
			own = kc
		}
		p = kc.Provider
	}
	c, err := p.Install(ctx, b.InstallOptions())
	if err == nil && b.Kube.KeepRelease {
		c.KeepRelease()
	}
	if err != nil {
		if own != nil {
			own.Close(context.WithoutCancel(ctx))
		}
		return nil, err
	}
	return &kubeCluster{Cluster: c, ownKind: own}, nil
}

func kindCluster(ctx context.Context, b Backend, logf func(string, ...any)) (*kind.Cluster, error) {
	if err := kind.DockerAvailable(ctx); err != nil {
		return nil, fmt.Errorf("the kind backend needs Docker: %w (use --backend local, or start Docker)", err)
	}
	opts := []kind.Option{kind.WithKeepCluster(b.Kube.Keep), kind.WithLogf(logf)}
	if b.Kube.NodeImage != "" {
		opts = append(opts, kind.WithNodeImage(b.Kube.NodeImage))
	}
	name := b.Kube.KindCluster
	if name == "" {
		name = kind.DefaultClusterName
	}
	if !b.Kube.ShareKind {
		return kind.NewProvider(opts...).Create(ctx, name)
	}
	shared.Lock()
	defer shared.Unlock()
	if shared.kind == nil {
		kc, err := kind.NewProvider(opts...).Create(ctx, name)
		if err != nil {
			return nil, err
		}
		shared.kind = kc
	}
	return shared.kind, nil
}

// CloseSharedKind deletes the kind cluster shared by Opens with ShareKind
// (unless it was reused or kept), and tears down a shared kube-host one.
func CloseSharedKind(ctx context.Context) error {
	shared.Lock()
	defer shared.Unlock()
	err := closeSharedKubeHost(ctx)
	if shared.kind == nil {
		return err
	}
	err = errors.Join(err, shared.kind.Close(ctx))
	shared.kind = nil
	return err
}
