package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// fakeCluster records the fault calls nemeses make.
type fakeCluster struct {
	members []string
	leader  string

	mu    sync.Mutex
	calls []string
	cuts  map[[2]string]bool
	down  map[string]bool
}

func newFake(n int) *fakeCluster {
	f := &fakeCluster{cuts: map[[2]string]bool{}, down: map[string]bool{}}
	for i := range n {
		f.members = append(f.members, fmt.Sprintf("m%d", i))
	}
	f.leader = f.members[0]
	return f
}

func (f *fakeCluster) log(format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeCluster) Backend() string { return "fake" }
func (f *fakeCluster) Version() string { return "v0" }
func (f *fakeCluster) Members() []cluster.Member {
	var out []cluster.Member
	for _, m := range f.members {
		out = append(out, cluster.Member{Name: m})
	}
	return out
}
func (f *fakeCluster) Endpoints() []string                       { return nil }
func (f *fakeCluster) Credentials() cluster.Credentials          { return cluster.Credentials{} }
func (f *fakeCluster) CollectLogs(context.Context, string) error { return nil }
func (f *fakeCluster) Close(context.Context) error               { return nil }
func (f *fakeCluster) WaitHealthy(context.Context) error         { return nil }
func (f *fakeCluster) Faults() cluster.Faults                    { return f }
func (f *fakeCluster) Client(context.Context, ...string) (*clientv3.Client, error) {
	return nil, errors.New("fake has no client")
}
func (f *fakeCluster) Leader(context.Context) (cluster.Member, error) {
	return cluster.Member{Name: f.leader}, nil
}
func (f *fakeCluster) Kill(_ context.Context, m string) error {
	f.log("kill %s", m)
	f.down[m] = true
	return nil
}
func (f *fakeCluster) Restart(_ context.Context, m string) error {
	f.log("restart %s", m)
	delete(f.down, m)
	return nil
}
func (f *fakeCluster) Pause(_ context.Context, m string) error  { f.log("pause %s", m); return nil }
func (f *fakeCluster) Resume(_ context.Context, m string) error { f.log("resume %s", m); return nil }
func (f *fakeCluster) Cut(_ context.Context, a, b string) error {
	f.log("cut %s %s", a, b)
	f.mu.Lock()
	f.cuts[[2]string{min(a, b), max(a, b)}] = true
	f.mu.Unlock()
	return nil
}
func (f *fakeCluster) Degrade(_ context.Context, m string, l time.Duration, loss float64) error {
	f.log("degrade %s %v %.2f", m, l, loss)
	return nil
}
func (f *fakeCluster) Heal(context.Context) error {
	f.log("heal")
	f.mu.Lock()
	f.cuts = map[[2]string]bool{}
	f.mu.Unlock()
	return nil
}

func (f *fakeCluster) cut(a, b string) bool { return f.cuts[[2]string{min(a, b), max(a, b)}] }

func apply(t *testing.T, name string, c *fakeCluster, seed uint64) Fault {
	t.Helper()
	n, err := ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := n.Plan(context.Background(), c, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		t.Fatalf("plan %s: %v", name, err)
	}
	if err := f.Apply(context.Background()); err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
	return f
}

func TestPartitionLeaderCutsEveryLinkOfTheLeader(t *testing.T) {
	c := newFake(5)
	c.leader = "m3"
	apply(t, "partition-leader", c, 1)
	for _, m := range c.members {
		if m != "m3" && !c.cut("m3", m) {
			t.Errorf("leader m3 still linked to %s", m)
		}
	}
	if len(c.cuts) != 4 {
		t.Errorf("want 4 cuts, got %v", c.cuts)
	}
}

func TestPartitionRandomKeepsMajority(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		for _, n := range []int{3, 5} {
			c := newFake(n)
			apply(t, "partition-random", c, seed)
			minority, majority := Split(c.members, rand.New(rand.NewPCG(seed, 1)))
			if len(majority)*2 <= n {
				t.Fatalf("seed %d: majority %v has no quorum of %d", seed, majority, n)
			}
			for _, a := range minority {
				for _, b := range majority {
					if !c.cut(a, b) {
						t.Fatalf("seed %d: %s-%s not cut", seed, a, b)
					}
				}
			}
			if len(c.cuts) != len(minority)*len(majority) {
				t.Fatalf("seed %d: extra cuts %v", seed, c.cuts)
			}
		}
	}
}

func TestBridgeLeavesBridgeConnected(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		c := newFake(5)
		apply(t, "bridge", c, seed)
		left, right, bridge := Bridge(c.members, rand.New(rand.NewPCG(seed, 1)))
		for _, m := range c.members {
			if m != bridge && c.cut(bridge, m) {
				t.Fatalf("seed %d: bridge %s cut from %s", seed, bridge, m)
			}
		}
		for _, a := range left {
			for _, b := range right {
				if !c.cut(a, b) {
					t.Fatalf("seed %d: halves %s-%s still linked", seed, a, b)
				}
			}
		}
	}
}

func TestKillLeaderHealsByRestart(t *testing.T) {
	c := newFake(3)
	c.leader = "m2"
	f := apply(t, "kill-leader", c, 1)
	if !c.down["m2"] {
		t.Fatal("leader not killed")
	}
	if err := f.Heal(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.down["m2"] {
		t.Fatal("leader not restarted at heal")
	}
}

func TestPodNemesesNeedKubernetes(t *testing.T) {
	n, _ := ByName("delete-pod")
	_, err := n.Plan(context.Background(), newFake(3), rand.New(rand.NewPCG(1, 1)))
	if !errors.Is(err, cluster.ErrUnsupported) {
		t.Fatalf("want ErrUnsupported, got %v", err)
	}
}

func TestUnknownNemesisListsValidNames(t *testing.T) {
	_, err := ByName("explode")
	if err == nil || !strings.Contains(err.Error(), "kill-leader") {
		t.Fatalf("want error listing names, got %v", err)
	}
}

func TestScheduleRecordsFaultsAndHealsOnCancel(t *testing.T) {
	c := newFake(3)
	rec := history.NewRecorder(history.Meta{})
	n, _ := ByName("pause-random")
	s := Schedule{Nemesis: n, Seed: 7, Duration: time.Hour, Interval: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result)
	go func() {
		r, err := s.Run(ctx, c, rec)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	// The fault is held for an hour; cancelling must still resume the member.
	for {
		c.mu.Lock()
		n := len(c.calls)
		c.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	r := <-done
	if r.Faults != 1 {
		t.Fatalf("want 1 fault, got %d", r.Faults)
	}
	if len(c.calls) != 2 || !strings.HasPrefix(c.calls[0], "pause") || !strings.HasPrefix(c.calls[1], "resume") {
		t.Fatalf("calls = %v, want pause then resume", c.calls)
	}
	h := rec.History()
	if len(h.Faults) != 1 || h.Faults[0].End < h.Faults[0].Start || h.Faults[0].Nemesis != "pause-random" {
		t.Fatalf("timeline = %+v", h.Faults)
	}
}

func TestScheduleIsDeterministicForASeed(t *testing.T) {
	run := func(seed int64) []string {
		c := newFake(5)
		n, _ := ByName("mix")
		s := Schedule{Nemesis: n, Seed: seed, MaxFaults: 12}
		if _, err := s.Run(context.Background(), c, history.NewRecorder(history.Meta{})); err != nil {
			t.Fatal(err)
		}
		return c.calls
	}
	a, b, other := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 42 gave different schedules:\n%v\n%v", a, b)
	}
	if slices.Equal(a, other) {
		t.Fatalf("seeds 42 and 43 gave the same schedule %v", a)
	}
}

// richFake is a local-like cluster: it replaces members, reports small
// snapshot settings and has a failpoint build with only some failpoints.
type richFake struct {
	*fakeCluster
	snap       [2]int
	failpoints []string
}

func (r *richFake) Faults() cluster.Faults                                     { return r }
func (r *richFake) ReplaceMember(context.Context, string) error                { return nil }
func (r *richFake) SnapshotPolicy() (int, int)                                 { return r.snap[0], r.snap[1] }
func (r *richFake) Failpoints() []string                                       { return r.failpoints }
func (r *richFake) SetFailpoint(context.Context, string, string, string) error { return nil }
func (r *richFake) FailpointHits(context.Context, string, string) (int, error) { return 1, nil }

func TestMixTakesTheNewNemesesWhereTheClusterCanTakeThem(t *testing.T) {
	plain := newFake(3)
	choices, left := mixChoices(plain)
	if !slices.Equal(choices, mixMembers) {
		t.Fatalf("plain backend: mix chooses %v, want only %v", choices, mixMembers)
	}
	want := []string{"member-replace: the fake backend cannot change membership", "blackhole-until-snapshot: each fault would wait", "failpoint-raft-save, failpoint-backend-commit, failpoint-defrag, failpoint-compaction, failpoint-watch-sleep: failpoint nemeses need the local backend"}
	if len(left) != len(want) {
		t.Fatalf("notes %q; want %d lines", left, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(left[i], "mix leaves out "+w) {
			t.Errorf("note %d = %q, want it to start %q", i, left[i], "mix leaves out "+w)
		}
	}

	// 3.5.2's failpoint build: no compaction or watch failpoints.
	rich := &richFake{fakeCluster: newFake(3), snap: [2]int{100, 100}, failpoints: []string{"raftBeforeSave", "beforeCommit", "defragBeforeCopy"}}
	choices, left = mixChoices(rich)
	for _, n := range []string{"member-replace", "blackhole-until-snapshot", "failpoint-raft-save", "failpoint-backend-commit", "failpoint-defrag"} {
		if !slices.Contains(choices, n) {
			t.Errorf("mix on a local-like cluster leaves out %s (choices %v)", n, choices)
		}
	}
	if len(left) != 2 || !strings.Contains(left[0], "failpoint-compaction") || !strings.Contains(left[1], "failpoint-watch-sleep") || !strings.Contains(left[1], "has none of the failpoints") {
		t.Errorf("notes %q; want one line each for failpoint-compaction and failpoint-watch-sleep, naming the missing failpoints", left)
	}

	// etcd's default snapshot settings would hold a fault for minutes.
	rich.snap = [2]int{10000, 5000}
	if choices, _ = mixChoices(rich); slices.Contains(choices, "blackhole-until-snapshot") {
		t.Errorf("mix chooses blackhole-until-snapshot with snapshot count 10000 and catch-up entries 5000")
	}
}

func TestScheduleNotesWhatMixLeftOut(t *testing.T) {
	n, _ := ByName("mix")
	r, err := Schedule{Nemesis: n, Seed: 1, MaxFaults: 1}.Run(context.Background(), newFake(3), history.NewRecorder(history.Meta{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Notes) == 0 || !strings.Contains(strings.Join(r.Notes, "\n"), "member-replace") {
		t.Fatalf("notes %q; want them to say mix left out member-replace", r.Notes)
	}
}
