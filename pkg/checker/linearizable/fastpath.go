package linearizable

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// fastResult is the fast path's answer: definite violations (Fail), or a
// reason it could not decide (fall back), or neither (Pass).
type fastResult struct {
	definite  []string
	undecided string
	lin       []int32 // on Pass: the linearization found (see certificate.go)
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

// keyEvent is one pinned operation touching a key, for lookahead.
type keyEvent struct {
	pos int64 // 2*rev for writes, 2*rev+1 for reads
	op  int32
}

type fast struct {
	ops      []*history.Operation
	role     []role
	rev      []int64 // write: its revision; read/pending: header revision
	st       kvStore
	base     int64
	maxRev   int64
	owner    []int32 // per revision - base: the write that made it, or -1
	readHead []int32 // per revision - base: first op positioned there
	readNext []int32
	lastGap  int64
	filled   int
	revoked  map[int64]bool    // leases removed by a filler (uncertain)
	kaLast   map[int64]int64   // per lease: the latest call of a successful keep-alive
	leaseUse map[int64]int64   // last revision a certain operation names a lease
	gaps     []int64           // revisions no certain write owns, ascending
	deletes  map[int32][]int32 // per key: unknown deletes of it

	definite  []string
	undecided string

	cfg     config
	foreign int // gaps given to unrecorded writes

	undecidedAt int64     // revision the replay was at when it first could not decide
	snapAt      int64     // revision to record the store at, or 0
	snap        *snapshot // the store at snapAt

	hints      *hints
	hint       *hintAt
	extra      []hintAt // later independent hints (see noteExtraHint)
	lastFill   []fillAt // per key: the latest filler that touched it
	minRet     []int64
	gapHint    fillAt // a used write that would fill an unfillable gap
	lastFiller fillAt
	lin        []int32 // the linearization the replay builds, in order
	cur        int64   // revision the replay is at
	lowTime    int64   // no gap ahead can be older: latest call of a certain write applied
}

type fillAt struct {
	op  int32
	rev int64
}

type hintAt struct {
	hint
	lease int64
}

func (f *fast) violate(format string, args ...any) {
	f.definite = append(f.definite, fmt.Sprintf(format, args...))
}

func (f *fast) undecide(format string, args ...any) {
	if f.undecided == "" {
		f.undecidedAt = f.cur
		f.undecided = fmt.Sprintf(format, args...)
	}
}

func (f *fast) desc(i int32) string {
	op := f.ops[i]
	return fmt.Sprintf("op %d (client %d, %s)", op.ID, op.ClientID, model.Describe(op, respOf(op)))
}

func newHints() *hints { return &hints{banned: map[int32]bool{}, forced: map[int64]int32{}} }

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
		f := &fast{ops: ops, cfg: cfg, snapAt: snapAt, base: base, st: kvStore{leases: map[int64]bool{}, leaseKey: map[int64]int{}, keyIdx: map[string]int32{}},
			revoked: map[int64]bool{}, kaLast: map[int64]int64{}, leaseUse: map[int64]int64{}, hints: h, gapHint: fillAt{op: -1}, lastFiller: fillAt{op: -1}}
		if !f.classify() {
			return f.result(), f
		}
		f.replay(ctx)
		if len(f.definite) == 0 && f.undecided == "" {
			f.sweep()
			f.checkKeepAlives()
			if len(f.definite) == 0 && f.undecided == "" {
				f.placeKeepAlives()
			}
		} else if len(f.definite) > 0 {
			f.sweep() // real-time violations add detail to a failure
		}
		// A wrong guess about an unknown write shows up as a contradiction
		// that is not certain; learn from it and replay, a few times.
		if len(f.definite) > 0 || f.undecided == "" || pass >= maxPasses || ctx.Err() != nil || !f.learn() {
			return f.result(), f
		}
	}
}

// passes bounds the replays the fast path makes before giving up, fewer on
// huge histories where each replay takes seconds.
func passes(n int) int {
	if n > 200000 {
		return 6
	}
	return 8
}

// hints carry what earlier passes learned into the next replay.
type hints struct {
	banned map[int32]bool  // candidates not to use as fillers
	forced map[int64]int32 // gap revision -> candidate to use there
}

// hint is the first uncertain contradiction of a pass.
type hint struct {
	k          int32
	rev        int64
	wantAbsent bool
	culprit    int32 // a filler that touched k since its last certain write, or -1
	lastPinned int64
}

// learn turns the pass's hint into a ban or a forced placement; false when
// it has nothing new to try. It also acts on the pass's later, independent
// hints: a long history has many unrelated places where the filler
// heuristic guessed wrong, and learning them one replay at a time would run
// out of passes (each of which costs seconds on a million operations).
func (f *fast) learn() bool {
	if f.hint == nil {
		if f.gapHint.op < 0 {
			return false
		}
		f.hints.forced[f.gapHint.rev] = f.gapHint.op
		return true
	}
	if !f.learnHint(f.hint) {
		return false
	}
	for i := range f.extra {
		f.learnHint(&f.extra[i])
	}
	return true
}

// maxExtraHints bounds the independent hints one pass collects after its
// first.
const maxExtraHints = 256

// noteExtraHint keeps a contradiction found after the pass's first as a
// further hint when it looks independent of every earlier one: the key was
// last written for certain after the previous hint's revision, so no
// earlier wrong guess can have left it in the wrong state (only used up a
// candidate it needs, which the next pass shows). A culprit ban is global
// and a wrong one costs a good candidate everywhere, so only forced
// placements are taken this way.
func (f *fast) noteExtraHint(h hintAt) {
	last := f.hint
	if n := len(f.extra); n > 0 {
		last = &f.extra[n-1]
	}
	if len(f.extra) < maxExtraHints && h.culprit < 0 && h.lastPinned > last.rev {
		f.extra = append(f.extra, h)
	}
}

// learnHint acts on one hint; false when it has nothing new to try.
func (f *fast) learnHint(h *hintAt) bool {
	ht := &h.hint
	if ht.culprit >= 0 {
		if f.hints.banned[ht.culprit] {
			return false
		}
		f.hints.banned[ht.culprit] = true
		return true
	}
	// Some unknown write of the key (a delete or revoke when the reader saw
	// it absent, else a put) must have made a gap in (lastPinned, rev]:
	// force the likeliest at the latest such gap.
	lo := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i] > ht.lastPinned })
	hi := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i] > ht.rev })
	key := f.st.keys[ht.k]
	for g := hi - 1; g >= lo; g-- {
		gap := f.gaps[g]
		if _, taken := f.hints.forced[gap]; taken {
			continue
		}
		taken := map[int32]bool{}
		for _, i := range f.hints.forced {
			taken[i] = true
		}
		// The latest-called fitting write is the likeliest: unknown writes
		// take effect soon after their call.
		last := sort.Search(len(f.ops), func(i int) bool { return f.ops[i].Call > f.minRet[gap-f.base] })
		for i := last - 1; i >= 0; i-- {
			op := f.ops[i]
			if op.Outcome != history.Unknown || taken[int32(i)] || f.hints.banned[int32(i)] {
				continue
			}
			var fits bool
			if ht.wantAbsent {
				fits = op.Kind == history.Delete && op.Key == key || op.Kind == history.LeaseRevoke && op.Lease != 0 && op.Lease == h.lease
			} else {
				fits = (op.Kind == history.Put || op.Kind == history.Txn) && op.Key == key
			}
			if fits {
				f.hints.forced[gap] = int32(i)
				return true
			}
		}
		return false
	}
	return false
}

func (f *fast) result() fastResult {
	r := fastResult{definite: f.definite, undecided: f.undecided, revisions: max(0, f.maxRev-f.base), filled: f.filled, foreign: f.foreign}
	if len(r.definite) == 0 && r.undecided == "" {
		r.lin = f.lin
	}
	return r
}

// classify gives every operation its role and revision, pins unknown writes
// whose unique value was read back, and finds structural contradictions.
func (f *fast) classify() bool {
	n := len(f.ops)
	f.role = make([]role, n)
	f.rev = make([]int64, n)
	byValue := make(map[string]int32, n/2)
	keySet := map[string]struct{}{}
	// Values the store started with: a read may return them until they
	// are overwritten.
	initial := map[string]history.KV{}
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			initial[kv.Value] = kv
			keySet[kv.Key] = struct{}{}
		}
	}
	f.maxRev = f.base
	for i, op := range f.ops {
		if op.Kind != history.LeaseGrant && op.Kind != history.LeaseRevoke && op.Kind != history.LeaseKeepAlive {
			keySet[op.Key] = struct{}{}
		}
		if op.Kind == history.Put || op.Kind == history.Txn {
			if _, dup := byValue[op.Value]; dup || op.Value == "" {
				f.undecide("written values are not unique (%q), so reads cannot name their writes", op.Value)
				return false
			}
			byValue[op.Value] = int32(i)
		}
		if op.Outcome != history.OK {
			switch op.Kind {
			case history.LeaseGrant:
				if op.Lease != 0 {
					f.undecide("a lease grant with a client-chosen ID has an unknown outcome")
					return false
				}
			case history.Put, history.Txn, history.Delete, history.LeaseRevoke:
				f.role[i] = roleCand
			}
			continue
		}
		r := op.Resp
		f.rev[i] = r.Revision
		switch op.Kind {
		case history.Put:
			f.role[i] = roleWrite
		case history.Txn:
			f.role[i] = roleRead
			if r.Succeeded {
				f.role[i] = roleWrite
			}
		case history.Delete:
			f.role[i] = roleRead
			if r.Deleted > 0 {
				f.role[i] = roleWrite
			}
		case history.Get, history.Range:
			f.role[i] = roleRead
		case history.LeaseGrant:
			if r.Revision == 0 {
				f.undecide("a lease grant carries no header revision")
				return false
			}
			f.role[i] = roleRead
		case history.LeaseRevoke:
			f.role[i] = rolePending
		case history.LeaseKeepAlive:
			f.role[i] = roleKeepAlive
			f.kaLast[op.Lease] = max(f.kaLast[op.Lease], op.Call)
			continue
		}
		if r.Revision < f.base {
			f.violate("%s returned header revision %d, below the initial revision %d", f.desc(int32(i)), r.Revision, f.base)
			f.role[i] = roleNone
			continue
		}
		f.maxRev = max(f.maxRev, r.Revision)
		for _, kv := range r.KVs {
			f.maxRev = max(f.maxRev, kv.ModRevision)
			keySet[kv.Key] = struct{}{}
		}
	}
	if len(f.definite) > 0 {
		return false
	}
	// Foreign writes may take most revisions; the replay's per-revision
	// arrays cost 16 bytes each, so a few million stay cheap.
	if limit := int64(4*n + 1024); f.maxRev-f.base > limit && !(f.cfg.foreign && f.maxRev-f.base <= max(16*limit, foreignRevisionLimit)) {
		f.undecide("the store reached revision %d, far beyond what %d operations can produce", f.maxRev, n)
		return false
	}
	for k := range keySet {
		f.st.keys = append(f.st.keys, k)
	}
	sort.Strings(f.st.keys)
	f.st.ks = make([]keyState, len(f.st.keys))
	for i, k := range f.st.keys {
		f.st.keyIdx[k] = int32(i)
	}
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			s := &f.st.ks[f.st.keyIdx[kv.Key]]
			s.present, s.value, s.mod, s.lease, s.lastPinned = true, kv.Value, kv.ModRevision, kv.Lease, f.base
			if kv.Lease != 0 {
				f.st.leases[kv.Lease] = true
				f.st.leaseKey[kv.Lease]++
			}
		}
	}
	size := f.maxRev - f.base + 1
	f.owner = make([]int32, size)
	f.readHead = make([]int32, size)
	for i := range f.owner {
		f.owner[i], f.readHead[i] = -1, -1
	}
	f.readNext = make([]int32, n)

	// Pin known writes at their revisions.
	for i := range f.ops {
		if f.role[i] == roleWrite {
			f.claim(int32(i), f.rev[i])
		}
	}
	// Pin unknown writes whose unique value was read back.
	for i, op := range f.ops {
		if op.Outcome != history.OK {
			continue
		}
		if op.Kind != history.Get && op.Kind != history.Range && !(op.Kind == history.Txn && !op.Resp.Succeeded) {
			continue
		}
		for _, kv := range op.Resp.KVs {
			w, ok := byValue[kv.Value]
			if iv, isInit := initial[kv.Value]; !ok && isInit {
				if iv.Key != kv.Key || iv.ModRevision != kv.ModRevision {
					f.violate("%s read %s=%q at mod revision %d, but the store started with it under %s at mod revision %d", f.desc(int32(i)), kv.Key, kv.Value, kv.ModRevision, iv.Key, iv.ModRevision)
				}
				continue
			}
			if !ok {
				f.violate("%s read %s=%q, a value no operation wrote (or whose write failed)", f.desc(int32(i)), kv.Key, kv.Value)
				continue
			}
			wop := f.ops[w]
			switch {
			case wop.Key != kv.Key:
				f.violate("%s read value %q under %s, but %s wrote it under %s", f.desc(int32(i)), kv.Value, kv.Key, f.desc(w), wop.Key)
			case kv.ModRevision > op.Resp.Revision:
				f.violate("%s returned %s at mod revision %d, after its own header revision %d", f.desc(int32(i)), kv.Key, kv.ModRevision, op.Resp.Revision)
			case f.role[w] == roleWrite || f.role[w] == roleFiller:
				if f.rev[w] != kv.ModRevision {
					f.violate("%s read %s=%q at mod revision %d, but %s wrote it at revision %d", f.desc(int32(i)), kv.Key, kv.Value, kv.ModRevision, f.desc(w), f.rev[w])
				}
			case f.role[w] == roleCand:
				f.rev[w] = kv.ModRevision
				f.claim(w, kv.ModRevision)
				f.role[w] = roleWrite
			default:
				// An OK txn whose compare failed wrote nothing.
				f.violate("%s read %s=%q, but %s that would have written it did not take effect", f.desc(int32(i)), kv.Key, kv.Value, f.desc(w))
			}
		}
	}
	if len(f.definite) > 0 {
		return false
	}
	for i, op := range f.ops {
		if op.Lease != 0 && (f.role[i] == roleWrite || f.role[i] == rolePending) {
			f.leaseUse[op.Lease] = max(f.leaseUse[op.Lease], f.rev[i])
		}
	}
	// Index reads by revision and key events for lookahead.
	for i := len(f.ops) - 1; i >= 0; i-- {
		if f.role[i] == roleRead || f.role[i] == rolePending {
			r := f.rev[i] - f.base
			f.readNext[i] = f.readHead[r]
			f.readHead[r] = int32(i)
		}
	}
	for i, op := range f.ops {
		var pos int64
		switch f.role[i] {
		case roleWrite:
			pos = 2 * f.rev[i]
		case roleRead:
			pos = 2*f.rev[i] + 1
		default:
			continue
		}
		switch op.Kind {
		case history.Range:
			lo := sort.SearchStrings(f.st.keys, op.Key)
			for k := lo; k < len(f.st.keys) && inRange(f.st.keys[k], op.Key, op.End); k++ {
				f.st.ks[k].events = append(f.st.ks[k].events, keyEvent{pos, int32(i)})
			}
		case history.LeaseGrant, history.LeaseRevoke:
		default:
			k := f.st.keyIdx[op.Key]
			f.st.ks[k].events = append(f.st.ks[k].events, keyEvent{pos, int32(i)})
		}
	}
	for k := range f.st.ks {
		ev := f.st.ks[k].events
		sort.Slice(ev, func(a, b int) bool { return ev[a].pos < ev[b].pos })
	}
	return true
}

func inRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

func (f *fast) claim(i int32, rev int64) {
	if rev <= f.base || rev > f.maxRev {
		f.violate("%s took revision %d, outside the store's revisions (%d, %d]", f.desc(i), rev, f.base, f.maxRev)
		return
	}
	o := &f.owner[rev-f.base]
	if *o >= 0 && *o != i {
		f.violate("revision %d was created twice: by %s and by %s", rev, f.desc(*o), f.desc(i))
		return
	}
	*o = i
}

// compares reports whether txn op's compare holds against key k as the
// replay holds it, by the model's definition.
func (f *fast) compares(k int32, op *history.Operation) bool {
	kv, exists := f.st.ks[k].kv(f.st.keys[k])
	ok, _ := model.TxnCompare(kv, exists, op)
	return ok
}

// uncertain reports whether key k's state may differ from the replay's
// because a revision gap since its last certain write could have touched it.
func (f *fast) uncertain(k int32) bool { return f.lastGap > f.st.ks[k].lastPinned }

func (f *fast) replay(ctx context.Context) {
	cands := make([]int32, 0)
	for i := range f.ops {
		if f.role[i] == roleCand {
			cands = append(cands, int32(i))
		}
	}
	// minRet[r]: the earliest return of an operation positioned at or after
	// revision r. A write that fills gap r must be called no later, or some
	// operation saw revision r before the write existed.
	size := len(f.owner)
	minRet := make([]int64, size+1)
	minRet[size] = math.MaxInt64
	for r := range minRet[:size] {
		minRet[r] = math.MaxInt64
	}
	for i, op := range f.ops {
		switch f.role[i] {
		case roleWrite, roleRead, rolePending:
			if op.Outcome == history.OK {
				r := f.rev[i] - f.base
				minRet[r] = min(minRet[r], op.Return)
			}
		}
	}
	for r := size - 1; r >= 0; r-- {
		minRet[r] = min(minRet[r], minRet[r+1])
	}
	for r, o := range f.owner {
		if o < 0 && int64(r) > 0 && !f.hasPending(int64(r)) {
			f.gaps = append(f.gaps, int64(r)+f.base)
		}
	}
	f.minRet = minRet
	f.deletes = map[int32][]int32{}
	for _, i := range cands {
		if f.ops[i].Kind == history.Delete {
			k := f.st.keyIdx[f.ops[i].Key]
			f.deletes[k] = append(f.deletes[k], i)
		}
	}
	f.lastFill = make([]fillAt, len(f.st.ks))
	for k := range f.lastFill {
		f.lastFill[k].op = -1
	}
	candAt := make(map[int32]int, len(cands))
	for c, i := range cands {
		candAt[i] = c
	}
	used := make([]bool, len(cands))
	for c, i := range cands {
		used[c] = f.hints.banned[i] // banned candidates are never offered
	}
	// Candidates forced at a gap are kept for it.
	reserved := map[int]bool{}
	for _, i := range f.hints.forced {
		if c, ok := candAt[i]; ok && !used[c] {
			used[c] = true
			reserved[c] = true
		}
	}
	usedCount := 0

	f.processReads(f.base)
	if f.snapAt == f.base {
		f.takeSnap(f.base)
	}
	for rev := f.base + 1; rev <= f.maxRev; rev++ {
		if rev&4095 == 0 && ctx.Err() != nil {
			f.undecide("stopped: %v", ctx.Err())
			return
		}
		r := rev - f.base
		f.cur = rev
		w := f.owner[r]
		if w < 0 {
			for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
				if f.role[p] == rolePending && f.st.leaseKey[f.ops[p].Lease] > 0 && f.st.leases[f.ops[p].Lease] {
					w = p
					f.owner[r] = p
					f.role[p] = roleWrite
					break
				}
			}
		}
		if w >= 0 {
			f.applyWrite(w, rev, true)
			f.lin = append(f.lin, w)
		} else {
			f.lastGap = rev
			c := -1
			if fi, ok := f.hints.forced[rev]; ok {
				if fc, ok := candAt[fi]; ok && reserved[fc] {
					if fits, _, _, _ := f.fits(fi, rev); fits {
						c = fc
						used[c] = false // counted below
						delete(reserved, fc)
					}
				}
			}
			if c < 0 {
				c = f.chooseFiller(rev, cands, used, minRet[r])
			}
			switch {
			case c >= 0:
				used[c] = true
				usedCount++
				w := cands[c]
				f.role[w] = roleFiller
				f.rev[w] = rev
				f.applyWrite(w, rev, false)
				f.lin = append(f.lin, w)
				f.filled++
				f.noteFill(w, rev)
				f.lastFiller = fillAt{w, rev}
			case f.cfg.foreign:
				// An unrecorded write to a key nobody shows took it (a
				// revoke at this revision then deleted nothing).
				f.foreign++
			case f.eligible(cands, minRet[r]) <= usedCount && !f.hasPending(r):
				f.violate("revision %d was created by no recorded operation, yet %s saw it: header revision inconsistent (a phantom write, or a write that was never recorded)", rev, f.desc(f.firstSeeing(rev)))
			default:
				f.undecide("no unknown-outcome write fits revision gap %d without further search", rev)
				if f.hint == nil && f.gapHint.op < 0 {
					// A write used at an earlier gap may belong here.
					for c := f.eligible(cands, minRet[r]) - 1; c >= 0; c-- {
						i := cands[c]
						if _, taken := f.hints.forced[rev]; !taken && !f.hints.banned[i] {
							if ok, _, _, _ := f.fits(i, rev); ok {
								f.gapHint = fillAt{op: i, rev: rev}
								break
							}
						}
					}
					// Or the previous gap's write belongs here, and
					// another write before it.
					if _, taken := f.hints.forced[rev]; f.gapHint.op < 0 && !taken && f.lastFiller.op >= 0 {
						f.gapHint = fillAt{op: f.lastFiller.op, rev: rev}
					}
				}
			}
		}
		f.processReads(rev)
		if rev == f.snapAt {
			f.takeSnap(rev)
		}
		if len(f.definite) > verdictLimit {
			return
		}
	}
}

// foreignRevisionLimit is how many revisions the fast path replays in
// foreign-writes mode however few operations claim them.
const foreignRevisionLimit = 1 << 22

// verdictLimit stops the replay once a failure is certain and well described.
const verdictLimit = 100

// noteFill remembers which keys filler w touched, for hints.
func (f *fast) noteFill(w int32, rev int64) {
	op := f.ops[w]
	switch op.Kind {
	case history.Put, history.Txn, history.Delete:
		f.lastFill[f.st.keyIdx[op.Key]] = fillAt{w, rev}
	case history.LeaseRevoke:
		// Its keys are gone now; their lastPinned predates rev, so a
		// contradiction on them names this filler.
		for k := range f.st.ks {
			if f.st.ks[k].lease == op.Lease && f.st.ks[k].mod < rev {
				f.lastFill[k] = fillAt{w, rev}
			}
		}
	}
}

// firstSeeing returns the operation that returned first having seen rev.
func (f *fast) firstSeeing(rev int64) int32 {
	best := int32(-1)
	for i, op := range f.ops {
		if op.Outcome == history.OK && (f.role[i] == roleWrite || f.role[i] == roleRead || f.role[i] == rolePending) && f.rev[i] >= rev {
			if best < 0 || op.Return < f.ops[best].Return {
				best = int32(i)
			}
		}
	}
	return best
}

func (f *fast) hasPending(r int64) bool {
	for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
		if f.role[p] == rolePending {
			return true
		}
	}
	return false
}

// eligible counts candidates called early enough for a gap.
func (f *fast) eligible(cands []int32, deadline int64) int {
	return sort.Search(len(cands), func(i int) bool { return f.ops[cands[i]].Call > deadline })
}

// applyWrite applies write w, which the replay places at revision rev, to
// the replayed store through the model: an OK write with its response, an
// unknown one with the response it would have had taking effect at rev.
// pinned says the placement is certain (not a guessed filler).
func (f *fast) applyWrite(w int32, rev int64, pinned bool) {
	op := f.ops[w]
	if pinned {
		f.lowTime = max(f.lowTime, op.Call)
	}
	resp := respOf(op)
	if resp == nil {
		resp = &history.Response{Revision: rev, Succeeded: true, Deleted: 1}
	}
	leaseGone := op.Lease != 0 && !f.st.leases[op.Lease]
	f.st.rev = rev - 1
	f.st.touched = f.st.touched[:0]
	if why := model.Apply(&f.st, op, resp, model.Strict); why != "" {
		msg := fmt.Sprintf("%s took effect at revision %d, but %s", f.desc(w), rev, why)
		switch {
		case op.Kind == history.LeaseRevoke:
			f.undecide("%s", msg)
		case leaseGone && f.revoked[op.Lease]:
			f.undecide("%s; a guessed expiry or revoke removed the lease", msg)
		case leaseGone:
			f.violate("%s", msg)
		default:
			f.stateViolation(f.st.keyIdx[op.Key], false, "%s", msg)
		}
	}
	f.st.rev = rev
	if pinned {
		for _, k := range f.st.touched {
			f.st.ks[k].lastPinned = rev
		}
		if op.Kind != history.LeaseRevoke {
			f.st.ks[f.st.keyIdx[op.Key]].lastPinned = rev
		}
	} else if op.Kind == history.LeaseRevoke {
		f.revoked[op.Lease] = true
	}
}

// stateViolation records a contradiction about key k's state: certain when
// no gap since k's last certain write could explain it, else undecided.
//
// wantAbsent says what the contradicting operation saw: the key absent
// (a delete or revoke must have come first), else present with another
// value (a put must have).
func (f *fast) stateViolation(k int32, wantAbsent bool, format string, args ...any) {
	if f.uncertain(k) {
		s := &f.st.ks[k]
		culprit := int32(-1)
		if lf := f.lastFill[k]; lf.op >= 0 && lf.rev > s.lastPinned {
			culprit = lf.op
		}
		h := hintAt{hint: hint{k: k, rev: f.cur, wantAbsent: wantAbsent, culprit: culprit, lastPinned: s.lastPinned}, lease: s.lease}
		if f.hint == nil {
			f.hint = &h
		} else {
			f.noteExtraHint(h)
		}
		f.undecide(format, args...)
		return
	}
	f.violate(format, args...)
}

func (f *fast) processReads(rev int64) {
	r := rev - f.base
	// Grants first: a put at the next revision may use them; then reads;
	// then revokes that deleted nothing, which only remove the lease.
	for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
		if f.ops[p].Kind == history.LeaseGrant {
			f.st.leases[f.ops[p].Resp.LeaseID] = true
		}
	}
	for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
		op := f.ops[p]
		switch op.Kind {
		case history.Get, history.Range:
			f.checkRead(p, rev)
		case history.Txn:
			k := f.st.keyIdx[op.Key]
			if f.compares(k, op) {
				f.stateViolation(k, len(op.Resp.KVs) == 0, "%s failed its compare at revision %d, but %s's mod revision was %d and value %q, as expected", f.desc(p), rev, op.Key, f.st.ks[k].mod, f.st.ks[k].value)
			} else if op.ExpectValue == nil { // a value compare has no else branch to read
				f.compareKey(p, k, op.Resp.KVs, rev)
			}
		case history.Delete:
			k := f.st.keyIdx[op.Key]
			if f.st.ks[k].present {
				f.stateViolation(k, true, "%s deleted nothing at revision %d, but %s held %q (mod revision %d)", f.desc(p), rev, op.Key, f.st.ks[k].value, f.st.ks[k].mod)
			}
		}
	}
	for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
		if f.role[p] != rolePending {
			continue
		}
		f.role[p] = roleRead
		l := f.ops[p].Lease
		switch {
		case !f.st.leases[l]:
			if f.revoked[l] {
				f.undecide("revoke of lease %x follows a guessed expiry", l)
			} else {
				f.violate("%s succeeded at revision %d, but lease %x was not granted or already revoked", f.desc(p), rev, l)
			}
		case f.st.leaseKey[l] > 0:
			if f.lastGap > 0 {
				f.undecide("revoke of lease %x at revision %d left keys attached", l, rev)
			} else {
				f.violate("%s returned revision %d without deleting the %d keys still attached to lease %x", f.desc(p), rev, f.st.leaseKey[l], l)
			}
		}
		f.st.leases[l] = false
	}
	// Everything read at rev goes into the linearization after rev's write,
	// in call order: operations at one revision change nothing, and the
	// sweep checks real time across revisions.
	for p := f.readHead[r]; p >= 0; p = f.readNext[p] {
		if f.role[p] == roleRead {
			f.lin = append(f.lin, p)
		}
	}
}

// compareKey checks a single-key read of key k against the replayed state.
func (f *fast) compareKey(p int32, k int32, got []history.KV, rev int64) {
	s := &f.st.ks[k]
	match := false
	switch {
	case !s.present:
		match = len(got) == 0
	case len(got) == 1:
		match = got[0].Key == f.st.keys[k] && got[0].Value == s.value && got[0].ModRevision == s.mod
	}
	if match {
		return
	}
	f.keyMismatch(p, k, got, rev)
}

func (f *fast) keyMismatch(p int32, k int32, got []history.KV, rev int64) {
	s := &f.st.ks[k]
	want := "nothing"
	if s.present {
		want = fmt.Sprintf("%q (mod revision %d)", s.value, s.mod)
	}
	gotText := "nothing"
	var gotMod int64 = -1
	for _, kv := range got {
		if kv.Key == f.st.keys[k] {
			gotText = fmt.Sprintf("%q (mod revision %d)", kv.Value, kv.ModRevision)
			gotMod = kv.ModRevision
		}
	}
	msg := fmt.Sprintf("%s read %s=%s at revision %d, but the store then held %s", f.desc(p), f.st.keys[k], gotText, rev, want)
	if gotMod >= 0 && gotMod < s.lastPinned {
		// A certain write to the key after the value returned: stale,
		// whatever the unknown writes did.
		f.violate("%s: stale read", msg)
		return
	}
	f.stateViolation(k, gotMod < 0, "%s", msg)
}

func (f *fast) checkRead(p int32, rev int64) {
	op := f.ops[p]
	got := op.Resp.KVs
	if op.Kind == history.Get {
		f.compareKey(p, f.st.keyIdx[op.Key], got, rev)
		return
	}
	lo := sort.SearchStrings(f.st.keys, op.Key)
	gi := 0
	for k := lo; k < len(f.st.keys) && inRange(f.st.keys[k], op.Key, op.End); k++ {
		s := &f.st.ks[k]
		inGot := gi < len(got) && got[gi].Key == f.st.keys[k]
		within := op.Limit == 0 || gi < int(op.Limit)
		switch {
		case s.present && within:
			if !inGot || got[gi].Value != s.value || got[gi].ModRevision != s.mod {
				f.keyMismatch(p, int32(k), got[gi:min(gi+1, len(got))], rev)
				return
			}
			gi++
		case !s.present && inGot:
			f.keyMismatch(p, int32(k), got[gi:gi+1], rev)
			return
		}
	}
	if gi != len(got) {
		f.violate("%s returned %d keys, the replayed store holds %d in range (keys out of order or out of range)", f.desc(p), len(got), gi)
		return
	}
}

// chooseFiller picks an unknown-outcome write to have made gap revision
// rev: one called before anyone saw rev, applicable to the store as it is,
// and whose effect the next operation showing each key it touches agrees
// with. Writes a later read needs (it sees their effect) are mandatory,
// writes nobody observed optional; each has a deadline, the next operation
// on its key. A mandatory write goes now when the gaps left before the
// mandatory deadlines would not suffice (Hall's condition); else an
// optional write that fits only here; else the mandatory write with the
// earliest deadline. This is a heuristic: when it picks wrong, the replay
// finds a contradiction it cannot call certain, and porcupine decides.
func (f *fast) chooseFiller(rev int64, cands []int32, used []bool, deadline int64) int {
	// An unknown write most likely took effect before its client gave up
	// on it. Writes whose client gave up before the store can have reached
	// this gap are tried only when no fresher one fits.
	if c := f.chooseFrom(rev, cands, used, deadline, true); c >= 0 {
		return c
	}
	return f.chooseFrom(rev, cands, used, deadline, false)
}

func (f *fast) chooseFrom(rev int64, cands []int32, used []bool, deadline int64, freshOnly bool) int {
	n := f.eligible(cands, deadline)
	quiet := -1
	quietDue := int64(math.MaxInt64)
	type job struct {
		c   int
		due int64
	}
	needed := map[int32]job{} // by key
	const scanLimit = 4096
	scanned := 0
	for c := n - 1; c >= 0 && scanned < scanLimit; c-- {
		op := f.ops[cands[c]]
		if used[c] || freshOnly && op.Return < f.lowTime && !isExpiry(op) {
			// An expiry has no client to give up on it: from its earliest
			// time on it is as likely at any gap (etcd restarts every
			// lease's TTL when a new leader is elected, so under faults it
			// comes late), and it is always fresh.
			continue
		}
		if op.Kind == history.LeaseRevoke && !f.st.leases[op.Lease] {
			// A revoke of a lease not live now cannot fit (fits says so
			// too); skip it uncounted so that the thousands of spent
			// expiries of a long run do not use up the scan.
			continue
		}
		scanned++
		fits, due, need, key := f.fits(cands[c], rev)
		switch {
		case !fits:
		case need:
			if j, ok := needed[key]; !ok || due < j.due {
				needed[key] = job{c, due}
			}
		case quiet < 0 || due < quietDue:
			quiet, quietDue = c, due
		}
	}
	jobs := make([]job, 0, len(needed))
	for _, j := range needed {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool {
		return jobs[a].due < jobs[b].due || jobs[a].due == jobs[b].due && jobs[a].c < jobs[b].c
	})
	next := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i] > rev })
	// later counts the gaps after this one that come before position due.
	later := func(due int64) int {
		return sort.Search(len(f.gaps), func(i int) bool { return 2*f.gaps[i] >= due }) - next
	}
	for j, jb := range jobs {
		if later(jb.due) < j+1 {
			return jobs[0].c // Hall's condition: a mandatory write must go now
		}
	}
	if f.cfg.foreign {
		// An unrecorded write explains a gap at no cost to any key, so
		// an unknown write nobody needs is better left out.
		quiet = -1
	}
	switch {
	case quiet >= 0 && later(quietDue) <= 0:
		return quiet // an optional write that fits only here
	case len(jobs) > 0:
		return jobs[0].c
	}
	return quiet
}

// fits reports whether candidate w could have made revision rev, and the
// position of the next operation that shows a key it touches.
func (f *fast) fits(w int32, rev int64) (fits bool, due int64, needed bool, key int32) {
	op := f.ops[w]
	switch op.Kind {
	case history.Put, history.Txn:
		if op.Lease != 0 && !f.st.leases[op.Lease] {
			return false, 0, false, 0
		}
		k := f.st.keyIdx[op.Key]
		if op.Kind == history.Txn && !f.compares(k, op) {
			return false, 0, false, 0
		}
		after := keyState{present: true, value: op.Value, mod: rev, lease: op.Lease}
		ok, due, need := f.agrees(k, &after, rev)
		if !ok && f.deletableBefore(k, rev, due) {
			// Unseen if an unknown delete of the key follows it: a last
			// resort, so it ranks below every write that fits alone.
			return true, math.MaxInt64, false, k
		}
		return ok, due, need, k
	case history.Delete:
		k := f.st.keyIdx[op.Key]
		if !f.st.ks[k].present {
			return false, 0, false, 0
		}
		ok, due, need := f.agrees(k, &keyState{}, rev)
		return ok, due, need, k
	case history.LeaseRevoke:
		l := op.Lease
		// A keep-alive that succeeded must come before the revoke (or
		// expiry): possible when it was called before anyone saw rev.
		// Comparing with the revoke's own call instead would forbid a
		// kept-alive lease from ever expiring, as it does once its
		// keep-alives stop during a fault.
		if !f.st.leases[l] || f.st.leaseKey[l] == 0 || f.kaLast[l] >= f.minRet[rev-f.base] || f.leaseUsedLater(l, rev) {
			return false, 0, false, 0
		}
		due = math.MaxInt64
		for k := range f.st.ks {
			s := &f.st.ks[k]
			if s.present && s.lease == l {
				ok, d, need := f.agrees(int32(k), &keyState{}, rev)
				if !ok {
					return false, 0, false, 0
				}
				if need && (!needed || d < due) {
					key = int32(k)
				}
				due = min(due, d)
				needed = needed || need
			}
		}
		return true, due, needed, key
	}
	return false, 0, false, 0
}

// deletableBefore reports whether an unused unknown delete of key k could
// fill a gap after rev and before position due, and the operation at due
// agrees with k being absent.
func (f *fast) deletableBefore(k int32, rev, due int64) bool {
	if due == math.MaxInt64 {
		return false
	}
	e := sort.Search(len(f.st.ks[k].events), func(i int) bool { return f.st.ks[k].events[i].pos >= due })
	if e == len(f.st.ks[k].events) {
		return false
	}
	if ok, _ := f.consistent(k, &keyState{}, f.st.ks[k].events[e]); !ok {
		return false
	}
	g := sort.Search(len(f.gaps), func(i int) bool { return f.gaps[i] > rev })
	if g == len(f.gaps) || 2*f.gaps[g] >= due {
		return false
	}
	for _, c := range f.deletes[k] {
		if f.role[c] == roleCand && f.ops[c].Call <= f.minRet[f.gaps[g]-f.base] {
			return true
		}
	}
	return false
}

// leaseUsedLater reports whether a certain operation after rev needs lease l.
func (f *fast) leaseUsedLater(l int64, rev int64) bool { return f.leaseUse[l] >= rev }

// agrees reports whether key k, changed to after at revision rev, agrees
// with the next operation that shows k, that operation's position, and
// whether it needs the change (it disagrees with k left as it is).
func (f *fast) agrees(k int32, after *keyState, rev int64) (ok bool, due int64, needed bool) {
	ev := f.st.ks[k].events
	for i := sort.Search(len(ev), func(i int) bool { return ev[i].pos > 2*rev }); i < len(ev); i++ {
		e := ev[i]
		ok, blind := f.consistent(k, after, e)
		if blind {
			continue
		}
		before, _ := f.consistent(k, &f.st.ks[k], e)
		return ok, e.pos, ok && !before
	}
	return true, math.MaxInt64, false
}

// consistent reports whether operation e agrees with key k being in state s
// just before it, or that e does not show k at all (blind).
func (f *fast) consistent(k int32, s *keyState, e keyEvent) (ok, blind bool) {
	op := f.ops[e.op]
	var compares bool
	if op.Kind == history.Txn {
		kv, exists := s.kv(f.st.keys[k])
		compares, _ = model.TxnCompare(kv, exists, op)
	}
	same := func(got []history.KV) bool {
		if !s.present {
			return len(got) == 0
		}
		return len(got) == 1 && got[0].Value == s.value && got[0].ModRevision == s.mod
	}
	if e.pos%2 == 0 { // a write
		switch op.Kind {
		case history.Put:
			return true, false
		case history.Txn:
			return compares, false
		case history.Delete:
			return s.present, false
		}
		return false, false
	}
	switch op.Kind {
	case history.Get:
		return same(op.Resp.KVs), false
	case history.Txn:
		if op.ExpectValue != nil {
			return !compares, false // no else branch: it shows only that the compare failed
		}
		return !compares && same(op.Resp.KVs), false
	case history.Delete:
		return !s.present, false
	case history.Range:
		got := op.Resp.KVs
		if op.Limit != 0 && int64(len(got)) >= op.Limit && len(got) > 0 && f.st.keys[k] > got[len(got)-1].Key {
			return true, true // beyond the limit: the response does not show it
		}
		for _, kv := range got {
			if kv.Key == f.st.keys[k] {
				return s.present && kv.Value == s.value && kv.ModRevision == s.mod, false
			}
		}
		return !s.present, false
	}
	return false, false
}

// sweep checks real-time order: an operation called after another returned
// must come later in revision order, strictly when it is a write.
func (f *fast) sweep() {
	pos := func(i int32) int64 {
		switch f.role[i] {
		case roleWrite, roleFiller:
			return 2 * f.rev[i]
		case roleRead:
			return 2*f.rev[i] + 1
		}
		return -1
	}
	byRet := make([]int32, 0, len(f.ops))
	for i, op := range f.ops {
		if op.Outcome == history.OK && pos(int32(i)) >= 0 {
			byRet = append(byRet, int32(i))
		}
	}
	sort.Slice(byRet, func(a, b int) bool { return f.ops[byRet[a]].Return < f.ops[byRet[b]].Return })
	best := int64(-1)
	var bestOp int32 = -1
	j := 0
	for i, op := range f.ops {
		for j < len(byRet) && f.ops[byRet[j]].Return < op.Call {
			if p := pos(byRet[j]); p > best {
				best, bestOp = p, byRet[j]
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
		case f.role[a] == roleWrite:
			msg += "lost acknowledged write / stale read (the read does not see a write that had already returned)"
		default:
			msg += "revision went backwards (stale read)"
		}
		if f.role[a] == roleFiller || f.role[b] == roleFiller || f.ops[a].Kind == history.LeaseRevoke || f.ops[b].Kind == history.LeaseRevoke {
			f.undecide("%s", msg)
			continue
		}
		if !isWrite {
			msg += f.missedWrite(b, byRet[:j])
		}
		f.violate("%s", msg)
		if len(f.definite) > verdictLimit {
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
func (f *fast) missedWrite(rd int32, returned []int32) string {
	op := f.ops[rd]
	var w int32 = -1
	for _, i := range returned {
		o := f.ops[i]
		if f.role[i] != roleWrite || f.rev[i] <= f.rev[rd] || !inRange(o.Key, op.Key, op.End) {
			continue
		}
		if o.Kind != history.Put && o.Kind != history.Txn && o.Kind != history.Delete {
			continue
		}
		if w < 0 || f.rev[i] > f.rev[w] {
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
		if f.role[i] != roleKeepAlive {
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

func sortByCall(ops []*history.Operation) {
	sort.SliceStable(ops, func(i, j int) bool {
		if ops[i].Call != ops[j].Call {
			return ops[i].Call < ops[j].Call
		}
		return ops[i].ID < ops[j].ID
	})
}
