package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// failpointFake is a fake cluster of a failpoint build with the given
// failpoints, recording what is armed.
type failpointFake struct {
	*fakeCluster
	points []string
	armed  map[string]string
}

func (f *failpointFake) Faults() cluster.Faults { return f }
func (f *failpointFake) Failpoints() []string   { return f.points }
func (f *failpointFake) SetFailpoint(_ context.Context, m, name, term string) error {
	f.armed[m+"/"+name] = term
	return nil
}
func (f *failpointFake) FailpointHits(_ context.Context, m, name string) (int, error) {
	if f.armed[m+"/"+name] == "" {
		return 0, nil
	}
	return 1, nil
}

func TestFailpointNemesisUsesOnlyFailpointsTheVersionHas(t *testing.T) {
	n, err := ByName("failpoint-compaction")
	if err != nil {
		t.Fatal(err)
	}
	// etcd 3.5.2's failpoint build has no compaction failpoints.
	old := &failpointFake{fakeCluster: newFake(3), points: []string{"beforeCommit", "raftBeforeSave"}, armed: map[string]string{}}
	_, err = n.Plan(context.Background(), old, rand.New(rand.NewPCG(1, 2)))
	if !errors.Is(err, cluster.ErrUnsupported) || !strings.Contains(err.Error(), "has none of the failpoints failpoint-compaction uses") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("compaction failpoints on a build without them: err = %v; want one ErrUnsupported line", err)
	}

	n, _ = ByName("failpoint-watch-sleep")
	c := &failpointFake{fakeCluster: newFake(3), points: []string{"beforeSendWatchResponse"}, armed: map[string]string{}}
	f, err := n.Plan(context.Background(), c, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := f.Targets[0]
	if c.armed[m+"/beforeSendWatchResponse"] != "sleep(100)" {
		t.Fatalf("armed %v; want beforeSendWatchResponse=sleep(100) on %s", c.armed, m)
	}
	if err := f.Heal(context.Background()); err != nil || c.armed[m+"/beforeSendWatchResponse"] != "off" {
		t.Fatalf("heal: %v, armed %v; want the failpoint off", err, c.armed)
	}
}
