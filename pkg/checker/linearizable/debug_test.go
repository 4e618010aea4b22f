package linearizable

import (
	"context"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
)

func TestDebugOne(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 20000, Clients: 8, Seed: 2, UnknownRate: 0.2, Keys: 50})
	ops, _ := selectOps(h, false)
	f := &fast{ops: ops, base: 1, leases: map[int64]bool{}, leaseKey: map[int64]int{},
		revoked: map[int64]bool{}, kaLast: map[int64]int64{}, leaseUse: map[int64]int64{}, keyIdx: map[string]int32{}}
	f.classify()
	f.maxRev = 2117
	f.replay(context.Background())
	f.lastGap = 2118
	t.Logf("undecided=%s lastgap=%d filled=%d definite=%v", f.undecided, f.lastGap, f.filled, f.definite)
	for i := range ops {
		if f.role[i] == roleFiller {
			t.Logf("filler %s at %d", f.desc(int32(i)), f.rev[i])
		}
		if ops[i].ID == 4588 || ops[i].ID == 4583 {
			t.Logf("op %d role %d rev %d", ops[i].ID, f.role[i], f.rev[i])
		}
		if (f.role[i] == roleRead || f.role[i] == roleWrite) && f.rev[i] >= 2116 && f.rev[i] <= 2125 {
			t.Logf("near: %s call %d ret %d", f.desc(int32(i)), ops[i].Call, ops[i].Return)
		}
		if f.role[i] == roleCand && ops[i].Call < 1400000000 {
			ok, need, weak := f.fits(int32(i), 2118)
			t.Logf("cand %s call %d fits %v %v %v", f.desc(int32(i)), ops[i].Call, ok, need, weak)
		}
	}
}
