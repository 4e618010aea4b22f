package linearizable

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// agreeWith runs the fast path alone and porcupine alone with opts and
// requires both to reach want.
func agreeWith(t *testing.T, h *history.History, opts Options, want verdict.Status) verdict.Check {
	t.Helper()
	ctx := context.Background()
	fo, po := opts, opts
	fo.mode, po.mode, po.Timeout = modeFastOnly, modePorcupineOnly, time.Minute
	exh := Check(ctx, h, po)
	if exh.Status != want {
		t.Fatalf("porcupine: got %s, want %s: %s %v", exh.Status, want, exh.Summary, exh.Violations)
	}
	fast := Check(ctx, h, fo)
	if fast.Status != want {
		t.Fatalf("fast path: got %s, want %s: %s %v", fast.Status, want, fast.Summary, fast.Violations)
	}
	return fast
}

// gapHistory has revisions 3 and 5 taken by no recorded write, as the
// lock helpers' own puts and deletes take them.
func gapHistory() *builder {
	b := &builder{}
	b.put(0, 0, 10, "/kv/a", "v1", 2)
	b.put(1, 20, 30, "/kv/b", "v2", 4)
	b.get(2, 35, 40, "/kv/a", 5, kv("/kv/a", "v1", 2))
	b.put(0, 45, 50, "/kv/a", "v3", 6)
	b.get(1, 55, 60, "/kv/a", 6, kv("/kv/a", "v3", 6))
	return b
}

func TestForeignWrites(t *testing.T) {
	h := gapHistory().history()
	c := agreeWith(t, h, Options{}, verdict.Fail)
	t.Logf("strict: %s", c.Violations)
	c = agreeWith(t, h, Options{ForeignWrites: true}, verdict.Pass)
	if !strings.Contains(c.Summary, "foreign writes allowed: 2 revisions not claimed by recorded writes") {
		t.Fatalf("summary does not mention the foreign writes: %s", c.Summary)
	}

	// Auto-enabled by an operation on a lock key.
	b := gapHistory()
	b.get(3, 70, 80, "/lock/value", 6)
	c = agreeWith(t, b.history(), Options{}, verdict.Pass)
	if !strings.Contains(c.Summary, "foreign writes allowed") {
		t.Fatalf("foreign writes not auto-enabled: %s", c.Summary)
	}
}

func TestForeignWritesStillReject(t *testing.T) {
	cases := map[string]func(b *builder){
		"stale read": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 20, 30, "/kv/a", "v2", 4)
			b.get(1, 40, 50, "/kv/a", 6, kv("/kv/a", "v1", 2))
		},
		"lost write": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(1, 20, 30, "/kv/a", "v2", 5)
			b.get(2, 40, 50, "/kv/a", 7, kv("/kv/a", "v1", 2))
		},
		"revision regression": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.get(1, 20, 30, "/kv/b", 9)
			b.get(1, 40, 50, "/kv/b", 4)
		},
		"value never written": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.get(1, 20, 30, "/kv/a", 5, kv("/kv/a", "ghost", 4))
		},
		"wrong mod revision": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 3)
			b.get(1, 20, 30, "/kv/a", 5, kv("/kv/a", "v1", 4))
		},
		"write below a seen revision": func(b *builder) {
			b.get(1, 0, 10, "/kv/b", 9)
			b.put(0, 20, 30, "/kv/a", "v1", 5)
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			b := &builder{}
			build(b)
			c := agreeWith(t, b.history(), Options{ForeignWrites: true}, verdict.Fail)
			t.Logf("%v", c.Violations)
		})
	}
}

// restored is a history of a cluster restored at revision 500 with three
// keys: a baseline range first, then traffic.
func restored() *builder {
	b := &builder{}
	base := []history.KV{kv("/kv/k000", "old0", 120), kv("/kv/k001", "old1", 450), kv("/kv/k002", "old2", 500)}
	b.add(history.Operation{ClientID: 9, Kind: history.Range, Key: "/kv/", End: "/kv0", Call: 0, Return: 5,
		Resp: &history.Response{Revision: 500, KVs: base, Count: 3}})
	b.get(0, 10, 20, "/kv/k001", 500, kv("/kv/k001", "old1", 450))
	b.put(1, 12, 22, "/kv/k000", "new0", 501)
	b.txn(2, 30, 40, "/kv/k002", 500, "new2", true, 502)
	b.get(0, 45, 50, "/kv/k000", 502, kv("/kv/k000", "new0", 501))
	b.del(1, 45, 55, "/kv/k001", 1, 503)
	return b
}

func TestInitialStateFromBaseline(t *testing.T) {
	c := agreeWith(t, restored().history(), Options{}, verdict.Pass)
	if !strings.Contains(c.Summary, "revision 500") {
		t.Fatalf("summary does not mention the baseline: %s", c.Summary)
	}

	b := restored()
	// old2 was replaced at 502; reading it again is stale.
	b.get(3, 60, 70, "/kv/k002", 503, kv("/kv/k002", "old2", 500))
	agreeWith(t, b.history(), Options{}, verdict.Fail)

	b = restored()
	// A key the baseline did not show cannot exist.
	b.get(3, 60, 70, "/kv/k005", 503, kv("/kv/k005", "new0", 501))
	agreeWith(t, b.history(), Options{}, verdict.Fail)

	// Without the baseline read the same traffic cannot start at 500.
	b = restored()
	b.h.Operations = b.h.Operations[1:]
	if c := Check(context.Background(), b.history(), Options{mode: modeFastOnly}); c.Status == verdict.Pass {
		t.Fatalf("passed without a baseline: %s", c.Summary)
	}
	// ... unless the caller says where it starts.
	init := &InitialState{Revision: 500, KVs: []history.KV{kv("/kv/k000", "old0", 120), kv("/kv/k001", "old1", 450), kv("/kv/k002", "old2", 500)}}
	agreeWith(t, b.history(), Options{InitialState: init}, verdict.Pass)
}

func TestBaselineMustComeFirstAlone(t *testing.T) {
	b := restored()
	// An operation called before the baseline read returned: it is no
	// baseline, and the store is taken as empty.
	b.put(5, 3, 8, "/kv/k009", "x", 501)
	if init := baseline(b.history()); init != nil {
		t.Fatalf("baseline found although an operation overlaps it: %+v", init)
	}
}

// TestPorcupineMemoryLimit: with a tiny heap limit the search is abandoned
// and the verdict is Unknown, never a pass or a fail.
func TestPorcupineMemoryLimit(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 400, Clients: 8, Seed: 3, UnknownRate: 0.3, Keys: 5})
	c := Check(context.Background(), h, Options{mode: modePorcupineOnly, MemoryLimit: 1, Timeout: time.Minute})
	if c.Status != verdict.Unknown || !strings.Contains(c.Summary, "memory limit") {
		t.Fatalf("seed 3: got %s: %s", c.Status, c.Summary)
	}
}

func TestPorcupineHonoursCancel(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 400, Clients: 8, Seed: 4, UnknownRate: 0.3, Keys: 5})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := Check(ctx, h, Options{mode: modePorcupineOnly, Timeout: time.Minute})
	if c.Status != verdict.Unknown {
		t.Fatalf("seed 4: got %s: %s", c.Status, c.Summary)
	}
}

// TestPorcupineAbandonsMidSearch cancels a search that is running: the
// abort flag must unwind it and Check must return Unknown (the test would
// hang, not pass, if the search kept going to its one-minute timeout).
func TestPorcupineAbandonsMidSearch(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 3000, Clients: 16, Seed: 5, UnknownRate: 0.3, Keys: 20})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	ops, _ := selectOps(h, false)
	pr := runPorcupine(ctx, h, ops, config{}, time.Minute, DefaultMemoryLimit, "")
	if pr.abandoned == "" {
		t.Skipf("seed 5: porcupine finished (%v) before the cancel; nothing to abandon", pr.result)
	}
	t.Logf("abandoned: %s", pr.abandoned)
}

// TestPorcupineWatchdog: a search that grows the heap past the limit is
// abandoned by the sampling watchdog.
func TestPorcupineWatchdog(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 3000, Clients: 16, Seed: 5, UnknownRate: 0.3, Keys: 20})
	ops, _ := selectOps(h, false)
	pr := runPorcupine(context.Background(), h, ops, config{}, time.Minute, 4<<20, "")
	if pr.abandoned == "" {
		t.Skipf("seed 5: porcupine finished (%v) within 4 MiB; nothing to abandon", pr.result)
	}
	if !strings.Contains(pr.abandoned, "memory limit") {
		t.Fatalf("seed 5: abandoned for another reason: %s", pr.abandoned)
	}
	t.Logf("abandoned: %s", pr.abandoned)
}
