package keyspace

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestPrefixEndMatchesClientv3(t *testing.T) {
	for _, p := range []string{KVPrefix, LeaseKeepPrefix, LockPrefix, "a", "a\xff", "\xff\xff", "/"} {
		if got, want := PrefixEnd(p), clientv3.GetPrefixRangeEnd(p); got != want {
			t.Errorf("PrefixEnd(%q) = %q, clientv3 says %q", p, got, want)
		}
	}
}

func TestInRange(t *testing.T) {
	for _, tc := range []struct {
		k, key, end string
		want        bool
	}{
		{"/kv/k001", "/kv/k001", "", true},
		{"/kv/k0010", "/kv/k001", "", false},
		{"/kv/k001", KVPrefix, PrefixEnd(KVPrefix), true},
		{"/kv0", KVPrefix, PrefixEnd(KVPrefix), false},
		{"/lock/value", KVPrefix, PrefixEnd(KVPrefix), false},
		{"/kv/", KVPrefix, "\x00", true},
		{"/a", KVPrefix, "\x00", false},
		{"/b", "/a", "/b", false},
		{"/ab", "/a", "", false},
		{"/kv", "/kv/", "/kv0", false},
		{"/zzz", "/kv/", "\x00", true},
		{"", "", "\x00", true},
	} {
		if got := InRange(tc.k, tc.key, tc.end); got != tc.want {
			t.Errorf("InRange(%q, %q, %q) = %v, want %v", tc.k, tc.key, tc.end, got, tc.want)
		}
	}
}

func TestKeysOfTheLayout(t *testing.T) {
	if KVKey(7) != "/kv/k007" || KVKey(MaxKVKeys-1) != "/kv/k999" {
		t.Errorf("KVKey: %q, %q", KVKey(7), KVKey(MaxKVKeys-1))
	}
	if !HasForeignWriters(LockCounterKey) || !HasForeignWriters(RegistryPrefix+"svc-1") || HasForeignWriters(KVKey(0)) {
		t.Error("HasForeignWriters: the lock and registry keys have foreign writers, the KV pool has none")
	}
}

func TestLinearizableRead(t *testing.T) {
	ok := &history.Response{Revision: 5}
	for _, tc := range []struct {
		op   history.Operation
		want bool
	}{
		{history.Operation{Kind: history.Get, Outcome: history.OK, Resp: ok}, true},
		{history.Operation{Kind: history.Range, Outcome: history.OK, Resp: ok}, true},
		{history.Operation{Kind: history.Get, Outcome: history.OK, Resp: ok, Serializable: true}, false},
		{history.Operation{Kind: history.Get, Outcome: history.Unknown}, false},
		{history.Operation{Kind: history.Txn, Outcome: history.OK, Resp: &history.Response{Revision: 5}}, true},
		{history.Operation{Kind: history.Txn, Outcome: history.OK, Resp: &history.Response{Revision: 5, Succeeded: true}}, false},
		{history.Operation{Kind: history.Put, Outcome: history.OK, Resp: ok}, false},
	} {
		if got := LinearizableRead(&tc.op); got != tc.want {
			t.Errorf("LinearizableRead(%+v) = %v, want %v", tc.op, got, tc.want)
		}
	}
}

func TestParseCounter(t *testing.T) {
	if n, err := ParseCounter("12:c300-77"); err != nil || n != 12 {
		t.Errorf("ParseCounter = %d, %v", n, err)
	}
	for _, bad := range []string{"", "12", "x:c1-1"} {
		if _, err := ParseCounter(bad); err == nil {
			t.Errorf("ParseCounter(%q) accepted", bad)
		}
	}
}

func TestKubeKeyRoundTrip(t *testing.T) {
	for _, i := range []int{0, 7, 999} {
		if got, ok := KubeIndex(KubeKey(i)); !ok || got != i {
			t.Errorf("KubeIndex(KubeKey(%d)) = %d, %v", i, got, ok)
		}
	}
	for _, k := range []string{KVKey(3), KubePrefix + "x", ChurnKey(1, 2)} {
		if _, ok := KubeIndex(k); ok {
			t.Errorf("KubeIndex(%q) accepted a key that is not an object's", k)
		}
	}
	if !InRange(KubeKey(1), KVPrefix, PrefixEnd(KVPrefix)) || !InRange(ChurnKey(1, 2), KVPrefix, PrefixEnd(KVPrefix)) {
		t.Error("objects and churn keys must lie under KVPrefix, where watchers and the final read look")
	}
}
