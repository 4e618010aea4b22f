package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

func init() {
	commands["run"] = command{
		summary: "run one chaos scenario: start a cluster, drive traffic, inject faults, check, report",
		run:     runRun,
	}
}

const runSynopsis = `run [flags]

Starts a cluster, drives recorded traffic (and watches and leases) for
--duration while the nemesis injects faults, then checks linearizability,
watch and lease guarantees, durability and HashKV agreement, and writes a
report to --out. Exit status: 0 all checks passed, 1 a check failed or was
undecided, 2 bad flags.

Examples:
  etcd-chaos run                                   # 3 local members, kill-leader, 30s
  etcd-chaos run --nemesis partition-random --duration 2m --seed 7
  etcd-chaos run --etcd-version v3.5.2 --nemesis mix
  etcd-chaos run --backend kind --chart-version 12.0.18 --nemesis delete-pod
  etcd-chaos run --nemesis blackhole-until-snapshot --snapshot-count 100 --snapshot-catchup-entries 100
  etcd-chaos run --nemesis failpoint-compaction --failpoints

Nemeses:
` + "{nemeses}" + `

Profiles (--profile):
` + "{profiles}" + `

Flags:`

func runRun(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("run", strings.NewReplacer("{nemeses}", nemesisHelp(), "{profiles}", profileHelp()).Replace(runSynopsis), stdout)
	backend := fs.String("backend", "local", "cluster backend: local, kind, kube or kube-host (root; docs/KUBERNETES.md)")
	members := fs.Int("members", 3, "cluster size: 1, 3 or 5")
	version := fs.String("etcd-version", etcdbin.DefaultVersion, "etcd version for the local backend (built from the Go module proxy and cached)")
	binary := fs.String("etcd-binary", "", "use this etcd server binary instead of building one (local backend)")
	nemesis := fs.String("nemesis", "kill-leader", "fault to inject (see list above)")
	duration := fs.Duration("duration", 30*time.Second, "how long traffic and faults run")
	faultDuration := fs.Duration("fault-duration", 0, "how long each fault is held (0: the schedule's default, 3s); hold a partition or kill past 5s and the streams of watchers on that member break and resume")
	rate := fs.Float64("rate", 0, "total KV requests per second (0: as fast as the cluster answers)")
	clients := fs.Int("clients", 6, "concurrent KV clients")
	keys := fs.Int("keys", 10, "size of the key pool")
	compactEvery := fs.Duration("compact-interval", 0, "compact about this often during traffic, a few revisions below the current one (0: never); watches from older revisions then meet ErrCompacted")
	compactKeep := fs.Int64("compact-keep", workload.DefaultCompactKeep, "revisions below the current one a compaction keeps")
	defragEvery := fs.Duration("defrag-interval", 0, "defragment one member about this often during traffic, round robin (0: never)")
	profile := fs.String("profile", workload.ProfileDefault, "traffic shape (see Profiles above)")
	futureWatchers := fs.Int("future-watchers", 0, "extra watchers that open watch after watch at a future revision (--future-offset above the current one); each must get every event from its start on")
	futureOffset := fs.Int64("future-offset", 50, "how many revisions above the current one a future watch starts")
	spreadWatchers := fs.Int("spread-watchers", 0, "extra watchers that move to the next member every 2s, resuming the same watch there")
	seed := fs.Int64("seed", 0, "seed for traffic and fault schedule (0: pick one and print it)")
	out := fs.String("out", "", "artifact dir (default artifacts/run-<time>)")
	watch := fs.Bool("watch", true, "run watchers and check watch guarantees")
	leases := fs.Bool("leases", true, "run lease expiry and keep-alive traffic")
	lockClients := fs.Int("lock-clients", 0, "clients that increment a counter under one concurrency.Mutex, judged by the lock/counter check (0: none)")
	checkTimeout := fs.Duration("check-timeout", 5*time.Minute, "bound on the linearizability search (unknown verdict past it)")
	var settings local.Settings
	settings.RegisterFlags(fs)
	failpoints := fs.Bool("failpoints", false, "local: run etcd built with gofail failpoints (needed by the failpoint-* nemeses; built once, cached apart)")
	var kube scenario.KubeOptions
	fs.StringVar(&kube.Kubeconfig, "kubeconfig", "", "kubeconfig for the kube backend (default: client-go's rules, as kubectl: $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&kube.Namespace, "namespace", "", "namespace to install into (kind/kube; default: a new one per run)")
	fs.StringVar(&kube.Release, "release", "etcd", "Helm release name")
	fs.StringVar(&kube.ChartRef, "chart", "", "chart: oci:// reference, local dir or .tgz (default the Bitnami OCI chart)")
	fs.StringVar(&kube.ChartVersion, "chart-version", "", "chart version (default 12.0.18)")
	values := fs.String("values", "3-replicas-ephemeral.yaml", "comma-separated files in charts/etcd-values (or paths), layered in order")
	set := fs.String("set", "", "comma-separated key=value overrides, as helm --set")
	fs.StringVar(&kube.KindCluster, "kind-cluster", "etcd-chaos", "kind cluster name (reused if it exists)")
	fs.StringVar(&kube.NodeImage, "node-image", "", "kind node image (default kind's)")
	fs.BoolVar(&kube.Keep, "keep-cluster", false, "keep the kind cluster and release after the run, for debugging")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if *members != 1 && *members != 3 && *members != 5 {
		return usageErr("--members must be 1, 3 or 5, got %d", *members)
	}
	if _, err := chaos.ByName(*nemesis); err != nil {
		return usageErr("%v", err)
	}
	if *duration <= 0 {
		return usageErr("--duration must be positive")
	}
	if *faultDuration < 0 {
		return usageErr("--fault-duration must not be negative")
	}
	if *lockClients < 0 || *lockClients > 100 {
		return usageErr("--lock-clients must be 0 to 100, got %d", *lockClients)
	}
	if !slices.ContainsFunc(workload.Profiles, func(p struct{ Name, Meaning string }) bool { return p.Name == *profile }) {
		return usageErr("unknown --profile %q; see --help for the profiles", *profile)
	}
	if *futureWatchers < 0 || *spreadWatchers < 0 || *futureOffset <= 0 {
		return usageErr("--future-watchers and --spread-watchers must not be negative and --future-offset must be positive")
	}
	if (*futureWatchers > 0 || *spreadWatchers > 0) && !*watch {
		return usageErr("--future-watchers and --spread-watchers need --watch")
	}
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000_000
	}
	if *values != "" {
		kube.Values = strings.Split(*values, ",")
	}
	if *set != "" {
		kube.Set = strings.Split(*set, ",")
	}
	// One run, one release: --keep-cluster keeps it with the cluster.
	kube.KeepRelease = kube.Keep
	dir := *out
	if dir == "" {
		dir = filepath.Join("artifacts", "run-"+time.Now().Format("20060102-150405"))
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "etcd-chaos run: backend=%s members=%d nemesis=%s duration=%v seed=%d\n", *backend, *members, *nemesis, *duration, *seed)

	b := scenario.Backend{
		Name: *backend, Members: *members, EtcdVersion: *version, EtcdBinary: *binary,
		ArtifactDir: dir, Progress: os.Stderr, Kube: kube,
		Settings: settings, Failpoints: *failpoints,
	}
	if err := scenario.LocalOnly(b); err != nil {
		return usageErr("%v", err)
	}
	if chaos.NeedsFailpoints(*nemesis) && !*failpoints {
		return usageErr("nemesis %s arms gofail failpoints: add --failpoints to run the failpoint build of etcd", *nemesis)
	}
	c, err := scenario.Open(ctx, b)
	if err != nil {
		return err
	}
	// Close with a context of its own: after Ctrl-C the run's context is
	// done, and the cluster must still be torn down.
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			fmt.Fprintf(os.Stderr, "etcd-chaos run: cleanup: %v\n", err)
		}
	}()

	if *nemesis == "mix" {
		for _, n := range chaos.MixNotes(c) {
			fmt.Fprintln(os.Stderr, "etcd-chaos run: "+n)
		}
	}

	rerun := fmt.Sprintf("etcd-chaos run --backend %s --members %d --nemesis %s --duration %v --seed %d --rate %g --clients %d --keys %d",
		*backend, *members, *nemesis, *duration, *seed, *rate, *clients, *keys)
	if *faultDuration > 0 {
		rerun += fmt.Sprintf(" --fault-duration %v", *faultDuration)
	}
	if *compactEvery > 0 {
		rerun += fmt.Sprintf(" --compact-interval %v --compact-keep %d", *compactEvery, *compactKeep)
	}
	if *defragEvery > 0 {
		rerun += fmt.Sprintf(" --defrag-interval %v", *defragEvery)
	}
	if *profile != workload.ProfileDefault {
		rerun += " --profile " + *profile
	}
	if *futureWatchers > 0 {
		rerun += fmt.Sprintf(" --future-watchers %d --future-offset %d", *futureWatchers, *futureOffset)
	}
	if *spreadWatchers > 0 {
		rerun += fmt.Sprintf(" --spread-watchers %d", *spreadWatchers)
	}
	if *lockClients > 0 {
		rerun += fmt.Sprintf(" --lock-clients %d", *lockClients)
	}
	if *backend == "local" {
		rerun += " --etcd-version " + c.Version() + settingsArgs(settings, *failpoints)
	}
	prog := report.NewProgress(os.Stderr, *duration)
	var running sync.Once
	cfg := scenario.Config{
		Name:     "run-" + *nemesis,
		Nemesis:  *nemesis,
		Duration: *duration,
		Seed:     *seed,
		Traffic: workload.Config{Clients: *clients, Rate: *rate, Keys: *keys, Profile: *profile,
			CompactInterval: *compactEvery, CompactKeep: *compactKeep, DefragInterval: *defragEvery},
		ArtifactDir:  dir,
		CheckTimeout: *checkTimeout,
		Rerun:        rerun,
		Schedule:     chaos.Schedule{Duration: *faultDuration},
		Progress: func(ops int64, faults int) {
			running.Do(func() {
				fmt.Fprintln(os.Stderr, "etcd-chaos run: traffic is running; Ctrl-C stops it early and still saves, checks and reports what was recorded")
			})
			prog.Update(int(ops), faults)
		},
	}
	if *watch {
		cfg.Watch = &workload.WatchConfig{FutureWatchers: *futureWatchers, FutureOffset: *futureOffset, SpreadWatchers: *spreadWatchers}
	}
	if *leases {
		cfg.Leases = &workload.LeaseConfig{}
	}
	if *lockClients > 0 {
		cfg.Lock = &workload.LockConfig{Clients: *lockClients, Seed: *seed}
	}
	cfg.InterruptGrace = 2 * time.Minute // a second Ctrl-C cuts it short
	cfg.Abort = aborted(ctx)
	res, err := scenario.Run(ctx, c, cfg)
	prog.Done()
	if res != nil {
		report.Text(stdout, report.Run{History: res.History, Checks: res.Checks, Duration: res.Duration, Rerun: rerun}, res.Report)
	}
	if errors.Is(err, scenario.ErrInterrupted) {
		return fmt.Errorf("%w: %s", err, res.Report)
	}
	if err != nil {
		return err
	}
	if !res.Passed() {
		return fmt.Errorf("%w: see %s (re-run: %s)", errChecksFailed, res.Report, rerun)
	}
	return nil
}

// settingsArgs are the flags that give a re-run the same cluster settings.
func settingsArgs(s local.Settings, failpoints bool) string {
	if failpoints {
		return s.Args() + " --failpoints"
	}
	return s.Args()
}

// profileHelp lists every traffic profile with its one-line meaning.
func profileHelp() string {
	var b strings.Builder
	for _, p := range workload.Profiles {
		fmt.Fprintf(&b, "  %-26s %s\n", p.Name, p.Meaning)
	}
	return strings.TrimRight(b.String(), "\n")
}

// nemesisHelp lists every nemesis with its one-line meaning.
func nemesisHelp() string {
	var b strings.Builder
	for _, n := range chaos.Names() {
		fmt.Fprintf(&b, "  %-26s %s\n", n, chaos.Describe(n))
	}
	return strings.TrimRight(b.String(), "\n")
}
