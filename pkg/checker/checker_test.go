package checker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/lock"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func op(id int64, kind history.Kind, key, value string, call, ret int64, resp *history.Response) history.Operation {
	return history.Operation{ID: id, ClientID: int(id), Kind: kind, Key: key, Value: value, Call: call, Return: ret, Outcome: history.OK, Resp: resp}
}

// Check composes every checker, and one broken property fails the verdict
// even when everything else holds.
func TestCheckRunsEveryCheckerAndFailsOnAStaleRead(t *testing.T) {
	good := &history.History{Operations: []history.Operation{
		op(1, history.Put, "/kv/k000", "a", 10, 20, &history.Response{Revision: 2}),
		op(2, history.Get, "/kv/k000", "", 30, 40, &history.Response{Revision: 2, KVs: []history.KV{{Key: "/kv/k000", Value: "a", ModRevision: 2}}}),
		op(3, history.Range, "/kv/", "", 50, 60, &history.Response{Revision: 2, KVs: []history.KV{{Key: "/kv/k000", Value: "a", ModRevision: 2}}}),
	}}
	good.Operations[2].End = "/kv0"
	checks := Check(context.Background(), good, Options{Timeout: 10 * time.Second})
	names := map[string]verdict.Status{}
	for _, c := range checks {
		names[c.Name] = c.Status
	}
	for _, want := range []string{"linearizable", "durability", "watch/reliable", "lease/revoke"} {
		if _, ok := names[want]; !ok {
			t.Errorf("check %q missing from %v", want, names)
		}
	}
	if !verdict.Passed(checks) {
		t.Fatalf("a correct history must pass: %+v", verdict.Failed(checks))
	}

	// The same history where the read after the put returns nothing at the
	// put's revision. (Had it answered at revision 1, the store revision
	// would have gone backwards, which durability reports too.)
	stale := *good
	stale.Operations = append([]history.Operation(nil), good.Operations...)
	stale.Operations[1] = op(2, history.Get, "/kv/k000", "", 30, 40, &history.Response{Revision: 2})
	checks = Check(context.Background(), &stale, Options{Timeout: 10 * time.Second})
	if verdict.Passed(checks) {
		t.Fatal("a stale read must fail the verdict")
	}
	for _, c := range verdict.Failed(checks) {
		if c.Name != "linearizable" {
			t.Errorf("only linearizable should fail, %s did: %s", c.Name, c.Summary)
		}
	}
}

// A phantom value that no watch saw fails kv/consistent, not a watch check,
// even when the history has watches (issue 17).
func TestPhantomValueIsNotAWatchFailure(t *testing.T) {
	h := &history.History{Operations: []history.Operation{
		op(1, history.Put, "/kv/a", "a1", 10, 20, &history.Response{Revision: 2}),
		op(2, history.Put, "/kv/b", "b1", 30, 40, &history.Response{Revision: 3}),
		op(3, history.Get, "/kv/a", "", 50, 60, &history.Response{Revision: 3, KVs: []history.KV{{Key: "/kv/a", Value: "phantom", ModRevision: 3}}}),
	}, Watches: []history.Watch{{ID: 9, ClientID: 9, Key: "/kv/b", StartRevision: 1, Call: 5, Responses: []history.WatchResponse{
		{Time: 45, Revision: 3, Events: []history.Event{{Type: "put", Key: "/kv/b", Value: "b1", ModRevision: 3, CreateRevision: 3, Version: 1, IsCreate: true}}},
	}}}}
	failed := map[string]bool{}
	failedChecks := map[string][]string{}
	for _, c := range verdict.Failed(Check(context.Background(), h, Options{Timeout: 10 * time.Second})) {
		failed[c.Name] = true
		failedChecks[c.Name] = c.Violations
	}
	if !failed["kv/consistent"] {
		t.Errorf("kv/consistent must report the phantom value; failed: %v", failed)
	}
	for name := range failed {
		if strings.HasPrefix(name, "watch/") {
			t.Errorf("%s failed, but no watch saw the phantom: %v", name, failedChecks[name])
		}
	}
}

// A history without revisions runs the lock counter check, which needs
// none, and shows every check that needs revisions skipped with the reason.
func TestNoRevisionsRunsLockCounter(t *testing.T) {
	counter := func(final string) *history.History {
		h := &history.History{Meta: history.Meta{NoRevisions: true}}
		add := func(o history.Operation) {
			o.ID = int64(len(h.Operations) + 1)
			o.ClientID, o.Key, o.Outcome = int(o.ID), keyspace.LockCounterKey, history.OK
			o.Call, o.Return = o.ID*10, o.ID*10+5
			h.Operations = append(h.Operations, o)
		}
		// The first increment creates the counter (expect_mod_rev 0: key
		// absent); the others compare the value the previous one wrote.
		prev := ""
		for i := 1; i <= 3; i++ {
			inc := history.Operation{Kind: history.Txn, Value: fmt.Sprintf("%d:c%d", i, i), Resp: &history.Response{Succeeded: true}}
			if i > 1 {
				expect := prev
				inc.ExpectValue = &expect
			}
			add(inc)
			prev = inc.Value
		}
		add(history.Operation{Kind: history.Get, Resp: &history.Response{KVs: []history.KV{{Key: keyspace.LockCounterKey, Value: final}}}})
		return h
	}
	for _, tc := range []struct {
		final string
		want  verdict.Status
	}{{"3:c3", verdict.Pass}, {"1:c1", verdict.Fail}} {
		checks := Check(context.Background(), counter(tc.final), Options{Timeout: 10 * time.Second})
		byName := map[string]verdict.Check{}
		for _, c := range checks {
			byName[c.Name] = c
		}
		if c, ok := byName[lock.Name]; !ok || c.Status != tc.want {
			t.Errorf("final %q: lock/counter %+v, want %s", tc.final, c, tc.want)
		}
		for _, name := range []string{"compaction", "durability", "serializable", "kv/consistent", "lease/expiry"} {
			if c := byName[name]; c.Status != verdict.Skipped || c.Summary != NoRevisionsReason {
				t.Errorf("%s: %s %q, want skipped: %s", name, c.Status, c.Summary, NoRevisionsReason)
			}
		}
	}
}

// A history of the kubernetes profile's conditional deletes (a txn on the
// mod revision that deletes, else gets) passes every check, and a delete
// that "succeeded" although the mod revision had moved fails the verdict.
func TestConditionalDeletes(t *testing.T) {
	key := keyspace.KubeKey(0)
	cdel := func(id int64, expect int64, call, ret int64, resp *history.Response) history.Operation {
		o := op(id, history.Txn, key, "", call, ret, resp)
		o.ExpectModRev, o.Then = expect, history.Delete
		return o
	}
	build := func(expect int64) *history.History {
		update := op(2, history.Txn, key, "b", 30, 40, &history.Response{Revision: 3, Succeeded: true})
		update.ExpectModRev = 2
		h := &history.History{Operations: []history.Operation{
			op(1, history.Put, key, "a", 10, 20, &history.Response{Revision: 2}),
			update,
			cdel(3, 2, 50, 60, &history.Response{Revision: 3, KVs: []history.KV{{Key: key, Value: "b", ModRevision: 3}}}),
			cdel(4, expect, 70, 80, &history.Response{Revision: 4, Succeeded: true, Deleted: 1}),
			op(5, history.Get, key, "", 90, 100, &history.Response{Revision: 4}),
			op(7, history.Range, keyspace.KVPrefix, "", 200, 210, &history.Response{Revision: 4}),
		}}
		h.Operations[5].End = keyspace.PrefixEnd(keyspace.KVPrefix)
		h.Watches = []history.Watch{{ID: 6, ClientID: 6, Key: keyspace.KubePrefix, End: keyspace.PrefixEnd(keyspace.KubePrefix), StartRevision: 2, Call: 5,
			Responses: []history.WatchResponse{
				{Time: 25, Revision: 2, Events: []history.Event{{Type: "put", Key: key, Value: "a", ModRevision: 2, CreateRevision: 2, Version: 1, IsCreate: true}}},
				{Time: 45, Revision: 3, Events: []history.Event{{Type: "put", Key: key, Value: "b", ModRevision: 3, CreateRevision: 2, Version: 2}}},
				{Time: 85, Revision: 4, Events: []history.Event{{Type: "delete", Key: key, ModRevision: 4}}},
				{Time: 110, Revision: 4, Progress: true},
			}}}
		return h
	}
	checks := Check(context.Background(), build(3), Options{Timeout: 10 * time.Second})
	if !verdict.Passed(checks) {
		t.Fatalf("a correct history of conditional deletes must pass: %+v", verdict.Failed(checks))
	}
	checks = Check(context.Background(), build(2), Options{Timeout: 10 * time.Second})
	if verdict.Passed(checks) {
		t.Fatal("a delete on mod revision 2 succeeded although the key was at 3, and the verdict passed")
	}
	for _, c := range verdict.Failed(checks) {
		if c.Name != "linearizable" {
			t.Errorf("only linearizable should fail, %s did: %s", c.Name, c.Summary)
		}
	}
}
