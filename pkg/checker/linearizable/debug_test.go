package linearizable

import (
	"context"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestDebugOne(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 1000000, Clients: 16, Seed: 1, UnknownRate: 0.2, Keys: 100})
	ops, _ := selectOps(h, false)
	f := &fast{ops: ops, base: 1, leases: map[int64]bool{}, leaseKey: map[int64]int{},
		revoked: map[int64]bool{}, kaLast: map[int64]int64{}, leaseUse: map[int64]int64{}, keyIdx: map[string]int32{},
		hints: &hints{banned: map[int32]bool{}, forced: map[int64]int32{}}}
	f.classify()
	f.replay(context.Background())
	t.Logf("undecided %s", f.undecided)
	for _, g := range f.gaps {
		if g > 106031 && g <= 106203 {
			t.Logf("gap %d minret %d", g, f.minRet[g-1])
		}
	}
	for i, op := range ops {
		if f.role[i] == roleFiller && f.rev[i] > 106031 && f.rev[i] <= 106203 {
			t.Logf("filler %s at %d call %d", f.desc(int32(i)), f.rev[i], op.Call)
		}
		if op.Key == "/kv/k004" && op.Outcome == history.Unknown && op.Call > 33000000000 && op.Call < 34000000000 {
			t.Logf("k004 unknown %s role %d rev %d call %d", f.desc(int32(i)), f.role[i], f.rev[i], op.Call)
		}
	}
}
