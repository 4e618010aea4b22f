package linearizable

import (
	"context"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// A stale read's violation names the write to the key it read that it
// missed, not whichever write returned the highest revision (issue 17).
func TestStaleReadNamesTheOverwrittenWrite(t *testing.T) {
	ok := func(id int64, kind history.Kind, key, value string, call int64, r *history.Response) history.Operation {
		return history.Operation{ID: id, ClientID: int(id), Kind: kind, Key: key, Value: value, Call: call, Return: call + 5, Outcome: history.OK, Resp: r}
	}
	h := &history.History{Operations: []history.Operation{
		ok(1, history.Put, "/kv/a", "a1", 10, &history.Response{Revision: 2}),
		ok(2, history.Put, "/kv/a", "a2", 20, &history.Response{Revision: 3}),
		ok(3, history.Put, "/kv/b", "b1", 30, &history.Response{Revision: 4}),
		// Reads /kv/a as it was before op 2, at revision 2.
		ok(4, history.Get, "/kv/a", "", 40, &history.Response{Revision: 2, KVs: []history.KV{{Key: "/kv/a", Value: "a1", ModRevision: 2, CreateRevision: 2, Version: 1}}}),
	}}
	c := Check(context.Background(), h, Options{mode: modeFastOnly})
	if c.Status != verdict.Fail {
		t.Fatalf("want fail, got %s: %s", c.Status, c.Summary)
	}
	all := strings.Join(c.Violations, "\n")
	if !strings.Contains(all, "it misses op 2 (client 2") || !strings.Contains(all, "a write to /kv/a") {
		t.Fatalf("the violation must name put op 2 of /kv/a, the write the read missed:\n%s", all)
	}
}

// A keep-alive that succeeds after an acknowledged revoke returned is a
// violation the fast path decides, whatever the history's size (issue 17).
func TestKeepAliveAfterRevokeIsDecided(t *testing.T) {
	ok := func(id int64, kind history.Kind, lease, call int64, r *history.Response) history.Operation {
		return history.Operation{ID: id, ClientID: int(id), Kind: kind, Lease: lease, Call: call, Return: call + 5, Outcome: history.OK, Resp: r}
	}
	h := &history.History{Operations: []history.Operation{
		ok(1, history.LeaseGrant, 0, 10, &history.Response{Revision: 1, LeaseID: 7, TTL: 60}),
		ok(2, history.LeaseKeepAlive, 7, 20, &history.Response{TTL: 60}),
		ok(3, history.LeaseRevoke, 7, 30, &history.Response{Revision: 1}),
		ok(4, history.LeaseKeepAlive, 7, 35+83e6, &history.Response{TTL: 60}),
	}}
	c := Check(context.Background(), h, Options{mode: modeFastOnly})
	if c.Status != verdict.Fail || !strings.Contains(strings.Join(c.Violations, "\n"), "renewed lease 7") {
		t.Fatalf("want the keep-alive after the revoke rejected, got %s: %s %v", c.Status, c.Summary, c.Violations)
	}
	// Sent before the revoke returned, it may have been ordered first.
	h.Operations[3].Call, h.Operations[3].Return = 32, 40
	if c := Check(context.Background(), h, Options{}); c.Status != verdict.Pass {
		t.Fatalf("a keep-alive racing the revoke may succeed, got %s: %s %v", c.Status, c.Summary, c.Violations)
	}
}
