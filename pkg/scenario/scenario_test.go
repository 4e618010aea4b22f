package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
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
	ctx := context.Background()
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
		Schedule:    chaos.Schedule{Warmup: time.Second, Duration: time.Second, Interval: time.Second},
		ArtifactDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed() {
		t.Fatalf("checks failed (seed 1): %+v", res.Checks)
	}
	if res.Faults.Faults < 1 {
		t.Fatal("no fault was injected")
	}
	for _, f := range []string{"history.jsonl", "report.html", "summary.json", "summary.txt", "timeline.json", "logs/member-0.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("artifact %s: %v", f, err)
		}
	}
	if res.History.Operations[0].Kind != "range" {
		t.Errorf("the first operation must be the baseline read, got %s", res.History.Operations[0].Kind)
	}
}
