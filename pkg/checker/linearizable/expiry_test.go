package linearizable

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

const sec = int64(time.Second)

// grantTTL records a successful grant of lease with a TTL in seconds.
func (b *builder) grantTTL(c int, call, ret int64, lease, ttl, rev int64) int64 {
	return b.add(history.Operation{ClientID: c, Kind: history.LeaseGrant, TTL: ttl, Call: call, Return: ret, Resp: &history.Response{Revision: rev, LeaseID: lease, TTL: ttl}})
}

// lateExpiry is the shape of the 1.16M-operation run's undecided expiry: a
// 2 s lease outlives its TTL (a leader change restarted it), a write called
// after the expiry's earliest time is applied, and then one revision gap
// comes where an unknown put nobody observed would also fit, before a read
// that sees the lease's key gone, returning at absentRet.
func lateExpiry(absentRet int64) *builder {
	b := &builder{}
	b.grantTTL(1, 0, 10, 7, 2, 1)
	b.putLease(1, 20, 30, "/lease-expire/a", "a1", 7, 2)
	b.put(2, 100, 110, "/kv/x", "x1", 3)
	b.get(1, 2*sec, 2*sec+10, "/lease-expire/a", 3, history.KV{Key: "/lease-expire/a", Value: "a1", ModRevision: 2, Lease: 7})
	// Fresh: its client gave up after the store reached the gap.
	b.add(history.Operation{ClientID: 3, Kind: history.Put, Key: "/kv/y", Value: "y1", Call: 2*sec + 100, Return: 3 * sec, Outcome: history.Unknown})
	b.put(2, 2*sec+200, 2*sec+210, "/kv/x", "x2", 4)
	// Revision 5: no recorded write claims it.
	b.put(2, absentRet-100, absentRet-90, "/kv/y", "y2", 6)
	b.get(1, absentRet-50, absentRet, "/lease-expire/a", 6)
	return b
}

// TestLateExpiryFillsGapInOnePass: the fast path must give the gap to the
// expiry the read needs, not to an unknown put nobody needs because the
// expiry's earliest time is older than the latest applied write. An expiry
// has no client to give up on it; it was skipped as stale and cost a replay
// each time, which ran the 1.16M history out of replays.
func TestLateExpiryFillsGapInOnePass(t *testing.T) {
	h := lateExpiry(2*sec + 500).history()
	bothAgree(t, h, verdict.Pass)
	ops, _ := selectOps(h, false)
	fr, _ := fastRun(context.Background(), ops, config{}, newHints(), 1, 0)
	if fr.undecided != "" || len(fr.definite) > 0 {
		t.Fatalf("one replay did not decide: undecided %q, violations %v", fr.undecided, fr.definite)
	}
}

// TestEarlyExpiryRejected: a 2 s lease's key seen gone 1 s after the grant
// (no revoke, nothing else deletes it) is not linearizable, whatever fills
// the gap; the fast path must not pass it.
func TestEarlyExpiryRejected(t *testing.T) {
	b := &builder{}
	b.grantTTL(1, 0, 10, 7, 2, 1)
	b.putLease(1, 20, 30, "/lease-expire/a", "a1", 7, 2)
	b.add(history.Operation{ClientID: 3, Kind: history.Put, Key: "/kv/y", Value: "y1", Call: 100, Return: 3 * sec, Outcome: history.Unknown})
	b.get(1, sec, sec+10, "/lease-expire/a", 3)
	h := b.history()
	if c := Check(context.Background(), h, Options{mode: modeFastOnly}); c.Status == verdict.Pass {
		t.Fatalf("fast path passed an expiry at half the TTL: %s", c.Summary)
	}
	if c := Check(context.Background(), h, Options{Timeout: time.Minute}); c.Status != verdict.Fail {
		t.Fatalf("got %s, want fail: %s", c.Status, c.Summary)
	}
	// The same read 1.95 s after the grant may see the expiry.
	b = &builder{}
	b.grantTTL(1, 0, 10, 7, 2, 1)
	b.putLease(1, 20, 30, "/lease-expire/a", "a1", 7, 2)
	b.add(history.Operation{ClientID: 3, Kind: history.Put, Key: "/kv/y", Value: "y1", Call: 100, Return: 3 * sec, Outcome: history.Unknown})
	b.get(1, 1950*sec/1000, 1950*sec/1000+10, "/lease-expire/a", 3)
	bothAgree(t, b.history(), verdict.Pass)
}

// TestRealLateExpiry: the first 16k operations of the 1.16M-operation run
// (testdata README) hold two such expiries; the fast path decides them in
// one replay, where it used to need three.
func TestRealLateExpiry(t *testing.T) {
	h, err := loadGzip(filepath.Join("..", "testdata", "real-mix-1m-expiry-prefix-16k-pass.jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := selectOps(h, false)
	fr, _ := fastRun(context.Background(), ops, config{foreign: hasForeignWriters(h), init: baseline(h)}, newHints(), 1, 0)
	if fr.undecided != "" || len(fr.definite) > 0 {
		t.Fatalf("one replay did not decide: undecided %q, violations %v", fr.undecided, first(fr.definite, 3))
	}
}

// expiryPair appends one copy of a filler puzzle starting at revision cur
// and time t0, for lease IDs l and l+1: two 2 s leases expire in the only
// two gaps, but the first gap also fits an unknown put nobody needs, and
// the second expiry is not yet due there. The first replay gives the first
// gap to the put and the second replay learns where each expiry goes, so
// each copy costs replays; copies far apart in revisions are independent.
func expiryPair(b *builder, cur, t0, l int64, i int) {
	key := func(s string) string { return fmt.Sprintf("/%s/%d", s, i) }
	val := func(s string) string { return fmt.Sprintf("%s-%d", s, i) }
	ms := sec / 1000
	b.grantTTL(1, t0, t0+10, l, 2, cur)
	b.grantTTL(2, t0+500*ms, t0+500*ms+10, l+1, 2, cur+1)
	b.putLease(1, t0+20, t0+30, key("lease-expire/a"), val("a"), l, cur+1)
	b.putLease(2, t0+500*ms+20, t0+500*ms+30, key("lease-expire/b"), val("b"), l+1, cur+2)
	b.put(3, t0+2000*ms, t0+2000*ms+10, key("kv/x"), val("x1"), cur+3)
	b.add(history.Operation{ClientID: 4, Kind: history.Put, Key: key("kv/y"), Value: val("y1"), Call: t0 + 2000*ms + 100, Return: t0 + 5*sec, Outcome: history.Unknown})
	// Revision cur+4: a gap the first expiry (due 1.9 s) may fill.
	b.put(3, t0+2100*ms, t0+2200*ms, key("kv/y"), val("y2"), cur+5)
	// Revision cur+6: a gap either expiry may fill.
	b.put(3, t0+2450*ms, t0+2500*ms, key("kv/x"), val("x2"), cur+7)
	b.get(1, t0+2500*ms, t0+2600*ms, key("lease-expire/a"), cur+7)
	b.get(2, t0+2500*ms, t0+2600*ms, key("lease-expire/b"), cur+7)
}

// TestIndependentHintsShareReplays: a replay learns from every independent
// contradiction it finds, not only its first, so a history with many
// unrelated wrong guesses (a long run has hundreds of expiries) does not
// run out of replays. Each copy needs two lessons; the copies together
// need more replays than the budget when learnt one at a time.
func TestIndependentHintsShareReplays(t *testing.T) {
	const copies = 5
	b := &builder{}
	for i := range copies {
		expiryPair(b, 1+7*int64(i), 10*sec*int64(i), 100+2*int64(i), i)
	}
	h := b.history()
	bothAgree(t, h, verdict.Pass)
	ops, _ := selectOps(h, false)
	fr, _ := fastRun(context.Background(), ops, config{}, newHints(), 3, 0)
	if fr.undecided != "" || len(fr.definite) > 0 {
		t.Fatalf("three replays did not decide %d independent puzzles: undecided %q, violations %v", copies, fr.undecided, fr.definite)
	}
}
