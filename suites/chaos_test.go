//go:build e2e

package suites

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

var _ = Describe("Key-value traffic", func() {
	It("stays linearizable with no faults", Label("smoke"), func(ctx SpecContext) {
		c := openCluster(ctx, "no-faults", 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     "no-faults",
			Nemesis:  "none",
			Duration: 20 * time.Second,
			Traffic:  defaultTraffic(),
		})
		expectPass(res, "no-faults")
		Expect(checkNamed(res, "linearizable").Status).To(Equal(verdict.Pass))
		Expect(res.Traffic.OK).To(BeNumerically(">", 100), "the workload must actually drive traffic")
	}, SpecTimeout(5*time.Minute))

	It("keeps every promise while the leader is killed", Label("smoke", "nemesis"), func(ctx SpecContext) {
		name := "smoke-kill-leader"
		c := openCluster(ctx, name, 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "kill-leader",
			Duration: 20 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Leases:   &workload.LeaseConfig{},
		})
		expectPass(res, name)
		Expect(res.Faults.Applied).To(BeNumerically(">=", 1), "at least one fault must take effect (%d attempted: %v; plans retried: %v)", res.Faults.Faults, res.Faults.Errors, res.Faults.PlanErrors)
	}, SpecTimeout(5*time.Minute))
})

// Every nemesis gets a spec: traffic, watches and leases run before, during
// and after faults; linearizability, watch and lease guarantees, durability
// and HashKV agreement are checked at the end.
var _ = Describe("Faults under load", Label("nemesis"), func() {
	for _, nemesis := range []string{
		"kill-random", "kill-leader", "pause-random", "pause-leader",
		"partition-leader", "partition-random", "bridge", "rolling-restart",
		"slow-network", "mix",
	} {
		It("keeps every promise under "+nemesis, func(ctx SpecContext) {
			c := openCluster(ctx, nemesis, 3)
			res := runScenario(ctx, c, scenario.Config{
				Name:     nemesis,
				Nemesis:  nemesis,
				Duration: 30 * time.Second,
				Traffic:  defaultTraffic(),
				Watch:    &workload.WatchConfig{},
				Leases:   &workload.LeaseConfig{},
			})
			expectPass(res, nemesis)
			Expect(res.Faults.Applied).To(BeNumerically(">=", 1), "at least one fault must take effect (%d attempted: %v; plans retried: %v)", res.Faults.Faults, res.Faults.Errors, res.Faults.PlanErrors)
		}, SpecTimeout(8*time.Minute))
	}
})
