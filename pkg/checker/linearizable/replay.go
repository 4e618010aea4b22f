package linearizable

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// replay rebuilds the store revision by revision: at each revision the
// write that owns it (or a filler for a gap) is applied through the model,
// then everything positioned at the revision is checked against the store
// and appended to the linearization.
func (f *fast) replay(ctx context.Context) {
	cs := f.prepareReplay()
	f.processReads(f.place.base)
	if f.prog.snapAt == f.place.base {
		f.takeSnap(f.place.base)
	}
	for rev := f.place.base + 1; rev <= f.place.maxRev; rev++ {
		if rev&4095 == 0 && ctx.Err() != nil {
			f.undecide("stopped: %v", ctx.Err())
			return
		}
		r := rev - f.place.base
		f.prog.cur = rev
		w := f.place.owner[r]
		if w < 0 {
			// An acknowledged revoke that deletes keys owns its revision.
			for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
				if f.place.role[p] == rolePending && f.st.leaseKey[f.ops[p].Lease] > 0 && f.st.leases[f.ops[p].Lease] {
					w = p
					f.place.owner[r] = p
					f.place.role[p] = roleWrite
					break
				}
			}
		}
		if w >= 0 {
			f.applyWrite(w, rev, true)
			f.found.lin = append(f.found.lin, w)
		} else {
			f.fillGap(rev, cs)
		}
		f.processReads(rev)
		if rev == f.prog.snapAt {
			f.takeSnap(rev)
		}
		if len(f.found.definite) > verdictLimit {
			return
		}
	}
}

// candidates are the unknown-outcome writes not pinned by a read, in call
// order, which the replay may use to fill revision gaps.
type candidates struct {
	list      []int32
	at        map[int32]int // op -> index in list
	used      []bool        // used, banned or reserved
	reserved  map[int]bool  // kept for the gap a hint forced them at
	usedCount int
}

// prepareReplay computes what the replay needs beyond classify's indexes:
// the earliest return at or after each revision, the gaps, the unknown
// deletes per key, and the candidates with the hints applied.
func (f *fast) prepareReplay() *candidates {
	cs := &candidates{}
	for i := range f.ops {
		if f.place.role[i] == roleCand {
			cs.list = append(cs.list, int32(i))
		}
	}
	// minRet[r]: the earliest return of an operation positioned at or after
	// revision r. A write that fills gap r must be called no later, or some
	// operation saw revision r before the write existed.
	size := len(f.place.owner)
	minRet := make([]int64, size+1)
	minRet[size] = math.MaxInt64
	for r := range minRet[:size] {
		minRet[r] = math.MaxInt64
	}
	for i, op := range f.ops {
		switch f.place.role[i] {
		case roleWrite, roleRead, rolePending:
			if op.Outcome == history.OK {
				r := f.place.rev[i] - f.place.base
				minRet[r] = min(minRet[r], op.Return)
			}
		}
	}
	for r := size - 1; r >= 0; r-- {
		minRet[r] = min(minRet[r], minRet[r+1])
	}
	for r, o := range f.place.owner {
		if o < 0 && int64(r) > 0 && !f.hasPending(int64(r)) {
			f.prog.gaps = append(f.prog.gaps, int64(r)+f.place.base)
		}
	}
	f.prog.minRet = minRet
	f.prog.deletes = map[int32][]int32{}
	f.prog.revokes = map[int64][]int32{}
	for _, i := range cs.list {
		switch op := f.ops[i]; {
		case op.DeletesKey():
			k := f.st.keyIdx[op.Key]
			f.prog.deletes[k] = append(f.prog.deletes[k], i)
		case op.Kind == history.LeaseRevoke:
			f.prog.revokes[op.Lease] = append(f.prog.revokes[op.Lease], i)
		}
	}
	f.prog.lastFill = make([]fillAt, len(f.st.ks))
	for k := range f.prog.lastFill {
		f.prog.lastFill[k].op = -1
	}
	cs.at = make(map[int32]int, len(cs.list))
	for c, i := range cs.list {
		cs.at[i] = c
	}
	cs.used = make([]bool, len(cs.list))
	for c, i := range cs.list {
		cs.used[c] = f.hints.banned[i] // banned candidates are never offered
	}
	// Candidates forced at a gap are kept for it.
	cs.reserved = map[int]bool{}
	for _, i := range f.hints.forced {
		if c, ok := cs.at[i]; ok && !cs.used[c] {
			cs.used[c] = true
			cs.reserved[c] = true
		}
	}
	return cs
}

// fillGap explains revision rev, which no certain write owns: by the
// candidate a hint forced there, else the one chooseFiller picks, else an
// unrecorded write (when foreign writes are allowed). Failing those it is
// a phantom revision when no candidate is left, else undecided, with a
// hint for the next pass.
func (f *fast) fillGap(rev int64, cs *candidates) {
	r := rev - f.place.base
	f.prog.lastGap = rev
	c := -1
	if fi, ok := f.hints.forced[rev]; ok {
		if fc, ok := cs.at[fi]; ok && cs.reserved[fc] {
			if fits, _, _, _ := f.fits(fi, rev); fits {
				c = fc
				cs.used[c] = false // counted below
				delete(cs.reserved, fc)
			}
		}
	}
	if c < 0 {
		c = f.chooseFiller(rev, cs.list, cs.used, f.prog.minRet[r])
	}
	switch {
	case c >= 0:
		cs.used[c] = true
		cs.usedCount++
		w := cs.list[c]
		f.place.role[w] = roleFiller
		f.place.rev[w] = rev
		f.applyWrite(w, rev, false)
		f.found.lin = append(f.found.lin, w)
		f.found.filled++
		f.noteFill(w, rev)
		f.prog.lastFiller = fillAt{w, rev}
	case f.cfg.foreign:
		// An unrecorded write to a key nobody shows took it (a
		// revoke at this revision then deleted nothing).
		f.found.foreign++
	case f.eligible(cs.list, f.prog.minRet[r]) <= cs.usedCount && !f.hasPending(r):
		f.violate("revision %d was created by no recorded operation, yet %s saw it: header revision inconsistent (a phantom write, or a write that was never recorded)", rev, f.desc(f.firstSeeing(rev)))
	default:
		f.undecide("no unknown-outcome write fits revision gap %d without further search", rev)
		if f.learned.hint == nil && f.learned.gapHint.op < 0 {
			f.noteGapHint(rev, cs.list)
		}
	}
}

// noteGapHint guesses, for a gap no candidate fits, which write to force
// there next pass.
func (f *fast) noteGapHint(rev int64, cands []int32) {
	if _, taken := f.hints.forced[rev]; taken {
		return
	}
	// A write used at an earlier gap may belong here.
	for c := f.eligible(cands, f.prog.minRet[rev-f.place.base]) - 1; c >= 0; c-- {
		i := cands[c]
		if !f.hints.banned[i] {
			if ok, _, _, _ := f.fits(i, rev); ok {
				f.learned.gapHint = fillAt{op: i, rev: rev}
				return
			}
		}
	}
	// Or the previous gap's write belongs here, and another write before it.
	if f.prog.lastFiller.op >= 0 {
		f.learned.gapHint = fillAt{op: f.prog.lastFiller.op, rev: rev}
	}
}

// applyWrite applies write w, which the replay places at revision rev, to
// the replayed store through the model: an OK write with its response, an
// unknown one with the response it would have had taking effect at rev.
// pinned says the placement is certain (not a guessed filler).
func (f *fast) applyWrite(w int32, rev int64, pinned bool) {
	op := f.ops[w]
	if pinned {
		f.prog.lowTime = max(f.prog.lowTime, op.Call)
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
		case leaseGone && f.prog.revoked[op.Lease]:
			f.undecide("%s; a guessed expiry or revoke removed the lease", msg)
		case leaseGone:
			f.violate("%s", msg)
		default:
			f.stateViolation(f.st.keyIdx[op.Key], rev, false, "%s", msg)
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
		f.prog.revoked[op.Lease] = true
	}
}

// stateViolation records a contradiction about key k's state, found at
// revision rev: certain when no gap since k's last certain write could
// explain it, else undecided, with a hint naming rev.
//
// wantAbsent says what the contradicting operation saw: the key absent
// (a delete or revoke must have come first), else present with another
// value (a put must have).
func (f *fast) stateViolation(k int32, rev int64, wantAbsent bool, format string, args ...any) {
	if f.uncertain(k) {
		s := &f.st.ks[k]
		culprit := int32(-1)
		if lf := f.prog.lastFill[k]; lf.op >= 0 && lf.rev > s.lastPinned {
			culprit = lf.op
		}
		h := hintAt{hint: hint{k: k, rev: rev, wantAbsent: wantAbsent, culprit: culprit, lastPinned: s.lastPinned}, lease: s.lease}
		if f.learned.hint == nil {
			f.learned.hint = &h
		} else {
			f.noteExtraHint(h)
		}
		f.undecide(format, args...)
		return
	}
	f.violate(format, args...)
}

func (f *fast) processReads(rev int64) {
	r := rev - f.place.base
	// Grants first: a put at the next revision may use them; then reads;
	// then revokes that deleted nothing, which only remove the lease.
	for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
		if f.ops[p].Kind == history.LeaseGrant {
			f.st.leases[f.ops[p].Resp.LeaseID] = true
		}
	}
	for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
		op := f.ops[p]
		switch op.Kind {
		case history.Get, history.Range:
			f.checkRead(p, rev)
		case history.Txn:
			k := f.st.keyIdx[op.Key]
			if op.Resp.Succeeded {
				// A txn whose then branch deleted nothing: it saw the
				// key absent.
				if !f.compares(k, op) {
					f.stateViolation(k, rev, true, "%s passed its compare at revision %d, but %s's mod revision was %d and value %q, which fail it", f.desc(p), rev, op.Key, f.st.ks[k].mod, f.st.ks[k].value)
				} else if f.st.ks[k].present {
					f.stateViolation(k, rev, true, "%s deleted nothing at revision %d, but %s held %q (mod revision %d)", f.desc(p), rev, op.Key, f.st.ks[k].value, f.st.ks[k].mod)
				}
			} else if f.compares(k, op) {
				f.stateViolation(k, rev, len(op.Resp.KVs) == 0, "%s failed its compare at revision %d, but %s's mod revision was %d and value %q, as expected", f.desc(p), rev, op.Key, f.st.ks[k].mod, f.st.ks[k].value)
			} else if op.ElseReads() { // a value compare without else_get has no else branch to read
				f.compareKey(p, k, op.Resp.KVs, rev)
			}
		case history.Delete:
			k := f.st.keyIdx[op.Key]
			if f.st.ks[k].present {
				f.stateViolation(k, rev, true, "%s deleted nothing at revision %d, but %s held %q (mod revision %d)", f.desc(p), rev, op.Key, f.st.ks[k].value, f.st.ks[k].mod)
			}
		}
	}
	for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
		if f.place.role[p] != rolePending {
			continue
		}
		f.place.role[p] = roleRead
		l := f.ops[p].Lease
		switch {
		case !f.st.leases[l]:
			if f.prog.revoked[l] {
				f.undecide("revoke of lease %x follows a guessed expiry", l)
			} else {
				f.violate("%s succeeded at revision %d, but lease %x was not granted or already revoked", f.desc(p), rev, l)
			}
		case f.st.leaseKey[l] > 0:
			if f.prog.lastGap > 0 {
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
	for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
		if f.place.role[p] == roleRead {
			f.found.lin = append(f.found.lin, p)
		}
	}
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
	for k := lo; k < len(f.st.keys) && keyspace.InRange(f.st.keys[k], op.Key, op.End); k++ {
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
	f.stateViolation(k, rev, gotMod < 0, "%s", msg)
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
func (f *fast) uncertain(k int32) bool { return f.prog.lastGap > f.st.ks[k].lastPinned }

// noteFill remembers which keys filler w touched, for hints.
func (f *fast) noteFill(w int32, rev int64) {
	op := f.ops[w]
	switch op.Kind {
	case history.Put, history.Txn, history.Delete:
		f.prog.lastFill[f.st.keyIdx[op.Key]] = fillAt{w, rev}
	case history.LeaseRevoke:
		// Its keys are gone now; their lastPinned predates rev, so a
		// contradiction on them names this filler.
		for k := range f.st.ks {
			if f.st.ks[k].lease == op.Lease && f.st.ks[k].mod < rev {
				f.prog.lastFill[k] = fillAt{w, rev}
			}
		}
	}
}

// firstSeeing returns the operation that returned first having seen rev.
func (f *fast) firstSeeing(rev int64) int32 {
	best := int32(-1)
	for i, op := range f.ops {
		if op.Outcome == history.OK && (f.place.role[i] == roleWrite || f.place.role[i] == roleRead || f.place.role[i] == rolePending) && f.place.rev[i] >= rev {
			if best < 0 || op.Return < f.ops[best].Return {
				best = int32(i)
			}
		}
	}
	return best
}

func (f *fast) hasPending(r int64) bool {
	for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
		if f.place.role[p] == rolePending {
			return true
		}
	}
	return false
}

// eligible counts candidates called early enough for a gap.
func (f *fast) eligible(cands []int32, deadline int64) int {
	return sort.Search(len(cands), func(i int) bool { return f.ops[cands[i]].Call > deadline })
}
