package serializable

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/history/historytest"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

const ms1 = int64(time.Millisecond)

// builder assembles histories; times are in milliseconds, each operation
// takes 1ms.
type builder struct{ historytest.Builder }

func (b *builder) add(atMs int64, op history.Operation) *builder {
	op.Call, op.Return = atMs*ms1, atMs*ms1+ms1
	b.Add(op)
	return b
}

func (b *builder) put(atMs int64, key, value string, rev int64, member uint64) *builder {
	return b.add(atMs, history.Operation{Kind: history.Put, Key: key, Value: value, Resp: &history.Response{Revision: rev, MemberID: member}})
}

// sget is a serializable get served by member that returns value at mod
// (nothing when value is "") with header revision hdr.
func (b *builder) sget(atMs int64, key, value string, mod, hdr int64, member uint64) *builder {
	r := &history.Response{Revision: hdr, MemberID: member}
	if value != "" {
		r.KVs = []history.KV{{Key: key, Value: value, ModRevision: mod}}
	}
	return b.add(atMs, history.Operation{Kind: history.Get, Key: key, Serializable: true, Resp: r})
}

func check(t *testing.T, b *builder, want verdict.Status, mentions ...string) {
	t.Helper()
	c := Check(&b.H)
	all := c.Summary + "\n" + strings.Join(c.Violations, "\n")
	if c.Status != want {
		t.Fatalf("status %s, want %s:\n%s", c.Status, want, all)
	}
	for _, m := range mentions {
		if !strings.Contains(all, m) {
			t.Errorf("%q not mentioned in:\n%s", m, all)
		}
	}
}

// Two members: member 1 is up to date, member 2 lags behind.
func lagging() *builder {
	b := &builder{}
	b.put(0, "/kv/a", "a1", 2, 1).put(10, "/kv/a", "a2", 3, 1).put(20, "/kv/b", "b1", 4, 1)
	return b
}

func TestAccepts(t *testing.T) {
	t.Run("stale reads of a lagging member", func(t *testing.T) {
		b := lagging()
		b.sget(30, "/kv/a", "a1", 2, 2, 2) // member 2 has applied only revision 2
		b.sget(31, "/kv/b", "", 0, 2, 2)   // and does not know /kv/b yet
		b.sget(32, "/kv/a", "a2", 3, 3, 2)
		b.sget(33, "/kv/a", "a2", 3, 4, 1)
		check(t, b, verdict.Pass, "4 serializable reads served by 2 members", "3 were stale")
	})
	t.Run("a value whose write was still in flight", func(t *testing.T) {
		b := lagging()
		b.add(40, history.Operation{Kind: history.Put, Key: "/kv/a", Value: "a3", Outcome: history.Unknown})
		b.sget(39, "/kv/a", "a3", 5, 5, 1) // sent before, answered after the put was sent
		b.H.Operations[len(b.H.Operations)-1].Return = 41 * ms1
		check(t, b, verdict.Pass)
	})
	t.Run("members at different revisions", func(t *testing.T) {
		b := lagging()
		b.sget(30, "/kv/a", "a2", 3, 4, 1).sget(31, "/kv/a", "a1", 2, 2, 2).sget(32, "/kv/a", "a2", 3, 4, 1)
		check(t, b, verdict.Pass)
	})
	t.Run("no serializable reads", func(t *testing.T) {
		check(t, lagging(), verdict.Skipped)
	})
}

func TestRejects(t *testing.T) {
	// Issue 17 item 1: the value of an acknowledged put sent 7-180ms after
	// the read returned.
	for _, after := range []int64{7, 60, 180} {
		t.Run(fmt.Sprintf("value from the future %dms", after), func(t *testing.T) {
			b := lagging()
			b.sget(30, "/kv/a", "a3", 5, 5, 2)
			b.put(31+after, "/kv/a", "a3", 5, 1)
			check(t, b, verdict.Fail, "from the future", fmt.Sprintf("%dms after the read returned", after))
		})
	}
	t.Run("value of a failed write", func(t *testing.T) {
		b := lagging()
		b.add(25, history.Operation{Kind: history.Put, Key: "/kv/a", Value: "a9", Outcome: history.Fail, Error: "etcdserver: too many requests"})
		b.sget(30, "/kv/a", "a9", 5, 5, 2)
		check(t, b, verdict.Fail, "which failed")
	})
	t.Run("value of a txn that took its else branch", func(t *testing.T) {
		b := lagging()
		b.add(25, history.Operation{Kind: history.Txn, Key: "/kv/a", Value: "a9", ExpectModRev: 2, Resp: &history.Response{Revision: 4, Succeeded: false,
			KVs: []history.KV{{Key: "/kv/a", Value: "a2", ModRevision: 3}}}})
		b.sget(30, "/kv/a", "a9", 5, 5, 2)
		check(t, b, verdict.Fail, "whose compare failed")
	})
	t.Run("value never written", func(t *testing.T) {
		check(t, lagging().sget(30, "/kv/a", "zz", 3, 4, 2), verdict.Fail, "no recorded operation wrote")
	})
	t.Run("old value at a revision that had the new one", func(t *testing.T) {
		check(t, lagging().sget(30, "/kv/a", "a1", 2, 4, 2), verdict.Fail, "a state no member had", `put "/kv/a"="a2"@3`)
	})
	t.Run("key missing at a revision where it certainly existed", func(t *testing.T) {
		check(t, lagging().sget(30, "/kv/b", "", 0, 4, 2), verdict.Fail, `found "/kv/b" missing at header revision 4`)
	})
	t.Run("mod revision above the header", func(t *testing.T) {
		check(t, lagging().sget(30, "/kv/a", "a2", 3, 2, 1), verdict.Fail, "above its own header revision")
	})
	t.Run("member goes backwards", func(t *testing.T) {
		b := lagging()
		b.sget(30, "/kv/a", "a2", 3, 3, 2).sget(40, "/kv/a", "a1", 2, 2, 2)
		check(t, b, verdict.Fail, "member 2 went backwards", "at revision 3", "answered at revision 2")
	})
	t.Run("member goes below a write it applied", func(t *testing.T) {
		b := lagging()
		b.sget(30, "/kv/a", "a1", 2, 2, 1) // member 1 had answered the put of /kv/b at 4
		check(t, b, verdict.Fail, "member 1 went backwards", "put op 3")
	})
}

var recorded = sync.OnceValues(func() (map[string]*history.History, error) {
	files, _ := filepath.Glob("testdata/*-pass.jsonl.gz")
	if len(files) == 0 {
		return nil, errors.New("no recorded histories in testdata")
	}
	out := map[string]*history.History{}
	for _, f := range files {
		h, err := history.Load(f)
		if err != nil {
			return nil, err
		}
		out[filepath.Base(f)] = h
	}
	return out, nil
})

// loadRecorded returns the recorded runs, loaded once; tests must not
// change them (clone first).
func loadRecorded(t *testing.T) map[string]*history.History {
	t.Helper()
	hs, err := recorded()
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// Real runs under partitions, pauses and a rolling restart: hundreds of
// stale reads, every one a state its member had committed.
func TestAcceptsRecordedRuns(t *testing.T) {
	for name, h := range loadRecorded(t) {
		c := Check(h)
		t.Logf("%s: %s", name, c.Summary)
		if c.Status != verdict.Pass || !strings.Contains(c.Summary, "were stale") || strings.Contains(c.Summary, " 0 were stale") {
			t.Errorf("%s: want a pass with stale reads, got %s: %s %v", name, c.Status, c.Summary, c.Violations)
		}
	}
}

func clone(h *history.History) *history.History {
	c := *h
	c.Operations = append([]history.Operation(nil), h.Operations...)
	return &c
}

func serializableGets(h *history.History) []int {
	var out []int
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Serializable && op.Kind == history.Get && op.Outcome == history.OK && op.Resp.MemberID != 0 {
			out = append(out, i)
		}
	}
	return out
}

// The corruption of issue 17 item 1 on real runs: one serializable get
// returns the value of an acknowledged put to its key sent 7-180ms after
// the get returned, at that put's revision.
func TestRejectsFutureValueInRecordedRuns(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	for name, h := range loadRecorded(t) {
		made := 0
		for _, i := range serializableGets(h) {
			if rnd.IntN(8) != 0 || made >= 4 {
				continue
			}
			g := h.Operations[i]
			var put *history.Operation
			for j := range h.Operations {
				p := &h.Operations[j]
				d := p.Call - g.Return
				if p.Kind == history.Put && p.Key == g.Key && p.Outcome == history.OK && d >= 7*ms1 && d <= 180*ms1 {
					put = p
					break
				}
			}
			if put == nil {
				continue
			}
			made++
			bad := clone(h)
			r := *g.Resp
			r.Revision = put.Resp.Revision
			r.KVs = []history.KV{{Key: put.Key, Value: put.Value, ModRevision: put.Resp.Revision, Lease: put.Lease}}
			bad.Operations[i].Resp = &r
			c := Check(bad)
			if c.Status != verdict.Fail || !strings.Contains(strings.Join(c.Violations, "\n"), "from the future") {
				t.Errorf("%s (seed %d): op %d reading %q from put op %d sent %s after it returned: got %s %s %v",
					name, seed, g.ID, put.Value, put.ID, time.Duration(put.Call-g.Return), c.Status, c.Summary, c.Violations)
			}
		}
		if made == 0 {
			t.Errorf("%s (seed %d): no read could be corrupted", name, seed)
		}
	}
}

// One member's read answers with the state of an older read, on the same
// key: a state that really existed, but older than one that member had
// already served.
func TestRejectsNonMonotonicMemberInRecordedRuns(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	for name, h := range loadRecorded(t) {
		gets := serializableGets(h)
		made := 0
		for n := 0; n < 200 && made < 4; n++ {
			bi := gets[rnd.IntN(len(gets))]
			b := h.Operations[bi]
			// The highest revision b's member had answered before b was sent.
			var high int64
			for j := range h.Operations {
				op := &h.Operations[j]
				if op.Outcome == history.OK && op.Resp != nil && op.Resp.MemberID == b.Resp.MemberID && op.Return < b.Call && op.Kind != history.LeaseKeepAlive && op.Kind != history.LeaseGrant && op.Kind != history.LeaseRevoke {
					high = max(high, op.Resp.Revision)
				}
			}
			var older *history.Operation
			for _, ci := range gets {
				c := &h.Operations[ci]
				if c.Key == b.Key && c.Return < b.Call && c.Resp.Revision < high {
					older = c
					break
				}
			}
			if older == nil {
				continue
			}
			made++
			bad := clone(h)
			r := *older.Resp
			r.MemberID = b.Resp.MemberID
			bad.Operations[bi].Resp = &r
			c := Check(bad)
			if c.Status != verdict.Fail || !strings.Contains(strings.Join(c.Violations, "\n"), "went backwards") {
				t.Errorf("%s (seed %d): op %d given op %d's answer at revision %d after its member answered at %d: got %s %s %v",
					name, seed, b.ID, older.ID, older.Resp.Revision, high, c.Status, c.Summary, c.Violations)
			}
		}
		if made == 0 {
			t.Errorf("%s (seed %d): no read could be corrupted", name, seed)
		}
	}
}

// A linearizable read is also a valid serializable one: simulated traffic
// (timeouts, failures, leases) with every get marked serializable passes,
// and the simulator's stale-read bug (an old value at the current header
// revision, a state no member had) fails.
func TestSimulatedHistories(t *testing.T) {
	mark := func(h *history.History) *history.History {
		for i := range h.Operations {
			if h.Operations[i].Kind == history.Get {
				h.Operations[i].Serializable = true
			}
		}
		return h
	}
	for seed := int64(1); seed <= 30; seed++ {
		cfg := histgen.Config{Ops: 1500, Clients: 6, Seed: seed, UnknownRate: 0.25, CondDeletes: seed%2 == 0}
		if c := Check(mark(histgen.Generate(cfg))); c.Status != verdict.Pass {
			t.Errorf("seed %d: %s %s %v", seed, c.Status, c.Summary, c.Violations)
		}
		cfg.Bug = histgen.StaleRead
		if c := Check(mark(histgen.Generate(cfg))); c.Status != verdict.Fail {
			t.Errorf("seed %d: the injected stale read at the current revision was not reported: %s %s", seed, c.Status, c.Summary)
		}
	}
}

// getAt is a linearizable get of key at revision rev answered with value
// at mod (nothing when value is "") and header hdr.
func (b *builder) getAt(atMs int64, key string, rev int64, value string, mod, hdr int64) *builder {
	r := &history.Response{Revision: hdr, MemberID: 1}
	if value != "" {
		r.KVs = []history.KV{{Key: key, Value: value, ModRevision: mod}}
	}
	return b.add(atMs, history.Operation{Kind: history.Get, Key: key, Revision: rev, Resp: r})
}

// rangeAt is a page of the /kv/ prefix from key at revision rev, at most
// limit keys, answered with kvs.
func (b *builder) rangeAt(atMs int64, key string, limit, rev int64, kvs ...history.KV) *builder {
	return b.add(atMs, history.Operation{Kind: history.Range, Key: key, End: "/kv0", Limit: limit, Revision: rev,
		Resp: &history.Response{Revision: 4, KVs: kvs, MemberID: 1}})
}

// refusedAt is a get at revision rev that etcd refused with msg.
func (b *builder) refusedAt(atMs int64, key string, rev int64, msg string) *builder {
	return b.add(atMs, history.Operation{Kind: history.Get, Key: key, Revision: rev, Outcome: history.Fail,
		Error: "etcdserver: mvcc: " + msg})
}

// atRevision is lagging's writes (a1@2, a2@3, b1@4) in a run that records
// every compaction.
func atRevision() *builder {
	b := lagging()
	b.H.Meta.Compactions = history.CompactionsRecorded
	return b
}

func TestReadsAtRevisionAccepted(t *testing.T) {
	b := atRevision()
	b.getAt(30, "/kv/a", 2, "a1", 2, 4)
	b.getAt(31, "/kv/b", 3, "", 0, 4)
	b.getAt(32, "/kv/a", 4, "a2", 3, 4)
	b.rangeAt(33, "/kv/", 1, 4, history.KV{Key: "/kv/a", Value: "a2", ModRevision: 3})
	b.rangeAt(34, "/kv/a\x00", 1, 4, history.KV{Key: "/kv/b", Value: "b1", ModRevision: 4})
	b.rangeAt(35, "/kv/", 5, 3, history.KV{Key: "/kv/a", Value: "a2", ModRevision: 3})
	b.add(36, history.Operation{Kind: history.Compact, Revision: 3, Resp: &history.Response{Revision: 4}})
	b.refusedAt(37, "/kv/a", 2, errCompacted)
	b.refusedAt(38, "/kv/a", 9, errFutureRev)
	b.add(39, history.Operation{Kind: history.Get, Key: "/kv/a", Revision: 2, Outcome: history.Unknown, Error: "context deadline exceeded"})
	check(t, b, verdict.Pass, "9 reads at a revision: 8 judged, 1 left unjudged")
}

func TestReadsAtRevisionRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *builder
		want string
	}{
		{"a value written after the revision", atRevision().getAt(30, "/kv/a", 2, "a2", 3, 4), "above the revision it read at"},
		{"an older value than the revision held", atRevision().getAt(30, "/kv/a", 3, "a1", 2, 4), "a state no member had"},
		{"a key missing that existed at the revision", atRevision().getAt(30, "/kv/b", 4, "", 0, 4), `found "/kv/b" missing at the revision it read at`},
		{"a short page lacking a key", atRevision().rangeAt(30, "/kv/", 2, 4, history.KV{Key: "/kv/a", Value: "a2", ModRevision: 3}), `found "/kv/b" missing`},
		{"refused as compacted with no compaction", atRevision().refusedAt(30, "/kv/a", 2, errCompacted), "no compaction above revision 2"},
		{"refused as compacted by a compaction at the revision itself",
			atRevision().add(29, history.Operation{Kind: history.Compact, Revision: 2, Resp: &history.Response{Revision: 4}}).refusedAt(30, "/kv/a", 2, errCompacted), "no compaction above revision 2"},
		{"refused as a future revision the store had reached", atRevision().refusedAt(30, "/kv/a", 3, errFutureRev), "had seen revision 4"},
		{"a header below the revision asked for", atRevision().getAt(30, "/kv/a", 5, "a2", 3, 4), "header revision 4, below the revision it asked for"},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.b, verdict.Fail, tc.want) })
	}
}

// A read refused as compacted is judged only on what the history says about
// compactions (meta.compactions, faults marked compacts), never on the
// nemesis's name: with a compaction recorded above its revision it passes;
// with none, and every compaction recorded, it fails; and where a
// compaction may have applied unrecorded before it returned, it is left
// unjudged.
func TestReadAtRevisionCompactedJudgedByRecordedCompactions(t *testing.T) {
	compactFault := func(b *builder, startMs int64) *builder {
		b.H.Faults = append(b.H.Faults, history.Fault{ID: 1, Nemesis: "kill-random", Action: "compact and crash member-1",
			Start: startMs * ms1, End: (startMs + 5) * ms1, Compacts: true})
		return b
	}
	for _, tc := range []struct {
		name   string
		b      *builder
		status verdict.Status
		want   string
	}{
		{"a recorded compact above the revision", atRevision().
			add(29, history.Operation{Kind: history.Compact, Revision: 3, Resp: &history.Response{Revision: 4}}).
			refusedAt(30, "/kv/a", 2, errCompacted), verdict.Pass, "1 reads at a revision: 1 judged, 0 left unjudged"},
		{"no compaction, every compaction recorded", atRevision().refusedAt(30, "/kv/a", 2, errCompacted),
			verdict.Fail, "no compaction above revision 2"},
		{"no compaction, whatever the nemesis is called", func() *builder {
			b := atRevision().refusedAt(30, "/kv/a", 2, errCompacted)
			b.H.Meta.Nemesis = "failpoint-compaction"
			return b
		}(), verdict.Fail, "no compaction above revision 2"},
		{"members that auto-compact", func() *builder {
			b := lagging().refusedAt(30, "/kv/a", 2, errCompacted)
			b.H.Meta.Compactions = "members run with --auto-compaction-retention=1h"
			return b
		}(), verdict.Pass, "1 reads at a revision: 0 judged, 1 left unjudged"},
		{"a history that does not say (written before meta.compactions)", func() *builder {
			b := lagging().refusedAt(30, "/kv/a", 2, errCompacted)
			b.H.Meta.Nemesis = "kill-random"
			return b
		}(), verdict.Pass, "1 reads at a revision: 0 judged, 1 left unjudged"},
		{"a compacting fault that began before the read returned",
			compactFault(atRevision(), 25).refusedAt(30, "/kv/a", 2, errCompacted), verdict.Pass, "1 reads at a revision: 0 judged, 1 left unjudged"},
		{"a compacting fault that began after the read returned",
			compactFault(atRevision(), 40).refusedAt(30, "/kv/a", 2, errCompacted), verdict.Fail, "no compaction above revision 2"},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.b, tc.status, tc.want) })
	}
}
