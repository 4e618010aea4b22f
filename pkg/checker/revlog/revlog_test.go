package revlog

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/history/historytest"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// builder spaces operations and watch responses 1ms apart.
type builder struct {
	historytest.Builder
	now int64
}

func (b *builder) op(op history.Operation) {
	b.now += 1e6
	op.Call, op.Return = b.now, b.now+5e5
	b.Add(op)
}

func (b *builder) put(key, value string, lease, rev int64) {
	b.op(historytest.Put(key, value, lease, rev))
}

func (b *builder) watch(key, end string, start int64, events ...history.Event) {
	w := history.Watch{ClientID: 2, Key: key, End: end, StartRevision: start}
	for _, e := range events {
		b.now += 1e6
		w.Responses = append(w.Responses, history.WatchResponse{Time: b.now, Revision: e.ModRevision, Events: []history.Event{e}})
	}
	b.AddWatch(w)
}

// base: /a created at 2, /b at 3 with lease 5, /a updated at 4, lease 5
// revoked at 5 (deleting /b), /c put at 6 by a write whose outcome is
// unknown and that only a read saw.
func base() *builder {
	b := &builder{}
	b.put("/a", "a1", 0, 2)
	b.put("/b", "b1", 5, 3)
	b.put("/a", "a2", 0, 4)
	b.op(history.Operation{Kind: history.LeaseRevoke, Lease: 5, Outcome: history.OK, Resp: &history.Response{Revision: 5}})
	b.op(history.Operation{Kind: history.Put, Key: "/c", Value: "c1", Outcome: history.Unknown})
	b.op(history.Operation{Kind: history.Get, Key: "/c", Outcome: history.OK,
		Resp: &history.Response{Revision: 6, KVs: []history.KV{{Key: "/c", Value: "c1", ModRevision: 6, CreateRevision: 6, Version: 1}}}})
	return b
}

func build(t *testing.T, h *history.History) *Log {
	t.Helper()
	l, conflicts := Build(h)
	if len(conflicts) > 0 {
		t.Fatalf("unexpected conflicts: %q", conflicts)
	}
	return l
}

func TestBuildFromOperations(t *testing.T) {
	l := build(t, &base().H)
	if l.MaxRevision() != 6 {
		t.Errorf("max revision %d, want 6", l.MaxRevision())
	}
	for rev := int64(2); rev <= 6; rev++ {
		if !l.Known(rev) {
			t.Errorf("revision %d should be known", rev)
		}
	}
	if l.Known(7) || l.Known(1) {
		t.Error("revisions 1 and 7 have no events and must not be known")
	}
	if evs := l.EventsAt(5); len(evs) != 1 || evs[0].Type != DeleteEvent || evs[0].Key != "/b" {
		t.Errorf("revision 5 = %+v, want the revoke deleting /b", evs)
	}
	if evs := l.EventsAt(4); len(evs) != 1 || evs[0].CreateRevision != 2 || evs[0].Version != 2 {
		t.Errorf("revision 4 = %+v, want /a with derived create revision 2, version 2", evs)
	}
	st := l.StateAt(4)
	if len(st) != 2 || st["/a"].Value != "a2" || st["/b"].Lease != 5 {
		t.Errorf("state at 4 = %+v", st)
	}
	if st := l.StateAt(6); len(st) != 2 || st["/c"].Value != "c1" {
		t.Errorf("state at 6 = %+v, want /a and /c", st)
	}
	kv, exists, certain := l.Before("/a", 4)
	if !exists || !certain || kv.Value != "a1" {
		t.Errorf("Before(/a, 4) = %+v %v %v", kv, exists, certain)
	}
	if _, exists, certain := l.Before("/b", 6); exists || !certain {
		t.Errorf("Before(/b, 6): exists %v certain %v, want deleted for certain", exists, certain)
	}
	if got := l.Range(3, 6, "/a", "/c"); len(got) != 3 || got[0].Key != "/b" || got[1].Key != "/a" || got[2].Key != "/b" {
		t.Errorf("Range(3, 6, [/a, /c)) = %+v", got)
	}
	if got := l.Range(0, 100, "", "\x00"); len(got) != 5 {
		t.Errorf("Range over everything has %d events, want 5", len(got))
	}
}

func TestGapsMakeStateUncertain(t *testing.T) {
	b := &builder{}
	b.put("/a", "a1", 0, 2)
	b.put("/a", "a2", 0, 5) // revisions 3 and 4: no evidence
	l := build(t, &b.H)
	if l.Known(3) || l.KnownFor(3, "/a") {
		t.Error("revision 3 has no evidence")
	}
	if _, _, certain := l.Before("/a", 5); certain {
		t.Error("state of /a before 5 cannot be certain across the gap")
	}
	// A watch on /a that saw through revisions 2..5 fills the gap for /a,
	// not for other keys.
	b.watch("/a", "", 2,
		history.Event{Type: "put", Key: "/a", Value: "a1", ModRevision: 2},
		history.Event{Type: "put", Key: "/a", Value: "a2", ModRevision: 5})
	l = build(t, &b.H)
	if !l.KnownFor(3, "/a") || l.KnownFor(3, "/b") {
		t.Error("the watch on /a covers revision 3 for /a only")
	}
	if kv, exists, certain := l.Before("/a", 5); !certain || !exists || kv.Value != "a1" {
		t.Errorf("Before(/a, 5) = %+v %v %v, want a1 for certain", kv, exists, certain)
	}
}

func TestExpiryDeletesFromWatches(t *testing.T) {
	b := &builder{}
	b.put("/lease-expire/x", "x1", 9, 2)
	b.put("/lease-expire/y", "y1", 9, 3)
	// The lease expires: one revision deletes both keys; only a watch says so.
	b.H.Watches = append(b.H.Watches, history.Watch{ID: 50, Key: "/lease-expire/", End: "/lease-expire0", StartRevision: 2,
		Responses: []history.WatchResponse{{Time: 1, Revision: 4, Events: []history.Event{
			{Type: "delete", Key: "/lease-expire/x", ModRevision: 4},
			{Type: "delete", Key: "/lease-expire/y", ModRevision: 4},
		}}}})
	l := build(t, &b.H)
	if evs := l.EventsAt(4); len(evs) != 2 {
		t.Fatalf("revision 4 = %+v, want two deletes", evs)
	}
	if l.Known(4) {
		t.Error("a prefix watch does not tell the whole revision")
	}
	if !l.KnownFor(4, "/lease-expire/x") {
		t.Error("the watch covers its own range")
	}
	if st := l.StateAt(4); len(st) != 0 {
		t.Errorf("state at 4 = %+v, want empty", st)
	}
}

func TestConflicts(t *testing.T) {
	t.Run("two writes claim one revision", func(t *testing.T) {
		b := &builder{}
		b.put("/a", "a1", 0, 2)
		b.put("/b", "b1", 0, 2)
		_, conflicts := Build(&b.H)
		if len(conflicts) != 1 || !strings.Contains(conflicts[0], "revision 2") {
			t.Errorf("conflicts %q, want one about revision 2", conflicts)
		}
	})
	t.Run("watch disagrees with an acknowledged put", func(t *testing.T) {
		b := &builder{}
		b.put("/a", "a1", 0, 2)
		b.op(history.Operation{Kind: history.Put, Key: "/a", Value: "a2", Outcome: history.Unknown})
		b.watch("/a", "", 2, history.Event{Type: "put", Key: "/a", Value: "a2", ModRevision: 2})
		_, conflicts := Build(&b.H)
		if len(conflicts) != 1 || !strings.Contains(conflicts[0], "value differs") || !strings.Contains(conflicts[0], "put op 1") {
			t.Errorf("conflicts %q, want one naming put op 1 and the value", conflicts)
		}
	})
	t.Run("agreeing evidence", func(t *testing.T) {
		b := base()
		b.watch("", "\x00", 2,
			history.Event{Type: "put", Key: "/a", Value: "a1", ModRevision: 2, CreateRevision: 2, Version: 1},
			history.Event{Type: "put", Key: "/b", Value: "b1", ModRevision: 3, CreateRevision: 3, Version: 1, Lease: 5},
			history.Event{Type: "put", Key: "/a", Value: "a2", ModRevision: 4, CreateRevision: 2, Version: 2},
			history.Event{Type: "delete", Key: "/b", ModRevision: 5},
			history.Event{Type: "put", Key: "/c", Value: "c1", ModRevision: 6, CreateRevision: 6, Version: 1})
		build(t, &b.H)
	})
}

// Issue 17: a contradiction no watch is party to (a phantom value, a
// flipped txn) is reported as kv/consistent, not as a watch failure.
func TestCheckReportsOnlyContradictionsWithoutWatches(t *testing.T) {
	b := &builder{}
	b.put("/a", "a1", 0, 2)
	b.put("/b", "b1", 0, 3)
	// A read shows /a holding b1's revision with a value nobody wrote there.
	b.op(history.Operation{Kind: history.Get, Key: "/a", Outcome: history.OK,
		Resp: &history.Response{Revision: 3, KVs: []history.KV{{Key: "/a", Value: "phantom", ModRevision: 3}}}})
	_, conflicts := Build(&b.H)
	c := Check(conflicts, 3)
	if c.Name != ConsistentName || c.Status != verdict.Fail || len(c.Violations) != 1 || !strings.Contains(c.Violations[0], "revision 3") {
		t.Fatalf("want one kv/consistent violation about revision 3, got %s %q", c.Status, c.Violations)
	}
	if TouchesWatch(conflicts[0]) {
		t.Fatalf("no watch in %q", conflicts[0])
	}

	w := &builder{}
	w.put("/a", "a1", 0, 2)
	w.op(history.Operation{Kind: history.Put, Key: "/a", Value: "a2", Outcome: history.Unknown})
	w.watch("/a", "", 2, history.Event{Type: "put", Key: "/a", Value: "a2", ModRevision: 2})
	_, conflicts = Build(&w.H)
	if len(conflicts) != 1 || !TouchesWatch(conflicts[0]) {
		t.Fatalf("want one conflict involving the watch, got %q", conflicts)
	}
	if c := Check(conflicts, 2); c.Status != verdict.Pass {
		t.Fatalf("a watch's contradiction is watch/consistent's, got %s %q", c.Status, c.Violations)
	}
}

// Recorded runs of a correct etcd hold no contradiction.
func TestRecordedHistoriesAgree(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*-pass.jsonl.gz")
	more, _ := filepath.Glob("../serializable/testdata/*-pass.jsonl.gz")
	files = append(files, more...)
	if len(more) == 0 {
		t.Fatal("recorded runs not found")
	}
	for _, f := range files {
		h, err := history.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		l, conflicts := Build(h)
		if c := Check(conflicts, l.MaxRevision()); c.Status != verdict.Pass {
			t.Errorf("%s: %s %q", filepath.Base(f), c.Summary, c.Violations)
		}
	}
}
