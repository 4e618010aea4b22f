package linearizable

import (
	"context"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// TestLocalise: on small simulated histories the fast path leaves to
// porcupine, the porcupine-guided replay decides some, and every one it
// decides porcupine decides the same way.
func TestLocalise(t *testing.T) {
	shapes := []histgen.Config{
		{Ops: 3000, Clients: 8, UnknownRate: 0.6, Keys: 3, FaultEvery: 20e6, FaultLength: 10e6},
		{Ops: 120, Clients: 4, UnknownRate: 0.3, Keys: 4, FaultEvery: 30e6, FaultLength: 8e6},
		{Ops: 80, Clients: 6, UnknownRate: 0.5, Keys: 2, FaultEvery: 20e6, FaultLength: 10e6},
	}
	var stuck, helped int
	for seed := int64(1); seed <= 300; seed++ {
		cfg := shapes[int(seed)%len(shapes)]
		cfg.Seed = seed
		h := histgen.Generate(cfg)
		ctx := context.Background()
		ops, _ := selectOps(h, false)
		fr, last := fastRun(ctx, ops, config{}, newHints(), passes(len(ops)), 0)
		if fr.undecided == "" {
			continue
		}
		stuck++
		lr, n := localiseAll(ctx, ops, config{}, last, 2*time.Second, DefaultMemoryLimit)
		if n == 0 || lr.undecided != "" || len(lr.definite) > 0 {
			t.Logf("seed %d: stuck at revision %d (%s); windows of %d ops: %s %v", seed, last.undecidedAt, fr.undecided, n, lr.undecided, lr.definite)
			continue
		}
		helped++
		t.Logf("seed %d: decided after porcupine saw windows of %d operations", seed, n)
		exh := Check(ctx, h, Options{mode: modePorcupineOnly, Timeout: 20 * time.Second})
		if exh.Status != verdict.Pass && exh.Status != verdict.Unknown {
			t.Fatalf("seed %d (histgen.Config%+v): guided fast path passes (window %d ops), porcupine says %s %v", seed, cfg, n, exh.Status, exh.Violations)
		}
	}
	t.Logf("fast path stuck on %d histories, porcupine on a window got it past %d", stuck, helped)
}
