package histgen

import (
	"reflect"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestDeterministic(t *testing.T) {
	cfg := Config{Ops: 2000, Clients: 6, Seed: 42, UnknownRate: 0.3, Bug: StaleRead}
	a, b := Generate(cfg), Generate(cfg)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("seed %d: two runs differ", cfg.Seed)
	}
	c := Generate(Config{Ops: 2000, Clients: 6, Seed: 43, UnknownRate: 0.3})
	if reflect.DeepEqual(a.Operations, c.Operations) {
		t.Fatal("different seeds gave the same history")
	}
}

func TestShape(t *testing.T) {
	const seed = 7
	h := Generate(Config{Ops: 20000, Clients: 8, Seed: seed, UnknownRate: 0.3})
	if len(h.Operations) != 20000 {
		t.Fatalf("seed %d: %d operations, want 20000", seed, len(h.Operations))
	}
	kinds := map[history.Kind]int{}
	outcomes := map[history.Outcome]int{}
	values := map[string]bool{}
	var prevCall int64 = -1
	for _, op := range h.Operations {
		kinds[op.Kind]++
		outcomes[op.Outcome]++
		if op.Call < prevCall {
			t.Fatalf("seed %d: operations not sorted by call", seed)
		}
		prevCall = op.Call
		if op.Return < op.Call {
			t.Fatalf("seed %d: op %d returns before its call", seed, op.ID)
		}
		if (op.Outcome == history.OK) != (op.Resp != nil) {
			t.Fatalf("seed %d: op %d outcome %s with response %v", seed, op.ID, op.Outcome, op.Resp)
		}
		if op.Kind == history.Put || op.Kind == history.Txn {
			if op.Value == "" || values[op.Value] {
				t.Fatalf("seed %d: op %d value %q empty or reused", seed, op.ID, op.Value)
			}
			values[op.Value] = true
		}
	}
	// The mix: put 40% (plus lease puts), get 25%, range 10%, txn 15%,
	// delete 5%, lease operations the rest.
	frac := func(k history.Kind) float64 { return float64(kinds[k]) / float64(len(h.Operations)) }
	for k, want := range map[history.Kind]float64{history.Put: 0.41, history.Get: 0.25, history.Range: 0.10, history.Txn: 0.15, history.Delete: 0.05} {
		if got := frac(k); got < want-0.03 || got > want+0.03 {
			t.Errorf("seed %d: %s is %.3f of operations, want about %.2f", seed, k, got, want)
		}
	}
	if kinds[history.LeaseGrant] == 0 || kinds[history.LeaseRevoke] == 0 {
		t.Errorf("seed %d: no lease operations: %v", seed, kinds)
	}
	if outcomes[history.Unknown] == 0 || outcomes[history.Fail] == 0 || len(h.Faults) == 0 {
		t.Errorf("seed %d: faults produced no unknown or failed operations: %v, %d faults", seed, outcomes, len(h.Faults))
	}
}

func TestNoFaultsMeansAllOK(t *testing.T) {
	h := Generate(Config{Ops: 3000, Seed: 3})
	for _, op := range h.Operations {
		if op.Outcome == history.Unknown {
			t.Fatalf("seed 3: op %d unknown without faults", op.ID)
		}
	}
	if len(h.Faults) != 0 {
		t.Fatalf("seed 3: %d faults without UnknownRate", len(h.Faults))
	}
}

func BenchmarkGenerate1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		h := Generate(Config{Ops: 1000000, Clients: 16, Seed: int64(i), UnknownRate: 0.2, Keys: 100})
		if len(h.Operations) != 1000000 {
			b.Fatal("short history")
		}
	}
}
