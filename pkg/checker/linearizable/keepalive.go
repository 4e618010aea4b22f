package linearizable

import (
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// placeKeepAlives inserts every successful keep-alive into the replay's
// linearization (f.lin). A keep-alive changes nothing, so any place where
// its lease is live will do, provided real time allows it: after every
// operation that returned before it was called and after its lease's
// grant; before every operation called after it returned and before the
// revoke or expiry that removed its lease. It takes the earliest such
// place; a keep-alive that fits nowhere leaves the history undecided.
func (f *fast) placeKeepAlives() {
	var kas []int32 // in call order, as ops are
	for i := range f.ops {
		if f.role[i] == roleKeepAlive {
			kas = append(kas, int32(i))
		}
	}
	if len(kas) == 0 {
		return
	}
	lin := f.lin
	n := len(lin)
	// maxCall[p]: the latest call among lin[:p+1]; a keep-alive goes no
	// later than the first place where that passes its return.
	maxCall := make([]int64, n)
	// byRet: places of operations that returned, by return.
	byRet := make([]int, 0, n)
	grantAt := map[int64]int{}
	revokeAt := map[int64]int{}
	for p, i := range lin {
		op := f.ops[i]
		maxCall[p] = op.Call
		if p > 0 {
			maxCall[p] = max(maxCall[p], maxCall[p-1])
		}
		if op.Outcome == history.OK {
			byRet = append(byRet, p)
		}
		switch op.Kind {
		case history.LeaseGrant:
			if op.Outcome == history.OK {
				grantAt[op.Resp.LeaseID] = p
			}
		case history.LeaseRevoke:
			if _, ok := revokeAt[op.Lease]; !ok {
				revokeAt[op.Lease] = p
			}
		}
	}
	sort.Slice(byRet, func(a, b int) bool { return f.ops[lin[byRet[a]]].Return < f.ops[lin[byRet[b]]].Return })
	initial := map[int64]bool{} // leases the store started with
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			initial[kv.Lease] = kv.Lease != 0
		}
	}
	kasByRet := append([]int32(nil), kas...)
	sort.Slice(kasByRet, func(a, b int) bool { return f.ops[kasByRet[a]].Return < f.ops[kasByRet[b]].Return })
	place := make(map[int32]int, len(kas))
	lo, kaLo := 0, 0
	j, kj := 0, 0
	for _, ka := range kas {
		op := f.ops[ka]
		for ; j < len(byRet) && f.ops[lin[byRet[j]]].Return < op.Call; j++ {
			lo = max(lo, byRet[j]+1)
		}
		for ; kj < len(kasByRet) && f.ops[kasByRet[kj]].Return < op.Call; kj++ {
			// Placed already: it was called before it returned, before op.
			kaLo = max(kaLo, place[kasByRet[kj]])
		}
		hi := sort.Search(n, func(p int) bool { return maxCall[p] > op.Return })
		from := max(lo, kaLo)
		if g, ok := grantAt[op.Lease]; ok {
			from = max(from, g+1)
		} else if !initial[op.Lease] {
			f.undecide("keep-alive op %d of lease %x: no grant of the lease is in the linearization", op.ID, op.Lease)
			return
		}
		if v, ok := revokeAt[op.Lease]; ok {
			hi = min(hi, v)
		}
		if from > hi {
			f.undecide("keep-alive op %d of lease %x fits nowhere in the linearization while its lease lives", op.ID, op.Lease)
			return
		}
		place[ka] = from
	}
	// Keep-alives at one place go in call order (kas is), which is real
	// time among them.
	sort.SliceStable(kas, func(a, b int) bool { return place[kas[a]] < place[kas[b]] })
	out := make([]int32, 0, n+len(kas))
	k := 0
	for p := 0; p <= n; p++ {
		for ; k < len(kas) && place[kas[k]] == p; k++ {
			out = append(out, kas[k])
		}
		if p < n {
			out = append(out, lin[p])
		}
	}
	f.lin = out
}
