package linearizable

import (
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// hints carry what earlier passes learned into the next replay.
type hints struct {
	banned map[int32]bool  // candidates not to use as fillers
	forced map[int64]int32 // gap revision -> candidate to use there
	// relaxed is the second order decideFast tries: the gap filler's
	// forced choices range over every candidate, not only those whose
	// client had not yet given up, and an optional write may take a
	// spare gap whether or not a mandatory write would spoil it.
	relaxed bool
}

// hint is the first uncertain contradiction of a pass.
type hint struct {
	k          int32
	rev        int64
	wantAbsent bool
	culprit    int32 // a filler that touched k since its last certain write, or -1
	lastPinned int64
}

type hintAt struct {
	hint
	lease int64
}

func newHints() *hints { return &hints{banned: map[int32]bool{}, forced: map[int64]int32{}} }

// learn turns the pass's hint into a ban or a forced placement; false when
// it has nothing new to try. It also acts on the pass's later, independent
// hints: a long history has many unrelated places where the filler
// heuristic guessed wrong, and learning them one replay at a time would run
// out of passes (each of which costs seconds on a million operations).
func (f *fast) learn() bool {
	if f.learned.hint == nil {
		if f.learned.gapHint.op < 0 {
			return false
		}
		f.hints.forced[f.learned.gapHint.rev] = f.learned.gapHint.op
		return true
	}
	if !f.learnHint(f.learned.hint) {
		return false
	}
	for i := range f.learned.extra {
		f.learnHint(&f.learned.extra[i])
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
	last := f.learned.hint
	if n := len(f.learned.extra); n > 0 {
		last = &f.learned.extra[n-1]
	}
	if len(f.learned.extra) < maxExtraHints && h.culprit < 0 && h.lastPinned > last.rev {
		f.learned.extra = append(f.learned.extra, h)
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
	lo := sort.Search(len(f.prog.gaps), func(i int) bool { return f.prog.gaps[i] > ht.lastPinned })
	hi := sort.Search(len(f.prog.gaps), func(i int) bool { return f.prog.gaps[i] > ht.rev })
	key := f.st.keys[ht.k]
	for g := hi - 1; g >= lo; g-- {
		gap := f.prog.gaps[g]
		if _, taken := f.hints.forced[gap]; taken {
			continue
		}
		taken := map[int32]bool{}
		for _, i := range f.hints.forced {
			taken[i] = true
		}
		// The latest-called fitting write is the likeliest: unknown writes
		// take effect soon after their call.
		last := sort.Search(len(f.ops), func(i int) bool { return f.ops[i].Call > f.prog.minRet[gap-f.place.base] })
		for i := last - 1; i >= 0; i-- {
			op := f.ops[i]
			if op.Outcome != history.Unknown || taken[int32(i)] || f.hints.banned[int32(i)] {
				continue
			}
			var fits bool
			if ht.wantAbsent {
				fits = op.DeletesKey() && op.Key == key || op.Kind == history.LeaseRevoke && op.Lease != 0 && op.Lease == h.lease
			} else {
				fits = op.WritesValue() && op.Key == key
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
