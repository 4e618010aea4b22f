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

// The zap logger flags exist from 3.4; a build that names no version (from
// a branch) is assumed new, since it is far likelier than a 3.3.
func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"3.3.27": false, "v3.3.27": false, "3.4.0": true, "3.6.4": true, "3.6.0-rc.1": true, "main": true, "": true} {
		if got := atLeast(v, "v3.4"); got != want {
			t.Errorf("atLeast(%q, v3.4) = %v, want %v", v, got, want)
		}
	}
}
