package workload

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/lock"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// testSeed returns the seed of a randomized test, WORKLOAD_SEED when set, and
// logs it so that a failure can be replayed.
func testSeed(t testing.TB) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("WORKLOAD_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("WORKLOAD_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with WORKLOAD_SEED=%d)", seed, seed)
	return seed
}

// TestTrafficAgainstCluster runs 5 s of KV, watch and lease traffic against a
// real 3-member cluster, then the lock counter and a registration, and checks
// what was recorded.
func TestTrafficAgainstCluster(t *testing.T) {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	watchers, err := StartWatch(ctx, c, rec, WatchConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()

	tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
	defer tcancel()
	var (
		wg              sync.WaitGroup
		kvStats, lStats Stats
		kvErr, leaseErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		kvStats, kvErr = Run(tctx, c, rec, Config{Seed: seed, Serializable: 0.1})
	}()
	go func() {
		defer wg.Done()
		lStats, leaseErr = RunLeases(tctx, c, rec, LeaseConfig{})
	}()
	wg.Wait()
	if kvErr != nil || leaseErr != nil {
		t.Fatalf("Run: %v; RunLeases: %v", kvErr, leaseErr)
	}
	t.Logf("kv: %s %v; leases: %s %v", kvStats, kvStats.ByKind, lStats, lStats.ByKind)

	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	h := rec.History()
	final := lastRange(h).Resp.Revision
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	if err := watchers.Drain(dctx, final); err != nil {
		t.Error(err)
	}
	dcancel()

	// Lock counter and registration on the same cluster.
	lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
	lres, err := RunLockCounter(lctx, c, rec, LockConfig{Seed: seed})
	lcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lock counter: %+v", lres)
	for _, c := range lock.Check(rec.History()) {
		if c.Status != verdict.Pass {
			t.Errorf("%s: %s %s %v", c.Name, c.Status, c.Summary, c.Violations)
		}
	}
	if lres.Acked == 0 {
		t.Error("lock counter: no increment acknowledged in 3s")
	}
	reg, err := RunRegistration(ctx, c, rec, RegConfig{TTL: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	time.Sleep(2500 * time.Millisecond) // longer than the TTL: only keep-alives keep it
	if ok := keyExists(t, ctx, c, reg.Key()); !ok {
		t.Fatalf("registration %s vanished while its owner was alive", reg.Key())
	}
	if err := reg.KillOwner(); err != nil {
		t.Fatal(err)
	}
	delay, err := reg.WaitGone(ctx, 3*time.Second)
	if err != nil {
		t.Error(err)
	}
	t.Logf("registration gone %s after owner died", delay)

	h = rec.History()
	checkOperations(t, h, kvStats)
	checkWatches(t, h, final)
	checkRoundTrip(t, h)
}

func lastRange(h *history.History) history.Operation {
	for i := len(h.Operations) - 1; i >= 0; i-- {
		if op := h.Operations[i]; op.Kind == history.Range && op.ClientID == FinalReadClient && op.Outcome == history.OK {
			return op
		}
	}
	return history.Operation{Resp: &history.Response{}}
}

func keyExists(t *testing.T, ctx context.Context, c cluster.Cluster, key string) bool {
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) > 0
}

func checkOperations(t *testing.T, h *history.History, kv Stats) {
	t.Helper()
	type count struct{ ok, fail, unknown int }
	byKind := map[history.Kind]*count{}
	values := map[string]int64{}
	var pinned, serializable, expiredSeen int
	var txns [2]count // by compare: [0] mod revision, [1] value
	expireKeys := map[string]bool{}
	for _, op := range h.Operations {
		c := byKind[op.Kind]
		if c == nil {
			c = &count{}
			byKind[op.Kind] = c
		}
		switch op.Outcome {
		case history.OK:
			c.ok++
			if op.Resp == nil || op.Resp.Revision <= 0 || op.Resp.MemberID == 0 {
				t.Errorf("op %d (%s): ok without header revision/member: %+v", op.ID, op.Kind, op.Resp)
			}
		case history.Fail:
			c.fail++
		default:
			c.unknown++
		}
		if op.Return < op.Call {
			t.Errorf("op %d returns before its call", op.ID)
		}
		if op.Kind == history.Put || op.Kind == history.Txn {
			if op.Value == "" {
				t.Errorf("op %d (%s %s) writes an empty value", op.ID, op.Kind, op.Key)
			}
			if prev, dup := values[op.Value]; dup {
				t.Errorf("ops %d and %d write the same value %q", prev, op.ID, op.Value)
			}
			values[op.Value] = op.ID
		}
		if op.Kind == history.Txn && op.Outcome == history.OK && strings.HasPrefix(op.Key, keyspace.KVPrefix) {
			n := &txns[0]
			if op.ExpectValue != nil {
				n = &txns[1]
			}
			if op.Resp.Succeeded {
				n.ok++
			} else {
				n.fail++
			}
			if op.ExpectValue != nil && !op.ElseGet {
				t.Errorf("op %d: a value-compare txn recorded without its else branch", op.ID)
			}
		}
		if op.Endpoint != "" {
			pinned++
		}
		if op.Serializable {
			serializable++
		}
		if op.Kind == history.Put && strings.HasPrefix(op.Key, keyspace.LeaseExpirePrefix) && op.Outcome == history.OK {
			expireKeys[op.Key] = true
		}
		if op.Kind == history.Get && expireKeys[op.Key] && op.Outcome == history.OK && len(op.Resp.KVs) == 0 {
			expiredSeen++
		}
	}
	for _, k := range []history.Kind{history.Put, history.Get, history.Range, history.Txn, history.Delete,
		history.LeaseGrant, history.LeaseRevoke, history.LeaseKeepAlive} {
		c := byKind[k]
		if c == nil || c.ok == 0 {
			t.Errorf("no %s operation succeeded (%+v)", k, c)
		}
	}
	total, bad := 0, 0
	for k, c := range byKind {
		t.Logf("%-16s ok=%d fail=%d unknown=%d", k, c.ok, c.fail, c.unknown)
		total += c.ok + c.fail + c.unknown
		bad += c.fail + c.unknown
	}
	// A healthy cluster answers nearly everything; a few timeouts on a
	// loaded machine are tolerated.
	if bad*100 > total {
		t.Errorf("%d of %d operations did not succeed on a healthy cluster", bad, total)
	}
	for i, what := range []string{"revision-compare", "value-compare"} {
		if c := txns[i]; c.ok == 0 || c.fail == 0 {
			t.Errorf("%s txns: %d succeeded, %d failed; want both", what, c.ok, c.fail)
		}
	}
	if pinned == 0 || serializable == 0 {
		t.Errorf("pinned ops %d, serializable gets %d; want both", pinned, serializable)
	}
	if expiredSeen == 0 {
		t.Error("no /lease-expire/ key was seen gone after its lease expired")
	}
	if kv.Ops == 0 || kv.OK == 0 {
		t.Errorf("KV stats %s", kv)
	}
}

type evKey struct {
	rev int64
	key string
}

func checkWatches(t *testing.T, h *history.History, final int64) {
	t.Helper()
	written := map[string]bool{}
	for _, op := range h.Operations {
		if op.Value != "" {
			written[op.Value] = true
		}
	}
	if len(h.Watches) < 4 {
		t.Fatalf("%d watches recorded, want at least one per watcher", len(h.Watches))
	}
	perClient := map[int][]evKey{}
	progress := 0
	for _, w := range h.Watches {
		last := int64(0)
		for _, r := range w.Responses {
			if r.Progress {
				progress++
			}
			if r.Error != "" {
				t.Errorf("watch %d: error %s on a healthy cluster", w.ID, r.Error)
			}
			for _, ev := range r.Events {
				if ev.ModRevision < last {
					t.Errorf("watch %d: revision %d after %d", w.ID, ev.ModRevision, last)
				}
				last = ev.ModRevision
				if ev.Type == "put" && !written[ev.Value] {
					t.Errorf("watch %d: event value %q was never written", w.ID, ev.Value)
				}
				if ev.Type == "put" && ev.IsCreate != (ev.PrevKV == nil) {
					t.Errorf("watch %d: put %s@%d IsCreate=%v but PrevKV=%v", w.ID, ev.Key, ev.ModRevision, ev.IsCreate, ev.PrevKV)
				}
				perClient[w.ClientID] = append(perClient[w.ClientID], evKey{ev.ModRevision, ev.Key})
			}
		}
	}
	if progress == 0 {
		t.Error("no progress notification recorded")
	}
	// No faults: every watcher, including the late ones that replay from
	// the start revision, must have seen exactly the same events.
	var ref []evKey
	refID := -1
	for id, evs := range perClient {
		if ref == nil {
			ref, refID = evs, id
			continue
		}
		if !reflect.DeepEqual(ref, evs) {
			t.Errorf("watcher %d saw %d events, watcher %d saw %d; they differ", refID, len(ref), id, len(evs))
		}
	}
	if len(perClient) != 4 {
		t.Errorf("events from %d watchers, want 4", len(perClient))
	}
	if len(ref) == 0 || ref[len(ref)-1].rev > final {
		t.Errorf("events end at %v, final revision %d", ref[len(ref)-1:], final)
	}
}

func checkRoundTrip(t *testing.T, h *history.History) {
	t.Helper()
	var buf bytes.Buffer
	if err := history.Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := history.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Operations, h.Operations) {
		t.Errorf("operations differ after Write/Read (%d vs %d)", len(got.Operations), len(h.Operations))
	}
	if !reflect.DeepEqual(got.Watches, h.Watches) {
		t.Errorf("watches differ after Write/Read (%d vs %d)", len(got.Watches), len(h.Watches))
	}
}
