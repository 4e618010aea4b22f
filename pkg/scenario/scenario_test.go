package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

func TestRejectsBadConfigBeforeTouchingTheCluster(t *testing.T) {
	if _, err := Run(context.Background(), nil, Config{Duration: 0}); err == nil || !strings.Contains(err.Error(), "Duration") {
		t.Fatalf("want a Duration error, got %v", err)
	}
	if _, err := Run(context.Background(), nil, Config{Duration: time.Second, Nemesis: "explode"}); err == nil || !strings.Contains(err.Error(), "unknown nemesis") {
		t.Fatalf("want an unknown nemesis error, got %v", err)
	}
	if _, err := Open(context.Background(), Backend{Name: "docker-swarm"}); err == nil || !strings.Contains(err.Error(), "unknown backend") {
		t.Fatalf("want an unknown backend error, got %v", err)
	}
}

func TestInstallOptionsAlwaysLayerBaseValues(t *testing.T) {
	o := Backend{Members: 5, Kube: KubeOptions{Values: []string{"3-replicas-persistent.yaml"}}}.InstallOptions()
	if len(o.ValuesFiles) != 2 || o.ValuesFiles[0] != "base.yaml" {
		t.Fatalf("values %v: base.yaml must come first", o.ValuesFiles)
	}
	if o.Set[len(o.Set)-1] != "replicaCount=5" || !strings.HasPrefix(o.Namespace, "etcd-chaos-") || o.Release != "etcd" {
		t.Fatalf("install options %+v", o)
	}
}

// A short real run on the local backend: the whole pipeline from cluster to
// report, with one fault.
func TestRunWritesEveryArtifact(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd cluster")
	}
	// The lock counter must stop with the traffic: were it bound to the
	// run's context, the run would go on until this deadline and end
	// interrupted.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := Open(ctx, Backend{Name: "local", Members: 3, ArtifactDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	res, err := Run(ctx, c, Config{
		Name:        "unit",
		Nemesis:     "kill-random",
		Duration:    6 * time.Second,
		Seed:        1,
		Traffic:     workload.Config{Clients: 3},
		Watch:       &workload.WatchConfig{Watchers: 2, Pinned: 1},
		Lock:        &workload.LockConfig{Clients: 2, Seed: 1},
		Schedule:    chaos.Schedule{Warmup: time.Second, Duration: time.Second, Interval: time.Second},
		ArtifactDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed() {
		t.Fatalf("checks failed (seed 1): %+v", res.Checks)
	}
	if res.Lock.Acked == 0 {
		t.Errorf("the lock counter acknowledged no increment: %+v", res.Lock)
	}
	if !slices.ContainsFunc(res.Checks, func(c verdict.Check) bool { return c.Name == "lock/counter" && c.Status == verdict.Pass }) {
		t.Errorf("no passing lock/counter check: %+v", res.Checks)
	}
	if res.Faults.Applied < 1 {
		t.Fatal("no fault was injected")
	}
	for _, f := range []string{"history.jsonl", "report.html", "summary.json", "summary.txt", "timeline.json", "logs/member-0.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("artifact %s: %v", f, err)
		}
	}
	if res.History.Meta.Compactions != history.CompactionsRecorded {
		t.Errorf("meta.compactions = %q: a local cluster at the default settings compacts only when asked", res.History.Meta.Compactions)
	}
	if res.History.Operations[0].Kind != "range" {
		t.Errorf("the first operation must be the baseline read, got %s", res.History.Operations[0].Kind)
	}
}

// A DuringTraffic hook (a chart upgrade with a 10-minute timeout) must not
// be cut off when the traffic duration ends, and traffic must go on under it
// until it returns; an interrupt still ends both.
func TestTrafficWindowWaitsForTheHook(t *testing.T) {
	hookDone := make(chan struct{})
	w, cancel := trafficWindow(context.Background(), time.Nanosecond, hookDone)
	defer cancel()
	// The duration (1ns) has passed long before this; the window must still
	// be open because the hook has not returned.
	time.Sleep(50 * time.Millisecond)
	if w.Err() != nil {
		t.Fatalf("traffic stopped at the duration while the hook still ran: %v", w.Err())
	}
	close(hookDone)
	<-w.Done()

	ctx, interrupt := context.WithCancel(context.Background())
	w, cancel = trafficWindow(ctx, time.Hour, make(chan struct{}))
	defer cancel()
	interrupt()
	<-w.Done()
}

// A run whose faults never took effect has proven nothing about them: its
// faults check must not pass, and must say why. Faults that took effect
// pass, with the failed ones as warnings.
func TestFaultsCheckNeedsAFaultThatTookEffect(t *testing.T) {
	netem := "slow-network on m1: tc netem is missing on node n1: load it with `modprobe sch_netem`"
	noLeader := "plan slow-network: no leader"
	for _, tc := range []struct {
		name     string
		r        chaos.Result
		schedErr error
		want     verdict.Status
		says     string
	}{
		{"none applied", chaos.Result{Faults: 4, Errors: []string{netem, netem, netem, netem}}, nil, verdict.Unknown, "none of the 4 slow-network faults took effect"},
		{"none attempted", chaos.Result{}, nil, verdict.Unknown, "no slow-network fault was injected"},
		{"unsupported", chaos.Result{Faults: 1}, fmt.Errorf("kill m1: %w: kill needs a shell on the node", cluster.ErrUnsupported), verdict.Unknown, "cannot be injected on this backend"},
		{"heal failed", chaos.Result{Faults: 2, Applied: 2}, errors.New(`heal "pause m1": exit status 1`), verdict.Fail, "heal"},
		{"some applied", chaos.Result{Faults: 4, Applied: 3, Errors: []string{netem}}, nil, verdict.Pass, "3 of 4 slow-network faults took effect"},
		{"every plan failed", chaos.Result{PlanErrors: []string{noLeader}}, nil, verdict.Unknown, "first plan error: " + noLeader},
		{"plan retried", chaos.Result{Faults: 1, Applied: 1, PlanErrors: []string{noLeader}}, nil, verdict.Pass, "1 of 1 slow-network faults took effect"},
	} {
		c := FaultsCheck("slow-network", tc.r, tc.schedErr, false)
		if c.Status != tc.want || !strings.Contains(c.Summary, tc.says) {
			t.Errorf("%s: %s %q, want %s saying %q", tc.name, c.Status, c.Summary, tc.want, tc.says)
		}
		if tc.want != verdict.Pass && verdict.Passed([]verdict.Check{c}) {
			t.Errorf("%s: the run's verdict passes although its faults proved nothing", tc.name)
		}
		if tc.name == "none applied" && !strings.Contains(c.Summary, "modprobe sch_netem") {
			t.Errorf("%s: the summary must give the reason, got %q", tc.name, c.Summary)
		}
		if tc.name == "plan retried" && !slices.Equal(c.Warnings, []string{noLeader + " (retried)"}) {
			t.Errorf("%s: warnings %q, want the plan error marked as retried", tc.name, c.Warnings)
		}
	}
}

// TestKubernetesBackendsTakeDefaultSettings: settings parsed from nothing
// (an unset ETCD_SETTINGS, no run flags) hold a non-zero default snapshot
// count; a Kubernetes backend must accept them and refuse only a real
// request.
func TestKubernetesBackendsTakeDefaultSettings(t *testing.T) {
	defaults, err := local.ParseSettings("")
	if err != nil {
		t.Fatal(err)
	}
	if err := LocalOnly(Backend{Name: "kube-host", Settings: defaults}); err != nil {
		t.Errorf("default settings refused: %v", err)
	}
	asked, err := local.ParseSettings("--snapshot-count 100")
	if err != nil {
		t.Fatal(err)
	}
	if err := LocalOnly(Backend{Name: "kube-host", Settings: asked}); err == nil {
		t.Error("a snapshot count was accepted on kube-host, where nothing applies it")
	}
	if err := LocalOnly(Backend{Name: "kind", Failpoints: true}); err == nil {
		t.Error("failpoints were accepted on kind")
	}
	if err := LocalOnly(Backend{Name: "local", Settings: asked, Failpoints: true}); err != nil {
		t.Errorf("local refused its own settings: %v", err)
	}
}

// autoCompactingCluster is a cluster that says whether its members compact
// on their own; plainCluster cannot tell.
type (
	plainCluster          struct{ cluster.Cluster }
	autoCompactingCluster struct {
		cluster.Cluster
		why string
	}
)

func (c autoCompactingCluster) AutoCompaction(context.Context) string { return c.why }

// The history says every compaction is recorded only when the cluster
// vouches that its members never compact on their own; otherwise it says
// why not, or nothing (not known), and reads refused as compacted are then
// left unjudged rather than failed.
func TestMetaSaysWhetherCompactionsAreRecorded(t *testing.T) {
	for _, tc := range []struct {
		c    cluster.Cluster
		want string
	}{
		{autoCompactingCluster{}, history.CompactionsRecorded},
		{autoCompactingCluster{why: "members run with --auto-compaction-retention=1h"}, "members run with --auto-compaction-retention=1h"},
		{plainCluster{}, ""},
	} {
		if got := compactions(context.Background(), tc.c); got != tc.want {
			t.Errorf("compactions(%T) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
