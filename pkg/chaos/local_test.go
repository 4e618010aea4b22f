package chaos_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// These tests run each new nemesis once on a real 3-member local cluster
// under recorded traffic, and check both that the fault really happened
// (the evidence differs per fault) and that a correct etcd passes every
// check.

func openLocal(t *testing.T, b scenario.Backend) *local.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real etcd cluster")
	}
	b.Name, b.Members, b.ArtifactDir = "local", 3, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := scenario.Open(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c.(*local.Cluster)
}

// runOne runs the nemesis for one fault and returns what the run recorded;
// it fails the test unless the fault took effect and every check passed.
func runOne(t *testing.T, c *local.Cluster, nemesis string, traffic time.Duration) *scenario.Result {
	t.Helper()
	const seed = 3
	res, err := scenario.Run(context.Background(), c, scenario.Config{
		Name:     nemesis,
		Nemesis:  nemesis,
		Duration: traffic,
		Seed:     seed,
		Traffic:  workload.Config{Clients: 4, Keys: 10},
		Watch:    &workload.WatchConfig{Watchers: 2, Pinned: 1},
		Schedule: chaos.Schedule{Warmup: 2 * time.Second, Duration: 2 * time.Second, Interval: time.Second, Recovery: time.Minute, MaxFaults: 1},
	})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	// A plan that found no leader (members slow to answer Status on a
	// loaded machine) is retried by the schedule and noted in PlanErrors;
	// only an error of the fault itself means it did not take effect.
	if res.Faults.Faults != 1 || res.Faults.Applied != 1 || len(res.Faults.Errors) > 0 {
		t.Fatalf("seed %d: %d faults, errors %v (plans retried: %v); want one fault that took effect", seed, res.Faults.Faults, res.Faults.Errors, res.Faults.PlanErrors)
	}
	if !res.Passed() {
		for _, ch := range res.Checks {
			t.Logf("%s: %s %s", ch.Name, ch.Status, ch.Summary)
		}
		t.Fatalf("seed %d: checks failed on a correct etcd (report %s)", seed, res.Report)
	}
	return res
}

func target(t *testing.T, res *scenario.Result) string {
	t.Helper()
	fs := res.History.Faults
	if len(fs) != 1 || len(fs[0].Targets) != 1 || fs[0].Error != "" {
		t.Fatalf("timeline faults %+v; want one fault on one member, without error", fs)
	}
	return fs[0].Targets[0]
}

func logOf(t *testing.T, c *local.Cluster, member string) string {
	t.Helper()
	p, err := c.LogPath(member)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMemberReplaceOnLocalEtcd(t *testing.T) {
	c := openLocal(t, scenario.Backend{})
	before := c.MemberIDs()
	res := runOne(t, c, "member-replace", 12*time.Second)
	m := target(t, res)
	after := c.MemberIDs()
	for name, id := range before {
		if changed := after[name] != id; changed != (name == m) {
			t.Errorf("%s: ID %x -> %x; only the replaced member %s should get a new ID", name, id, after[name], m)
		}
	}
	// The replacement started empty, joined the running cluster and holds
	// the data now: it came in as a new member of an existing cluster.
	if log := logOf(t, c, m); !strings.Contains(log, "--initial-cluster-state existing") {
		t.Errorf("%s was not restarted to join the existing cluster", m)
	}
}

func TestBlackholeUntilSnapshotOnLocalEtcd(t *testing.T) {
	c := openLocal(t, scenario.Backend{Settings: local.Settings{SnapshotCount: 100, SnapshotCatchupEntries: 100}})
	// The fault holds until the leader has snapshotted past the member
	// (about 200 entries here); traffic must last long enough to write
	// them even at the few requests a second a loaded CI machine manages,
	// or the run ends with the fault still waiting, not applied.
	res := runOne(t, c, "blackhole-until-snapshot", 45*time.Second)
	m := target(t, res)
	// The member caught up from a snapshot the leader sent it.
	if log := logOf(t, c, m); !strings.Contains(log, "received and saved database snapshot") || !strings.Contains(log, "applied snapshot") {
		t.Errorf("%s's log shows no snapshot received and applied after the blackhole", m)
	}
}

// failpointBinary returns the failpoint build of the default version. It
// takes minutes to build, so a test run builds it only when asked
// (ETCD_CHAOS_TEST_FAILPOINTS=1) and otherwise skips unless it is cached.
func failpointBinary(t *testing.T) string {
	t.Helper()
	cached, err := etcdbin.FailpointsPath(etcdbin.DefaultVersion, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cached); err != nil && os.Getenv("ETCD_CHAOS_TEST_FAILPOINTS") != "1" {
		t.Skipf("the failpoint build of %s is not cached: build it with `etcd-chaos failpoints --etcd-version %s` or set ETCD_CHAOS_TEST_FAILPOINTS=1", etcdbin.DefaultVersion, etcdbin.DefaultVersion)
	}
	p, err := etcdbin.EnsureFailpoints(context.Background(), "", "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFailpointNemesesOnLocalEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd cluster")
	}
	bin := failpointBinary(t)
	for _, n := range []string{"failpoint-raft-save", "failpoint-backend-commit", "failpoint-defrag", "failpoint-compaction", "failpoint-watch-sleep"} {
		t.Run(n, func(t *testing.T) {
			c := openLocal(t, scenario.Backend{EtcdBinary: bin, Failpoints: true})
			res := runOne(t, c, n, 10*time.Second)
			m := target(t, res)
			action := res.History.Faults[0].Action
			point := strings.Fields(strings.TrimPrefix(action, "failpoint "))[0]
			point, term, _ := strings.Cut(point, "=")
			if term == "panic" {
				// Only point was armed, and gofail's panic says it is one (3.6
				// logs a defrag panic as fatal); the member was then restarted
				// and rejoined (the checks passed with it).
				if log := logOf(t, c, m); !strings.Contains(log, "failpoint panic") {
					t.Errorf("%s's log has no failpoint panic (armed %s)", m, point)
				}
			}
		})
	}
}

func TestFailpointNemesisOnPlainBuild(t *testing.T) {
	c := openLocal(t, scenario.Backend{})
	n, err := chaos.ByName("failpoint-raft-save")
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.Plan(context.Background(), c, nil)
	if err == nil || !strings.Contains(err.Error(), "plain build") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("failpoint nemesis on a plain build: err = %v; want one line naming the failpoint build", err)
	}
}
