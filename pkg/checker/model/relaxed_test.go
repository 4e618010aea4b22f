package model

import (
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func mustStepRelaxed(t *testing.T, s State, op history.Operation, resp *history.Response) State {
	t.Helper()
	ok, n, why := Explain(s, &op, resp, ForeignWrites)
	if !ok {
		t.Fatalf("%s rejected: %s", Describe(&op, resp), why)
	}
	return n
}

func mustRejectRelaxed(t *testing.T, s State, op history.Operation, resp *history.Response) {
	t.Helper()
	if ok, _ := Step(s, &op, resp, ForeignWrites); ok {
		t.Fatalf("%s accepted in %s", Describe(&op, resp), s)
	}
}

func TestRelaxedRevisions(t *testing.T) {
	s := Init()
	put := history.Operation{Kind: history.Put, Key: "a", Value: "1"}
	// Unrecorded writes may take revisions 2..4.
	mustReject(t, s, put, &history.Response{Revision: 5})
	s = mustStepRelaxed(t, s, put, &history.Response{Revision: 5})
	get := history.Operation{Kind: history.Get, Key: "a"}
	s = mustStepRelaxed(t, s, get, &history.Response{Revision: 7, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 5}}})
	if s.Revision != 7 {
		t.Fatalf("revision %d after a read at 7", s.Revision)
	}
	// Revisions never go back, values and mod revisions stay strict.
	mustRejectRelaxed(t, s, get, &history.Response{Revision: 6, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 5}}})
	mustRejectRelaxed(t, s, get, &history.Response{Revision: 8, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 4}}})
	mustRejectRelaxed(t, s, get, &history.Response{Revision: 8, KVs: []history.KV{{Key: "a", Value: "0", ModRevision: 5}}})
	mustRejectRelaxed(t, s, get, &history.Response{Revision: 8})
	// A write needs a revision above the store's.
	mustRejectRelaxed(t, s, history.Operation{Kind: history.Put, Key: "b", Value: "2"}, &history.Response{Revision: 7})
	// An unknown put's mod revision is learned from the first read.
	u := mustStepRelaxed(t, s, history.Operation{Kind: history.Put, Key: "b", Value: "3"}, nil)
	u = mustStepRelaxed(t, u, history.Operation{Kind: history.Get, Key: "b"}, &history.Response{Revision: 12, KVs: []history.KV{{Key: "b", Value: "3", ModRevision: 11}}})
	mustRejectRelaxed(t, u, history.Operation{Kind: history.Get, Key: "b"}, &history.Response{Revision: 12, KVs: []history.KV{{Key: "b", Value: "3", ModRevision: 10}}})
	mustStepRelaxed(t, u, history.Operation{Kind: history.Txn, Key: "b", ExpectModRev: 11, Value: "4"}, &history.Response{Revision: 13, Succeeded: true})
	mustRejectRelaxed(t, u, history.Operation{Kind: history.Txn, Key: "b", ExpectModRev: 10, Value: "4"}, &history.Response{Revision: 13, Succeeded: true})
}

func TestInitWith(t *testing.T) {
	s := InitWith(500, []history.KV{{Key: "a", Value: "x", ModRevision: 120}, {Key: "b", Value: "y", ModRevision: 499, Lease: 7}})
	if s.Revision != 500 || s.Len() != 2 || !s.HasLease(7) {
		t.Fatalf("InitWith: %s", s)
	}
	mustStep(t, s, history.Operation{Kind: history.Get, Key: "a"}, &history.Response{Revision: 500, KVs: []history.KV{{Key: "a", Value: "x", ModRevision: 120}}})
	mustReject(t, s, history.Operation{Kind: history.Get, Key: "c"}, &history.Response{Revision: 500, KVs: []history.KV{{Key: "c", Value: "z", ModRevision: 3}}})
	n := mustStep(t, s, history.Operation{Kind: history.LeaseRevoke, Lease: 7}, &history.Response{Revision: 501})
	if _, ok := n.Get("b"); ok {
		t.Fatal("revoke left the key attached to the restored lease")
	}
}

// A key an unknown put made has a mod revision no read has shown, but it
// is not 0: a compare against 0 (absent) fails for certain, a compare
// against any other revision may go either way.
func TestForeignUnknownModCompare(t *testing.T) {
	s := mustStepRelaxed(t, Init(), history.Operation{Kind: history.Put, Key: "a", Value: "1"}, nil)
	create := history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 0, Value: "2"}
	mustRejectRelaxed(t, s, create, &history.Response{Revision: 9, Succeeded: true})
	mustStepRelaxed(t, s, create, &history.Response{Revision: 9, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 4}}})
	cas := history.Operation{Kind: history.Txn, Key: "a", ExpectModRev: 4, Value: "3"}
	mustStepRelaxed(t, s, cas, &history.Response{Revision: 9, Succeeded: true})
	mustStepRelaxed(t, s, cas, &history.Response{Revision: 9, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 5}}})
	// It failed, so the key's mod revision cannot be the one it compared.
	mustRejectRelaxed(t, s, cas, &history.Response{Revision: 9, KVs: []history.KV{{Key: "a", Value: "1", ModRevision: 4}}})
}
