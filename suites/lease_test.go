//go:build e2e

package suites

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// Watches and leases are half of what Kubernetes asks of etcd: these specs
// put them under the faults that hurt them most.
var _ = Describe("Watches and leases", Label("watch", "lease"), func() {
	for _, nemesis := range []string{"kill-leader", "pause-leader", "partition-leader"} {
		It("keeps watch and lease guarantees under "+nemesis, func(ctx SpecContext) {
			name := "watch-lease-" + nemesis
			c := openCluster(ctx, name, 3)
			res := runScenario(ctx, c, scenario.Config{
				Name:     name,
				Nemesis:  nemesis,
				Duration: 30 * time.Second,
				// Fewer KV clients leave room for more watchers and leases.
				Traffic: workload.Config{Clients: 4, Keys: 10},
				Watch:   &workload.WatchConfig{Watchers: 6, Pinned: 3},
				Leases:  &workload.LeaseConfig{Clients: 3},
			})
			expectPass(res, name)
			for _, n := range []string{"watch/reliable", "lease/keepalive"} {
				Expect(checkNamed(res, n).Status).To(Equal(verdict.Pass))
			}
		}, SpecTimeout(8*time.Minute))
	}

	It("never loses an update guarded by a concurrency.Mutex while leaders die", func(ctx SpecContext) {
		const name = "lock-counter-kill-leader"
		c := openCluster(ctx, name, 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "kill-leader",
			Duration: 30 * time.Second,
			Traffic:  workload.Config{Clients: 2, Keys: 10},
			Lock:     &workload.LockConfig{Clients: 3, Seed: specSeed(name)},
		})
		lock := res.Lock
		GinkgoWriter.Printf("lock counter: %d acknowledged, %d unknown, %d rejected, final %d\n", lock.Acked, lock.Unknown, lock.Rejected, lock.Final)
		Expect(lock.Acked).To(BeNumerically(">", 0), "no increment was acknowledged; the lock never worked")
		// expectPass includes the lock/counter check of the history.
		expectPass(res, name)
	}, SpecTimeout(6*time.Minute))

	It("removes a registration when its owner dies and stops keeping it alive", func(ctx SpecContext) {
		const name = "registration-owner-killed"
		c := openCluster(ctx, name, 3)
		const ttl = 3
		tolerance := 3 * time.Second
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "none",
			Duration: 25 * time.Second,
			Traffic:  workload.Config{Clients: 2, Keys: 10},
			DuringTraffic: func(ctx context.Context, rec *history.Recorder) error {
				reg, err := workload.RunRegistration(ctx, c, rec, workload.RegConfig{TTL: ttl})
				if err != nil {
					return err
				}
				defer reg.Close()
				// Alive for several TTLs first: keep-alives must hold it.
				time.Sleep(3 * ttl * time.Second)
				if err := reg.KillOwner(); err != nil {
					return err
				}
				delay, err := reg.WaitGone(ctx, tolerance)
				GinkgoWriter.Printf("registration %s vanished %v after its owner died (TTL %ds)\n", reg.Key(), delay, ttl)
				if err != nil {
					return fmt.Errorf("registration: %w", err)
				}
				return nil
			},
		})
		expectPass(res, name)
	}, SpecTimeout(4*time.Minute))
})
