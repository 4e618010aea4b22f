package durability

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// b builds histories with increasing times, one op after another.
type b struct {
	h   history.History
	now int64
}

func (x *b) op(o history.Operation) *b {
	x.now += 10
	o.ID = int64(len(x.h.Operations) + 1)
	o.Call, o.Return = x.now, x.now+5
	if o.Outcome == "" {
		o.Outcome = history.OK
	}
	x.h.Operations = append(x.h.Operations, o)
	return x
}

func (x *b) put(key, val string, rev int64) *b {
	return x.op(history.Operation{Kind: history.Put, Key: key, Value: val, Resp: &history.Response{Revision: rev}})
}

func (x *b) final(rev int64, kvs ...history.KV) *b {
	return x.op(history.Operation{Kind: history.Range, Key: "/kv/", End: "/kv0", Resp: &history.Response{Revision: rev, KVs: kvs}})
}

func kv(k, v string, rev int64) history.KV { return history.KV{Key: k, Value: v, ModRevision: rev} }

func TestAcceptsEveryWriteReadable(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/b", "2", 3).put("/kv/a", "3", 4).
		op(history.Operation{Kind: history.Delete, Key: "/kv/b", Resp: &history.Response{Revision: 5, Deleted: 1}}).
		final(5, kv("/kv/a", "3", 4))
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", c.Status, c.Violations)
	}
}

func TestAcceptsUnknownWriteThatOverwrote(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).
		op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "2", Outcome: history.Unknown}).
		final(3, kv("/kv/a", "2", 3))
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", c.Status, c.Violations)
	}
}

func TestRejectsLostWrite(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/a", "2", 3).final(3, kv("/kv/a", "1", 2))
	c := Check(&x.h)
	if c.Status != verdict.Fail || !strings.Contains(c.Summary, "LOST ACKNOWLEDGED WRITES") || !strings.Contains(c.Violations[0], `"2" at revision 3`) {
		t.Fatalf("want lost write of /kv/a=2, got %s %q %v", c.Status, c.Summary, c.Violations)
	}
}

func TestRejectsEmptyNewCluster(t *testing.T) {
	// All pods deleted without persistence: the members bootstrap a new,
	// empty cluster and the final read sees nothing at revision 1.
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/b", "2", 3).final(1)
	c := Check(&x.h)
	if c.Status != verdict.Fail {
		t.Fatal("want fail")
	}
	joined := strings.Join(c.Violations, "\n")
	if !strings.Contains(joined, "revision went backwards") || !strings.Contains(c.Summary, "2 of 2 keys") {
		t.Fatalf("summary %q violations %v", c.Summary, c.Violations)
	}
}

func TestSkipsWithoutFinalRead(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2)
	if c := Check(&x.h); c.Status != verdict.Skipped {
		t.Fatalf("want skipped, got %s", c.Status)
	}
}

func TestAcceptsLeasedKeyGoneByExpiry(t *testing.T) {
	x := (&b{}).op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "1", Lease: 7, Resp: &history.Response{Revision: 2}}).
		final(3)
	if c := Check(&x.h); c.Status != verdict.Pass {
		t.Fatalf("a leased key may expire: got %s %v", c.Status, c.Violations)
	}
	// Without a lease, the same absence is a lost write.
	y := (&b{}).put("/kv/a", "1", 2).final(3)
	if c := Check(&y.h); c.Status != verdict.Fail {
		t.Fatal("an unleased key that vanished is a lost write")
	}
}

// store simulates one etcd store for a single sequential client, with the
// create revisions and versions etcd keeps, and can be wiped the way a
// cluster without persistence is when every pod is deleted.
type store struct {
	x   *b
	rev int64
	kvs map[string]history.KV
	n   int
}

func newStore() *store { return &store{x: &b{}, rev: 1, kvs: map[string]history.KV{}} }

func (s *store) put(key string) {
	s.n++
	s.rev++
	kv := s.kvs[key]
	if kv.Key == "" {
		kv = history.KV{Key: key, CreateRevision: s.rev}
	}
	kv.Value, kv.ModRevision = fmt.Sprintf("v%d", s.n), s.rev
	kv.Version++
	s.kvs[key] = kv
	s.x.op(history.Operation{Kind: history.Put, Key: key, Value: kv.Value, Resp: &history.Response{Revision: s.rev}})
}

func (s *store) del(key string) {
	deleted := int64(0)
	if _, ok := s.kvs[key]; ok {
		s.rev++
		deleted = 1
		delete(s.kvs, key)
	}
	s.x.op(history.Operation{Kind: history.Delete, Key: key, Resp: &history.Response{Revision: s.rev, Deleted: deleted}})
}

func (s *store) get(key string) {
	var kvs []history.KV
	if kv, ok := s.kvs[key]; ok {
		kvs = append(kvs, kv)
	}
	s.x.op(history.Operation{Kind: history.Get, Key: key, Resp: &history.Response{Revision: s.rev, KVs: kvs}})
}

// traffic runs n writes (and a read after every fourth) on ten keys.
func (s *store) traffic(rnd *rand.Rand, n int) {
	for i := range n {
		key := fmt.Sprintf("/kv/k%d", rnd.IntN(10))
		if rnd.IntN(10) == 0 {
			s.del(key)
		} else {
			s.put(key)
		}
		if i%4 == 0 {
			s.get(fmt.Sprintf("/kv/k%d", rnd.IntN(10)))
		}
	}
}

func (s *store) final() *history.History {
	var kvs []history.KV
	for _, kv := range s.kvs {
		kvs = append(kvs, kv)
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].Key < kvs[j].Key })
	s.x.final(s.rev, kvs...)
	return &s.x.h
}

// Issue 12 item 1: every pod deleted, the cluster comes back empty at
// revision 1 while traffic keeps writing the same keys, and writes enough
// to pass the old revisions before the final read.
func TestRejectsResetClusterThatCaughtUp(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0))
		s := newStore()
		s.traffic(rnd, 200)
		s.rev, s.kvs = 1, map[string]history.KV{} // every pod deleted, no persistence
		s.traffic(rnd, 250)
		c := Check(s.final())
		if c.Status != verdict.Fail {
			t.Fatalf("seed %d: a cluster recreated empty must fail durability, got %s: %s", seed, c.Status, c.Summary)
		}
		all := strings.Join(c.Violations, "\n")
		if !strings.Contains(all, "store revision went backwards") || !strings.Contains(all, "recreated empty") {
			t.Fatalf("seed %d: want the revision drop and the recreated keys named, got %s\n%s", seed, c.Summary, all)
		}
	}
}

func TestAcceptsSameTrafficWithoutReset(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 0))
		s := newStore()
		s.traffic(rnd, 200)
		s.traffic(rnd, 250)
		if c := Check(s.final()); c.Status != verdict.Pass {
			t.Fatalf("seed %d: want pass, got %s: %s %v", seed, c.Status, c.Summary, c.Violations)
		}
	}
}

// Without versions in the final read, the drop of the revision in real time
// still tells the reset, however many writes follow it.
func TestRejectsResetWithoutVersions(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 0))
	s := newStore()
	s.traffic(rnd, 200)
	s.rev, s.kvs = 1, map[string]history.KV{}
	s.traffic(rnd, 2000)
	h := s.final()
	for i := range h.Operations {
		if r := h.Operations[i].Resp; r != nil {
			for j := range r.KVs {
				r.KVs[j].Version, r.KVs[j].CreateRevision = 0, 0
			}
		}
	}
	c := Check(h)
	if c.Status != verdict.Fail || !strings.Contains(c.Violations[0], "store revision went backwards") || !strings.Contains(c.Summary, "LOST ACKNOWLEDGED WRITES") {
		t.Fatalf("want the revision drop, got %s: %s %v", c.Status, c.Summary, c.Violations)
	}
	if len(c.Violations) > 12 {
		t.Errorf("one drop should be one line, got %d violations", len(c.Violations))
	}
	// And with no final read at all.
	h.Operations = h.Operations[:len(h.Operations)-1]
	if c := Check(h); c.Status != verdict.Fail {
		t.Fatalf("a revision drop fails durability without a final read, got %s: %s", c.Status, c.Summary)
	}
}

func TestRejectsKeyRecreatedWithoutDelete(t *testing.T) {
	x := (&b{}).put("/kv/a", "1", 2).put("/kv/a", "2", 3).
		final(3, history.KV{Key: "/kv/a", Value: "2", ModRevision: 3, CreateRevision: 3, Version: 1})
	c := Check(&x.h)
	if c.Status != verdict.Fail || !strings.Contains(c.Violations[0], "op 1") || !strings.Contains(c.Violations[0], "recreated") {
		t.Fatalf("want op 1 reported lost, got %s: %v", c.Status, c.Violations)
	}
}

func TestAcceptsKeyRecreatedAfterPossibleRemoval(t *testing.T) {
	recreated := history.KV{Key: "/kv/a", Value: "2", ModRevision: 5, CreateRevision: 5, Version: 1}
	for name, x := range map[string]*b{
		"delete": (&b{}).put("/kv/a", "1", 2).
			op(history.Operation{Kind: history.Delete, Key: "/kv/a", Resp: &history.Response{Revision: 4, Deleted: 1}}).
			put("/kv/a", "2", 5),
		"unknown delete": (&b{}).put("/kv/a", "1", 2).
			op(history.Operation{Kind: history.Delete, Key: "/kv/a", Outcome: history.Unknown}).
			put("/kv/a", "2", 5),
		"leased put (expiry)": (&b{}).put("/kv/a", "0", 2).
			op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "1", Lease: 9, Resp: &history.Response{Revision: 3}}).
			put("/kv/a", "2", 5),
	} {
		x.final(5, recreated)
		if c := Check(&x.h); c.Status != verdict.Pass {
			t.Errorf("%s: want pass, got %s: %v", name, c.Status, c.Violations)
		}
	}
}

// Issue 17 item 3: revokes of a lease attached to earlier versions of a key
// cannot delete its latest version, which has no lease.
func TestRejectsVanishedWriteDespiteRevokesOfEarlierVersions(t *testing.T) {
	x := &b{}
	rev := int64(1)
	for l := int64(1); l <= 29; l++ {
		rev++
		x.op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: fmt.Sprintf("leased-%d", l), Lease: l, Resp: &history.Response{Revision: rev}})
	}
	rev++
	x.put("/kv/a", "plain", rev)
	for l := int64(1); l <= 29; l++ {
		// Each revoke deletes nothing: the key's version has no lease.
		x.op(history.Operation{Kind: history.LeaseRevoke, Lease: l, Resp: &history.Response{Revision: rev}})
	}
	x.final(rev)
	c := Check(&x.h)
	if c.Status != verdict.Fail || !strings.Contains(c.Violations[0], `"plain"`) {
		t.Fatalf("want the vanished write reported, got %s: %s %v", c.Status, c.Summary, c.Violations)
	}

	// An unknown put that attached the key to a lease again may have been
	// followed by that lease's revoke or expiry: then the absence is
	// explained.
	y := &b{}
	y.put("/kv/a", "plain", 2).
		op(history.Operation{Kind: history.Put, Key: "/kv/a", Value: "leased", Lease: 5, Outcome: history.Unknown}).
		op(history.Operation{Kind: history.LeaseRevoke, Lease: 5, Resp: &history.Response{Revision: 4}}).
		final(4)
	if c := Check(&y.h); c.Status != verdict.Pass {
		t.Fatalf("want pass, got %s: %v", c.Status, c.Violations)
	}
}

// Recorded runs of a correct etcd, and simulated correct ones, keep passing:
// stale reads, unknown outcomes, leases and kills explain everything in them.
func TestAcceptsRecordedHistories(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*-pass.jsonl.gz")
	// Full runs with their final reads, under partitions and restarts.
	more, _ := filepath.Glob("../serializable/testdata/*-pass.jsonl.gz")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no recorded histories found")
	}
	for _, f := range files {
		h, err := history.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		c := Check(h)
		t.Logf("%s: %s: %s", filepath.Base(f), c.Status, c.Summary)
		if c.Status == verdict.Fail {
			t.Errorf("%s: %s %v", f, c.Summary, c.Violations)
		}
	}
}

// Simulated linearizable traffic with timeouts, failures and leases never
// shows the revision going backwards; the simulator's revision-regression
// bug always does.
func TestSimulatedHistories(t *testing.T) {
	for seed := int64(1); seed <= 30; seed++ {
		cfg := histgen.Config{Ops: 1500, Clients: 6, Seed: seed, UnknownRate: 0.25, CondDeletes: seed%2 == 0}
		if c := Check(histgen.Generate(cfg)); c.Status == verdict.Fail {
			t.Errorf("seed %d: a linearizable history failed: %s %v", seed, c.Summary, c.Violations)
		}
		cfg.Bug = histgen.RevisionRegression
		if c := Check(histgen.Generate(cfg)); c.Status != verdict.Fail || !strings.Contains(strings.Join(c.Violations, "\n"), "went backwards") {
			t.Errorf("seed %d: the injected revision regression was not reported: %s %s", seed, c.Status, c.Summary)
		}
	}
}
