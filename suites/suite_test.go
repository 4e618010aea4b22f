//go:build e2e

// Package suites holds the Ginkgo end-to-end suites: each spec stands up a
// cluster on the selected backend, runs a scenario (pkg/scenario) with
// traffic and faults, and fails when any check fails, leaving an artifact dir
// under $ARTIFACTS/<spec>. Run them with `make e2e`.
package suites

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

func TestSuites(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, suiteName)
}

// env is what the suites read from the environment (see README).
var env = struct {
	Backend     string
	Seed        int64
	SeedPicked  bool
	EtcdVersion string
	EtcdBinary  string
	// Settings are the local members' etcd settings, from ETCD_SETTINGS
	// written as `etcd-chaos run` flags ("--snapshot-count 100 --peer-tls").
	Settings    local.Settings
	SettingsArg string
	Artifacts   string
	// Scale multiplies spec durations: 0.5 halves every run.
	Scale float64
	Kube  scenario.KubeOptions
}{}

var _ = BeforeSuite(func() {
	env.Backend = getenv("ETCD_CHAOS_BACKEND", "local")
	if s := os.Getenv("SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "SEED must be an integer, got %q", s)
		env.Seed = seed
	} else {
		env.Seed = time.Now().UnixNano() % 1_000_000_000
		env.SeedPicked = true
	}
	env.EtcdVersion = getenv("ETCD_VERSION", etcdbin.DefaultVersion)
	env.EtcdBinary = os.Getenv("ETCD_BINARY")
	env.SettingsArg = os.Getenv("ETCD_SETTINGS")
	settings, err := local.ParseSettings(env.SettingsArg)
	Expect(err).NotTo(HaveOccurred(), "ETCD_SETTINGS")
	env.Settings = settings
	if env.Backend != "local" && env.SettingsArg != "" {
		Fail("ETCD_SETTINGS applies to the local backend only; on " + env.Backend + " set the chart's values (CHART_VALUES)")
	}
	wd, _ := os.Getwd()
	env.Artifacts = getenv("ARTIFACTS", filepath.Join(filepath.Dir(wd), "artifacts"))
	env.Scale = 1
	if s := os.Getenv("E2E_SCALE"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		Expect(err).NotTo(HaveOccurred(), "E2E_SCALE must be a number")
		env.Scale = f
	}
	// Kubeconfig stays empty: client-go's loading rules, as kubectl
	// ($KUBECONFIG, which may list several files, then ~/.kube/config).
	env.Kube = scenario.KubeOptions{
		Release:      "etcd",
		ChartRef:     os.Getenv("CHART_REF"),
		ChartVersion: os.Getenv("CHART_VERSION"),
		KindCluster:  getenv("KIND_CLUSTER_NAME", "etcd-chaos"),
		NodeImage:    os.Getenv("KIND_NODE_IMAGE"),
		Keep:         os.Getenv("KEEP_CLUSTER") == "1",
	}
	if v := os.Getenv("CHART_VALUES"); v != "" {
		env.Kube.Values = strings.Split(v, ",")
	}
	// One kind cluster serves every spec; each spec installs its own release
	// in its own namespace.
	env.Kube.ShareKind = true
	GinkgoWriter.Printf("backend=%s seed=%d etcd=%s artifacts=%s\n", env.Backend, env.Seed, env.EtcdVersion, env.Artifacts)
	if env.Backend == "local" && env.EtcdBinary == "" {
		// Build the binary once before any spec so its one-minute build is
		// not charged to the first spec's timeout.
		_, err := etcdbin.Ensure(context.Background(), env.EtcdVersion, "", GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
	}
})

var _ = AfterSuite(func() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	Expect(scenario.CloseSharedKind(ctx)).To(Succeed())
})

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// specSeed derives a spec's seed from the run's seed and the spec's name, so
// SEED=<n> with a focus on one spec replays exactly that spec's schedule.
func specSeed(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return env.Seed ^ int64(h.Sum64()&0x7fffffff)
}

// scaled applies E2E_SCALE to a duration.
func scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * env.Scale) }

var safeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// artifactDir returns the spec's artifact dir.
func artifactDir(name string) string {
	return filepath.Join(env.Artifacts, safeName.ReplaceAllString(name, "_"))
}

// openCluster starts a cluster for one spec and registers its cleanup, which
// runs on pass, failure and interrupt.
func openCluster(ctx context.Context, name string, members int, kube ...func(*scenario.KubeOptions)) cluster.Cluster {
	ko := env.Kube
	for _, f := range kube {
		f(&ko)
	}
	c, err := scenario.Open(ctx, scenario.Backend{
		Name:        env.Backend,
		Members:     members,
		EtcdVersion: env.EtcdVersion,
		EtcdBinary:  env.EtcdBinary,
		Settings:    env.Settings,
		ArtifactDir: artifactDir(name),
		Progress:    GinkgoWriter,
		Kube:        ko,
	})
	Expect(err).NotTo(HaveOccurred(), "start %d-member %s cluster", members, env.Backend)
	DeferCleanup(func() {
		// KEEP_CLUSTER=1 keeps the kind cluster, and only a failed spec's
		// release in it: keeping every spec's would leave no room for the
		// next install on a small runner.
		if env.Kube.Keep && CurrentSpecReport().Failed() {
			if k, ok := c.(interface{ KeepRelease() }); ok {
				k.KeepRelease()
			}
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		Expect(c.Close(cctx)).To(Succeed())
	})
	return c
}

// needKubernetes skips a spec that only makes sense on a Kubernetes backend.
func needKubernetes(what string) {
	if env.Backend == "local" {
		Skip(what + " needs a Kubernetes backend (ETCD_CHAOS_BACKEND=kind, kube or kube-host); this run uses local")
	}
}

// suiteName is the suite's description in RunSpecs.
const suiteName = "etcd-chaos"

// rerun is the command that replays a spec.
func rerun(string) string {
	// Focus on this spec's full text, so exactly this spec runs again.
	// Ginkgo matches the focus against the suite's name, a space and the
	// spec's full text, so an anchored pattern must start with the name.
	focus := "^" + regexp.QuoteMeta(suiteName+" "+CurrentSpecReport().FullText()) + "$"
	cmd := fmt.Sprintf("SEED=%d E2E_FOCUS='%s' ETCD_CHAOS_BACKEND=%s", env.Seed, focus, env.Backend)
	if env.Backend == "local" {
		cmd += " ETCD_VERSION=" + env.EtcdVersion
		if env.SettingsArg != "" {
			cmd += fmt.Sprintf(" ETCD_SETTINGS='%s'", strings.TrimSpace(env.Settings.Args()))
		}
	}
	return cmd + " make e2e"
}

// summaries collects one line per spec for the end-of-run summary.
var summaries struct {
	sync.Mutex
	lines []string
}

// runScenario runs cfg on c and fails the spec, printing the seed, the
// re-run command and the report's path, when a check does not pass.
func runScenario(ctx context.Context, c cluster.Cluster, cfg scenario.Config) *scenario.Result {
	// A spec may set its own seed and re-run command (the known-bug
	// specs replay as one `etcd-chaos run`).
	if cfg.Seed == 0 {
		cfg.Seed = specSeed(cfg.Name)
	}
	cfg.ArtifactDir = artifactDir(cfg.Name)
	if cfg.Rerun == "" {
		cfg.Rerun = rerun(cfg.Name)
	}
	cfg.Duration = scaled(cfg.Duration)
	// A spec interrupted or timed out cancels ctx: Run then stops traffic,
	// heals, and still saves, checks and reports what was recorded (within
	// Ginkgo's grace period), returning that result with ErrInterrupted.
	// Ginkgo gives the spec 30s (GracePeriod) before it runs the cleanup
	// that closes the cluster; the checks get 15s of them, the member logs
	// and the report the rest.
	if cfg.InterruptGrace == 0 {
		cfg.InterruptGrace = 15 * time.Second
	}
	res, err := scenario.Run(ctx, c, cfg)
	if res != nil {
		var text strings.Builder
		report.Text(&text, report.Run{History: res.History, Checks: res.Checks, Duration: res.Duration, Rerun: cfg.Rerun}, res.Report)
		GinkgoWriter.Println(text.String())
		AddReportEntry("report", res.Report)
		status := strings.ToUpper(string(verdict.Overall(res.Checks)))
		if res.History.Meta.Interrupted != "" {
			status = "INTERRUPTED"
		}
		summaries.Lock()
		summaries.lines = append(summaries.lines, fmt.Sprintf("%-7s %-34s ops=%-6d faults=%-3d %s", status, cfg.Name, len(res.History.Operations), len(res.History.Faults), res.Report))
		summaries.Unlock()
		if status == "INTERRUPTED" {
			GinkgoWriter.Printf("INTERRUPTED %s %s: what was recorded is saved, checked and reported: %s\n", cfg.Name, res.History.Meta.Interrupted, res.Report)
		}
	}
	Expect(err).NotTo(HaveOccurred(), "scenario %s (seed %d)", cfg.Name, cfg.Seed)
	// A backend that cannot inject the nemesis at all (Kubernetes without
	// node access, no sch_netem on the host) leaves nothing to judge: the
	// spec is skipped with the reason, not passed and not failed.
	if res.Unsupported != nil {
		Skip(fmt.Sprintf("%s cannot be injected on the %s backend: %v", cfg.Nemesis, env.Backend, res.Unsupported))
	}
	return res
}

// expectedFailure marks the summary line of the run that wrote report as a
// failure the spec wanted (a known bug found on a version that has it), so
// that a FAIL there does not read as a broken run.
func expectedFailure(report, why string) {
	if report == "" {
		return
	}
	summaries.Lock()
	defer summaries.Unlock()
	for i, l := range summaries.lines {
		if strings.HasSuffix(l, " "+report) {
			summaries.lines[i] = l + "   (expected: " + why + ")"
		}
	}
}

// expectPass fails the spec unless every check passed.
func expectPass(res *scenario.Result, name string) {
	failed := verdict.Failed(res.Checks)
	var msg strings.Builder
	for _, f := range failed {
		fmt.Fprintf(&msg, "  %s: %s: %s\n", f.Name, f.Status, f.Summary)
		for i, v := range f.Violations {
			if i == 3 {
				break
			}
			fmt.Fprintf(&msg, "      %s\n", v)
		}
	}
	Expect(failed).To(BeEmpty(), "checks failed (seed %d; re-run: %s; report: %s)\n%s", specSeed(name), rerun(name), res.Report, msg.String())
}

// checkNamed returns the named check or fails the spec.
func checkNamed(res *scenario.Result, name string) verdict.Check {
	for _, c := range res.Checks {
		if c.Name == name {
			return c
		}
	}
	Fail("no check named " + name)
	return verdict.Check{}
}

// defaultTraffic is the traffic every chaos spec runs.
func defaultTraffic() workload.Config { return workload.Config{Clients: 6, Keys: 10} }

var _ = ReportAfterSuite("summary", func(r Report) {
	summaries.Lock()
	defer summaries.Unlock()
	sort.Strings(summaries.lines)
	fmt.Println()
	fmt.Println("──── etcd-chaos summary ────")
	fmt.Printf("backend=%s seed=%d (re-run everything: SEED=%d make e2e)\n", env.Backend, env.Seed, env.Seed)
	for _, l := range summaries.lines {
		fmt.Println(l)
	}
	passed, failed := 0, 0
	for _, s := range r.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt {
			continue
		}
		switch {
		case s.State == types.SpecStatePassed:
			passed++
		case s.State.Is(types.SpecStateFailureStates):
			failed++
		}
	}
	fmt.Printf("%d specs passed, %d failed\n", passed, failed)
})
