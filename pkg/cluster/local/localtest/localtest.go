// Package localtest starts real local etcd clusters for tests, the one way
// every package's tests do it: built on first use (progress on stderr),
// healthy before the test goes on, closed when the test ends, and skipped
// under -short.
package localtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
)

// startTimeout bounds building etcd (on a cold cache, minutes) and starting
// the cluster.
const startTimeout = 10 * time.Minute

// Start starts an n-member local cluster (real etcd processes behind fault
// proxies) at etcd version (etcdbin.DefaultVersion when ""), with its
// artifacts in a temporary directory unless opts name one, waits until it
// is healthy and closes it when tb ends. A test that needs a cluster is
// skipped under -short.
func Start(tb testing.TB, version string, n int, opts ...local.CreateOption) *local.Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a real etcd cluster; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	popts := []local.ProviderOption{local.WithProgress(os.Stderr)}
	if version != "" {
		popts = append(popts, local.WithVersion(version))
	}
	copts := append([]local.CreateOption{local.CreateWithMembers(n), local.CreateWithArtifactDir(tb.TempDir())}, opts...)
	c, err := local.NewProvider(popts...).Create(ctx, copts...)
	if err != nil {
		tb.Fatalf("start a %d-member local cluster at etcd %s: %v", n, versionName(version), err)
	}
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			tb.Errorf("close local cluster: %v", err)
		}
	})
	if err := c.WaitHealthy(ctx); err != nil {
		tb.Fatalf("local cluster of %d members never became healthy: %v", n, err)
	}
	return c
}

func versionName(v string) string {
	if v == "" {
		return "the default version"
	}
	return v
}
