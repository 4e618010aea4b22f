package durability

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// b builds histories with increasing times, one op after another.
type b struct {
	h   history.History
	now int64
}

func (x *b) op(o history.Operation) *b {
	x.now += 10
	o.ID = int64(len(x.h.Operations) + 1)
	o.Call, o.Return = x.now, x.now+5
	if o.Outcome == "" {
		o.Outcome = history.OK
	}
	x.h.Operations = append(x.h.Operations, o)
	return x
}

func (x *b) put(key, val string, rev int64) *b {
	return x.op(history.Operation{Kind: history.Put, Key: key, Value: val, Resp: &history.Response{Revision: rev}})
}

func (x *b) final(rev int64, kvs ...history.KV) *b {
	return x.op(history.Operation{Kind: history.Range, Key: "/kv/", End: "/kv0", Resp: &history.Response{Revision: rev, KVs: kvs}})
}

func kv(k, v string, rev int64) history.KV { return history.KV{Key: k, Value: v, ModRevision: rev} }

func TestAcceptsEveryWriteReadable(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/b", "2", 3).put("/kv/a", "3", 4).
		op(history.Operation{Kind: history.Delete, Key: "/kv/b", Resp: &history.Response{Revision: 5, Deleted: 1}}).
		final(5, kv("/kv/a", "3", 4))
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", c.Status, c.Violations)
	}
}

func TestAcceptsUnknownWriteThatOverwrote(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).
		op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "2", Outcome: history.Unknown}).
		final(3, kv("/kv/a", "2", 3))
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", c.Status, c.Violations)
	}
}

func TestRejectsLostWrite(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/a", "2", 3).final(3, kv("/kv/a", "1", 2))
	c := Check(&x.h)
	if c.Status != verdict.Fail || !strings.Contains(c.Summary, "LOST ACKNOWLEDGED WRITES") || !strings.Contains(c.Violations[0], `"2" at revision 3`) {
		t.Fatalf("want lost write of /kv/a=2, got %s %q %v", c.Status, c.Summary, c.Violations)
	}
}

func TestRejectsEmptyNewCluster(t *testing.T) {
	// All pods deleted without persistence: the members bootstrap a new,
	// empty cluster and the final read sees nothing at revision 1.
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/b", "2", 3).final(1)
	c := Check(&x.h)
	if c.Status != verdict.Fail {
		t.Fatal("want fail")
	}
	joined := strings.Join(c.Violations, "\n")
	if !strings.Contains(joined, "revision went backwards") || !strings.Contains(c.Summary, "2 of 2 keys") {
		t.Fatalf("summary %q violations %v", c.Summary, c.Violations)
	}
}

func TestSkipsWithoutFinalRead(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2)
	if c := Check(&x.h); c.Status != verdict.Skipped {
		t.Fatalf("want skipped, got %s", c.Status)
	}
}

func TestAcceptsLeasedKeyGoneByExpiry(t *testing.T) {
	x := (&b{}).op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "1", Lease: 7, Resp: &history.Response{Revision: 2}}).
		final(3)
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("a leased key may expire: got %s %v", c.Status, c.Violations)
	}
	// Without a lease, the same absence is a lost write.
	y := (&b{}).put("/kv/a", "1", 2).final(3)
	if c := Check(&y.h); c.Status != verdict.Fail {
		t.Fatal("an unleased key that vanished is a lost write")
	}
}
