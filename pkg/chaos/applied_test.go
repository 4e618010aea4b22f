package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// pauseFails is a cluster whose Pause always fails with err.
type pauseFails struct {
	*fakeCluster
	err error
}

func (p pauseFails) Faults() cluster.Faults              { return p }
func (p pauseFails) Pause(context.Context, string) error { return p.err }

// A fault whose Apply failed was attempted, not injected: Result must tell
// the two apart, or a run whose faults never took effect looks like a pass.
func TestScheduleCountsOnlyFaultsThatTookEffect(t *testing.T) {
	n, _ := ByName("pause-random")
	run := func(c cluster.Cluster) (Result, error) {
		return Schedule{Nemesis: n, Seed: 1, MaxFaults: 3}.Run(context.Background(), c, history.NewRecorder(history.Meta{}))
	}

	r, err := run(newFake(3))
	if err != nil || r.Faults != 3 || r.Applied != 3 {
		t.Fatalf("working faults: %+v %v, want 3 attempted and 3 applied", r, err)
	}

	r, err = run(pauseFails{newFake(3), errors.New("tc: no such qdisc")})
	if err != nil || r.Faults != 3 || r.Applied != 0 || len(r.Errors) != 3 {
		t.Fatalf("failing faults: %+v %v, want 3 attempted, 0 applied, 3 errors", r, err)
	}

	// A backend that cannot inject the fault at all stops the schedule at
	// once and says why.
	r, err = run(pauseFails{newFake(3), fmt.Errorf("%w: pause needs node access", cluster.ErrUnsupported)})
	if !errors.Is(err, cluster.ErrUnsupported) || r.Faults != 1 || r.Applied != 0 {
		t.Fatalf("unsupported faults: %+v %v, want ErrUnsupported after 1 attempt", r, err)
	}
}

// A plan that fails (no leader on a cluster mid-recovery) is retried, not
// counted as a fault: Result keeps it in PlanErrors, apart from the errors
// of faults that were attempted.
func TestScheduleRetriesFailedPlansApartFromFaults(t *testing.T) {
	plans := 0
	n := nemesisFunc{name: "flaky-plan", plan: func(context.Context, cluster.Cluster, *rand.Rand) (Fault, error) {
		plans++
		if plans <= 2 {
			return Fault{}, errors.New("no leader")
		}
		return Fault{Action: "noop", Apply: func(context.Context) error { return nil }}, nil
	}}
	r, err := Schedule{Nemesis: n, Seed: 1, MaxFaults: 1}.Run(context.Background(), newFake(3), history.NewRecorder(history.Meta{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"plan flaky-plan: no leader", "plan flaky-plan: no leader"}
	if r.Faults != 1 || r.Applied != 1 || len(r.Errors) != 0 || !slices.Equal(r.PlanErrors, want) {
		t.Fatalf("got %+v, want one fault applied, no fault errors and plan errors %q", r, want)
	}
}
