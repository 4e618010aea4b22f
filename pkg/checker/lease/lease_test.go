package lease

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// revoked: lease 5 granted, /lease-revoke/x put with it at revision 2, the
// lease revoked at 2s (revision 3).
func revoked() *builder {
	b := &builder{}
	b.grant(0, 5, 30)
	b.put(0.1, "/lease-revoke/x", "x1", 5, 2)
	b.revoke(2, 5, 3)
	return b
}

func TestRevoke(t *testing.T) {
	t.Run("key gone after revoke passes", func(t *testing.T) {
		b := revoked()
		b.get(1, "/lease-revoke/x", 2, kv("/lease-revoke/x", "x1", 2, 5))
		b.get(2.005, "/lease-revoke/x", 2, kv("/lease-revoke/x", "x1", 2, 5)) // concurrent with the revoke
		b.get(3, "/lease-revoke/x", 3)
		b.add(3, history.Operation{Kind: history.Put, Key: "/lease-revoke/y", Value: "y1", Lease: 5, Outcome: history.Fail, Error: "lease not found"})
		b.H.Watches = []history.Watch{{ID: 100, ClientID: 2, Key: "/lease-revoke/", End: "/lease-revoke0", StartRevision: 1, Responses: []history.WatchResponse{
			{Time: at(0.2), Revision: 2, Events: []history.Event{{Type: "put", Key: "/lease-revoke/x", Value: "x1", ModRevision: 2, CreateRevision: 2, Version: 1, Lease: 5, IsCreate: true}}},
			{Time: at(2.1), Revision: 3, Events: []history.Event{{Type: "delete", Key: "/lease-revoke/x", ModRevision: 3}}},
		}}}
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Pass, 0, 0, "1 revoked leases")
	})
	t.Run("read after revoke sees the value", func(t *testing.T) {
		b := revoked()
		b.get(4, "/lease-revoke/x", 3, kv("/lease-revoke/x", "x1", 2, 5))
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Fail, 1, 0, `"/lease-revoke/x"="x1"`, "lease 5", "revision 3")
	})
	t.Run("unknown put surviving the revoke", func(t *testing.T) {
		b := revoked()
		b.add(1, history.Operation{Kind: history.Put, Key: "/lease-revoke/z", Value: "z1", Lease: 5, Outcome: history.Unknown, Error: "context deadline exceeded"})
		b.get(4, "/lease-revoke/z", 4, history.KV{Key: "/lease-revoke/z", Value: "z1", ModRevision: 4})
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Fail, 1, 0, `"z1"`)
	})
	t.Run("watch put after the revoke revision", func(t *testing.T) {
		b := revoked()
		b.H.Watches = []history.Watch{{ID: 100, ClientID: 2, Key: "/lease-revoke/x", StartRevision: 1, Responses: []history.WatchResponse{
			{Time: at(3), Revision: 4, Events: []history.Event{{Type: "put", Key: "/lease-revoke/x", Value: "x1", ModRevision: 4, Lease: 5}}},
		}}}
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Fail, 1, 0, "watch 100", "revision 4")
	})
	t.Run("put attached to a revoked lease succeeds", func(t *testing.T) {
		b := revoked()
		b.put(3, "/lease-revoke/y", "y1", 5, 4)
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Fail, 1, 0, `"/lease-revoke/y"`)
	})
	// Issue 17 item 2: an ok keep-alive of a lease whose ok revoke had
	// returned 83ms to 1.6s earlier.
	t.Run("keep-alive after the revoke returned succeeds", func(t *testing.T) {
		for _, later := range []float64{0.083, 0.4, 1.6} {
			b := revoked()
			b.keepalive(2.01+later, 5, 30, history.OK, "")
			expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Fail, 1, 0, "lease-keepalive op 4", "kept lease 5 alive", "after lease-revoke op 3")
		}
	})
	t.Run("keep-alive racing the revoke, or refused after it", func(t *testing.T) {
		b := revoked()
		b.keepalive(1.995, 5, 30, history.OK, "")                                     // returns while the revoke is in flight
		b.keepalive(2.5, 5, 0, history.Fail, "etcdserver: requested lease not found") // the promise kept
		b.keepalive(2.6, 5, 0, history.Unknown, "context deadline exceeded")          // says nothing
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Pass, 0, 0)
	})
	t.Run("no revokes is skipped", func(t *testing.T) {
		b := &builder{}
		b.grant(0, 5, 30)
		expect(t, find(t, Check(&b.H, Options{}), Revoke), verdict.Skipped, 0, 0)
	})
}

// expiring: lease 7 with a 5s TTL granted at 0 (returns 0.01s), so the key
// should be gone by 5.01s, +2s tolerance.
func expiring() *builder {
	b := &builder{}
	b.grant(0, 7, 5)
	b.put(0.1, "/lease-expire/a", "a1", 7, 2)
	b.get(1, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7))
	return b
}

func TestExpiry(t *testing.T) {
	t.Run("expires on time", func(t *testing.T) {
		b := expiring()
		b.get(4, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7))
		b.get(6, "/lease-expire/a", 3)
		b.get(7, "/lease-expire/a", 3)
		// 6.01s (the gone read's return) - 5.01s = 1s.
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Pass, 0, 0, "1 keys on leases never kept alive (TTL 5s)",
			"past deadline + 10s is a violation", "First seen gone 6s / 6s / 6s after the grant", "1s after the deadline")
	})
	t.Run("watch delete measures the delay", func(t *testing.T) {
		b := expiring()
		b.H.Watches = []history.Watch{{ID: 100, ClientID: 2, Key: "/lease-expire/", End: "/lease-expire0", StartRevision: 2, Responses: []history.WatchResponse{
			{Time: at(0.2), Revision: 2, Events: []history.Event{{Type: "put", Key: "/lease-expire/a", Value: "a1", ModRevision: 2, Lease: 7}}},
			{Time: at(5.51), Revision: 3, Events: []history.Event{{Type: "delete", Key: "/lease-expire/a", ModRevision: 3}}},
		}}}
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Pass, 0, 0, "500ms after the deadline")
	})
	t.Run("moderately late is a warning", func(t *testing.T) {
		b := expiring()
		b.get(9, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7)) // 3.99s late
		b.get(10, "/lease-expire/a", 3)
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Pass, 0, 1, "3.99s", "5s after the deadline")
	})
	t.Run("alive long past TTL fails", func(t *testing.T) {
		b := expiring()
		b.get(20, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7)) // 14.99s late
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Fail, 1, 0, `"/lease-expire/a"`, "14.99s", "never observed gone")
	})
	t.Run("a leader change restarts the TTL clock", func(t *testing.T) {
		// A fault window from 3s to 14s (say, a rolling restart) may elect
		// new leaders, and each refreshes every lease to its full TTL.
		b := expiring()
		b.H.Faults = []history.Fault{{ID: 1, Nemesis: "rolling-restart", Action: "rolling restart", Start: at(3), End: at(14)}}
		b.get(18, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7)) // 13s past grant+TTL, 0s past fault end+TTL
		b.get(20, "/lease-expire/a", 3)
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Pass, 0, 0, "1 deadlines restarted by a fault window")
	})
	t.Run("gone before a restarted deadline reads as before it, not as a negative delay", func(t *testing.T) {
		// The fault window restarts the deadline to 19s, but the leader
		// survived and the key expired on its first TTL: seen gone at 6s.
		b := expiring()
		b.H.Faults = []history.Fault{{ID: 1, Nemesis: "pause-follower", Action: "pause member-1", Start: at(3), End: at(14)}}
		b.get(6, "/lease-expire/a", 3)
		c := find(t, Check(&b.H, Options{}), Expiry)
		expect(t, c, verdict.Pass, 0, 0, "12.99s before the deadline")
		if regexp.MustCompile(`-[0-9]`).MatchString(c.Summary) {
			t.Errorf("summary shows a negative duration: %s", c.Summary)
		}
	})
	t.Run("a fault after the deadline excuses nothing", func(t *testing.T) {
		b := expiring()
		b.H.Faults = []history.Fault{{ID: 1, Nemesis: "kill-leader", Action: "kill member-0", Start: at(12), End: at(13)}}
		b.get(20, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7))
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Fail, 1, 0)
	})
	t.Run("tolerances are options", func(t *testing.T) {
		b := expiring()
		b.get(20, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7))
		expect(t, find(t, Check(&b.H, Options{ExpiryTolerance: 10 * 1e9, LooseTolerance: 30 * 1e9}), Expiry), verdict.Pass, 0, 1)
	})
	// A failed value-compare txn without an else branch read nothing: its
	// empty answer is no sign the key is gone. With else_get it is a read.
	t.Run("a failed value compare without else branch sees nothing", func(t *testing.T) {
		for _, elseGet := range []bool{false, true} {
			b := expiring()
			zz := "zz"
			b.add(2, history.Operation{Kind: history.Txn, Key: "/lease-expire/a", Value: "a2", ExpectValue: &zz, ElseGet: elseGet, Resp: &history.Response{Revision: 2}})
			want := "1 never observed gone"
			if elseGet {
				want = "First seen gone 2s"
			}
			expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Pass, 0, 0, want)
		}
	})
	t.Run("kept-alive lease is not judged", func(t *testing.T) {
		b := expiring()
		b.keepalive(3, 7, 5, history.OK, "")
		b.get(20, "/lease-expire/a", 2, kv("/lease-expire/a", "a1", 2, 7))
		expect(t, find(t, Check(&b.H, Options{}), Expiry), verdict.Skipped, 0, 0)
	})
}

// kept: lease 9 with a 3s TTL, /lease-keep/a attached, keep-alives every
// second from 1s to 20s unless skipped, and a get every 2s that sees the key.
func kept(skip func(sec int) bool, missingAt ...int) *builder {
	b := &builder{}
	b.grant(0, 9, 3)
	b.put(0.1, "/lease-keep/a", "a1", 9, 2)
	missing := map[int]bool{}
	for _, s := range missingAt {
		missing[s] = true
	}
	for s := 1; s <= 20; s++ {
		if skip == nil || !skip(s) {
			b.keepalive(float64(s), 9, 3, history.OK, "")
		} else {
			b.keepalive(float64(s), 9, 3, history.Unknown, "context deadline exceeded")
		}
		if s%2 == 0 || missing[s] {
			if missing[s] {
				b.get(float64(s)+0.5, "/lease-keep/a", 2)
			} else {
				b.get(float64(s)+0.5, "/lease-keep/a", 2, kv("/lease-keep/a", "a1", 2, 9))
			}
		}
	}
	return b
}

func TestKeepAlive(t *testing.T) {
	t.Run("kept-alive key survives", func(t *testing.T) {
		b := kept(nil)
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Pass, 0, 0, "1 kept-alive keys", "10 reads")
	})
	t.Run("kept-alive key vanishes", func(t *testing.T) {
		b := kept(nil, 10)
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Fail, 1, 0, `"/lease-keep/a"`, "get op")
	})
	t.Run("missing after keep-alives stopped is a warning", func(t *testing.T) {
		// Partition from 5s: keep-alives time out; the key is missing at 10.5s.
		b := kept(func(s int) bool { return s >= 5 && s <= 11 }, 10)
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Pass, 0, 1, "stopped succeeding")
	})
	t.Run("missing after a long pause is a warning", func(t *testing.T) {
		// Keep-alives fail from 5s to 11s, resume at 12s; the key is missing at 13.5s.
		b := kept(func(s int) bool { return s >= 5 && s <= 11 }, 13)
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Pass, 0, 1, "paused")
	})
	t.Run("lease not found while kept alive", func(t *testing.T) {
		b := kept(nil)
		b.keepalive(10.2, 9, 3, history.Fail, "etcdserver: requested lease not found")
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Fail, 1, 0, "lease not found")
	})
	t.Run("revoked lease is not judged", func(t *testing.T) {
		b := kept(nil, 14)
		b.revoke(13, 9, 3)
		expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Pass, 0, 0)
	})
	t.Run("no kept-alive keys is skipped", func(t *testing.T) {
		expect(t, find(t, Check(&expiring().H, Options{}), KeepAlive), verdict.Skipped, 0, 0)
	})
}

func TestKeepAliveRangeReadSeesKeyMissing(t *testing.T) {
	b := kept(nil)
	b.add(9.5, history.Operation{Kind: history.Range, Key: "/lease-keep/", End: "/lease-keep0", Resp: &history.Response{Revision: 2}})
	// A limited range proves nothing about keys past its limit.
	b.add(9.6, history.Operation{Kind: history.Range, Key: "/lease-keep/", End: "/lease-keep0", Limit: 1, Resp: &history.Response{Revision: 2}})
	// A serializable read may be stale and promises nothing.
	b.add(9.7, history.Operation{Kind: history.Get, Key: "/lease-keep/a", Serializable: true, Resp: &history.Response{Revision: 2}})
	expect(t, find(t, Check(&b.H, Options{}), KeepAlive), verdict.Fail, 1, 0, "range op")
}

// BenchmarkCheck measures the lease checks on a history of 2000 leases, each
// with a key, a keep-alive per second for a minute and a read every two.
func BenchmarkCheck(b *testing.B) {
	bl := &builder{}
	for l := int64(1); l <= 2000; l++ {
		start := float64(l % 60)
		prefix := keyspace.LeaseKeepPrefix
		if l%2 == 0 {
			prefix = keyspace.LeaseExpirePrefix
		}
		key := fmt.Sprintf("%sk%d", prefix, l)
		bl.grant(start, l, 5)
		bl.put(start+0.1, key, fmt.Sprintf("v%d", l), l, l+1)
		for s := 1; s <= 60; s++ {
			if prefix == keyspace.LeaseKeepPrefix {
				bl.keepalive(start+float64(s), l, 5, history.OK, "")
			}
			if s%2 == 0 {
				if prefix == keyspace.LeaseKeepPrefix || s < 5 {
					bl.get(start+float64(s)+0.5, key, l+1, kv(key, fmt.Sprintf("v%d", l), l+1, l))
				} else {
					bl.get(start+float64(s)+0.5, key, l+1)
				}
			}
		}
		if l%10 == 0 {
			bl.revoke(start+61, l, 3000+l)
		}
	}
	bl.H.SortOperations()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if cs := Check(&bl.H, Options{}); !verdict.Passed(cs) {
			b.Fatalf("benchmark history must pass: %+v", cs)
		}
	}
	b.ReportMetric(float64(len(bl.H.Operations)), "ops")
}

// Recorded runs of a correct etcd pass every lease check: keep-alives racing
// revokes, expiries moved by leader changes.
func TestAcceptsRecordedRuns(t *testing.T) {
	files, _ := filepath.Glob("../testdata/real-*-pass.jsonl.gz")
	more, _ := filepath.Glob("../serializable/testdata/*-pass.jsonl.gz")
	files = append(files, more...)
	if len(more) == 0 {
		t.Fatal("recorded runs not found")
	}
	for _, f := range files {
		h, err := history.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range Check(h, Options{}) {
			if c.Status == verdict.Fail {
				t.Errorf("%s: %s: %s %v", filepath.Base(f), c.Name, c.Summary, c.Violations)
			}
		}
	}
}
