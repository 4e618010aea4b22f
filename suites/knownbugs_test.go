//go:build e2e

package suites

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// Users test the versions they run, including ones with known bugs. These
// specs run an old etcd whose bug is documented and expect etcd-chaos to
// find it: a harness that passes a known-buggy version proves nothing.
var _ = Describe("Known etcd bugs", Label("known-bugs"), func() {
	It("finds progress notifications ahead of undelivered events in etcd v3.5.2 (etcd-io/etcd#15220)", func(ctx SpecContext) {
		if env.Backend != "local" {
			Skip("pins an etcd version, which only the local backend can do")
		}
		const name = "known-bug-v3.5.2-progress-notify"
		c, err := scenario.Open(ctx, scenario.Backend{Name: "local", Members: 3, EtcdVersion: "v3.5.2", ArtifactDir: artifactDir(name), Progress: GinkgoWriter})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(c.Close(context.Background())).To(Succeed()) })
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "partition-leader",
			Duration: 30 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
		})
		b := checkNamed(res, "watch/bookmarkable")
		Expect(b.Status).To(Equal(verdict.Fail), "etcd v3.5.2 sends requested progress notifications ahead of pending events; the bookmarkable check must catch it (report: %s)", res.Report)
		Expect(checkNamed(res, "linearizable").Status).To(Equal(verdict.Pass))
	}, SpecTimeout(10*time.Minute))
})
