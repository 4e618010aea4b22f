package workload

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
)

// startCluster starts an n-member local cluster (real etcd processes behind
// fault proxies) and closes it on cleanup.
func startCluster(tb testing.TB, n int) *local.Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a real etcd cluster; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := local.NewProvider(local.WithProgress(os.Stderr)).Create(ctx, local.CreateWithMembers(n))
	if err != nil {
		tb.Fatalf("start a %d-member local cluster: %v", n, err)
	}
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			tb.Errorf("close local cluster: %v", err)
		}
	})
	return c
}
