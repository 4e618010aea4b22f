//go:build e2e

package suites

import (
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// The shortest real-Kubernetes spec: the chart installs, traffic flows
// through port-forwards, one pod is deleted and comes back, every check
// passes, and the cluster is torn down. `make test` runs it on the
// kube-host backend with every other Kubernetes spec (`make
// test-kube-host`); on its own: E2E_LABELS=kube-smoke
// ETCD_CHAOS_BACKEND=kube-host make e2e.
var _ = Describe("Chart on a real Kubernetes", Label("kube", "kube-smoke"), func() {
	It("installs, serves traffic and survives a pod deletion", func(ctx SpecContext) {
		needKubernetes("the Kubernetes smoke spec")
		const name = "kube-smoke-delete-pod"
		c := openCluster(ctx, name, 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "delete-pod",
			Duration: 60 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			// One deletion, then time for the replacement to rejoin.
			Schedule: scenarioSchedule(10*time.Second, 15*time.Second, 1),
		})
		expectPass(res, name)
	}, SpecTimeout(20*time.Minute))
})
