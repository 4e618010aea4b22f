//go:build e2e

package suites

import (
	"os"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// InterruptProbeEnv turns on the interrupt probe: a spec whose scenario is
// far longer than its SpecTimeout (the variable's value, a duration), so
// that it is interrupted. TestGinkgoInterrupt (interrupt_probe_test.go)
// runs it in a child process, times it out or sends SIGINT, and checks that
// the spec's history and report were still written, marked INTERRUPTED. In
// any other run the probe is skipped.
const InterruptProbeEnv = "ETCD_CHAOS_INTERRUPT_PROBE"

// InterruptProbeRunning is the line the probe prints once traffic runs.
const InterruptProbeRunning = "interrupt-probe: traffic is running"

func probeTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(InterruptProbeEnv)); err == nil && d > 0 {
		return d
	}
	return time.Hour
}

var _ = Describe("An interrupted or timed-out spec", Label("interrupt-probe"), func() {
	It("keeps its history and report, marked interrupted", func(ctx SpecContext) {
		if os.Getenv(InterruptProbeEnv) == "" {
			Skip("run only by TestGinkgoInterrupt, which interrupts it on purpose (" + InterruptProbeEnv + ")")
		}
		name := "interrupt-probe"
		c := openCluster(ctx, name, 1)
		var once sync.Once
		runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "none",
			Duration: time.Hour,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Leases:   &workload.LeaseConfig{},
			Progress: func(ops int64, _ int) {
				if ops > 0 {
					once.Do(func() { GinkgoWriter.Println(InterruptProbeRunning) })
				}
			},
		})
	}, SpecTimeout(probeTimeout()))
})
