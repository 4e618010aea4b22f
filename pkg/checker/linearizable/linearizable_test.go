package linearizable

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// builder writes small histories by hand. Times are in arbitrary units.
type builder struct{ h history.History }

func (b *builder) add(op history.Operation) int64 {
	op.ID = int64(len(b.h.Operations) + 1)
	if op.Outcome == "" {
		op.Outcome = history.OK
	}
	if op.Outcome == history.Unknown && op.Return == 0 {
		op.Return = op.Call + 1000
	}
	b.h.Operations = append(b.h.Operations, op)
	return op.ID
}

func (b *builder) put(c int, call, ret int64, key, val string, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Put, Key: key, Value: val, Call: call, Return: ret, Resp: &history.Response{Revision: rev}})
}

func (b *builder) putUnknown(c int, call int64, key, val string) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Put, Key: key, Value: val, Call: call, Outcome: history.Unknown})
}

func (b *builder) putLease(c int, call, ret int64, key, val string, lease, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Put, Key: key, Value: val, Lease: lease, Call: call, Return: ret, Resp: &history.Response{Revision: rev}})
}

func kv(key, val string, mod int64) history.KV {
	return history.KV{Key: key, Value: val, ModRevision: mod}
}

func (b *builder) get(c int, call, ret int64, key string, rev int64, kvs ...history.KV) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Get, Key: key, Call: call, Return: ret, Resp: &history.Response{Revision: rev, KVs: kvs, Count: int64(len(kvs))}})
}

func (b *builder) txn(c int, call, ret int64, key string, expect int64, val string, ok bool, rev int64, kvs ...history.KV) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Txn, Key: key, ExpectModRev: expect, Value: val, Call: call, Return: ret,
		Resp: &history.Response{Revision: rev, Succeeded: ok, KVs: kvs}})
}

func (b *builder) del(c int, call, ret int64, key string, deleted, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Delete, Key: key, Call: call, Return: ret, Resp: &history.Response{Revision: rev, Deleted: deleted}})
}

// cdel is a txn that deletes key if its mod revision is expect, else gets
// it: the apiserver's delete.
func (b *builder) cdel(c int, call, ret int64, key string, expect int64, ok bool, deleted, rev int64, kvs ...history.KV) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Txn, Key: key, ExpectModRev: expect, Then: history.Delete, Call: call, Return: ret,
		Resp: &history.Response{Revision: rev, Succeeded: ok, Deleted: deleted, KVs: kvs}})
}

func (b *builder) cdelUnknown(c int, call int64, key string, expect int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Txn, Key: key, ExpectModRev: expect, Then: history.Delete, Call: call, Outcome: history.Unknown})
}

func (b *builder) grant(c int, call, ret int64, lease, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.LeaseGrant, TTL: 3600, Call: call, Return: ret, Resp: &history.Response{Revision: rev, LeaseID: lease, TTL: 3600}})
}

func (b *builder) revoke(c int, call, ret int64, lease, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.LeaseRevoke, Lease: lease, Call: call, Return: ret, Resp: &history.Response{Revision: rev}})
}

func (b *builder) history() *history.History {
	h := b.h
	h.Operations = append([]history.Operation(nil), b.h.Operations...)
	h.SortOperations()
	return &h
}

// bothAgree runs the fast path alone and porcupine alone and requires both
// to reach want; it returns the fast path's check.
func bothAgree(t *testing.T, h *history.History, want verdict.Status) verdict.Check {
	t.Helper()
	ctx := context.Background()
	fast := Check(ctx, h, Options{mode: modeFastOnly})
	exh := Check(ctx, h, Options{mode: modePorcupineOnly, Timeout: time.Minute})
	if exh.Status != want {
		t.Fatalf("porcupine: got %s, want %s: %s %v", exh.Status, want, exh.Summary, exh.Violations)
	}
	if fast.Status != want {
		t.Fatalf("fast path: got %s, want %s: %s %v", fast.Status, want, fast.Summary, fast.Violations)
	}
	return fast
}

func TestAccepts(t *testing.T) {
	cases := map[string]func(b *builder){
		"concurrent overlapping ops": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.get(1, 5, 15, "/kv/a", 2, kv("/kv/a", "v1", 2))
			b.put(2, 8, 20, "/kv/a", "v2", 3)
			b.get(1, 16, 25, "/kv/a", 3, kv("/kv/a", "v2", 3))
			b.get(0, 11, 30, "/kv/a", 2, kv("/kv/a", "v1", 2))
		},
		"unknown write that happened": func(b *builder) {
			b.putUnknown(0, 0, "/kv/a", "v1")
			b.get(1, 10, 20, "/kv/a", 2, kv("/kv/a", "v1", 2))
		},
		"unknown write that did not happen": func(b *builder) {
			b.putUnknown(0, 0, "/kv/a", "v1")
			b.get(1, 10, 20, "/kv/a", 1)
			b.put(1, 30, 40, "/kv/a", "v2", 2)
		},
		"unknown write overwritten before anyone read it": func(b *builder) {
			b.putUnknown(0, 0, "/kv/a", "v1")
			b.put(1, 10, 20, "/kv/a", "v2", 3)
			b.get(1, 30, 40, "/kv/a", 3, kv("/kv/a", "v2", 3))
		},
		"unknown delete a later read needs": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.add(history.Operation{ClientID: 1, Kind: history.Delete, Key: "/kv/a", Call: 15, Outcome: history.Unknown})
			b.get(2, 30, 40, "/kv/a", 3)
		},
		"cas success and failure": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.txn(1, 20, 30, "/kv/a", 2, "v2", true, 3)
			b.txn(0, 40, 50, "/kv/a", 2, "v3", false, 3, kv("/kv/a", "v2", 3))
			b.txn(2, 60, 70, "/kv/b", 0, "v4", true, 4)
		},
		"conditional delete: success, conflict, absent key": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 11, 20, "/kv/a", "v2", 3)
			b.cdel(1, 25, 30, "/kv/a", 2, false, 0, 3, kv("/kv/a", "v2", 3))
			b.cdel(1, 40, 50, "/kv/a", 3, true, 1, 4)
			b.cdel(2, 60, 70, "/kv/a", 0, true, 0, 4)
			b.cdel(2, 80, 90, "/kv/a", 3, false, 0, 4)
			b.put(0, 100, 110, "/kv/b", "v3", 5)
		},
		"unknown conditional delete a later read needs": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.cdelUnknown(1, 15, "/kv/a", 2)
			b.get(2, 30, 40, "/kv/a", 3)
		},
		"unknown conditional delete whose compare failed": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 11, 20, "/kv/a", "v2", 3)
			b.cdelUnknown(1, 25, "/kv/a", 2)
			b.get(2, 40, 50, "/kv/a", 3, kv("/kv/a", "v2", 3))
			b.put(0, 60, 70, "/kv/b", "v3", 4)
		},
		"lease revoke deletes attached keys": func(b *builder) {
			b.grant(0, 0, 10, 100, 1)
			b.putLease(0, 20, 30, "/lease-keep/a", "v1", 100, 2)
			b.putLease(1, 20, 30, "/lease-keep/b", "v2", 100, 3)
			b.revoke(0, 40, 50, 100, 4)
			b.get(1, 60, 70, "/lease-keep/a", 4)
			b.put(1, 80, 90, "/kv/a", "v3", 5)
		},
		"revoke of a lease without keys keeps the revision": func(b *builder) {
			b.grant(0, 0, 10, 100, 1)
			b.put(1, 0, 10, "/kv/a", "v1", 2)
			b.revoke(0, 20, 30, 100, 2)
		},
		"lease expiry deletes attached keys": func(b *builder) {
			b.add(history.Operation{ClientID: 0, Kind: history.LeaseGrant, TTL: 1, Call: 0, Return: 10, Resp: &history.Response{Revision: 1, LeaseID: 100, TTL: 1}})
			b.putLease(0, 20, 30, "/lease-expire/a", "v1", 100, 2)
			b.get(1, 2e9, 2e9+10, "/lease-expire/a", 3)
		},
		"range with limit and count": func(b *builder) {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 11, 20, "/kv/b", "v2", 3)
			b.add(history.Operation{ClientID: 1, Kind: history.Range, Key: "/kv/", End: "/kv0", Limit: 1, Call: 30, Return: 40,
				Resp: &history.Response{Revision: 3, KVs: []history.KV{kv("/kv/a", "v1", 2)}, Count: 2}})
		},
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			b := &builder{}
			fill(b)
			c := bothAgree(t, b.history(), verdict.Pass)
			if !strings.Contains(c.Summary, "fast path") {
				t.Errorf("summary does not say which path decided: %s", c.Summary)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	cases := map[string]func(b *builder) int64{ // returns the op the violation must name
		"stale read": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 20, 30, "/kv/a", "v2", 3)
			return b.get(1, 40, 50, "/kv/a", 3, kv("/kv/a", "v1", 2))
		},
		"lost acknowledged write": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			return b.get(1, 20, 30, "/kv/a", 1)
		},
		"revision going backwards": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 11, 19, "/kv/b", "v2", 3)
			b.get(1, 20, 30, "/kv/b", 3, kv("/kv/b", "v2", 3))
			return b.get(1, 40, 50, "/kv/a", 2, kv("/kv/a", "v1", 2))
		},
		"read of a value never written": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			return b.get(1, 20, 30, "/kv/a", 2, kv("/kv/a", "ghost", 2))
		},
		"cas succeeded against the wrong mod revision": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 20, 30, "/kv/a", "v2", 3)
			return b.txn(1, 40, 50, "/kv/a", 2, "v3", true, 4)
		},
		"conditional delete succeeded although the mod revision had moved": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.put(0, 20, 30, "/kv/a", "v2", 3)
			return b.cdel(1, 40, 50, "/kv/a", 2, true, 1, 4)
		},
		"conditional delete failed although the mod revision held": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			return b.cdel(1, 20, 30, "/kv/a", 2, false, 0, 2, kv("/kv/a", "v1", 2))
		},
		"conditional delete of a present key that deleted nothing": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			return b.cdel(1, 20, 30, "/kv/a", 0, true, 0, 2)
		},
		"read of a key a conditional delete removed": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			b.cdel(1, 20, 30, "/kv/a", 2, true, 1, 3)
			return b.get(2, 40, 50, "/kv/a", 3, kv("/kv/a", "v1", 2))
		},
		"header revision inconsistent": func(b *builder) int64 {
			b.put(0, 0, 10, "/kv/a", "v1", 2)
			return b.get(1, 20, 30, "/kv/a", 3, kv("/kv/a", "v1", 2))
		},
		"write surviving a revoked lease": func(b *builder) int64 {
			b.grant(0, 0, 10, 100, 1)
			b.putLease(0, 20, 30, "/lease-keep/a", "v1", 100, 2)
			b.revoke(0, 40, 50, 100, 3)
			return b.get(1, 60, 70, "/lease-keep/a", 3, kv("/lease-keep/a", "v1", 2))
		},
	}
	for name, fill := range cases {
		t.Run(name, func(t *testing.T) {
			b := &builder{}
			bad := fill(b)
			c := bothAgree(t, b.history(), verdict.Fail)
			if len(c.Violations) == 0 || !strings.Contains(strings.Join(c.Violations, "\n"), fmt.Sprintf("op %d ", bad)) {
				t.Errorf("violations do not name op %d: %q", bad, c.Violations)
			}
		})
	}
}

// An unknown conditional delete whose compare had failed cannot explain a
// key gone missing. The fast path leaves a gap that an unknown write
// might fill to the search; the search must find that none does.
func TestUnknownConditionalDeleteCannotExplainAMissingKey(t *testing.T) {
	b := &builder{}
	b.put(0, 0, 10, "/kv/a", "v1", 2)
	b.put(0, 11, 20, "/kv/a", "v2", 3)
	b.cdelUnknown(1, 25, "/kv/a", 2)
	b.get(2, 40, 50, "/kv/a", 4)
	for _, m := range []mode{modeAuto, modePorcupineOnly} {
		if c := Check(context.Background(), b.history(), Options{mode: m, Timeout: time.Minute}); c.Status != verdict.Fail {
			t.Errorf("mode %d: got %s, want fail: %s", m, c.Status, c.Summary)
		}
	}
	// The same delete on the revision the key held explains it.
	b = &builder{}
	b.put(0, 0, 10, "/kv/a", "v1", 2)
	b.put(0, 11, 20, "/kv/a", "v2", 3)
	b.cdelUnknown(1, 25, "/kv/a", 3)
	b.get(2, 40, 50, "/kv/a", 4)
	bothAgree(t, b.history(), verdict.Pass)
}

func TestFailureWritesVisualization(t *testing.T) {
	b := &builder{}
	b.put(0, 0, 10, "/kv/a", "v1", 2)
	bad := b.get(1, 20, 30, "/kv/a", 1)
	h := b.history()
	h.Faults = []history.Fault{{ID: 1, Nemesis: "partition", Action: "isolate leader", Start: 5, End: 25}}
	dir := t.TempDir()
	for _, m := range []mode{modeAuto, modePorcupineOnly} {
		os.Remove(filepath.Join(dir, VisualizationFile))
		c := Check(context.Background(), h, Options{ArtifactDir: dir, mode: m})
		if c.Status != verdict.Fail {
			t.Fatalf("mode %d: got %s, want fail", m, c.Status)
		}
		data, err := os.ReadFile(filepath.Join(dir, VisualizationFile))
		if err != nil {
			t.Fatalf("mode %d: no visualisation: %v", m, err)
		}
		if !strings.Contains(string(data), "isolate leader") {
			t.Errorf("mode %d: visualisation lacks the fault annotation", m)
		}
		if c.Artifacts["visualization"] != VisualizationFile {
			t.Errorf("mode %d: artifacts = %v", m, c.Artifacts)
		}
		if m == modePorcupineOnly && !strings.Contains(c.Violations[0], fmt.Sprintf("op %d ", bad)) {
			t.Errorf("porcupine explanation does not name op %d: %s", bad, c.Violations[0])
		}
	}
}

func TestTimeoutIsUnknown(t *testing.T) {
	// Many overlapping unknown writes make porcupine try every subset of
	// them before the read; a nanosecond budget must give Unknown.
	b := &builder{}
	for i := 0; i < 24; i++ {
		b.putUnknown(i, int64(i), fmt.Sprintf("/kv/a%02d", i), fmt.Sprintf("u%d", i))
	}
	b.get(99, 100, 110, "/kv/b", 1)
	c := Check(context.Background(), b.history(), Options{mode: modePorcupineOnly, Timeout: time.Nanosecond})
	if c.Status != verdict.Unknown || !strings.Contains(c.Summary, "timed out") {
		t.Fatalf("got %s (%s), want unknown saying it timed out", c.Status, c.Summary)
	}
}

func TestSerializableReads(t *testing.T) {
	b := &builder{}
	b.put(0, 0, 10, "/kv/a", "v1", 2)
	b.put(0, 20, 30, "/kv/a", "v2", 3)
	id := b.get(1, 40, 50, "/kv/a", 2, kv("/kv/a", "v1", 2))
	h := b.history()
	for i := range h.Operations {
		if h.Operations[i].ID == id {
			h.Operations[i].Serializable = true
		}
	}
	if c := Check(context.Background(), h, Options{}); c.Status != verdict.Pass {
		t.Fatalf("stale serializable read must be left out by default: %s %v", c.Summary, c.Violations)
	}
	c := Check(context.Background(), h, Options{IncludeSerializable: true})
	if c.Status != verdict.Fail {
		t.Fatalf("with IncludeSerializable a stale serializable read must fail: %s", c.Summary)
	}
}

func TestSkippedWhenEmpty(t *testing.T) {
	if c := Check(context.Background(), &history.History{}, Options{}); c.Status != verdict.Skipped {
		t.Fatalf("got %s, want skipped", c.Status)
	}
}
