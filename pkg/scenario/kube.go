package scenario

import (
	"context"
	"errors"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// KubeOptions configure the kind and kube backends.
type KubeOptions struct {
	Kubeconfig   string
	Namespace    string
	Release      string
	ChartRef     string
	ChartVersion string
	Values       []string
	Set          []string
	KindCluster  string
	NodeImage    string
	Keep         bool
}

func openKube(ctx context.Context, b Backend) (cluster.Cluster, error) {
	return nil, errors.New("kube backend not wired yet")
}
