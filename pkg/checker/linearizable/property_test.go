package linearizable

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

var seeds = flag.Int("seeds", 150, "histgen seeds per configuration in the property tests")

// TestFastPathAgreesWithPorcupine runs both deciders on many generated
// histories, linearizable and not, and requires the same verdict. The fast
// path may say "undecided" (Check then asks porcupine), but it must never
// pass what porcupine rejects, nor fail what porcupine accepts.
func TestFastPathAgreesWithPorcupine(t *testing.T) {
	bugs := []histgen.Bug{histgen.NoBug, histgen.StaleRead, histgen.LostWrite, histgen.RevisionRegression, histgen.MovedDelete}
	var decided, undecided, agreedFail int
	shapes := []histgen.Config{
		{Ops: 120, Clients: 4, UnknownRate: 0.3, Keys: 4, FaultEvery: 30e6, FaultLength: 8e6},
		{Ops: 80, Clients: 6, UnknownRate: 0.5, Keys: 2, FaultEvery: 20e6, FaultLength: 10e6},
		{Ops: 120, Clients: 4, UnknownRate: 0.3, Keys: 3, FaultEvery: 30e6, FaultLength: 8e6, CondDeletes: true},
	}
	for i, bug := range bugs {
		for seed := int64(1); seed <= int64(*seeds); seed++ {
			cfg := shapes[(int(seed)+i)%len(shapes)]
			cfg.Seed, cfg.Bug = seed, bug
			h := histgen.Generate(cfg)
			ctx := context.Background()
			exh := Check(ctx, h, Options{mode: modePorcupineOnly, Timeout: 20 * time.Second})
			if exh.Status == verdict.Unknown {
				t.Logf("seed %d bug %s: porcupine timed out, skipped", seed, bug)
				continue
			}
			if bug == histgen.NoBug && exh.Status != verdict.Pass {
				t.Fatalf("seed %d: histgen without a bug produced a history porcupine rejects: %v", seed, exh.Violations)
			}
			fast := Check(ctx, h, Options{mode: modeFastOnly})
			if fast.Status == verdict.Unknown {
				undecided++
				continue
			}
			decided++
			if fast.Status != exh.Status {
				t.Fatalf("seed %d bug %s (histgen.Config%+v): fast path says %s (%s %v), porcupine says %s (%v)",
					seed, bug, cfg, fast.Status, fast.Summary, fast.Violations, exh.Status, exh.Violations)
			}
			if fast.Status == verdict.Fail {
				agreedFail++
			}
			auto := Check(ctx, h, Options{})
			if auto.Status != exh.Status {
				t.Fatalf("seed %d bug %s: Check says %s, porcupine %s", seed, bug, auto.Status, exh.Status)
			}
		}
	}
	t.Logf("fast path decided %d histories (%d failures), left %d to porcupine", decided, agreedFail, undecided)
	if decided < undecided {
		t.Errorf("fast path decided only %d of %d histories", decided, decided+undecided)
	}
}

// TestBugsAreCaught requires each injected bug to be rejected on larger,
// faulty histories, by whichever path Check takes.
func TestBugsAreCaught(t *testing.T) {
	for _, bug := range []histgen.Bug{histgen.StaleRead, histgen.LostWrite, histgen.RevisionRegression, histgen.MovedDelete} {
		caught := 0
		const n = 10
		for seed := int64(1); seed <= n; seed++ {
			h := histgen.Generate(histgen.Config{Ops: 5000, Clients: 8, Seed: seed, UnknownRate: 0.2, Bug: bug, CondDeletes: bug == histgen.MovedDelete})
			c := Check(context.Background(), h, Options{Timeout: 20 * time.Second})
			if c.Status == verdict.Pass {
				// A lost write that is overwritten before anyone reads it
				// is invisible; anything else passing is a checker bug.
				if bug != histgen.LostWrite {
					t.Fatalf("seed %d bug %s: passed: %s", seed, bug, c.Summary)
				}
				continue
			}
			if c.Status == verdict.Fail {
				caught++
			}
		}
		if caught < n/2 {
			t.Errorf("bug %s caught in only %d of %d histories", bug, caught, n)
		}
	}
}

func TestGeneratedHistoriesPass(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		h := histgen.Generate(histgen.Config{Ops: 20000, Clients: 8, Seed: seed, UnknownRate: 0.2, Keys: 50, CondDeletes: seed%2 == 0})
		c := Check(context.Background(), h, Options{Timeout: 20 * time.Second})
		if c.Status != verdict.Pass {
			t.Fatalf("seed %d: got %s: %s %v %v", seed, c.Status, c.Summary, c.Violations, c.Warnings)
		}
		t.Logf("seed %d: %s", seed, c.Summary)
	}
}
