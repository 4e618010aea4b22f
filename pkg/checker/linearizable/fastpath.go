package linearizable

import (
	"context"
	"fmt"
	"math"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// The revision fast path, in the order a pass runs: classify.go gives
// every operation its role and pins writes to revisions; replay.go rebuilds
// the store revision by revision, applying writes through the model and
// checking reads, with fill.go choosing unknown-outcome writes for the
// revisions no certain write owns; sweep.go checks real time and places
// keep-alives; learn.go turns an uncertain contradiction into a hint for
// the next pass. store.go is the replayed store.

// fastResult is the fast path's answer: definite violations (Fail), or a
// reason it could not decide (fall back), or neither (Pass).
type fastResult struct {
	definite  []string
	undecided string
	lin       []int32  // on Pass: the linearization found (see certificate.go)
	keys      []string // every key the operations name, sorted
	revisions int64
	filled    int
	foreign   int // revisions left to unrecorded writes (foreign mode)
}

// role says how the fast path places an operation in the linearization.
type role uint8

const (
	roleNone      role = iota
	roleWrite          // changed the store at its own revision
	roleRead           // observed the store at its header revision
	roleCand           // unknown outcome, not observed: may fill a revision gap
	rolePending        // OK revoke: a write or a no-op, decided by replay
	roleFiller         // a candidate chosen to fill a gap
	roleKeepAlive      // carries no revision; checked against grants and revokes
)

// fast is one pass of the fast path. Its parts change at different times,
// and each use names the part it touches: the input (ops, cfg), what
// earlier passes learned (hints, read-only until learn), the pass's
// scratch (place: classify's roles and indexes; st and prog: the replayed
// store and the replay's progress), what this pass learned for the next
// (learned), and what it concluded (found).
type fast struct {
	ops     []*history.Operation // in call order
	cfg     config
	hints   *hints // carried from pass to pass; learn extends them
	place   placement
	st      kvStore
	prog    progress
	learned passHints
	found   findings
}

// placement is where classify puts each operation, and the indexes the
// replay walks. The replay only refines roles (a candidate becomes a
// filler, a pending revoke a write or a read).
type placement struct {
	role     []role
	rev      []int64 // write: its revision; read/pending: header revision
	base     int64   // the revision the store starts at
	maxRev   int64
	owner    []int32         // per revision - base: the write that made it, or -1
	readHead []int32         // per revision - base: first op positioned there
	readNext []int32         // per op: the next op positioned at its revision
	kaLast   map[int64]int64 // per lease: the latest call of a successful keep-alive
	leaseUse map[int64]int64 // last revision a certain operation names a lease
}

// progress is how far the replay got and what it keeps on the way.
type progress struct {
	cur        int64             // revision the replay is at
	lastGap    int64             // the latest revision no certain write owned
	lowTime    int64             // no gap ahead can be older: latest call of a certain write applied
	gaps       []int64           // revisions no certain write owns, ascending
	minRet     []int64           // per revision - base: earliest return of an op at or after it
	deletes    map[int32][]int32 // per key: unknown deletes of it
	revokes    map[int64][]int32 // per lease: its possible expiries and unknown revokes
	revoked    map[int64]bool    // leases removed by a filler (uncertain)
	lastFill   []fillAt          // per key: the latest filler that touched it
	lastFiller fillAt
	snapAt     int64     // revision to record the store at, or 0
	snap       *snapshot // the store at snapAt
}

// passHints is what the pass found to try differently next time.
type passHints struct {
	hint    *hintAt  // the first uncertain contradiction
	extra   []hintAt // later independent ones (see noteExtraHint)
	gapHint fillAt   // a used write that would fill an unfillable gap
}

// findings is what the pass concluded.
type findings struct {
	definite    []string
	undecided   string
	undecidedAt int64   // revision the replay was at when it first could not decide
	filled      int     // gaps filled by unknown writes
	foreign     int     // gaps given to unrecorded writes
	lin         []int32 // the linearization the replay builds, in order
}

func (f *fast) violate(format string, args ...any) {
	f.found.definite = append(f.found.definite, fmt.Sprintf(format, args...))
}

func (f *fast) undecide(format string, args ...any) {
	if f.found.undecided == "" {
		f.found.undecidedAt = f.prog.cur
		f.found.undecided = fmt.Sprintf(format, args...)
	}
}

func (f *fast) desc(i int32) string {
	op := f.ops[i]
	return fmt.Sprintf("op %d (client %d, %s)", op.ID, op.ClientID, model.Describe(op, respOf(op)))
}

// fastRun decides ops (in call order) from the revisions they returned,
// starting from hints h (which it extends), making at
// most maxPasses replays; when snapAt is set the replay records the store
// at that revision. It returns the last replay too.
func fastRun(ctx context.Context, ops []*history.Operation, cfg config, h *hints, maxPasses int, snapAt int64) (fastResult, *fast) {
	if len(ops) > math.MaxInt32 {
		return fastResult{undecided: "too many operations for the fast path"}, nil
	}
	for pass := 1; ; pass++ {
		base := int64(model.InitialRevision)
		if cfg.init != nil {
			base = cfg.init.Revision
		}
		f := &fast{ops: ops, cfg: cfg, hints: h,
			st:      kvStore{leases: map[int64]bool{}, leaseKey: map[int64]int{}, keyIdx: map[string]int32{}},
			place:   placement{base: base, kaLast: map[int64]int64{}, leaseUse: map[int64]int64{}},
			prog:    progress{snapAt: snapAt, revoked: map[int64]bool{}, lastFiller: fillAt{op: -1}},
			learned: passHints{gapHint: fillAt{op: -1}}}
		if !f.classify() {
			return f.result(), f
		}
		f.replay(ctx)
		if len(f.found.definite) == 0 && f.found.undecided == "" {
			f.sweep()
			f.checkKeepAlives()
			if len(f.found.definite) == 0 && f.found.undecided == "" {
				f.placeKeepAlives()
			}
		} else if len(f.found.definite) > 0 {
			f.sweep() // real-time violations add detail to a failure
		}
		// A wrong guess about an unknown write shows up as a contradiction
		// that is not certain; learn from it and replay, a few times.
		if len(f.found.definite) > 0 || f.found.undecided == "" || pass >= maxPasses || ctx.Err() != nil || !f.learn() {
			return f.result(), f
		}
	}
}

// decideFast runs the fast path on ops, and when it cannot decide, once
// more in a second gap-filling order, keeping that run only if it passes.
// The first order holds two preferences that are almost always right and
// that soak runs needed: an unknown write whose client gave up before the
// store reached a gap is tried only when no fresher write fits there, and
// an optional write takes a spare gap from a mandatory one only when the
// mandatory write would spoil it (run 47 of the second soak). Each is
// sometimes wrong. A paused member applies, on resuming, requests its
// clients gave up on seconds before, and a lease expiry (never stale)
// then takes the gap that only such a write could have made, leaving a
// later gap with nothing (run 44). And an optional txn that fits only
// before a certain write to its key loses its gaps to lease expiries that
// would fit any later gap too (run 29 of the third soak). The second order
// drops both preferences (hints.relaxed). Neither order is right
// everywhere (the second alone leaves run 47 undecided, and making its
// freshness rule the only one left five partition runs of a soak
// undecided), so the second is only a retry: a history the first decides
// is decided as before, and a pass in the second order is a
// linearization, which Check verifies through the model like any other.
// It returns the first run's last replay for localise, and whether the
// second order decided.
func decideFast(ctx context.Context, ops []*history.Operation, cfg config) (fastResult, *fast, bool) {
	fr, last := fastRun(ctx, ops, cfg, newHints(), passes(len(ops)), 0)
	if fr.undecided == "" || len(fr.definite) > 0 || ctx.Err() != nil {
		return fr, last, false
	}
	h := newHints()
	h.relaxed = true
	// Only a pass is taken from it; anything else leaves the first run's
	// answer, so the retry can turn Unknown into a verified Pass and
	// nothing else.
	if sr, _ := fastRun(ctx, ops, cfg, h, passes(len(ops)), 0); sr.undecided == "" && len(sr.definite) == 0 {
		return sr, last, true
	}
	return fr, last, false
}

// passes bounds the replays the fast path makes before giving up, fewer on
// huge histories where each replay takes seconds.
func passes(n int) int {
	if n > 200000 {
		return 6
	}
	return 8
}

func (f *fast) result() fastResult {
	r := fastResult{definite: f.found.definite, undecided: f.found.undecided, revisions: max(0, f.place.maxRev-f.place.base), filled: f.found.filled, foreign: f.found.foreign}
	if len(r.definite) == 0 && r.undecided == "" {
		r.lin, r.keys = f.found.lin, f.st.keys
	}
	return r
}

// verdictLimit stops the replay once a failure is certain and well described.
const verdictLimit = 100
