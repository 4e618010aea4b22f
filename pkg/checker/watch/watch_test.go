package watch

import (
	"slices"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func stripPrevKV(rs []history.WatchResponse) []history.WatchResponse {
	out := make([]history.WatchResponse, len(rs))
	for i, r := range rs {
		r.Events = append([]history.Event(nil), r.Events...)
		for j := range r.Events {
			r.Events[j].PrevKV = nil
		}
		out[i] = r
	}
	return out
}

func TestNoWatchesIsSkipped(t *testing.T) {
	checks := Check(&base().H)
	for _, c := range checks {
		if c.Status != verdict.Skipped {
			t.Errorf("%s: status %s, want skipped", c.Name, c.Status)
		}
	}
}

func TestValidStreamsPass(t *testing.T) {
	b := base()
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), progress(9))...)
	b.watch(2, "/kv/", prefixEnd, 0, false, stripPrevKV(goodEvents()[3:])...)
	b.watch(3, "/kv/a", "", 1, false, stripPrevKV(goodEvents()[0:1])[0], stripPrevKV(goodEvents()[2:3])[0], progress(9))
	b.watch(4, "", "\x00", 2, false, stripPrevKV(goodEvents())...)
	expectOnly(t, Check(&b.H))
}

func TestResumeAfterErrorPasses(t *testing.T) {
	b := base()
	evs := goodEvents()
	broken := append(append([]history.WatchResponse(nil), evs[:4]...), history.WatchResponse{Canceled: true, Error: "rpc error: code = Unavailable"})
	b.watch(1, "/kv/", prefixEnd, 2, true, broken...)
	b.watch(1, "/kv/", prefixEnd, 6, true, evs[4:]...)
	expectOnly(t, Check(&b.H))
}

func TestResumeAfterProgressPasses(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, evs[0], evs[1], progress(3), history.WatchResponse{Canceled: true, Error: "leader changed"})
	b.watch(1, "/kv/", prefixEnd, 4, true, evs[2:]...)
	expectOnly(t, Check(&b.H))
}

func TestDuplicatedEventFailsUnique(t *testing.T) {
	b := base()
	evs := goodEvents()
	evs[2].Events = append(evs[2].Events, evs[2].Events[0])
	b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
	expectOnly(t, Check(&b.H), Unique)
}

func TestDuplicateAcrossResumeFailsUnique(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, evs[:3]...)
	// The client resumes from revision 4 as it should, but the server sends
	// revision 4 again after revision 5: both unique and ordered break.
	b.watch(1, "/kv/", prefixEnd, 5, true, append([]history.WatchResponse{evs[3], evs[2]}, evs[4:]...)...)
	expectOnly(t, Check(&b.H), Unique, Ordered)
}

func TestReorderedEventsFailOrdered(t *testing.T) {
	b := base()
	evs := goodEvents()
	evs[1], evs[2] = evs[2], evs[1]
	b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
	expectOnly(t, Check(&b.H), Ordered)
}

// One event from far in the future is one violation, not one for every
// event after it.
func TestOneEventOutOfPlaceIsOneOrderedViolation(t *testing.T) {
	b := base()
	evs := goodEvents()
	far := evs[1].Events[0]
	far.ModRevision = 1000
	stream := append(append(append([]history.WatchResponse(nil), evs[:2]...), resp(far)), evs[2:]...)
	b.watch(1, "/kv/", prefixEnd, 2, true, stream...)
	checks := Check(&b.H)
	var ordered []string
	for _, c := range checks {
		if c.Name == Ordered {
			ordered = c.Violations
		}
	}
	if len(ordered) != 1 || !strings.Contains(ordered[0], "after an event at revision 1000") {
		t.Errorf("ordered violations %q, want one naming the event at revision 1000", ordered)
	}
}

func TestRevisionBackwardsInOneResponseFailsOrdered(t *testing.T) {
	b := base()
	evs := goodEvents()
	merged := resp(evs[4].Events[0], evs[3].Events[0])
	stream := append(append(append([]history.WatchResponse(nil), evs[:3]...), merged), evs[5:]...)
	b.watch(1, "/kv/", prefixEnd, 2, true, stream...)
	expectOnly(t, Check(&b.H), Ordered)
}

func TestSplitRevisionFailsAtomic(t *testing.T) {
	b := base()
	evs := goodEvents()
	last := evs[len(evs)-1]
	evs = append(evs[:len(evs)-1], resp(last.Events[0]), resp(last.Events[1]))
	b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
	expectOnly(t, Check(&b.H), Atomic)
}

func TestPartialRevisionFailsAtomicAndReliable(t *testing.T) {
	b := base()
	evs := goodEvents()
	evs[len(evs)-1] = resp(evs[len(evs)-1].Events[0]) // /kv/d's delete never arrives
	b.watch(1, "/kv/", prefixEnd, 2, true, append(evs, progress(9))...)
	expectOnly(t, Check(&b.H), Atomic, Reliable)
}

func TestEventAtOrBelowProgressFailsBookmarkable(t *testing.T) {
	b := base()
	evs := goodEvents()
	stream := append(append(append([]history.WatchResponse(nil), evs[:5]...), progress(7)), evs[5:]...)
	b.watch(1, "/kv/", prefixEnd, 2, true, stream...)
	expectOnly(t, Check(&b.H), Bookmarkable)
}

func TestProgressGoingBackwardsFailsBookmarkable(t *testing.T) {
	b := base()
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), progress(9), progress(8))...)
	expectOnly(t, Check(&b.H), Bookmarkable)
}

func TestGapFailsReliable(t *testing.T) {
	b := base()
	evs := goodEvents()
	evs = append(evs[:2], evs[3:]...) // revision 4 never arrives
	b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
	checks := Check(&b.H)
	expectOnly(t, checks, Reliable)
	if v := checks[4].Violations; len(v) != 1 || !strings.Contains(v[0], `"/kv/a"="a2"@4`) || !strings.Contains(v[0], "watch ") {
		t.Errorf("reliable violations %q should name the missed event and the watch", v)
	}
}

func TestGapBetweenResumedStreamsFailsReliable(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, evs[:3]...)
	// Resumed at 6 though it had seen only up to 4: revision 5 is lost.
	b.watch(1, "/kv/", prefixEnd, 6, true, evs[4:]...)
	expectOnly(t, Check(&b.H), Reliable)
}

func TestWrongFirstEventAfterResumeFailsResumable(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 4, true, evs[3:]...) // revision 4 is skipped
	expectOnly(t, Check(&b.H), Resumable)
}

func TestEventBeforeStartFailsResumable(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 5, true, evs[2:]...) // starts with revision 4
	expectOnly(t, Check(&b.H), Resumable)
}

func TestCompactedResumeIsExcused(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, evs[:2]...)
	b.watch(1, "/kv/", prefixEnd, 4, true, history.WatchResponse{Canceled: true, CompactRevision: 6, Revision: 9})
	b.watch(1, "/kv/", prefixEnd, 6, true, evs[4:]...)
	expectOnly(t, Check(&b.H))
}

func TestWrongPrevKVFailsConsistent(t *testing.T) {
	t.Run("version", func(t *testing.T) {
		b := base()
		evs := goodEvents()
		evs[2].Events[0].PrevKV = kv("/kv/a", "a1", 2, 2, 5, 0)
		b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
		expectOnly(t, Check(&b.H), Consistent)
	})
	t.Run("key was deleted", func(t *testing.T) {
		b := base()
		evs := goodEvents()
		evs[4].Events[0].PrevKV = kv("/kv/b", "b1", 3, 3, 1, 0)
		b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
		expectOnly(t, Check(&b.H), Consistent)
	})
	t.Run("missing", func(t *testing.T) {
		b := base()
		evs := goodEvents()
		evs[3].Events[0].PrevKV = nil
		b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
		expectOnly(t, Check(&b.H), Consistent)
	})
}

func TestWrongIsCreateFailsConsistent(t *testing.T) {
	t.Run("create of existing key", func(t *testing.T) {
		b := base()
		evs := goodEvents()
		evs[2].Events[0].IsCreate = true
		b.watch(1, "/kv/", prefixEnd, 2, true, evs...)
		expectOnly(t, Check(&b.H), Consistent)
	})
	t.Run("update of absent key", func(t *testing.T) {
		b := base()
		evs := stripPrevKV(goodEvents())
		// No create revision or version to contradict: only the state can.
		e := &evs[4].Events[0]
		e.IsCreate, e.CreateRevision, e.Version = false, 0, 0
		b.watch(1, "/kv/", prefixEnd, 2, false, evs...)
		expectOnly(t, Check(&b.H), Consistent)
	})
}

func TestValueNeverWrittenFailsConsistent(t *testing.T) {
	b := base()
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), resp(putEv("/kv/z", "ghost", 10, 10, 1, nil)))...)
	checks := Check(&b.H)
	expectOnly(t, checks, Consistent)
	if v := checks[6].Violations; len(v) != 1 || !strings.Contains(v[0], "never written") {
		t.Errorf("consistent violations %q, want one naming the unwritten value", v)
	}
}

func TestValueOfFailedPutFailsConsistent(t *testing.T) {
	b := base()
	b.op(history.Operation{Kind: history.Put, Key: "/kv/z", Value: "z1", Outcome: history.Fail, Error: "lease not found"})
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), resp(putEv("/kv/z", "z1", 10, 10, 1, nil)))...)
	expectOnly(t, Check(&b.H), Consistent)
}

func TestValueOfFailedCompareFailsConsistent(t *testing.T) {
	b := base()
	b.op(history.Operation{Kind: history.Txn, Key: "/kv/z", Value: "z1", ExpectModRev: 3, Outcome: history.OK, Resp: &history.Response{Revision: 9}})
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), resp(putEv("/kv/z", "z1", 10, 10, 1, nil)))...)
	checks := Check(&b.H)
	expectOnly(t, checks, Consistent)
	if v := checks[6].Violations; len(v) != 1 || !strings.Contains(v[0], "compare failed") {
		t.Errorf("consistent violations %q, want one naming the txn's failed compare", v)
	}
}

func TestEventOutsideRangeFailsFilter(t *testing.T) {
	b := base()
	b.put("/other", "o1", 0, 10)
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), resp(putEv("/other", "o1", 10, 10, 1, nil)))...)
	expectOnly(t, Check(&b.H), Filter)
}

func TestUnknownWriteResolvedByWatch(t *testing.T) {
	b := base()
	b.op(history.Operation{Kind: history.Put, Key: "/kv/z", Value: "z1", Outcome: history.Unknown, Error: "context deadline exceeded"})
	z := resp(putEv("/kv/z", "z1", 10, 10, 1, nil))
	b.watch(1, "/kv/", prefixEnd, 2, true, append(goodEvents(), z)...)
	b.watch(2, "/kv/z", "", 2, false, z)
	expectOnly(t, Check(&b.H))

	// A second watch on the range that saw past revision 10 without it
	// missed an event.
	b.watch(3, "/kv/", prefixEnd, 2, false, append(stripPrevKV(goodEvents()), progress(11))...)
	expectOnly(t, Check(&b.H), Reliable)
}

func TestWatchesDisagreeFailsConsistent(t *testing.T) {
	b := base()
	b.op(history.Operation{Kind: history.Put, Key: "/kv/z", Value: "z1", Outcome: history.Unknown})
	b.op(history.Operation{Kind: history.Put, Key: "/kv/z", Value: "z2", Outcome: history.Unknown})
	b.watch(1, "/kv/z", "", 10, false, resp(putEv("/kv/z", "z1", 10, 10, 1, nil)))
	b.watch(2, "/kv/z", "", 10, false, resp(putEv("/kv/z", "z2", 10, 10, 1, nil)))
	checks := Check(&b.H)
	expectOnly(t, checks, Consistent)
	if v := checks[6].Violations; len(v) != 1 || !strings.Contains(v[0], "conflicting evidence") {
		t.Errorf("consistent violations %q, want one conflict", v)
	}
}

func TestViolationNamesWatch(t *testing.T) {
	b := base()
	evs := goodEvents()
	evs[1], evs[2] = evs[2], evs[1]
	w := b.watch(7, "/kv/", prefixEnd, 2, true, evs...)
	checks := Check(&b.H)
	v := checks[0].Violations
	if len(v) != 1 {
		t.Fatalf("ordered violations %q, want 1", v)
	}
	for _, want := range []string{"client 7", w.Endpoint, "revision 3", `"/kv/b"`} {
		if !strings.Contains(v[0], want) {
			t.Errorf("violation %q does not mention %s", v[0], want)
		}
	}
}

// futureWatch records, on base's writes, a future watch on /kv/ opened at
// revision 5 when the store was at revision 3: it hears progress at 3, then
// gets every event from 5 on.
func futureWatch(b *builder, client int, evs ...history.WatchResponse) *history.Watch {
	return b.watch(client, "/kv/", prefixEnd, 5, true, slices.Concat([]history.WatchResponse{progress(3)}, evs)...)
}

func TestFutureWatchFromItsStartPasses(t *testing.T) {
	b := base()
	evs := goodEvents()
	futureWatch(b, 1, slices.Concat(evs[3:], []history.WatchResponse{progress(9)})...)
	expectOnly(t, Check(&b.H))
}

func TestFutureWatchResumedPasses(t *testing.T) {
	b := base()
	evs := goodEvents()
	// The first stream heard progress at 3 only and broke; the client
	// resumes at its start revision 5, not at 4.
	futureWatch(b, 1, history.WatchResponse{Canceled: true, Error: "no leader"})
	b.watch(1, "/kv/", prefixEnd, 5, true, slices.Concat([]history.WatchResponse{progress(4)}, evs[3:5], []history.WatchResponse{progress(6)})...)
	b.watch(1, "/kv/", prefixEnd, 7, true, evs[5:]...)
	expectOnly(t, Check(&b.H))
}

func TestFutureWatchGapFailsReliable(t *testing.T) {
	b := base()
	evs := goodEvents()
	// The delete of b at revision 5 is missing, though the watch asked for
	// revision 5 on.
	futureWatch(b, 1, slices.Concat(evs[4:], []history.WatchResponse{progress(9)})...)
	expectOnly(t, Check(&b.H), Reliable, Resumable)
}

func TestFutureWatchMidGapFailsReliable(t *testing.T) {
	b := base()
	evs := goodEvents()
	futureWatch(b, 1, evs[3], evs[4], evs[6], evs[7], progress(9))
	expectOnly(t, Check(&b.H), Reliable)
}

func TestFutureWatchEventBeforeStartFails(t *testing.T) {
	b := base()
	evs := goodEvents()
	futureWatch(b, 1, evs[2:]...)
	expectOnly(t, Check(&b.H), Resumable)
}

func TestFutureWatchDuplicateFailsUnique(t *testing.T) {
	b := base()
	evs := goodEvents()
	futureWatch(b, 1, evs[3], evs[4], evs[4])
	expectOnly(t, Check(&b.H), Unique, Atomic)
}

// A watch resumed on another member hears that member's revision, which may
// lag the last stream's: not a violation; within one stream it is.
func TestProgressBackwardsAcrossMembersPasses(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, slices.Concat(evs[:5], []history.WatchResponse{progress(6)})...)
	w := b.watch(1, "/kv/", prefixEnd, 7, true, slices.Concat([]history.WatchResponse{progress(5)}, evs[5:])...)
	w.Endpoint = "127.0.0.1:2381"
	expectOnly(t, Check(&b.H))
}

func TestProgressBackwardsInOneStreamFails(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, slices.Concat(evs[:5], []history.WatchResponse{progress(6), progress(5)})...)
	expectOnly(t, Check(&b.H), Bookmarkable)
}

func TestEventBelowProgressAcrossMembersFails(t *testing.T) {
	b := base()
	evs := goodEvents()
	b.watch(1, "/kv/", prefixEnd, 2, true, slices.Concat(evs[:5], []history.WatchResponse{progress(6)})...)
	// The resumed stream on another member delivers revision 6 again,
	// which the first stream's progress notification had vouched for.
	w := b.watch(1, "/kv/", prefixEnd, 7, true, evs[4:]...)
	w.Endpoint = "127.0.0.1:2381"
	expectOnly(t, Check(&b.H), Bookmarkable, Resumable, Unique)
}
