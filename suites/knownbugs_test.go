//go:build e2e

package suites

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// Users test the versions they run, including ones with known bugs. These
// specs take bugs from etcd's robustness track record, run a version each
// bug affects with nothing but the harness's general faults and settings,
// and expect a general check (linearizable, durability, watch, …) to find
// it: a harness that passes a known-buggy version proves nothing. The same
// configuration on the release that fixed the bug must pass every check,
// or the "finding" could be a false alarm. docs/KNOWN-BUGS.md has the
// measured detection rates.

// knownBug is one bug and the configuration that finds it. Every field is
// an `etcd-chaos run` flag, so a failing spec replays as one command.
type knownBug struct {
	issue, what     string
	affected, fixed string
	members         int
	failpoints      bool
	nemesis         string
	duration        time.Duration
	settings        local.Settings
	watch           bool
	compactInterval time.Duration
	// profile is the traffic shape (--profile; "" is the default one).
	profile string
	// futureWatchers and spreadWatchers add watchers that open watches
	// at future revisions and that move from member to member
	// (--future-watchers, --spread-watchers).
	futureWatchers, spreadWatchers int
	// detectedBy are the general checks that see the bug; the affected
	// version must fail at least one of them.
	detectedBy []string
	// attempts is how many runs, each on a new cluster and seed, the
	// affected version gets to show the bug: most are found in one run,
	// none in every run.
	attempts int
	// slow bugs need a failpoint build (minutes, once) or long faults;
	// they carry the known-bugs-slow label, which `make e2e` skips.
	slow bool
}

var knownBugs = []knownBug{
	{
		issue: "etcd-io/etcd#15220", what: "progress notifications ahead of undelivered events",
		affected: "v3.5.2", fixed: "v3.5.8", members: 3, nemesis: "partition-leader", duration: 30 * time.Second,
		watch: true, detectedBy: []string{"watch/bookmarkable"}, attempts: 3,
	},
	{
		issue: "etcd-io/etcd#18089", what: "a watch from a compaction revision missing the delete at that revision",
		// Watchers refused as compacted resume at the compaction
		// revision; with deletes as common as puts, some compactions
		// land on a delete, whose tombstone the affected releases
		// compact away. The fix shipped in v3.5.16, but releases before
		// v3.5.22 can also fail watch/bookmarkable on this traffic
		// (etcd-io/etcd#20221: a watch the client library moves to a
		// lagging member hears a progress notification below the
		// revision it resumed from), so v3.5.22, the first release with
		// both fixes, is the one that must pass.
		affected: "v3.5.15", fixed: "v3.5.22", members: 3, nemesis: "kill-random", duration: 30 * time.Second,
		watch: true, compactInterval: 2 * time.Second, profile: "delete-heavy", futureWatchers: 2, spreadWatchers: 2,
		detectedBy: []string{"watch/reliable", "watch/resumable"}, attempts: 3,
	},
	{
		issue: "etcd-io/etcd#14370", what: "a single member losing acknowledged writes when it crashes before saving its WAL",
		// v3.5.6, not v3.5.5, is the fixed release used: one failpoint
		// build serves as the fixed version of this bug and of #14685.
		affected: "v3.5.4", fixed: "v3.5.6", members: 1, failpoints: true, nemesis: "failpoint-raft-save", duration: 30 * time.Second,
		detectedBy: []string{"durability", "linearizable"}, attempts: 5, slow: true,
	},
	{
		issue: "etcd-io/etcd#14685", what: "revisions that go back after a crash during defragmentation",
		affected: "v3.5.4", fixed: "v3.5.6", members: 1, failpoints: true, nemesis: "failpoint-defrag", duration: 30 * time.Second,
		detectedBy: []string{"durability", "linearizable"}, attempts: 5, slow: true,
	},
}

// name labels a bug's run on version (artifact dir, report).
func (b knownBug) name(version string) string {
	return "known-bug-" + strings.TrimPrefix(b.issue, "etcd-io/etcd#") + "-" + version
}

// command is the `etcd-chaos run` that replays one run of b on version.
func (b knownBug) command(version string, seed int64) string {
	cmd := fmt.Sprintf("go run ./cmd/etcd-chaos run --members %d --etcd-version %s --nemesis %s --duration %v --seed %d", b.members, version, b.nemesis, scaled(b.duration), seed)
	if b.failpoints {
		cmd += " --failpoints"
	}
	if !b.watch {
		cmd += " --watch=false"
	}
	if b.compactInterval > 0 {
		cmd += fmt.Sprintf(" --compact-interval %v", b.compactInterval)
	}
	if b.profile != "" {
		cmd += " --profile " + b.profile
	}
	if b.futureWatchers > 0 {
		cmd += fmt.Sprintf(" --future-watchers %d", b.futureWatchers)
	}
	if b.spreadWatchers > 0 {
		cmd += fmt.Sprintf(" --spread-watchers %d", b.spreadWatchers)
	}
	return cmd + b.settings.Args()
}

// labels puts a bug's specs under known-bugs or known-bugs-slow.
func (b knownBug) labels() Labels {
	if b.slow {
		return Label("known-bugs-slow")
	}
	return Label("known-bugs")
}

// run runs b once on version with seed, on a cluster of its own that is
// closed before it returns, and returns the result.
func (b knownBug) run(ctx context.Context, version string, seed int64) *scenario.Result {
	name := b.name(version)
	c, err := scenario.Open(ctx, scenario.Backend{Name: "local", Members: b.members, EtcdVersion: version,
		Failpoints: b.failpoints, Settings: b.settings, ArtifactDir: artifactDir(name), Progress: GinkgoWriter})
	Expect(err).NotTo(HaveOccurred())
	closed := false
	closeCluster := func() error {
		if closed {
			return nil
		}
		closed = true
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return c.Close(cctx)
	}
	DeferCleanup(closeCluster)
	cfg := scenario.Config{
		Name:     name,
		Nemesis:  b.nemesis,
		Duration: b.duration,
		Seed:     seed,
		Traffic:  workload.Config{Clients: 6, Keys: 10, Profile: b.profile, CompactInterval: b.compactInterval, CompactKeep: workload.DefaultCompactKeep},
		Leases:   &workload.LeaseConfig{},
	}
	if b.watch {
		cfg.Watch = &workload.WatchConfig{FutureWatchers: b.futureWatchers, SpreadWatchers: b.spreadWatchers}
	}
	label := "known-bugs"
	if b.slow {
		label = "known-bugs-slow"
	}
	cfg.Rerun = fmt.Sprintf("%s   (or the whole spec: SEED=%d E2E_LABELS=%s E2E_FOCUS='%s' make e2e)", b.command(version, seed), env.Seed, label, regexp.QuoteMeta(CurrentSpecReport().LeafNodeText))
	res := runScenario(ctx, c, cfg)
	Expect(closeCluster()).To(Succeed())
	return res
}

var _ = Describe("Known etcd bugs", func() {
	BeforeEach(func() {
		if env.Backend != "local" {
			Skip("pins etcd versions, which only the local backend can do")
		}
	})
	for _, b := range knownBugs {
		It(fmt.Sprintf("finds %s in etcd %s (%s)", b.what, b.affected, b.issue), b.labels(), func(ctx SpecContext) {
			var tried []string
			for attempt := range b.attempts {
				seed := specSeed(b.name(b.affected)) + int64(attempt)
				res := b.run(ctx, b.affected, seed)
				for _, name := range b.detectedBy {
					if ch := checkNamed(res, name); ch.Status == verdict.Fail {
						expectedFailure(res.Report, fmt.Sprintf("%s found %s", name, b.issue))
						GinkgoWriter.Printf("%s found %s on attempt %d: %s: %s\nreplay: %s\n", name, b.issue, attempt+1, ch.Summary, res.Report, b.command(b.affected, seed))
						return
					}
				}
				tried = append(tried, fmt.Sprintf("  seed %d: %s (%s)", seed, verdict.Overall(res.Checks), res.Report))
			}
			Fail(fmt.Sprintf("none of %s failed in %d runs on etcd %s, which has %s: the checks missed a known bug\n%s\nreplay one: %s",
				strings.Join(b.detectedBy, ", "), b.attempts, b.affected, b.issue, strings.Join(tried, "\n"), b.command(b.affected, specSeed(b.name(b.affected)))))
		}, SpecTimeout(time.Duration(b.attempts)*6*time.Minute+buildTime(b)))

		It(fmt.Sprintf("passes the same configuration on etcd %s, where %s is fixed", b.fixed, b.issue), b.labels(), func(ctx SpecContext) {
			seed := specSeed(b.name(b.fixed))
			res := b.run(ctx, b.fixed, seed)
			expectPassReplay(res, b.command(b.fixed, seed))
		}, SpecTimeout(6*time.Minute+buildTime(b)))
	}
})

// buildTime is what a spec's timeout allows for building its etcd: the
// plain builds are made before the suite starts (E2E_ETCD_VERSIONS), a
// failpoint build takes 7-8 minutes once, more on a loaded machine.
func buildTime(b knownBug) time.Duration {
	if b.failpoints {
		return 25 * time.Minute
	}
	return 5 * time.Minute
}

// expectPassReplay is expectPass with the command that replays the run.
func expectPassReplay(res *scenario.Result, replay string) {
	var msg strings.Builder
	for _, f := range verdict.Failed(res.Checks) {
		fmt.Fprintf(&msg, "  %s: %s: %s\n", f.Name, f.Status, f.Summary)
	}
	Expect(verdict.Failed(res.Checks)).To(BeEmpty(), "checks failed on a fixed etcd (replay: %s; report: %s)\n%s", replay, res.Report, msg.String())
}
