package linearizable

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// opRet is an operation and its return.
type opRet struct {
	ret int64
	op  int32
}

// sweep checks real-time order: an operation called after another returned
// must come later in revision order, strictly when it is a write.
func (f *fast) sweep() {
	pos := func(i int32) int64 {
		switch f.place.role[i] {
		case roleWrite, roleFiller:
			return 2 * f.place.rev[i]
		case roleRead:
			return 2*f.place.rev[i] + 1
		}
		return -1
	}
	byRet := make([]opRet, 0, len(f.ops))
	for i, op := range f.ops {
		if op.Outcome == history.OK && pos(int32(i)) >= 0 {
			byRet = append(byRet, opRet{op.Return, int32(i)})
		}
	}
	slices.SortFunc(byRet, func(a, b opRet) int {
		if c := cmp.Compare(a.ret, b.ret); c != 0 {
			return c
		}
		return cmp.Compare(a.op, b.op)
	})
	best := int64(-1)
	var bestOp int32 = -1
	j := 0
	for i, op := range f.ops {
		for j < len(byRet) && byRet[j].ret < op.Call {
			if p := pos(byRet[j].op); p > best {
				best, bestOp = p, byRet[j].op
			}
			j++
		}
		p := pos(int32(i))
		if p < 0 || bestOp < 0 {
			continue
		}
		isWrite := p%2 == 0
		if (isWrite && best < p) || (!isWrite && best <= p) {
			continue
		}
		a, b := bestOp, int32(i)
		msg := fmt.Sprintf("%s was called after %s returned having seen revision %d, yet it is at revision %d: ", f.desc(b), f.desc(a), best/2, p/2)
		switch {
		case isWrite:
			msg += "a write took effect before it was called, or a read saw a revision before it existed"
		case f.place.role[a] == roleWrite:
			msg += "lost acknowledged write / stale read (the read does not see a write that had already returned)"
		default:
			msg += "revision went backwards (stale read)"
		}
		if f.place.role[a] == roleFiller || f.place.role[b] == roleFiller || f.ops[a].Kind == history.LeaseRevoke || f.ops[b].Kind == history.LeaseRevoke {
			f.undecide("%s", msg)
			continue
		}
		if !isWrite {
			msg += f.missedWrite(b, byRet[:j])
		}
		f.violate("%s", msg)
		if len(f.found.definite) > verdictLimit {
			return
		}
	}
}

// missedWrite names, for a read that saw an older revision than one
// already returned, the write to a key it read that it should have seen:
// the latest one, by revision, among those returned before it was called
// and above its revision. The operation that returned the highest
// revision may have written another key entirely; this one is what the
// read lost.
func (f *fast) missedWrite(rd int32, returned []opRet) string {
	op := f.ops[rd]
	var w int32 = -1
	for _, r := range returned {
		i := r.op
		o := f.ops[i]
		if f.place.role[i] != roleWrite || f.place.rev[i] <= f.place.rev[rd] || !keyspace.InRange(o.Key, op.Key, op.End) {
			continue
		}
		if o.Kind != history.Put && o.Kind != history.Txn && o.Kind != history.Delete {
			continue
		}
		if w < 0 || f.place.rev[i] > f.place.rev[w] {
			w = i
		}
	}
	if w < 0 {
		return "; no write to the keys it read was missed, only the store revision went backwards"
	}
	return fmt.Sprintf("; it misses %s, a write to %s that returned before the read was called", f.desc(w), f.ops[w].Key)
}

// checkKeepAlives fails a successful keep-alive of a lease that an
// acknowledged revoke had removed before it was called; placeKeepAlives
// then finds each keep-alive its place in the linearization, or leaves the
// history undecided.
func (f *fast) checkKeepAlives() {
	granted := map[int64]int64{}
	revoked := map[int64]int64{}
	revokeCall := map[int64]int64{} // the call of the revoke in revoked
	lastGrant := map[int64]int64{}  // the latest call of any grant that may have (re)created the lease
	for _, op := range f.ops {
		if op.Kind == history.LeaseGrant && op.Outcome != history.Fail {
			for _, id := range []int64{op.Lease, leaseIDOf(op)} {
				if id != 0 {
					lastGrant[id] = max(lastGrant[id], op.Call)
				}
			}
		}
		if op.Outcome != history.OK {
			continue
		}
		switch op.Kind {
		case history.LeaseGrant:
			if t, ok := granted[op.Resp.LeaseID]; !ok || op.Call < t {
				granted[op.Resp.LeaseID] = op.Call
			}
		case history.LeaseRevoke:
			if t, ok := revoked[op.Lease]; !ok || op.Return < t {
				revoked[op.Lease] = op.Return
				revokeCall[op.Lease] = op.Call
			}
		}
	}
	for i, op := range f.ops {
		if f.place.role[i] != roleKeepAlive {
			continue
		}
		_, ok := granted[op.Lease]
		r, wasRevoked := revoked[op.Lease]
		if ok && wasRevoked && r < op.Call && lastGrant[op.Lease] < revokeCall[op.Lease] {
			// The revoke returned before the keep-alive was sent and
			// nothing granted the lease again: no order renews it.
			f.violate("%s renewed lease %x, which an acknowledged revoke had removed %s before it was called", f.desc(int32(i)), op.Lease, fmtDuration(op.Call-r))
		}
	}
}

func fmtDuration(ns int64) string {
	return fmt.Sprintf("%.3fs", float64(ns)/1e9)
}

// leaseIDOf returns the lease a grant created, when it says.
func leaseIDOf(op *history.Operation) int64 {
	if op.Outcome == history.OK && op.Resp != nil {
		return op.Resp.LeaseID
	}
	return 0
}

// placeKeepAlives inserts every successful keep-alive into the replay's
// linearization (f.found.lin). A keep-alive changes nothing, so any place where
// its lease is live will do, provided real time allows it: after every
// operation that returned before it was called and after its lease's
// grant; before every operation called after it returned and before the
// revoke or expiry that removed its lease. It takes the earliest such
// place; a keep-alive that fits nowhere leaves the history undecided.
func (f *fast) placeKeepAlives() {
	var kas []int32 // in call order, as ops are
	for i := range f.ops {
		if f.place.role[i] == roleKeepAlive {
			kas = append(kas, int32(i))
		}
	}
	if len(kas) == 0 {
		return
	}
	lin := f.found.lin
	n := len(lin)
	// maxCall[p]: the latest call among lin[:p+1]; a keep-alive goes no
	// later than the first place where that passes its return.
	maxCall := make([]int64, n)
	// minRet[p]: the earliest return among lin[p:] (an unknown outcome
	// never returned); a keep-alive goes no earlier than the first place
	// from which every operation returned after it was called.
	minRet := make([]int64, n+1)
	minRet[n] = math.MaxInt64
	grantAt := map[int64]int{}
	revokeAt := map[int64]int{}
	for p, i := range lin {
		op := f.ops[i]
		maxCall[p] = op.Call
		if p > 0 {
			maxCall[p] = max(maxCall[p], maxCall[p-1])
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
	for p := n - 1; p >= 0; p-- {
		minRet[p] = minRet[p+1]
		if op := f.ops[lin[p]]; op.Outcome == history.OK {
			minRet[p] = min(minRet[p], op.Return)
		}
	}
	initial := map[int64]bool{} // leases the store started with
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			initial[kv.Lease] = kv.Lease != 0
		}
	}
	kasByRet := append([]int32(nil), kas...)
	sort.Slice(kasByRet, func(a, b int) bool { return f.ops[kasByRet[a]].Return < f.ops[kasByRet[b]].Return })
	place := make(map[int32]int, len(kas))
	kaLo, kj := 0, 0
	for _, ka := range kas {
		op := f.ops[ka]
		lo := sort.Search(n+1, func(p int) bool { return minRet[p] >= op.Call })
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
	f.found.lin = out
}
