package linearizable

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// vop builds an operation of a history without revisions.
func vop(id int64, client int, kind history.Kind, key, value string, call, ret int64) history.Operation {
	return history.Operation{ID: id, ClientID: client, Kind: kind, Key: key, Value: value, Call: call, Return: ret, Outcome: history.OK, Resp: &history.Response{}}
}

func read(id int64, client int, key, value string, call, ret int64) history.Operation {
	op := vop(id, client, history.Get, key, "", call, ret)
	if value != "" {
		op.Resp.KVs = []history.KV{{Key: key, Value: value}}
	}
	return op
}

func cas(id int64, client int, key, from, to string, succeeded bool, call, ret int64) history.Operation {
	op := vop(id, client, history.Txn, key, to, call, ret)
	op.ExpectValue = &from
	op.Resp.Succeeded = succeeded
	return op
}

// casElse is a failed value compare with else_get, whose else branch got
// value ("": the key was absent).
func casElse(id int64, client int, key, from, to string, call, ret int64, value string) history.Operation {
	op := cas(id, client, key, from, to, false, call, ret)
	op.ElseGet = true
	if value != "" {
		op.Resp.KVs = []history.KV{{Key: key, Value: value}}
	}
	return op
}

func unknown(op history.Operation) history.Operation {
	op.Outcome, op.Resp, op.Error = history.Unknown, nil, "timeout"
	return op
}

func noRevs(ops ...history.Operation) *history.History {
	return &history.History{Meta: history.Meta{NoRevisions: true}, Operations: ops}
}

func TestCheckValues(t *testing.T) {
	cases := []struct {
		name string
		h    *history.History
		want verdict.Status
		viol string // in the first violation, when it fails
	}{
		{"cas register, values repeat", noRevs(
			vop(1, 1, history.Put, "r", "1", 0, 10),
			cas(2, 2, "r", "1", "2", true, 20, 30),
			cas(3, 3, "r", "1", "3", false, 25, 35),  // after 2: fails
			vop(4, 1, history.Put, "r", "1", 40, 50), // the same value again
			read(5, 2, "r", "1", 60, 70),
		), verdict.Pass, ""},
		{"cas on a missing key fails", noRevs(
			cas(1, 1, "r", "", "2", true, 0, 10),
		), verdict.Fail, `op 1 (client 1, txn(if value(r)=="" then put "2") -> succeeded) cannot be linearized: txn's compare value(r)=="" succeeded, but the key did not exist`},
		{"stale read", noRevs(
			vop(1, 1, history.Put, "a", "1", 0, 10),
			vop(2, 1, history.Put, "a", "2", 20, 30),
			read(3, 2, "a", "1", 40, 50),
			vop(4, 3, history.Put, "b", "x", 0, 10), // an unrelated key, its own group
			read(5, 3, "b", "x", 20, 30),
		), verdict.Fail, `op 3 (client 2, get(a) -> a="1") cannot be linearized: returned a="1", store holds a="2"`},
		{"unknown write seen later, and one never seen", noRevs(
			unknown(vop(1, 1, history.Put, "a", "1", 0, 10)),
			read(2, 2, "a", "", 20, 30),
			read(3, 2, "a", "1", 40, 50),
			unknown(vop(4, 3, history.Put, "a", "9", 60, 70)),
			read(5, 2, "a", "1", 80, 90),
		), verdict.Pass, ""},
		{"unknown cas may apply late", noRevs(
			vop(1, 1, history.Put, "a", "1", 0, 10),
			unknown(cas(2, 2, "a", "1", "2", false, 20, 30)),
			read(3, 1, "a", "1", 40, 50),
			read(4, 1, "a", "2", 60, 70),
		), verdict.Pass, ""},
		{"a range sees two keys at one instant", noRevs(
			vop(1, 1, history.Put, "a", "1", 0, 10),
			vop(2, 1, history.Put, "b", "1", 20, 30),
			history.Operation{ID: 3, ClientID: 2, Kind: history.Range, Key: "a", End: "c", Call: 40, Return: 50, Outcome: history.OK,
				Resp: &history.Response{KVs: []history.KV{{Key: "a", Value: "1"}, {Key: "b", Value: "1"}}}},
		), verdict.Pass, ""},
		{"a range that saw b's write but not a's earlier one", noRevs(
			vop(1, 1, history.Put, "a", "1", 0, 10),
			vop(2, 1, history.Put, "b", "1", 20, 30),
			history.Operation{ID: 3, ClientID: 2, Kind: history.Range, Key: "a", End: "c", Call: 5, Return: 50, Outcome: history.OK,
				Resp: &history.Response{KVs: []history.KV{{Key: "b", Value: "1"}}}},
		), verdict.Fail, "op 3 (client 2, range(a, \"c\") -> b=\"1\") cannot be linearized"},
		{"a revoked lease's key is read", func() *history.History {
			grant := vop(1, 1, history.LeaseGrant, "", "", 0, 10)
			grant.Resp.LeaseID = 7
			put := vop(2, 1, history.Put, "a", "1", 20, 30)
			put.Lease = 7
			revoke := vop(3, 1, history.LeaseRevoke, "", "", 40, 50)
			revoke.Lease = 7
			return noRevs(grant, put, revoke, read(4, 2, "a", "1", 60, 70))
		}(), verdict.Fail, `op 4 (client 2, get(a) -> a="1") cannot be linearized: returned a="1", store holds nothing`},
		{"no else branch: a failed cas says nothing of the key", noRevs(
			vop(1, 1, history.Put, "r", "1", 0, 10),
			cas(2, 2, "r", "0", "2", false, 20, 30),
			read(3, 2, "r", "1", 40, 50),
		), verdict.Pass, ""},
		{"else_get shows the value the compare missed", noRevs(
			vop(1, 1, history.Put, "r", "1", 0, 10),
			casElse(2, 2, "r", "0", "2", 20, 30, "1"),
		), verdict.Pass, ""},
		{"else_get shows nothing although the key exists", noRevs(
			vop(1, 1, history.Put, "r", "1", 0, 10),
			casElse(2, 2, "r", "0", "2", 20, 30, ""),
		), verdict.Fail, `op 2 (client 2, txn(if value(r)=="0" then put "2") -> failed, got nothing) cannot be linearized: returned nothing, store holds r="1"`},
		{"a baseline read starts the store", noRevs(
			history.Operation{ID: 1, ClientID: 1, Kind: history.Range, Key: "a", End: "\x00", Call: 0, Return: 5, Outcome: history.OK,
				Resp: &history.Response{KVs: []history.KV{{Key: "a", Value: "old"}}}},
			cas(2, 2, "a", "old", "new", true, 10, 20),
		), verdict.Pass, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := CheckValues(context.Background(), tc.h, Options{Timeout: 10 * time.Second, ArtifactDir: dir})
			if c.Status != tc.want {
				t.Fatalf("status %s, want %s: %s %q", c.Status, tc.want, c.Summary, c.Violations)
			}
			if !strings.Contains(c.Summary, "revision fast path is skipped") {
				t.Errorf("summary does not say the fast path was skipped: %s", c.Summary)
			}
			if tc.want != verdict.Fail {
				return
			}
			if len(c.Violations) == 0 || !strings.Contains(c.Violations[0], tc.viol) {
				t.Fatalf("violation %q, want it to contain %q", c.Violations, tc.viol)
			}
			if _, err := os.Stat(filepath.Join(dir, VisualizationFile)); err != nil || c.Artifacts["visualization"] != VisualizationFile {
				t.Fatalf("no visualisation: %v %v", err, c.Artifacts)
			}
		})
	}
}

// Keys no operation ties together are searched apart; a range or a lease
// ties them.
func TestPartitionByKeys(t *testing.T) {
	put := func(id int64, key string, lease int64) history.Operation {
		op := vop(id, 1, history.Put, key, "v", id*10, id*10+5)
		op.Lease = lease
		return op
	}
	rng := vop(6, 1, history.Range, "c", "", 60, 65)
	rng.End = "e"
	grant := unknown(vop(7, 1, history.LeaseGrant, "", "", 70, 75))
	revoke := vop(8, 1, history.LeaseRevoke, "", "", 80, 85)
	revoke.Lease = 9
	ops := []history.Operation{put(1, "a", 0), put(2, "b", 9), put(3, "c", 0), put(4, "d", 0), put(5, "e", 0), rng, grant, revoke}
	ptrs := make([]*history.Operation, len(ops))
	for i := range ops {
		ptrs[i] = &ops[i]
	}
	parts := partitionByKeys(toPorcupine(ptrs), model.ValuesInit(nil))
	var got []string
	for _, p := range parts {
		var ids []string
		for _, o := range p {
			ids = append(ids, model.NoRevisions.Describe(o.Input.(*history.Operation), nil))
		}
		got = append(got, strings.Join(ids, " "))
	}
	want := []string{
		`put(a, "v") -> unknown`,
		`put(b, "v", lease 9) -> unknown lease-revoke(9) -> unknown`,
		`put(c, "v") -> unknown put(d, "v") -> unknown range(c, "e") -> unknown`,
		`put(e, "v") -> unknown`,
		`lease-grant(ttl 0) -> unknown`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("partitions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// casRev adds a value-compare txn to a history with revisions.
func (b *builder) casRev(c int, call, ret int64, key, from, to string, ok bool, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Txn, Key: key, ExpectValue: &from, Value: to, Call: call, Return: ret,
		Resp: &history.Response{Revision: rev, Succeeded: ok}})
}

// casElse adds a failed value-compare txn whose else branch got the key
// (else_get), returning kvs.
func (b *builder) casElse(c int, call, ret int64, key, from, to string, rev int64, kvs ...history.KV) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.Txn, Key: key, ExpectValue: &from, ElseGet: true, Value: to, Call: call, Return: ret,
		Resp: &history.Response{Revision: rev, KVs: kvs}})
}

// In a history with revisions, a value-compare txn is judged by the full
// model: the fast path and porcupine agree on every case, and each case is
// decided (pass or fail), never left unknown.
func TestValueCompareWithRevisions(t *testing.T) {
	cases := []struct {
		name  string
		build func(b *builder)
		want  verdict.Status
	}{
		{"compare holds", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casRev(2, 20, 30, "a", "v1", "v2", true, 3)
			b.get(1, 40, 50, "a", 3, kv("a", "v2", 3))
		}, verdict.Pass},
		{"compare fails on another value", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casRev(2, 20, 30, "a", "v0", "v2", false, 2)
			b.get(1, 40, 50, "a", 2, kv("a", "v1", 2))
		}, verdict.Pass},
		{"compare fails on a missing key", func(b *builder) {
			b.casRev(2, 0, 10, "a", "", "v2", false, 1)
			b.get(1, 20, 30, "a", 1)
		}, verdict.Pass},
		{"succeeded on a missing key", func(b *builder) {
			b.casRev(2, 0, 10, "a", "", "v2", true, 2)
		}, verdict.Fail},
		{"failed although the value matched", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casRev(2, 20, 30, "a", "v1", "v2", false, 2)
		}, verdict.Fail},
		{"succeeded on a stale value", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.put(1, 20, 30, "a", "v3", 3)
			b.casRev(2, 40, 50, "a", "v1", "v2", true, 4)
		}, verdict.Fail},
		// Without an else branch a failed txn read nothing: its empty
		// answer is not "the key is absent".
		{"no else branch: nothing returned although the key exists", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casRev(2, 20, 30, "a", "v0", "v2", false, 2)
			b.put(1, 40, 50, "a", "v3", 3)
		}, verdict.Pass},
		{"else_get returns the value the compare missed", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casElse(2, 20, 30, "a", "v0", "v2", 2, kv("a", "v1", 2))
		}, verdict.Pass},
		{"else_get on a missing key returns nothing", func(b *builder) {
			b.casElse(2, 0, 10, "a", "", "v2", 1)
			b.put(1, 20, 30, "a", "v1", 2)
		}, verdict.Pass},
		{"else_get returns nothing although the key exists", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casElse(2, 20, 30, "a", "v0", "v2", 2)
		}, verdict.Fail},
		{"else_get returns a stale value", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.put(1, 20, 30, "a", "v3", 3)
			b.casElse(2, 40, 50, "a", "v0", "v2", 3, kv("a", "v1", 2))
		}, verdict.Fail},
		{"else_get returns the value it compared against", func(b *builder) {
			b.put(1, 0, 10, "a", "v1", 2)
			b.casElse(2, 20, 30, "a", "v1", "v2", 2, kv("a", "v1", 2))
		}, verdict.Fail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b builder
			tc.build(&b)
			for _, m := range []mode{modeFastOnly, modePorcupineOnly} {
				c := Check(context.Background(), b.history(), Options{mode: m, Timeout: 10 * time.Second})
				if c.Status != tc.want {
					t.Errorf("mode %d: %s, want %s: %s %q", m, c.Status, tc.want, c.Summary, c.Violations)
				}
			}
		})
	}
}
