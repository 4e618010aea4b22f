package lock

import (
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/history/historytest"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// counterHistory has acked, unknown and rejected increments, then a final
// read of value final ("" means the key is absent).
func counterHistory(acked, unknown, rejected int, final string) *history.History {
	var b historytest.Builder
	t := int64(0)
	add := func(op history.Operation) {
		t += 10
		op.Key, op.Call, op.Return = keyspace.LockCounterKey, t, t+5
		b.Add(op)
	}
	for range acked {
		add(history.Operation{Kind: history.Txn, Outcome: history.OK, Resp: &history.Response{Revision: t, Succeeded: true}})
	}
	for range unknown {
		add(history.Operation{Kind: history.Txn, Outcome: history.Unknown})
	}
	for range rejected {
		add(history.Operation{Kind: history.Txn, Outcome: history.OK, Resp: &history.Response{Revision: t}})
	}
	if final == "" {
		add(historytest.Get(keyspace.LockCounterKey, t))
	} else {
		add(historytest.Get(keyspace.LockCounterKey, t, history.KV{Key: keyspace.LockCounterKey, Value: final, ModRevision: t}))
	}
	return &b.H
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		acked, unknown, rejected int
		final                    string
		want                     verdict.Status
		violation                string
	}{
		{"every increment counted", 10, 0, 3, "10:c300-1", verdict.Pass, ""},
		{"an unknown increment applied", 10, 2, 0, "11:c300-1", verdict.Pass, ""},
		{"both unknown increments applied", 10, 2, 0, "12:c300-1", verdict.Pass, ""},
		{"nothing acknowledged, key absent", 0, 0, 2, "", verdict.Pass, ""},
		{"an acknowledged increment lost", 10, 2, 0, "9:c300-1", verdict.Fail, "lost updates"},
		{"a rejected increment applied", 10, 0, 5, "11:c300-1", verdict.Fail, "phantom"},
		{"a foreign value", 1, 0, 0, "one", verdict.Fail, "not <count>:<id>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := Check(counterHistory(tc.acked, tc.unknown, tc.rejected, tc.final))
			if len(cs) != 1 {
				t.Fatalf("got %d checks, want 1", len(cs))
			}
			c := cs[0]
			if c.Status != tc.want || tc.violation != "" && (len(c.Violations) == 0 || !strings.Contains(c.Violations[0], tc.violation)) {
				t.Errorf("got %s %q %v, want %s with %q", c.Status, c.Summary, c.Violations, tc.want, tc.violation)
			}
		})
	}
}

// An increment acknowledged after the final read was sent may take effect
// after the read: missing from it is no lost update. One acknowledged
// before the read was sent is.
func TestIncrementConcurrentWithFinalRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		ret  int64 // the last increment's return, relative to the final read's call
		want verdict.Status
	}{
		{"returned after the final read was sent", 1, verdict.Pass},
		{"returned before the final read was sent", -1, verdict.Fail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := counterHistory(3, 0, 0, "2:c300-1")
			final := &h.Operations[3]
			inc := &h.Operations[2]
			inc.Return = final.Call + tc.ret
			cs := Check(h)
			if len(cs) != 1 || cs[0].Status != tc.want {
				t.Fatalf("got %+v, want one %s check", cs, tc.want)
			}
		})
	}
}

func TestNoFinalReadIsUnknown(t *testing.T) {
	h := counterHistory(3, 0, 0, "3:c300-1")
	h.Operations = h.Operations[:len(h.Operations)-1]
	if cs := Check(h); len(cs) != 1 || cs[0].Status != verdict.Unknown {
		t.Errorf("without a final read: %+v, want one unknown check", cs)
	}
}

func TestNoLockTrafficNoCheck(t *testing.T) {
	h := &history.History{Operations: []history.Operation{{ID: 1, Kind: history.Put, Key: keyspace.KVKey(0), Outcome: history.OK, Resp: &history.Response{Revision: 2}}}}
	if cs := Check(h); len(cs) != 0 {
		t.Errorf("a history without lock traffic got %+v", cs)
	}
}
