package local

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// TestVersions starts a 3-member cluster on each version listed in
// ETCD_CHAOS_TEST_VERSIONS (comma separated, e.g. "v3.5.35,v3.7.3"), cuts
// the leader away and heals, proving the flags and the peer-traffic sniffing
// hold across releases. Each new version is built once (about a minute).
func TestVersions(t *testing.T) {
	list := os.Getenv("ETCD_CHAOS_TEST_VERSIONS")
	if list == "" {
		t.Skip("set ETCD_CHAOS_TEST_VERSIONS=v3.5.35,v3.7.3 to run")
	}
	for _, v := range strings.Split(list, ",") {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			bin, err := etcdbin.Ensure(ctx, v, "", os.Stderr)
			if err != nil {
				t.Fatal(err)
			}
			c, err := NewProvider(WithEtcdBinary(bin)).Create(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			if "v"+c.Version() != etcdbin.NormalizeVersion(v) {
				t.Fatalf("running %s, want %s", c.Version(), v)
			}
			old, err := c.Leader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range others(c, old.Name) {
				c.Cut(ctx, old.Name, o)
			}
			put(t, client(t, c, others(c, old.Name)[0]), "/kv/v", "after-cut")
			if got, _ := serializableGet(ctx, client(t, c, old.Name), "/kv/v"); got != "" {
				t.Fatalf("cut-off old leader sees %q", got)
			}
			c.Heal(ctx)
			wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
			defer wcancel()
			if err := c.WaitHealthy(wctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
