//go:build e2e

package suites

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/durability"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdchart"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// upgrader is what the kube backend's cluster offers for chart upgrades.
type upgrader interface {
	Upgrade(ctx context.Context, o kube.UpgradeOptions) error
}

var _ = Describe("Bitnami chart on Kubernetes", Label("kube"), func() {
	It("keeps every promise while pods are deleted", func(ctx SpecContext) {
		needKubernetes("pod delete")
		const name = "kube-delete-pod"
		c := openCluster(ctx, name, 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "delete-pod",
			Duration: 90 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Leases:   &workload.LeaseConfig{},
			// A replaced pod needs the other members healthy before it can
			// re-add itself; give it the time it needs.
			Schedule: scenarioSchedule(10*time.Second, 20*time.Second),
		})
		expectPass(res, name)
	}, SpecTimeout(20*time.Minute))

	It("keeps every promise while containers are killed and paused", func(ctx SpecContext) {
		needKubernetes("container kill and pause")
		const name = "kube-mix"
		c := openCluster(ctx, name, 3)
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "mix",
			Duration: 90 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Schedule: scenarioSchedule(5*time.Second, 10*time.Second),
		})
		expectPass(res, name)
	}, SpecTimeout(20*time.Minute))

	// The known danger: without persistence, deleting every pod at once
	// makes the members bootstrap a new, empty cluster. etcd-chaos must say
	// plainly that acknowledged writes were lost; this spec passes when it
	// does, and fails if the loss goes unreported.
	It("reports lost acknowledged writes when every pod of an ephemeral cluster is deleted", Label("data-loss"), func(ctx SpecContext) {
		needKubernetes("deleting all pods")
		const name = "kube-delete-all-pods-ephemeral"
		c := openCluster(ctx, name, 3, func(o *scenario.KubeOptions) {
			o.Values = []string{"base.yaml", "3-replicas-ephemeral.yaml"}
		})
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "delete-all-pods",
			Duration: 60 * time.Second,
			Traffic:  defaultTraffic(),
			Notes:    []string{"persistence disabled: deleting every pod is expected to lose data"},
			Schedule: scenarioSchedule(10*time.Second, 10*time.Minute, 1),
		})
		d := checkNamed(res, durability.Name)
		Expect(d.Status).To(Equal(verdict.Fail), "deleting every pod of an ephemeral cluster must be reported as lost acknowledged writes; durability said: %s", d.Summary)
		Expect(d.Summary).To(ContainSubstring("LOST ACKNOWLEDGED WRITES"))
		expectedFailure(res.Report, "durability found the data loss an ephemeral cluster must show")
		GinkgoWriter.Printf("expected data loss detected: %s\n", d.Summary)
	}, SpecTimeout(20*time.Minute))

	// The same fault on persistent volumes: each member comes back with
	// its data dir, so nothing acknowledged may be lost. On kube-host the
	// backend's own provisioner makes the volumes (hostPath under its temp
	// dir); on kind, its local-path provisioner.
	It("keeps acknowledged writes when every pod of a persistent cluster is deleted", Label("persistent"), func(ctx SpecContext) {
		needKubernetes("deleting all pods")
		const name = "kube-delete-all-pods-persistent"
		c := openCluster(ctx, name, 3, func(o *scenario.KubeOptions) {
			o.Values = []string{"base.yaml", "3-replicas-persistent.yaml"}
		})
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "delete-all-pods",
			Duration: 60 * time.Second,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Schedule: scenarioSchedule(10*time.Second, 10*time.Minute, 1),
		})
		expectPass(res, name)
		Expect(res.Faults.Applied).To(BeNumerically(">=", 1), "every pod must have been deleted (%d attempted: %v; plans retried: %v)", res.Faults.Faults, res.Faults.Errors, res.Faults.PlanErrors)
	}, SpecTimeout(20*time.Minute))

	// What users run before promoting a chart upgrade: install version A,
	// run traffic and watches, helm upgrade to B in the middle, and check
	// that nothing acknowledged was lost and every guarantee held.
	It("validates a chart upgrade under traffic", Label("chart-upgrade"), func(ctx SpecContext) {
		needKubernetes("a chart upgrade")
		from, to := os.Getenv("CHART_FROM"), os.Getenv("CHART_TO")
		if env.Backend == "kube-host" && from == "" && to == "" && env.Kube.ChartRef == "" {
			// kube-host installs charts/etcd, which ships its own versions:
			// the oldest to the newest is an etcd 3.5 -> 3.6 upgrade.
			from, to = etcdchart.Releases[0].Version, etcdchart.Latest().Version
		}
		if from == "" || to == "" {
			Skip("set CHART_FROM and CHART_TO (make chart-upgrade FROM=... TO=...)")
		}
		name := fmt.Sprintf("chart-upgrade-%s-to-%s", from, to)
		// helm's wait for the rollout (pre-upgrade hook Job, a new image,
		// three rolling restarts); WaitHealthy afterwards gets 5 minutes more.
		const upgradeTimeout = 10 * time.Minute
		c := openCluster(ctx, name, 3, func(o *scenario.KubeOptions) { o.ChartVersion = from })
		up, ok := c.(upgrader)
		Expect(ok).To(BeTrue(), "the %s backend cannot upgrade charts", env.Backend)
		nemesis := "none"
		if os.Getenv("CHART_UPGRADE_FAULTS") == "1" {
			nemesis = "kill-random"
		}
		var values []string
		if v := os.Getenv("CHART_VALUES"); v != "" {
			values = strings.Split(v, ",")
		}
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  nemesis,
			Duration: 5 * time.Minute,
			Traffic:  defaultTraffic(),
			Watch:    &workload.WatchConfig{},
			Leases:   &workload.LeaseConfig{},
			Notes:    []string{fmt.Sprintf("chart upgrade %s -> %s during traffic", from, to)},
			Schedule: scenarioSchedule(10*time.Second, 30*time.Second),
			// The upgrade runs on a context of its own, which ends with the
			// spec (an interrupt) or its own timeout, not with the 5 minutes
			// of traffic: traffic goes on under it until it returns.
			DuringTraffic: func(ctx context.Context, rec *history.Recorder) error {
				uctx, cancel := context.WithTimeout(ctx, upgradeTimeout+5*time.Minute)
				defer cancel()
				id := rec.StartFault("chart-upgrade", fmt.Sprintf("helm upgrade %s -> %s", from, to))
				err := up.Upgrade(uctx, kube.UpgradeOptions{ChartVersion: to, ValuesFiles: values, Timeout: upgradeTimeout})
				rec.EndFault(id, err)
				return err
			},
		})
		expectPass(res, name)
	}, SpecTimeout(40*time.Minute))
})

// scenarioSchedule sets the fault hold time and the quiet time between
// faults; an optional third value caps the number of faults.
func scenarioSchedule(hold, interval time.Duration, maxFaults ...int) (s chaos.Schedule) {
	s.Duration, s.Interval = hold, interval
	if len(maxFaults) > 0 {
		s.MaxFaults = maxFaults[0]
	}
	return s
}
