package model

import (
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func mustStep(t *testing.T, s State, op history.Operation, resp *history.Response) State {
	t.Helper()
	ok, n, why := Explain(s, &op, resp, Strict)
	if !ok {
		t.Fatalf("%s rejected: %s", Describe(&op, resp), why)
	}
	return n
}

func mustReject(t *testing.T, s State, op history.Operation, resp *history.Response) {
	t.Helper()
	if ok, _ := Step(s, &op, resp, Strict); ok {
		t.Fatalf("%s accepted in %s", Describe(&op, resp), s)
	}
}

func TestKV(t *testing.T) {
	s := Init()
	s = mustStep(t, s, history.Operation{Kind: history.Put, Key: "a", Value: "1"}, &history.Response{Revision: 2})
	mustReject(t, s, history.Operation{Kind: history.Put, Key: "a", Value: "2"}, &history.Response{Revision: 2})
	mustStep(t, s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{Revision: 2, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 2}}})
	mustReject(t, s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{Revision: 2, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 1}}})
	mustReject(t, s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{Revision: 3, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 2}}})
	mustReject(t, s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{Revision: 2})
	// CAS on mod revision.
	mustReject(t, s, history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 1, Value: "x"}, &history.Response{Revision: 3, Succeeded: true})
	s2 := mustStep(t, s, history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 2, Value: "x"}, &history.Response{Revision: 3, Succeeded: true})
	mustStep(t, s2, history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 2, Value: "y"}, &history.Response{Revision: 3, KVs: []history.KV{{Key: "a", Value: "x", ModRevision: 3}}})
	mustStep(t, s, history.Operation{Kind: history.Txn, Key: "b", ExpectModRev: 0, Value: "z"}, &history.Response{Revision: 3, Succeeded: true})
	// Delete bumps the revision only when it deletes.
	d := mustStep(t, s, history.Operation{Kind: history.Delete, Key: "a"}, &history.Response{Revision: 3, Deleted: 1})
	mustStep(t, d, history.Operation{Kind: history.Delete, Key: "a"}, &history.Response{Revision: 3})
	mustReject(t, d, history.Operation{Kind: history.Delete, Key: "a"}, &history.Response{Revision: 4, Deleted: 1})
	// Range with a limit returns the first keys in order.
	r := mustStep(t, s, history.Operation{Kind: history.Put, Key: "b", Value: "2"}, &history.Response{Revision: 3})
	mustStep(t, r, history.Operation{Kind: history.Range, Key: "a", End: "c", Limit: 1}, &history.Response{Revision: 3, Count: 2, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 2}}})
	mustReject(t, r, history.Operation{Kind: history.Range, Key: "a", End: "c", Limit: 1}, &history.Response{Revision: 3, KVs: []history.KV{{Key: "b", Value: "2", ModRevision: 3}}})
	// The original state is untouched by every step above.
	if _, ok := s.Get("b"); ok || s.Revision != 2 {
		t.Fatalf("state mutated: %s", s)
	}
}

func TestUnknownOutcomes(t *testing.T) {
	s := mustStep(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "1"}, nil)
	if kv, _ := s.Get("a"); kv.ModRevision != 2 || s.Revision != 2 {
		t.Fatalf("unknown put applied wrongly: %s", s)
	}
	// An unknown put to a missing lease is a no-op, an OK one impossible.
	n := mustStep(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "1", Lease: 5}, nil)
	if n.Revision != 1 {
		t.Fatalf("unknown put to a missing lease changed the store: %s", n)
	}
	mustReject(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "1", Lease: 5}, &history.Response{Revision: 2})
}

func TestLeases(t *testing.T) {
	s := mustStep(t, Init(), history.Operation{Kind: history.LeaseGrant, TTL: 10}, &history.Response{Revision: 1, LeaseID: 7})
	s = mustStep(t, s, history.Operation{Kind: history.Put, Key: "a", Value: "1", Lease: 7}, &history.Response{Revision: 2})
	s = mustStep(t, s, history.Operation{Kind: history.Put, Key: "b", Value: "2", Lease: 7}, &history.Response{Revision: 3})
	mustStep(t, s, history.Operation{Kind: history.LeaseKeepAlive, Lease: 7}, &history.Response{})
	mustReject(t, s, history.Operation{Kind: history.LeaseRevoke, Lease: 7}, &history.Response{Revision: 3})
	r := mustStep(t, s, history.Operation{Kind: history.LeaseRevoke, Lease: 7}, &history.Response{Revision: 4})
	if r.Len() != 0 || r.HasLease(7) {
		t.Fatalf("revoke left %s", r)
	}
	mustReject(t, r, history.Operation{Kind: history.LeaseKeepAlive, Lease: 7}, &history.Response{})
	// A lease without keys: revoke keeps the revision.
	e := mustStep(t, Init(), history.Operation{Kind: history.LeaseGrant}, &history.Response{Revision: 1, LeaseID: 8})
	mustStep(t, e, history.Operation{Kind: history.LeaseRevoke, Lease: 8}, &history.Response{Revision: 1})
}

func TestHashEqual(t *testing.T) {
	put := func(s State, k, v string, rev int64) State {
		return mustStep(t, s, history.Operation{Kind: history.Put, Key: k, Value: v}, &history.Response{Revision: rev})
	}
	a := put(put(Init(), "x", "1", 2), "y", "2", 3)
	b := put(put(Init(), "x", "1", 2), "y", "2", 3)
	if !a.Equal(b) || a.Hash() != b.Hash() {
		t.Fatal("equal states differ")
	}
	c := put(put(Init(), "y", "2", 2), "x", "1", 3)
	if a.Equal(c) {
		t.Fatal("states with different mod revisions are equal")
	}
}

func BenchmarkStepPut(b *testing.B) {
	s := Init()
	for i := 0; i < 100; i++ {
		s = s.put(KeyValue{Key: string(rune('a'+i%26)) + string(rune('a'+i/26)), Value: "v", ModRevision: 2})
	}
	op := &history.Operation{Kind: history.Put, Key: "mm", Value: "v"}
	resp := &history.Response{Revision: s.Revision + 1}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		Step(s, op, resp, Strict)
	}
}

// A value-compare txn reads its key on failure only with else_get; without
// it, a failed one returned no keys and says nothing of the key. Both the
// revision model and the value-only model read it so.
func TestValueCompareElseBranch(t *testing.T) {
	v0, v1 := "v0", "v1"
	s := mustStep(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "v1"}, &history.Response{Revision: 2})
	held := []history.KV{{Key: "a", Value: "v1", ModRevision: 2}}
	noElse := history.Operation{Kind: history.Txn, Key: "a", ExpectValue: &v0, Value: "v2"}
	withElse := noElse
	withElse.ElseGet = true
	mustStep(t, s, noElse, &history.Response{Revision: 2})
	mustStep(t, s, withElse, &history.Response{Revision: 2, KVs: held})
	mustReject(t, s, withElse, &history.Response{Revision: 2})
	mustReject(t, s, withElse, &history.Response{Revision: 2, KVs: []history.KV{{Key: "a", Value: "v0", ModRevision: 2}}})
	// The else branch shows the very value the compare wanted: it held.
	holds := withElse
	holds.ExpectValue = &v1
	mustReject(t, s, holds, &history.Response{Revision: 2, KVs: held})
	// A missing key fails every value compare; the else branch shows it absent.
	mustStep(t, Init(), withElse, &history.Response{Revision: 1})

	vs := ValuesInit([]history.KV{{Key: "a", Value: "v1", ModRevision: 7}})
	for _, tc := range []struct {
		op   history.Operation
		kvs  []history.KV
		want bool
	}{
		{noElse, nil, true},
		{withElse, []history.KV{{Key: "a", Value: "v1"}}, true},
		{withElse, nil, false},
		{withElse, []history.KV{{Key: "a", Value: "v9"}}, false},
	} {
		if ok, _, why := Explain(vs, &tc.op, &history.Response{KVs: tc.kvs}, NoRevisions); ok != tc.want {
			t.Errorf("%s: value model says %v (%s), want %v", NoRevisions.Describe(&tc.op, &history.Response{KVs: tc.kvs}), ok, why, tc.want)
		}
	}
}

// Without revisions the one step function judges keys and values only: the
// revision never moves, mod revisions are neither checked nor kept, and
// states holding the same values are equal whatever order wrote them.
func TestNoRevisionsRule(t *testing.T) {
	step := func(s State, op history.Operation, resp *history.Response) State {
		t.Helper()
		ok, n, why := Explain(s, &op, resp, NoRevisions)
		if !ok {
			t.Fatalf("%s rejected: %s", NoRevisions.Describe(&op, resp), why)
		}
		return n
	}
	reject := func(s State, op history.Operation, resp *history.Response) {
		t.Helper()
		if ok, _ := Step(s, &op, resp, NoRevisions); ok {
			t.Fatalf("%s accepted in %s", NoRevisions.Describe(&op, resp), NoRevisions.DescribeState(s))
		}
	}
	s := step(ValuesInit(nil), history.Operation{Kind: history.Put, Key: "a", Value: "1"}, &history.Response{})
	s = step(s, history.Operation{Kind: history.Put, Key: "b", Value: "2"}, &history.Response{Revision: 99})
	if s.Revision != InitialRevision {
		t.Fatalf("the revision moved: %s", s)
	}
	step(s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 42}}})
	reject(s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{KVs: []history.KV{{Key: "a", Value: "2"}}})
	reject(s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{})
	// expect_mod_rev 0 is "the key is absent".
	reject(s, history.Operation{Kind: history.Txn, Key: "a", Value: "3"}, &history.Response{Succeeded: true})
	step(s, history.Operation{Kind: history.Txn, Key: "a", Value: "3"}, &history.Response{KVs: []history.KV{{Key: "a", Value: "1"}}})
	step(s, history.Operation{Kind: history.Txn, Key: "c", Value: "3"}, &history.Response{Succeeded: true})
	reject(s, history.Operation{Kind: history.Delete, Key: "c"}, &history.Response{Deleted: 1})
	other := step(ValuesInit(nil), history.Operation{Kind: history.Put, Key: "b", Value: "2"}, &history.Response{})
	other = step(other, history.Operation{Kind: history.Put, Key: "a", Value: "1"}, &history.Response{})
	if !s.Equal(other) || s.Hash() != other.Hash() {
		t.Fatalf("%s and %s hold the same values but differ", s, other)
	}
	if got := NoRevisions.DescribeState(s); got != `{a="1", b="2"}` {
		t.Errorf("state without revisions renders as %s", got)
	}
}

// A txn whose then branch deletes (the apiserver's delete on the mod
// revision it last read): the compare decides, a delete of the key
// spends a revision, a delete of an absent key (compare on mod revision 0)
// spends none, and a failed one reads the key like any revision compare.
func TestTxnThenDelete(t *testing.T) {
	s := mustStep(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "1"}, &history.Response{Revision: 2})
	s = mustStep(t, s, history.Operation{Kind: history.Put, Key: "a", Value: "2"}, &history.Response{Revision: 3})
	del := func(expect int64) history.Operation {
		return history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: expect, Then: history.Delete}
	}
	held := []history.KV{{Key: "a", Value: "2", ModRevision: 3}}

	d := mustStep(t, s, del(3), &history.Response{Revision: 4, Succeeded: true, Deleted: 1})
	if _, ok := d.Get("a"); ok || d.Revision != 4 {
		t.Fatalf("the delete left %s", d)
	}
	mustStep(t, s, del(2), &history.Response{Revision: 3, KVs: held})
	// The mod revision had moved on, yet the delete "succeeded".
	mustReject(t, s, del(2), &history.Response{Revision: 4, Succeeded: true, Deleted: 1})
	// It held, but the txn claims it failed, or deleted nothing, or kept
	// the revision, or the else branch shows the wrong object.
	mustReject(t, s, del(3), &history.Response{Revision: 3, KVs: held})
	mustReject(t, s, del(3), &history.Response{Revision: 3, Succeeded: true})
	mustReject(t, s, del(3), &history.Response{Revision: 3, Succeeded: true, Deleted: 1})
	mustReject(t, s, del(2), &history.Response{Revision: 3, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 2}}})
	// The key is gone: compare on 0 holds and deletes nothing, at the
	// same revision; compare on its old revision fails and reads nothing.
	mustStep(t, d, del(0), &history.Response{Revision: 4, Succeeded: true})
	mustReject(t, d, del(0), &history.Response{Revision: 5, Succeeded: true, Deleted: 1})
	mustStep(t, d, del(3), &history.Response{Revision: 4})
	mustReject(t, d, del(3), &history.Response{Revision: 5, Succeeded: true, Deleted: 1})

	// Unknown outcome: it takes effect only where the compare holds.
	u := mustStep(t, s, del(3), nil)
	if _, ok := u.Get("a"); ok || u.Revision != 4 {
		t.Fatalf("an unknown delete whose compare held left %s", u)
	}
	if u := mustStep(t, s, del(2), nil); !u.Equal(s) {
		t.Fatalf("an unknown delete whose compare failed changed %s to %s", s, u)
	}
	if got := Describe(&history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 3, Then: history.Delete}, &history.Response{Revision: 4, Succeeded: true, Deleted: 1}); got != "txn(if mod(a)==3 then delete) -> succeeded, deleted 1 @rev 4" {
		t.Errorf("described as %s", got)
	}
}
