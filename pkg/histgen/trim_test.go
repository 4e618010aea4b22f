package histgen_test

import (
	"context"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/linearizable"
	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// TestTrimKeepsLinearizable: cutting, thinning and dropping keys from a
// linearizable history leaves one the checker passes.
func TestTrimKeepsLinearizable(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		h := histgen.Generate(histgen.Config{Ops: 2000, Clients: 8, Seed: seed, UnknownRate: 0.3, Keys: 10})
		n := 300 + int(seed)*50
		p := histgen.Prefix(h, n)
		if len(p.Operations) > n {
			t.Fatalf("seed %d: Prefix(%d) kept %d operations", seed, n, len(p.Operations))
		}
		check := func(what string, h *history.History, opts linearizable.Options) {
			t.Helper()
			if c := linearizable.Check(context.Background(), h, opts); c.Status != verdict.Pass {
				t.Fatalf("seed %d: %s: %s: %s %v", seed, what, c.Status, c.Summary, c.Violations)
			}
		}
		check("prefix", p, linearizable.Options{})
		check("thin", histgen.Thin(p, func(op *history.Operation) bool { return op.ID%3 == 0 }), linearizable.Options{})
		d := histgen.DropKeys(h, "/kv/k00")
		for _, op := range d.Operations {
			if strings.HasPrefix(op.Key, "/kv/k00") {
				t.Fatalf("seed %d: DropKeys kept op %d on %s", seed, op.ID, op.Key)
			}
		}
		check("drop keys", d, linearizable.Options{ForeignWrites: true})
	}
}

// TestDropKeysNeedsForeignWrites: without foreign writes allowed, the
// dropped writes leave revisions nobody made.
func TestDropKeysNeedsForeignWrites(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 1000, Clients: 4, Seed: 7, Keys: 10})
	d := histgen.DropKeys(h, "/kv/k00")
	if c := linearizable.Check(context.Background(), d, linearizable.Options{}); c.Status != verdict.Fail {
		t.Fatalf("seed 7: %s: %s", c.Status, c.Summary)
	}
}
