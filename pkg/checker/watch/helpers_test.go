package watch

import (
	"slices"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/history/historytest"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// builder assembles small histories for tests. Times advance by one
// millisecond per recorded thing so that call/return order is the order of
// the calls.
type builder struct {
	historytest.Builder
	now int64
}

func (b *builder) tick() int64 { b.now += 1e6; return b.now }

func (b *builder) op(op history.Operation) *history.Operation {
	op.Call = b.tick()
	op.Return = b.tick()
	return b.Add(op)
}

func (b *builder) put(key, value string, lease, rev int64) {
	b.op(historytest.Put(key, value, lease, rev))
}

func (b *builder) del(key string, rev int64) {
	b.op(historytest.Delete(key, 1, rev))
}

func (b *builder) revoke(lease, rev int64) {
	b.op(historytest.Revoke(lease, rev))
}

func (b *builder) watch(client int, key, end string, start int64, prevKV bool, resps ...history.WatchResponse) *history.Watch {
	w := history.Watch{ClientID: client, Key: key, End: end, StartRevision: start, PrevKV: prevKV, Endpoint: "127.0.0.1:2379", Call: b.tick()}
	for _, r := range resps {
		r.Time = b.tick()
		w.Responses = append(w.Responses, r)
	}
	return b.AddWatch(w)
}

func resp(events ...history.Event) history.WatchResponse {
	var rev int64
	for _, e := range events {
		rev = max(rev, e.ModRevision)
	}
	return history.WatchResponse{Revision: rev, Events: events}
}

func progress(rev int64) history.WatchResponse {
	return history.WatchResponse{Revision: rev, Progress: true}
}

func putEv(key, value string, mod, create, version int64, prev *history.KV) history.Event {
	return history.Event{Type: "put", Key: key, Value: value, ModRevision: mod, CreateRevision: create, Version: version, IsCreate: create == mod, PrevKV: prev}
}

func delEv(key string, mod int64, prev *history.KV) history.Event {
	return history.Event{Type: "delete", Key: key, ModRevision: mod, PrevKV: prev}
}

func kv(key, value string, mod, create, version, lease int64) *history.KV {
	return &history.KV{Key: key, Value: value, ModRevision: mod, CreateRevision: create, Version: version, Lease: lease}
}

// base records this store history, all acknowledged:
//
//	rev 2  put /kv/a=a1          rev 6  put /kv/b=b2
//	rev 3  put /kv/b=b1          rev 7  put /kv/c=c1 (lease 7)
//	rev 4  put /kv/a=a2          rev 8  put /kv/d=d1 (lease 7)
//	rev 5  delete /kv/b          rev 9  revoke lease 7: delete /kv/c, /kv/d
func base() *builder {
	b := &builder{}
	b.put("/kv/a", "a1", 0, 2)
	b.put("/kv/b", "b1", 0, 3)
	b.put("/kv/a", "a2", 0, 4)
	b.del("/kv/b", 5)
	b.put("/kv/b", "b2", 0, 6)
	b.put("/kv/c", "c1", 7, 7)
	b.put("/kv/d", "d1", 7, 8)
	b.revoke(7, 9)
	return b
}

// goodEvents are the events a correct prev-kv watch on /kv/ sees for base,
// one response per revision.
func goodEvents() []history.WatchResponse {
	c1 := kv("/kv/c", "c1", 7, 7, 1, 7)
	d1 := kv("/kv/d", "d1", 8, 8, 1, 7)
	ev := func(e history.Event, lease int64) history.Event { e.Lease = lease; return e }
	return []history.WatchResponse{
		resp(putEv("/kv/a", "a1", 2, 2, 1, nil)),
		resp(putEv("/kv/b", "b1", 3, 3, 1, nil)),
		resp(putEv("/kv/a", "a2", 4, 2, 2, kv("/kv/a", "a1", 2, 2, 1, 0))),
		resp(delEv("/kv/b", 5, kv("/kv/b", "b1", 3, 3, 1, 0))),
		resp(putEv("/kv/b", "b2", 6, 6, 1, nil)),
		resp(ev(putEv("/kv/c", "c1", 7, 7, 1, nil), 7)),
		resp(ev(putEv("/kv/d", "d1", 8, 8, 1, nil), 7)),
		resp(delEv("/kv/c", 9, c1), delEv("/kv/d", 9, d1)),
	}
}

const prefixEnd = "/kv0" // the range end of prefix "/kv/"

// expectOnly asserts that exactly the named checks failed and all others
// passed, printing every violation on a mismatch.
func expectOnly(t *testing.T, checks []verdict.Check, failing ...string) {
	t.Helper()
	if len(checks) != len(Names) {
		t.Fatalf("got %d checks, want %d", len(checks), len(Names))
	}
	for _, c := range checks {
		wantFail := slices.Contains(failing, c.Name)
		switch {
		case wantFail && c.Status != verdict.Fail:
			t.Errorf("%s: status %s, want fail (summary: %s)", c.Name, c.Status, c.Summary)
		case !wantFail && c.Status != verdict.Pass:
			t.Errorf("%s: status %s, want pass; violations: %q", c.Name, c.Status, c.Violations)
		}
		if wantFail && c.Status == verdict.Fail && len(c.Violations) == 0 {
			t.Errorf("%s failed without a violation message", c.Name)
		}
	}
	if t.Failed() {
		for _, c := range checks {
			for _, v := range c.Violations {
				t.Logf("%s: %s", c.Name, v)
			}
		}
	}
}
