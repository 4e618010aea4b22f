package scenario

import (
	"context"
	"fmt"
	"io"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
)

// Backend says which cluster to run a scenario on and how to make it.
type Backend struct {
	// Name is "local", "kind", "kube" or "kube-host".
	Name    string
	Members int
	// EtcdVersion and EtcdBinary select the local backend's etcd.
	EtcdVersion string
	EtcdBinary  string
	// Failpoints runs the failpoint build of EtcdVersion (gofail enabled,
	// armed over HTTP by the failpoint nemeses); local backend only.
	Failpoints bool
	// Settings are the members' etcd settings; local backend only.
	Settings local.Settings
	// ArtifactDir receives member logs.
	ArtifactDir string
	// Progress receives one-line progress messages (binary builds, installs).
	Progress io.Writer

	Kube KubeOptions
}

// Open creates the cluster. The caller must Close it, also on error paths
// after Open returned; Open itself cleans up whatever it started when it
// fails.
func Open(ctx context.Context, b Backend) (cluster.Cluster, error) {
	if err := LocalOnly(b); err != nil {
		return nil, err
	}
	switch b.Name {
	case "", "local":
		opts := []local.ProviderOption{local.WithVersion(b.EtcdVersion), local.WithEtcdBinary(b.EtcdBinary), local.WithProgress(b.Progress)}
		if b.Failpoints {
			opts = append(opts, local.WithFailpoints())
		}
		return local.NewProvider(opts...).Create(ctx, local.CreateWithMembers(b.Members),
			local.CreateWithArtifactDir(b.ArtifactDir), local.CreateWithSettings(b.Settings))
	case "kind", "kube":
		return openKube(ctx, b)
	case "kube-host":
		return openKubeHost(ctx, b, func(format string, args ...any) {
			if b.Progress != nil {
				fmt.Fprintf(b.Progress, format+"\n", args...)
			}
		})
	default:
		return nil, fmt.Errorf("unknown backend %q (want local, kind, kube or kube-host)", b.Name)
	}
}

// LocalOnly refuses settings a Kubernetes backend cannot apply. Settings at
// their defaults (what an unset flag or an empty ETCD_SETTINGS parses to,
// a non-zero snapshot count included) are no request at all, even when a
// flag named them explicitly: the rule is about what the members would
// run with, not about which flags were typed. Open applies it; callers
// that want to refuse bad input before any work (etcd-chaos run, as a
// usage error) call it first.
func LocalOnly(b Backend) error {
	if b.Name == "" || b.Name == "local" {
		return nil
	}
	if b.Failpoints || !b.Settings.IsDefault() {
		return fmt.Errorf("cluster settings and failpoints apply to the local backend only; on %s set them through the chart's values", b.Name)
	}
	return nil
}
