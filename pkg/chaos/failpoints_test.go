package chaos

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
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

// A compaction failpoint compacts the store through a client of its own,
// which the history does not record as an operation: its fault window is
// marked as compacting, so a read refused as compacted after it began is
// not judged against the recorded compactions alone. A fault that does not
// compact is not marked.
func TestScheduleMarksFaultsThatCompact(t *testing.T) {
	for _, tc := range []struct {
		nemesis string
		want    bool
	}{{"failpoint-compaction", true}, {"failpoint-backend-commit", false}} {
		t.Run(tc.nemesis, func(t *testing.T) {
			c := &failpointFake{fakeCluster: newFake(3), armed: map[string]string{},
				points: []string{"compactBeforeCommitScheduledCompact", "beforeCommit"}}
			n, err := ByName(tc.nemesis)
			if err != nil {
				t.Fatal(err)
			}
			rec := history.NewRecorder(history.Meta{})
			s := Schedule{Nemesis: n, Seed: 7, MaxFaults: 1}
			r, err := s.Run(context.Background(), c, rec)
			if err != nil || r.Applied != 1 {
				t.Fatalf("schedule: %v, %d of %d faults applied (%v)", err, r.Applied, r.Faults, r.Errors)
			}
			h := rec.History()
			if len(h.Faults) != 1 || h.Faults[0].Compacts != tc.want {
				t.Fatalf("timeline = %+v; want one fault with compacts %v", h.Faults, tc.want)
			}
		})
	}
}
