package snapshot

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// hist builds a history from operations; times are their index so that
// each operation returns before the next is called.
func hist(ops ...history.Operation) *history.History {
	for i := range ops {
		ops[i].ID = int64(i + 1)
		ops[i].Call = int64(2 * i)
		ops[i].Return = int64(2*i + 1)
		if ops[i].Outcome == "" {
			ops[i].Outcome = history.OK
		}
	}
	return &history.History{Operations: ops}
}

func put(key, val string, rev int64) history.Operation {
	return history.Operation{Kind: history.Put, Key: key, Value: val, Resp: &history.Response{Revision: rev}}
}

func judge(t *testing.T, h *history.History, rev int64, actual ...history.KV) verdict.Check {
	t.Helper()
	m := map[string]history.KV{}
	for _, kv := range actual {
		m[kv.Key] = kv
	}
	ch := verdict.Check{Name: CheckContent, Status: verdict.Pass}
	compareState(&ch, expectedState(h, rev), m, rev)
	return ch
}

func kv(k, v string, rev int64) history.KV { return history.KV{Key: k, Value: v, ModRevision: rev} }

func wantPass(t *testing.T, ch verdict.Check) {
	t.Helper()
	if ch.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", ch.Status, ch.Violations)
	}
}

func wantFail(t *testing.T, ch verdict.Check, substr string) {
	t.Helper()
	if ch.Status != verdict.Fail {
		t.Fatalf("want fail mentioning %q, got %s", substr, ch.Status)
	}
	for _, v := range ch.Violations {
		if strings.Contains(v, substr) {
			return
		}
	}
	t.Fatalf("no violation mentions %q: %v", substr, ch.Violations)
}

func TestCompareStateAccepts(t *testing.T) {
	h := hist(
		put("/kv/a", "v1", 2),
		put("/kv/b", "v2", 3),
		put("/kv/a", "v3", 4),
		history.Operation{Kind: history.Delete, Key: "/kv/b", Resp: &history.Response{Revision: 5, Deleted: 1}},
		history.Operation{Kind: history.Txn, Key: "/kv/c", Value: "v5", Resp: &history.Response{Revision: 6, Succeeded: true}},
		history.Operation{Kind: history.Txn, Key: "/kv/c", Value: "never", ExpectModRev: 1, Resp: &history.Response{Revision: 6}},
		put("/kv/d", "after", 7), // after the snapshot
	)
	wantPass(t, judge(t, h, 6, kv("/kv/a", "v3", 4), kv("/kv/c", "v5", 6)))
	// Keys no operation wrote are not judged.
	wantPass(t, judge(t, h, 6, kv("/kv/a", "v3", 4), kv("/kv/c", "v5", 6), kv("/lock/x", "holder", 1)))
}

func TestCompareStateRejects(t *testing.T) {
	h := hist(
		put("/kv/a", "v1", 2),
		put("/kv/b", "v2", 3),
		put("/kv/a", "v3", 4),
		history.Operation{Kind: history.Delete, Key: "/kv/b", Resp: &history.Response{Revision: 5, Deleted: 1}},
		put("/kv/d", "after", 7),
	)
	wantFail(t, judge(t, h, 5), `"/kv/a" is missing`)
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v1", 2)), "stale value of operation 1")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v3", 3)), "mod revision 3")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v3", 4), kv("/kv/b", "v2", 3)), "operation 4 deleted it")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v3", 4), kv("/kv/d", "after", 5)), "after the snapshot revision")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v3", 4), kv("/kv/b", "bogus", 5)), "no recorded operation wrote")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "v2", 3)), `operation 2 wrote to key "/kv/b"`)
}

func TestCompareStateUnknownOutcomes(t *testing.T) {
	h := hist(
		put("/kv/a", "v1", 2),
		history.Operation{Kind: history.Put, Key: "/kv/a", Value: "maybe", Outcome: history.Unknown},
		put("/kv/b", "v3", 4),
		history.Operation{Kind: history.Delete, Key: "/kv/b", Outcome: history.Unknown},
		put("/kv/c", "v5", 5),
	)
	// The unknown put did not land, or landed on the free revision 3.
	wantPass(t, judge(t, h, 5, kv("/kv/a", "v1", 2), kv("/kv/b", "v3", 4), kv("/kv/c", "v5", 5)))
	wantPass(t, judge(t, h, 5, kv("/kv/a", "maybe", 3), kv("/kv/b", "v3", 4), kv("/kv/c", "v5", 5)))
	// The unknown delete may have removed /kv/b.
	wantPass(t, judge(t, h, 6, kv("/kv/a", "v1", 2), kv("/kv/c", "v5", 5)))
	// But not on a revision an acknowledged write took, nor before it was
	// called (revision 2 was observed before).
	wantFail(t, judge(t, h, 5, kv("/kv/a", "maybe", 4), kv("/kv/b", "v3", 4), kv("/kv/c", "v5", 5)), "a revision an acknowledged write created")
	wantFail(t, judge(t, h, 5, kv("/kv/a", "maybe", 1), kv("/kv/b", "v3", 4), kv("/kv/c", "v5", 5)), "already observed before it was called")
	// An unknown write never explains a missing key whose put was acknowledged.
	wantFail(t, judge(t, h, 5, kv("/kv/b", "v3", 4), kv("/kv/c", "v5", 5)), `"/kv/a" is missing`)
}

func TestCompareStateLeases(t *testing.T) {
	h := hist(
		history.Operation{Kind: history.Put, Key: "/lease-keep/a", Value: "l1", Lease: 7, Resp: &history.Response{Revision: 2}},
		history.Operation{Kind: history.Put, Key: "/lease-keep/b", Value: "l2", Lease: 7, Resp: &history.Response{Revision: 3}},
		history.Operation{Kind: history.Put, Key: "/lease-expire/c", Value: "l3", Lease: 8, Resp: &history.Response{Revision: 4}},
		history.Operation{Kind: history.LeaseRevoke, Lease: 7, Resp: &history.Response{Revision: 5}},
	)
	// Revoked at 5: both keys gone. Lease 8 may have expired: either way.
	wantPass(t, judge(t, h, 5, kv("/lease-expire/c", "l3", 4)))
	wantPass(t, judge(t, h, 6))
	wantFail(t, judge(t, h, 5, kv("/lease-keep/a", "l1", 2)), "operation 4 deleted it")
	// Before the revoke, the keys are there (they are leased, so absence is
	// tolerated, but a wrong revision is not).
	wantPass(t, judge(t, h, 4, kv("/lease-keep/a", "l1", 2), kv("/lease-keep/b", "l2", 3), kv("/lease-expire/c", "l3", 4)))
	wantFail(t, judge(t, h, 4, kv("/lease-keep/a", "l1", 3)), "mod revision 3")
}

func TestOnlyExpiries(t *testing.T) {
	leased := history.KV{Key: "/lease-expire/a", Value: "l", ModRevision: 3, Lease: 9}
	plain := kv("/kv/b", "v", 4)
	before := map[string]history.KV{leased.Key: leased, plain.Key: plain}
	for name, tc := range map[string]struct {
		after map[string]history.KV
		want  string // empty: accepted
	}{
		"lease expired":     {map[string]history.KV{plain.Key: plain}, ""},
		"no change at all":  {before, "no lease expiry explains"},
		"plain key deleted": {map[string]history.KV{leased.Key: leased}, "no lease that could have expired"},
		"key changed":       {map[string]history.KV{plain.Key: kv("/kv/b", "w", 5)}, "changed in the restored cluster"},
		"key appeared":      {map[string]history.KV{plain.Key: plain, "/kv/c": kv("/kv/c", "x", 5)}, "appeared in the restored cluster"},
	} {
		t.Run(name, func(t *testing.T) {
			ch := verdict.Check{Status: verdict.Pass}
			onlyExpiries(&ch, before, tc.after, 4, 5)
			if tc.want == "" {
				wantPass(t, ch)
			} else {
				wantFail(t, ch, tc.want)
			}
		})
	}
}

// A txn whose then branch deletes removes its key from the snapshot's
// expected state when it deleted something, and leaves it otherwise.
func TestCompareStateConditionalDeletes(t *testing.T) {
	cdel := func(key string, expect int64, ok bool, deleted, rev int64) history.Operation {
		return history.Operation{Kind: history.Txn, Key: key, ExpectModRev: expect, Then: history.Delete, Resp: &history.Response{Revision: rev, Succeeded: ok, Deleted: deleted}}
	}
	h := hist(
		put("/kv/a", "v1", 2),
		put("/kv/b", "v2", 3),
		cdel("/kv/a", 2, true, 1, 4),
		cdel("/kv/b", 2, false, 0, 4),
		cdel("/kv/c", 0, true, 0, 4),
		history.Operation{Kind: history.Txn, Key: "/kv/b", ExpectModRev: 3, Then: history.Delete, Outcome: history.Unknown},
	)
	wantPass(t, judge(t, h, 4, kv("/kv/b", "v2", 3)))
	// The unknown delete may have removed /kv/b later.
	wantPass(t, judge(t, h, 5))
	wantFail(t, judge(t, h, 4, kv("/kv/a", "v1", 2), kv("/kv/b", "v2", 3)), "operation 3 deleted it")
	// Without the unknown delete, /kv/b must still be there.
	wantFail(t, judge(t, hist(h.Operations[:5]...), 4), `"/kv/b" is missing`)
}
