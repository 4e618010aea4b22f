package linearizable

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// snapshot is the replayed store at one revision, and which unknown-outcome
// writes the replay had committed by then.
type snapshot struct {
	state     model.State
	committed map[int32]bool
}

func (f *fast) takeSnap(rev int64) {
	var kvs []model.KeyValue
	for k := range f.st.ks {
		s := &f.st.ks[k]
		if s.present {
			kvs = append(kvs, model.KeyValue{Key: f.st.keys[k], Value: s.value, ModRevision: s.mod, Lease: s.lease})
		}
	}
	var leases []int64
	for l, ok := range f.st.leases {
		if ok {
			leases = append(leases, l)
		}
	}
	sort.Slice(leases, func(a, b int) bool { return leases[a] < leases[b] })
	committed := map[int32]bool{}
	for i, op := range f.ops {
		if op.Outcome != history.OK && (f.place.role[i] == roleFiller || f.place.role[i] == roleWrite) && f.place.rev[i] <= rev {
			committed[int32(i)] = true
		}
	}
	f.prog.snap = &snapshot{state: model.StateOf(rev, kvs, leases), committed: committed}
}

// localWindowOps bounds the operations handed to porcupine around an
// undecided revision: small enough for a search of seconds and megabytes.
const localWindowOps = 80

// localise helps the fast path past the revision where it could not decide
// (f.found.undecidedAt) by asking porcupine about a small window around it: the
// operations positioned at revisions (lo, hi], the unknown-outcome writes
// not yet committed by lo, and the keep-alives of that time, starting from
// the store the replay holds at lo. Porcupine's linearization of the
// window says which unknown writes took which revisions; those become
// forced placements and the fast path replays the whole history again. The
// answer is still the fast path's own, so a guess from a wrong window costs
// nothing but time: Pass only with a full linearization in hand.
// It returns the fast path's new result and the window's size, or ok=false
// when there was nothing to try.
func localise(ctx context.Context, ops []*history.Operation, cfg config, last *fast, timeout time.Duration, memLimit uint64) (fastResult, *fast, int, bool) {
	if last == nil || last.found.undecidedAt <= last.place.base || ctx.Err() != nil {
		return fastResult{}, nil, 0, false
	}
	u := last.found.undecidedAt
	// Grow the window around u while it stays small.
	count := func(lo, hi int64) int {
		n := 0
		for i := range last.ops {
			switch last.place.role[i] {
			case roleWrite, roleRead, roleFiller, rolePending:
				if last.place.rev[i] > lo && last.place.rev[i] <= hi {
					n++
				}
			}
		}
		return n
	}
	// The window starts no later than the stuck key's last certain write:
	// the replay's guesses since then are what is in doubt.
	lo0, hi0 := max(last.place.base, u-1), u
	if last.learned.hint != nil {
		lo0 = max(last.place.base, min(lo0, last.learned.hint.lastPinned-1))
	}
	if count(lo0, hi0) > 2*localWindowOps {
		return fastResult{}, nil, 0, false
	}
	lo, hi := lo0, hi0
	for w := int64(2); ; w *= 2 {
		nlo, nhi := max(last.place.base, lo0-w), min(last.place.maxRev, hi0+w)
		if count(nlo, nhi) > localWindowOps {
			break
		}
		lo, hi = nlo, nhi
		if nlo == last.place.base && nhi == last.place.maxRev {
			break
		}
	}
	// Replay once more with the same hints to record the store at lo.
	h := &hints{banned: map[int32]bool{}, forced: map[int64]int32{}}
	for k, v := range last.hints.banned {
		h.banned[k] = v
	}
	for k, v := range last.hints.forced {
		h.forced[k] = v
	}
	_, f := fastRun(ctx, ops, cfg, h, 1, lo)
	if f == nil || f.prog.snap == nil {
		return fastResult{}, nil, 0, false
	}
	var window []*history.Operation
	var index []int32
	start, end := int64(1<<62), int64(0)
	for i, op := range ops {
		if op.Outcome == history.OK {
			switch f.place.role[i] {
			case roleWrite, roleRead, rolePending:
				if f.place.rev[i] > lo && f.place.rev[i] <= hi {
					window = append(window, op)
					index = append(index, int32(i))
					start, end = min(start, op.Call), max(end, op.Return)
				}
			}
		}
	}
	if len(window) == 0 {
		return fastResult{}, nil, 0, false
	}
	for i, op := range ops {
		switch {
		case op.Outcome != history.OK && !f.prog.snap.committed[int32(i)] && op.Call <= end && op.Return >= start:
			// Unknown writes whose clients gave up before the window are
			// left out: they could still take effect in it, but porcupine
			// pays exponentially for each, and this is only a guide.
		case op.Outcome == history.OK && f.place.role[i] == roleKeepAlive && op.Return >= start && op.Call <= end:
		default:
			continue
		}
		window = append(window, op)
		index = append(index, int32(i))
	}
	m := model.PorcupineWith(f.prog.snap.state, cfg.rule())
	res, info, abandoned := searchBounded(ctx, m, toPorcupine(window), timeout, memLimit)
	if abandoned != "" || res != porcupine.Ok {
		return fastResult{undecided: fmt.Sprintf("porcupine on the window (%d, %d] of %d operations: %v %s", lo, hi, len(window), res, abandoned)}, nil, len(window), true
	}
	var lin []int
	for _, part := range info.PartialLinearizations() {
		for _, l := range part {
			if len(l) > len(lin) {
				lin = l
			}
		}
	}
	s := f.prog.snap.state
	for _, w := range lin {
		op := window[w]
		before := s.Revision
		_, s = model.Step(s, op, respOf(op), cfg.rule())
		if op.Outcome != history.OK && s.Revision > before && s.Revision <= hi {
			h.forced[s.Revision] = index[w]
			delete(h.banned, index[w])
		}
	}
	r, nf := fastRun(ctx, ops, cfg, h, passes(len(ops)), 0)
	return r, nf, len(window), true
}

// localRounds bounds how many windows Check asks porcupine about.
const localRounds = 8

// localiseAll applies localise while each round gets the fast path further
// (to a later undecided revision), up to localRounds windows. It returns
// the last result and the total operations handed to porcupine.
func localiseAll(ctx context.Context, ops []*history.Operation, cfg config, last *fast, timeout time.Duration, memLimit uint64) (fastResult, int) {
	var out fastResult
	total := 0
	for round := 0; round < localRounds && last != nil; round++ {
		r, next, n, ok := localise(ctx, ops, cfg, last, timeout, memLimit)
		if !ok {
			break
		}
		total += n
		out = r
		if r.undecided == "" || len(r.definite) > 0 || next == nil || next.found.undecidedAt <= last.found.undecidedAt {
			break
		}
		last = next
	}
	return out, total
}
