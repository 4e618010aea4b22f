package linearizable

import (
	"math"
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

type fillAt struct {
	op  int32
	rev int64
}

// chooseFiller picks an unknown-outcome write to have made gap revision
// rev: one called before anyone saw rev, applicable to the store as it is,
// and whose effect the next operation showing each key it touches agrees
// with. Writes a later read needs (it sees their effect) are mandatory,
// writes nobody observed optional; each has a deadline, the next operation
// on its key. A mandatory write goes now when the gaps left before the
// mandatory deadlines would not suffice (Hall's condition, counting also
// the mandatory writes called too late for this gap, before an optional
// write may take it); else an optional write that fits only here; else
// the mandatory write with the
// earliest deadline. This is a heuristic: when it picks wrong, the replay
// finds a contradiction it cannot call certain, and porcupine decides.
func (f *fast) chooseFiller(rev int64, cands []int32, used []bool, deadline int64) int {
	if f.hints.relaxed {
		// The second order (see decideFast): a choice the gaps force (a
		// mandatory write that must go now, an optional write that fits
		// only here) stands whoever made the write, as a paused member
		// applies requests its clients gave up on long before.
		if c, forced := f.chooseFrom(rev, cands, used, deadline, false); forced {
			return c
		}
	}
	// An unknown write most likely took effect before its client gave up
	// on it. Writes whose client gave up before the store can have reached
	// this gap are tried only when no fresher one fits.
	if c, _ := f.chooseFrom(rev, cands, used, deadline, true); c >= 0 {
		return c
	}
	c, _ := f.chooseFrom(rev, cands, used, deadline, false)
	return c
}

// chooseFrom picks a filler for gap rev among cands (only those whose
// client had not given up by then, when freshOnly), or -1, and says
// whether the gaps forced the choice.
func (f *fast) chooseFrom(rev int64, cands []int32, used []bool, deadline int64, freshOnly bool) (int, bool) {
	n := f.eligible(cands, deadline)
	// quiet is the optional write with the earliest deadline; spare the
	// same among those that may fit no later gap (see below).
	quiet, spare := -1, -1
	quietDue, spareDue := int64(math.MaxInt64), int64(math.MaxInt64)
	var spareKey int32
	needed := map[int32]job{} // by key
	const scanLimit = 4096
	scanned := 0
	for c := n - 1; c >= 0 && scanned < scanLimit; c-- {
		op := f.ops[cands[c]]
		if used[c] || freshOnly && op.Return < f.prog.lowTime && !isExpiry(op) {
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
				needed[key] = job{c, due, key}
			}
		default:
			if quiet < 0 || due < quietDue {
				quiet, quietDue = c, due
			}
			// A revoke or expiry whose keys nobody shows again removes
			// nothing anyone reads, and it fits every later gap as long
			// as its lease holds keys (once it holds none, nobody needs
			// it): it is never the write a spare gap must be kept for.
			if (spare < 0 || due < spareDue) && (op.Kind != history.LeaseRevoke || due != math.MaxInt64) {
				spare, spareDue, spareKey = c, due, key
			}
		}
	}
	jobs := make([]job, 0, len(needed))
	for _, j := range needed {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool {
		return jobs[a].due < jobs[b].due || jobs[a].due == jobs[b].due && jobs[a].c < jobs[b].c
	})
	next := sort.Search(len(f.prog.gaps), func(i int) bool { return f.prog.gaps[i] > rev })
	// later counts the gaps after this one that come before position due.
	later := func(due int64) int {
		return sort.Search(len(f.prog.gaps), func(i int) bool { return 2*f.prog.gaps[i] >= due }) - next
	}
	for j, jb := range jobs {
		if later(jb.due) < j+1 {
			return jobs[0].c, true // Hall's condition: a mandatory write must go now
		}
	}
	if len(jobs) > 0 && (quiet >= 0 || spare >= 0) && f.squeezed(rev, cands, used, n, needed, jobs) {
		// Hall's condition again, counting the mandatory writes called
		// too late for this gap (a lease expiring just after it) as well:
		// giving this gap to an optional write would leave one of them
		// no gap before its deadline.
		return jobs[0].c, true
	}
	if f.cfg.foreign {
		// An unrecorded write explains a gap at no cost to any key, so
		// an unknown write nobody needs is better left out.
		quiet, spare = -1, -1
	}
	switch {
	case quiet >= 0 && later(quietDue) <= 0:
		return quiet, true // an optional write that fits only here
	case spare >= 0 && len(jobs) > 0 && later(jobs[len(jobs)-1].due)+1 > len(jobs) && (f.hints.relaxed || f.spoils(cands, jobs, cands[spare], spareKey)):
		// More gaps come before the last deadline than there are
		// mandatory writes (expiries among them, which fit any gap
		// until their deadline), so some gap there needs an optional
		// write anyway: take one that fits now, as it may fit no later
		// gap once a mandatory write (a delete, say) has gone first.
		// Only when one of them would spoil it: the count sees only
		// writes that fit by now, and one that fits only later (called
		// later, or after a read at this revision still shows its key)
		// may need a gap before the same deadline, so an optional
		// write that would fit later too must not take it. (The
		// second order takes it anyway: an optional write that fits
		// only before a certain write to its key, with mandatory
		// expiries that fit any gap, must have one of the gaps before;
		// soak run 29 of the third soak.)
		return spare, false
	case len(jobs) > 0:
		return jobs[0].c, false
	}
	return quiet, false
}

// squeezed reports whether the gaps after rev cannot take every
// mandatory write due before the latest deadline in jobs: those in jobs,
// which fit now, and the unused candidates from n on, called after this
// gap's deadline (each fits only from the first gap it was called
// before). It schedules them earliest deadline first, each from its
// first gap on.
func (f *fast) squeezed(rev int64, cands []int32, used []bool, n int, needed map[int32]job, jobs []job) bool {
	type pend struct{ from, due int64 }
	last := jobs[len(jobs)-1].due
	if last == math.MaxInt64 || last/2 <= f.place.base || last/2-f.place.base >= int64(len(f.prog.minRet)) {
		return false
	}
	all := make([]pend, 0, len(jobs))
	for _, j := range jobs {
		all = append(all, pend{rev + 1, j.due})
	}
	by := f.prog.minRet[last/2-f.place.base]
	const scanLimit = 4096
	for c := n; c < len(cands) && c < n+scanLimit && f.ops[cands[c]].Call <= by; c++ {
		if used[c] {
			continue
		}
		fits, due, need, key := f.fits(cands[c], rev)
		if !fits || !need || due > last {
			continue
		}
		if _, ok := needed[key]; ok {
			continue // one write of the key is enough for its reader
		}
		call := f.ops[cands[c]].Call
		g := sort.Search(len(f.prog.gaps), func(i int) bool {
			return f.prog.gaps[i] > rev && f.prog.minRet[f.prog.gaps[i]-f.place.base] >= call
		})
		if g == len(f.prog.gaps) || 2*f.prog.gaps[g] >= due {
			continue // fits no gap in time: the replay says so there
		}
		all = append(all, pend{f.prog.gaps[g], due})
	}
	if len(all) == len(jobs) {
		return false
	}
	done := make([]bool, len(all))
	left := len(all)
	for g := sort.Search(len(f.prog.gaps), func(i int) bool { return f.prog.gaps[i] > rev }); g < len(f.prog.gaps) && left > 0; g++ {
		slot := f.prog.gaps[g]
		pick := -1
		for i, p := range all {
			if done[i] {
				continue
			}
			if p.due <= 2*slot {
				return true // its deadline passed with no gap left for it
			}
			if p.from <= slot && (pick < 0 || p.due < all[pick].due) {
				pick = i
			}
		}
		if pick >= 0 {
			done[pick] = true
			left--
		}
	}
	return left > 0
}

// job is a mandatory filler: candidate c, needed by the operation at
// position due, which shows key.
type job struct {
	c   int
	due int64
	key int32
}

// spoils reports whether a mandatory write in jobs, applied first, could
// leave optional write o (on key k) unable to fit: one writes the key the
// other writes or reads, or removes the lease o would attach a key to, or
// o revokes a lease the job's key is attached to.
func (f *fast) spoils(cands []int32, jobs []job, o int32, k int32) bool {
	op := f.ops[o]
	for _, j := range jobs {
		jop := f.ops[cands[j.c]]
		switch {
		case op.Kind != history.LeaseRevoke && jop.Kind != history.LeaseRevoke && j.key == k:
			return true
		case jop.Kind == history.LeaseRevoke && op.Lease != 0 && op.Lease == jop.Lease:
			return true
		case jop.Kind == history.LeaseRevoke && op.Kind != history.LeaseRevoke && f.st.ks[k].present && f.st.ks[k].lease == jop.Lease:
			return true
		case op.Kind == history.LeaseRevoke && f.st.ks[j.key].present && f.st.ks[j.key].lease == op.Lease:
			return true
		}
	}
	return false
}

// fits reports whether candidate w could have made revision rev, and the
// position of the next operation that shows a key it touches.
func (f *fast) fits(w int32, rev int64) (fits bool, due int64, needed bool, key int32) {
	op := f.ops[w]
	switch op.Kind {
	case history.Put, history.Txn:
		if op.DeletesKey() {
			k := f.st.keyIdx[op.Key]
			if !f.st.ks[k].present || !f.compares(k, op) {
				return false, 0, false, 0
			}
			ok, due, need := f.agrees(k, &keyState{}, rev)
			return ok, due, need, k
		}
		if op.Lease != 0 && !f.st.leases[op.Lease] {
			return false, 0, false, 0
		}
		k := f.st.keyIdx[op.Key]
		if op.Kind == history.Txn && !f.compares(k, op) {
			return false, 0, false, 0
		}
		after := keyState{present: true, value: op.Value, mod: rev, lease: op.Lease}
		ok, due, need := f.agrees(k, &after, rev)
		if !ok && f.deletableBefore(k, rev, due, op.Lease) {
			// Unseen if an unknown delete of the key, or an expiry or
			// unknown revoke of its lease, follows it: a last resort,
			// so it ranks below every write that fits alone.
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
		if !f.st.leases[l] || f.st.leaseKey[l] == 0 || f.place.kaLast[l] >= f.prog.minRet[rev-f.place.base] || f.leaseUsedLater(l, rev) {
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

// deletableBefore reports whether an unused unknown delete of key k, or an
// unused expiry or unknown revoke of lease (the one the write would attach
// k to, or 0), could fill a gap after rev and before position due, and the
// operation at due agrees with k being absent.
func (f *fast) deletableBefore(k int32, rev, due, lease int64) bool {
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
	gap := f.nextUnowned(rev)
	if gap < 0 || 2*gap >= due {
		return false
	}
	by := f.prog.minRet[gap-f.place.base]
	for _, c := range f.prog.deletes[k] {
		if f.place.role[c] == roleCand && f.ops[c].Call <= by {
			return true
		}
	}
	if lease == 0 {
		return false
	}
	// A lease's expiry removes its keys at a revision of its own, never a
	// recorded client operation, so a put attached to a lease that later
	// expired is unseen when the expiry fills a gap before due.
	for _, c := range f.prog.revokes[lease] {
		if f.place.role[c] == roleCand && f.ops[c].Call <= by {
			return true
		}
	}
	return false
}

// nextUnowned returns the first revision after rev that no write owns yet,
// or -1: a gap, or a revision an acknowledged revoke may leave to a filler
// (f.prog.gaps leaves those out).
func (f *fast) nextUnowned(rev int64) int64 {
	g := sort.Search(len(f.prog.gaps), func(i int) bool { return f.prog.gaps[i] > rev })
	limit := f.place.maxRev
	if g < len(f.prog.gaps) {
		limit = f.prog.gaps[g]
	}
	// Bounded: revisions with a pending revoke are rare.
	for r := rev + 1; r < limit && r <= rev+4096; r++ {
		if f.place.owner[r-f.place.base] < 0 {
			return r
		}
	}
	if g < len(f.prog.gaps) {
		return f.prog.gaps[g]
	}
	return -1
}

// leaseUsedLater reports whether a certain operation after rev needs lease l.
func (f *fast) leaseUsedLater(l int64, rev int64) bool { return f.place.leaseUse[l] >= rev }

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
			return compares && (!op.DeletesKey() || s.present), false
		case history.Delete:
			return s.present, false
		}
		return false, false
	}
	switch op.Kind {
	case history.Get:
		return same(op.Resp.KVs), false
	case history.Txn:
		if op.Resp.Succeeded {
			return compares && !s.present, false // its then branch deleted nothing
		}
		if !op.ElseReads() {
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
