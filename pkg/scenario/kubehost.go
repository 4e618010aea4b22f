package scenario

import (
	"context"
	"errors"
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kubehost"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdchart"
)

var sharedHost struct {
	c *kubehost.Cluster
}

// kubeHostCluster is a release on a kube-host cluster that, when Open
// booted the cluster just for it, tears the cluster down on Close too.
type kubeHostCluster struct {
	*kubeCluster
	own *kubehost.Cluster
}

func (c *kubeHostCluster) Close(ctx context.Context) error {
	err := c.kubeCluster.Close(ctx)
	if c.own != nil {
		err = errors.Join(err, c.own.Close(ctx))
	}
	return err
}

// openKubeHost boots (or, with ShareKind, reuses) a single-node Kubernetes
// on this host and installs the repository's chart, charts/etcd, into it:
// the host reaches no registry, so the chart and its images are the ones
// pkg/etcdchart builds. CHART_REF and CHART_VERSION still override.
func openKubeHost(ctx context.Context, b Backend, logf func(string, ...any)) (cluster.Cluster, error) {
	var hc, own *kubehost.Cluster
	shared.Lock()
	if b.Kube.ShareKind && sharedHost.c != nil {
		hc = sharedHost.c
	} else {
		opts := []kubehost.Option{kubehost.WithKeep(b.Kube.KeepRelease), kubehost.WithLogf(logf), kubehost.WithProgress(b.Progress)}
		if b.ArtifactDir != "" {
			opts = append(opts, kubehost.WithLogDir(b.ArtifactDir+"/kube-host"))
		}
		c, err := kubehost.NewProvider(opts...).Create(ctx)
		if err != nil {
			shared.Unlock()
			return nil, err
		}
		hc = c
		if b.Kube.ShareKind {
			sharedHost.c = c
		} else {
			own = c
		}
	}
	shared.Unlock()
	o := b.InstallOptions()
	if b.Kube.ChartRef == "" {
		o.ChartRef = hc.Chart.Repository
		if b.Kube.ChartVersion == "" {
			o.ChartVersion = etcdchart.Latest().Version
		}
	}
	o.Set = append(append([]string(nil), hc.Chart.Set...), o.Set...)
	c, err := hc.Install(ctx, o)
	if err == nil && b.Kube.KeepRelease {
		c.KeepRelease()
	}
	if err != nil {
		if own != nil {
			own.Close(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("install on kube-host: %w", err)
	}
	return &kubeHostCluster{kubeCluster: &kubeCluster{Cluster: c}, own: own}, nil
}

// closeSharedKubeHost tears down the kube-host cluster shared by Opens with
// ShareKind.
func closeSharedKubeHost(ctx context.Context) error {
	if sharedHost.c == nil {
		return nil
	}
	err := sharedHost.c.Close(ctx)
	sharedHost.c = nil
	return err
}
