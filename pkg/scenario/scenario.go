// Package scenario is the one place that wires a run together: traffic and
// watchers on a cluster, a fault schedule, the end-of-run reads, every check,
// and the artifact dir. The Ginkgo suites and `etcd-chaos run` both call Run,
// so a scenario behaves the same however it is started.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/chaos"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// Config describes one scenario.
type Config struct {
	// Name labels the run in reports ("kill-leader", "smoke", ...).
	Name string
	// Nemesis names the fault (see chaos.Names); "none" or "" injects none.
	Nemesis string
	// Duration is how long traffic runs, faults included.
	Duration time.Duration
	// Seed drives the workload and the fault schedule.
	Seed int64
	// Traffic configures the KV clients; its Seed is set from Seed.
	Traffic workload.Config
	// Watch, when non-nil, runs watchers beside the traffic.
	Watch *workload.WatchConfig
	// Leases, when non-nil, runs lease expiry and keep-alive traffic.
	Leases *workload.LeaseConfig
	// Lock, when non-nil, runs the lock counter (workload.RunLockCounter)
	// beside the traffic and for as long: increments under one
	// concurrency.Mutex, judged by the lock/counter check.
	Lock *workload.LockConfig
	// Schedule overrides the fault timings; zero fields take
	// chaos.DefaultSchedule's.
	Schedule chaos.Schedule
	// ArtifactDir receives the report; empty means no files.
	ArtifactDir string
	// CheckTimeout bounds the linearizability search (default 5m).
	CheckTimeout time.Duration
	// Rerun is the command that re-runs this scenario, shown in reports.
	Rerun string
	// Notes are kept in the history's meta, e.g. "persistence disabled".
	Notes []string
	// Progress, if set, is told about ops and faults as the run goes.
	Progress func(ops int64, faults int)
	// DuringTraffic, if set, runs while traffic runs, after the warm-up, in
	// place of nothing: scenarios such as snapshot save or chart upgrade
	// hook in here. Its error fails the run. Its context ends only with the
	// run's (an interrupt), not with Duration, so it must bound itself (a
	// chart upgrade has its own timeout); traffic, leases and faults go on
	// past Duration until it returns, so a slow step is neither cut off nor
	// left without traffic to judge it by.
	DuringTraffic func(ctx context.Context, rec *history.Recorder) error
	// InterruptGrace bounds how long a run interrupted by its context may
	// spend healing, reading and checking what it recorded (default 20s;
	// collecting logs and writing the report take at most 10s more, within
	// Ginkgo's 30s grace period).
	InterruptGrace time.Duration
	// Abort, when closed after an interrupt (a second Ctrl-C), cuts the
	// interrupt grace short: Run returns at once, its goroutines stopped.
	Abort <-chan struct{}
}

// Result is what a scenario produced.
type Result struct {
	History *history.History
	Checks  []verdict.Check
	Traffic workload.Stats
	Faults  chaos.Result
	// Lock is what the lock counter saw, when Config.Lock was set.
	Lock workload.LockResult
	// Unsupported is set (wrapping cluster.ErrUnsupported) when the backend
	// cannot inject the nemesis at all; the "faults" check is then unknown,
	// and the suites skip the spec with this reason.
	Unsupported error
	Duration    time.Duration
	// Report is the path of report.html, when an artifact dir was given.
	Report string
}

// Passed reports whether every check passed.
func (r *Result) Passed() bool { return verdict.Passed(r.Checks) }

// ErrInterrupted marks a run whose context ended before its traffic and
// wind-down were done (Ctrl-C, a spec's timeout). Run still returns the
// Result of what was recorded, checked and reported.
var ErrInterrupted = errors.New("run interrupted")

// interruptGrace is how long an interrupted run may spend winding down and
// checking when Config.InterruptGrace is zero. With publish's 10s for the
// member logs it stays within Ginkgo's default grace period of 30s, so an
// interrupted or timed-out spec still leaves its history and report.
const interruptGrace = 20 * time.Second

// Run runs the scenario on c. It does not close c. An error means the
// scenario could not run (bad config, cluster unreachable at start); check
// failures are in Result.Checks.
//
// When ctx ends while the scenario runs (Ctrl-C, a spec's timeout), the run
// is interrupted, not lost: traffic stops, active faults heal, and what was
// recorded is saved, checked and reported within Config.InterruptGrace,
// marked interrupted (so its verdict is never pass). Run then returns that
// Result together with an error wrapping ErrInterrupted. Closing
// Config.Abort cuts the grace short.
func Run(ctx context.Context, c cluster.Cluster, cfg Config) (*Result, error) {
	r, err := prepare(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	// From here on, every step that must still happen after an interrupt
	// runs on grace, which outlives ctx by the interrupt grace.
	grace, cancel := afterInterrupt(ctx, r.cfg.InterruptGrace, r.cfg.Abort)
	defer cancel()
	d, err := r.drive(ctx, grace)
	if err != nil {
		return nil, err
	}
	end := r.windDown(ctx, grace, d)
	h := r.rec.History()
	if h.Meta.Compactions == history.CompactionsRecorded {
		// The members may have been started with other settings since
		// (a chart upgrade): every compaction is recorded only if they
		// never auto-compacted, at the start or at the end.
		h.Meta.Compactions = compactions(grace, r.c)
	}
	if ctx.Err() != nil {
		if d.cut {
			h.Meta.Interrupted = fmt.Sprintf("after %s of the %s of traffic (%v)",
				d.traffic.Round(100*time.Millisecond), r.cfg.Duration, context.Cause(ctx))
		} else {
			h.Meta.Interrupted = fmt.Sprintf("while winding down after the %s of traffic (%v)", r.cfg.Duration, context.Cause(ctx))
		}
	}
	res := &Result{History: h, Traffic: d.stats, Lock: d.lock, Faults: d.faults, Duration: time.Since(r.started)}
	if err := r.saveHistory(h); err != nil {
		return nil, err
	}
	res.Checks = r.judge(grace, h, end, d)
	if errors.Is(d.schedErr, cluster.ErrUnsupported) {
		res.Unsupported = d.schedErr
	}
	if res.Report, err = r.publish(ctx, res); err != nil {
		return res, err
	}
	if h.Meta.Interrupted != "" {
		return res, fmt.Errorf("%w %s; its %d operations were saved, checked and reported", ErrInterrupted, h.Meta.Interrupted, len(h.Operations))
	}
	return res, nil
}

// afterInterrupt returns a context that lives on after ctx ends, for at most
// grace more, and ends at once when abort is closed.
func afterInterrupt(ctx context.Context, grace time.Duration, abort <-chan struct{}) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-abort:
			cancel()
			return
		case <-g.Done():
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-abort:
		case <-g.Done():
		}
		cancel()
	}()
	return g, cancel
}

// run is one scenario between prepare and publish.
type run struct {
	cfg     Config
	c       cluster.Cluster
	nemesis chaos.Nemesis
	rec     *history.Recorder
	started time.Time
}

// prepare checks the configuration, makes the artifact dir, waits for a
// healthy cluster and records the baseline read.
func prepare(ctx context.Context, c cluster.Cluster, cfg Config) (*run, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("scenario: Duration must be positive")
	}
	if cfg.Nemesis == "" {
		cfg.Nemesis = "none"
	}
	nemesis, err := chaos.ByName(cfg.Nemesis)
	if err != nil {
		return nil, err
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 5 * time.Minute
	}
	if cfg.InterruptGrace == 0 {
		cfg.InterruptGrace = interruptGrace
	}
	if cfg.ArtifactDir != "" {
		if err := os.MkdirAll(cfg.ArtifactDir, 0o755); err != nil {
			return nil, fmt.Errorf("artifact dir: %w", err)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = c.WaitHealthy(hctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("cluster is not healthy before the run: %w", err)
	}
	r := &run{cfg: cfg, c: c, nemesis: nemesis, started: time.Now()}
	r.rec = history.NewRecorder(history.Meta{
		Scenario:    cfg.Name,
		Backend:     c.Backend(),
		Members:     len(c.Members()),
		EtcdVersion: c.Version(),
		Nemesis:     cfg.Nemesis,
		Seed:        cfg.Seed,
		Rerun:       cfg.Rerun,
		Notes:       cfg.Notes,
		Compactions: compactions(ctx, c),
	})
	// A baseline read of the whole key pool, before any other request, tells
	// the checkers what the store held at the start: nothing on a fresh
	// cluster, the restored data on a cluster restored from a snapshot.
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = workload.FinalRead(bctx, c, r.rec, keyspace.KVPrefix)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("baseline read: %w", err)
	}
	return r, nil
}

// autoCompacting is a cluster that can tell whether its members compact
// their store on their own: the local backend knows the flags and
// environment it starts them with, the Kubernetes one reads the settings
// each pod's etcd logged as it started. It returns why they may ("" when
// they never do).
type autoCompacting interface {
	AutoCompaction(ctx context.Context) string
}

var (
	_ autoCompacting = (*local.Cluster)(nil)
	_ autoCompacting = (*kube.Cluster)(nil)
)

// compactions is the history's meta.compactions for c: whether every
// compaction of the run will be recorded (the workload's compact
// operations, the faults marked as compacting), why not, or "" when c
// cannot tell, which the checkers treat as not recorded.
func compactions(ctx context.Context, c cluster.Cluster) string {
	a, ok := c.(autoCompacting)
	if !ok {
		return ""
	}
	if why := a.AutoCompaction(ctx); why != "" {
		return why
	}
	return history.CompactionsRecorded
}

// driven is what drive leaves for the wind-down and the judge.
type driven struct {
	stats    workload.Stats
	lock     workload.LockResult
	faults   chaos.Result
	watchers *workload.Watchers
	// traffic is how long traffic ran: Duration, more when a DuringTraffic
	// hook outlasted it, less when interrupted.
	traffic time.Duration
	// cut: the run's context ended before traffic was done.
	cut bool
	// schedErr is the fault schedule's error: a fault that could not be
	// healed, or cluster.ErrUnsupported.
	schedErr error
	// failed are the checks the run itself failed: a DuringTraffic hook,
	// the lock counter.
	failed []verdict.Check
}

// drive runs traffic, watchers and the fault schedule until Duration has
// passed or ctx ends. The watchers run on grace: they must see the
// wind-down's final revision even after an interrupt.
func (r *run) drive(ctx, grace context.Context) (*driven, error) {
	d := &driven{}
	if r.cfg.Watch != nil {
		// Watchers start first so they see every write of the run.
		var err error
		if d.watchers, err = workload.StartWatch(grace, r.c, r.rec, *r.cfg.Watch); err != nil {
			return nil, fmt.Errorf("start watchers: %w", err)
		}
	}
	began := time.Now()
	hookDone := make(chan struct{})
	if r.cfg.DuringTraffic == nil {
		close(hookDone)
	}
	runCtx, stopRun := trafficWindow(ctx, r.cfg.Duration, hookDone)
	defer stopRun()
	var wg sync.WaitGroup
	var trafficErr, leaseErr, lockErr, duringErr, schedErr error
	traffic := r.cfg.Traffic
	traffic.Seed = r.cfg.Seed
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.stats, trafficErr = workload.Run(runCtx, r.c, r.rec, traffic)
	}()
	if r.cfg.Leases != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, leaseErr = workload.RunLeases(runCtx, r.c, r.rec, *r.cfg.Leases)
		}()
	}
	if r.cfg.Lock != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.lock, lockErr = workload.RunLockCounter(runCtx, r.c, r.rec, *r.cfg.Lock)
		}()
	}
	sched := withDefaults(r.cfg.Schedule, r.nemesis, r.cfg.Seed)
	if r.cfg.DuringTraffic != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(hookDone)
			if sleepCtx(runCtx, sched.Warmup) {
				duringErr = r.cfg.DuringTraffic(ctx, r.rec)
			}
		}()
	}
	if r.cfg.Progress != nil {
		go reportProgress(runCtx, r.rec, r.cfg.Progress)
	}
	if r.nemesis.Name() != "none" {
		// The schedule heals an active fault when runCtx ends, also on
		// an interrupt.
		d.faults, schedErr = sched.Run(runCtx, r.c, r.rec)
	}
	<-runCtx.Done()
	d.traffic = time.Since(began)
	d.cut = ctx.Err() != nil
	wg.Wait()
	if err := errors.Join(trafficErr, leaseErr); err != nil {
		if d.watchers != nil {
			d.watchers.Stop()
		}
		return nil, fmt.Errorf("traffic: %w", err)
	}
	d.schedErr = schedErr
	if duringErr != nil {
		d.failed = append(d.failed, verdict.Check{Name: "during-traffic", Status: failedUnless(ctx), Summary: duringErr.Error()})
	}
	if lockErr != nil {
		// Its increments are in the history and judged there; what failed
		// is the lock counter's own final read (or its start).
		d.failed = append(d.failed, verdict.Check{Name: "lock-counter", Status: failedUnless(ctx), Summary: lockErr.Error()})
	}
	return d, nil
}

// windDown waits for the cluster to recover, reads what survived (one full
// read per prefix, recorded), lets the watchers catch up with the final
// revision, and compares the members' HashKV. It returns the checks that
// need the live cluster: recovery, final-read, watch/drain and hashkv. On
// an interrupted run each step gets less time, and a step that runs out of
// it proves nothing either way: unknown rather than fail.
func (r *run) windDown(ctx, grace context.Context, d *driven) []verdict.Check {
	defer func() {
		if d.watchers != nil {
			d.watchers.Stop()
		}
	}()
	limit := func(full, cut time.Duration) (context.Context, context.CancelFunc) {
		if ctx.Err() != nil {
			return context.WithTimeout(grace, cut)
		}
		return context.WithTimeout(grace, full)
	}
	var end []verdict.Check
	rctx, cancel := limit(2*time.Minute, 10*time.Second)
	recoverErr := r.c.WaitHealthy(rctx)
	cancel()
	if recoverErr != nil {
		end = append(end, verdict.Check{Name: "recovery", Status: failedUnless(ctx),
			Summary: fmt.Sprintf("cluster did not recover after the faults: %v", recoverErr)})
	}
	fctx, cancel := limit(time.Minute, 10*time.Second)
	for _, prefix := range []string{keyspace.KVPrefix, keyspace.LeaseKeepPrefix} {
		if err := workload.FinalRead(fctx, r.c, r.rec, prefix); err != nil {
			end = append(end, verdict.Check{Name: "final-read", Status: failedUnless(ctx),
				Summary: fmt.Sprintf("could not read %s after the run: %v", prefix, err)})
		}
	}
	finalRev, revErr := currentRevision(fctx, r.c)
	cancel()
	if revErr != nil {
		end = append(end, verdict.Check{Name: "final-read", Status: failedUnless(ctx),
			Summary: fmt.Sprintf("could not read the final revision: %v", revErr)})
	}
	if d.watchers != nil && revErr == nil {
		dctx, cancel := limit(30*time.Second, 5*time.Second)
		start := time.Now()
		err := d.watchers.Drain(dctx, finalRev)
		cancel()
		// The stream counts say whether the resume path ran at all: every
		// stream after a watcher's first resumed one that broke.
		drain := verdict.Check{Name: "watch/drain", Status: verdict.Pass, Duration: time.Since(start),
			Summary: fmt.Sprintf("watchers caught up with revision %d; %s", finalRev, d.watchers.Stats())}
		if err != nil {
			drain.Status = failedUnless(ctx)
			drain.Summary = fmt.Sprintf("watchers did not catch up with revision %d: %v; %s", finalRev, err, d.watchers.Stats())
		}
		end = append(end, drain)
	}
	if recoverErr == nil {
		hctx, cancel := limit(time.Minute, 10*time.Second)
		end = append(end, HashKVCheck(hctx, r.c))
		cancel()
	}
	return append(end, d.failed...)
}

// trafficWindow returns the context traffic, leases and faults run on: it
// ends when ctx ends, or once d has passed and hookDone is closed, whichever
// is first. A DuringTraffic hook that outlasts d (a chart upgrade rolling
// three pods) thus keeps traffic running under it until it returns.
func trafficWindow(ctx context.Context, d time.Duration, hookDone <-chan struct{}) (context.Context, context.CancelFunc) {
	w, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-w.Done():
			return
		}
		select {
		case <-hookDone:
		case <-w.Done():
		}
	}()
	return w, cancel
}

// failedUnless is the status of a step that did not succeed: fail, unless
// ctx ended (an interrupt), which may be why; then it proves nothing.
func failedUnless(ctx context.Context) verdict.Status {
	if ctx.Err() != nil {
		return verdict.Unknown
	}
	return verdict.Fail
}

// saveHistory writes history.jsonl before the checks run: if a check runs
// out of time or memory, the evidence is already on disk for `etcd-chaos
// check`. It is publish's file, written early.
func (r *run) saveHistory(h *history.History) error {
	if r.cfg.ArtifactDir == "" {
		return nil
	}
	return history.Save(filepath.Join(r.cfg.ArtifactDir, report.HistoryFile), h)
}

// judge runs every check that needs only the history (pkg/checker, the
// same as `etcd-chaos check`) and adds the wind-down's live-cluster checks
// and the fault schedule's warnings.
func (r *run) judge(grace context.Context, h *history.History, end []verdict.Check, d *driven) []verdict.Check {
	checks := append(checker.Check(grace, h, checker.Options{ArtifactDir: r.cfg.ArtifactDir, Timeout: r.cfg.CheckTimeout}), end...)
	if r.nemesis.Name() != "none" || d.schedErr != nil || len(d.faults.Errors) > 0 || len(d.faults.PlanErrors) > 0 {
		checks = append(checks, FaultsCheck(r.nemesis.Name(), d.faults, d.schedErr, h.Meta.Interrupted != ""))
	}
	return checks
}

// publish collects the member logs and writes the report beside
// history.jsonl; it returns the path of report.html ("" with no artifact
// dir). It runs on a context of its own, so an interrupted run still gets
// its report, and keeps to the interrupt grace.
func (r *run) publish(ctx context.Context, res *Result) (string, error) {
	if r.cfg.ArtifactDir == "" {
		return "", nil
	}
	// Member logs matter most when a run went wrong, so even an interrupted
	// run whose grace the checks used up collects them, briefly.
	budget := time.Minute
	if ctx.Err() != nil {
		budget = 10 * time.Second
	}
	lctx, cancel := afterInterrupt(context.WithoutCancel(ctx), 0, r.cfg.Abort)
	defer cancel()
	lctx, cancel = context.WithTimeout(lctx, budget)
	defer cancel()
	if err := r.c.CollectLogs(lctx, filepath.Join(r.cfg.ArtifactDir, "logs")); err != nil {
		res.Checks = append(res.Checks, verdict.Check{Name: "logs", Status: verdict.Skipped, Summary: "could not collect member logs: " + err.Error()})
	}
	paths, err := report.Write(r.cfg.ArtifactDir, report.Run{
		History:  res.History,
		Checks:   res.Checks,
		Duration: res.Duration,
		Rerun:    r.cfg.Rerun,
		Notes:    r.cfg.Notes,
		LogDir:   "logs",
	})
	if err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	return paths.HTML, nil
}

// currentRevision returns the cluster's revision by a linearizable read.
func currentRevision(ctx context.Context, c cluster.Cluster) (int64, error) {
	cli, err := c.Client(ctx)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// HashKVCheck compares every member's HashKV at one revision.
func HashKVCheck(ctx context.Context, c cluster.Cluster) verdict.Check {
	start := time.Now()
	ch := verdict.Check{Name: "hashkv", Status: verdict.Pass}
	hctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hashes, err := cluster.CompareHashKV(hctx, c, 0)
	switch {
	case err != nil:
		ch.Violate("%v", err)
		ch.Summary = "members disagree or cannot be compared: " + err.Error()
	case len(hashes) > 0:
		ch.Summary = fmt.Sprintf("%d members agree at revision %d (hash %d)", len(hashes), hashes[0].Revision, hashes[0].Hash)
	}
	ch.Duration = time.Since(start)
	return ch
}

// FaultsCheck says whether the run's faults took effect. A run whose
// faults all failed to apply (no sch_netem for slow-network, no node access
// for kills on Kubernetes) has proven nothing about them, however clean the
// history: the check is then unknown, never a pass, with the reason. A fault
// that could not be healed fails it. Faults that failed among others that
// took effect are warnings.
func FaultsCheck(nemesis string, r chaos.Result, schedErr error, interrupted bool) verdict.Check {
	c := verdict.Check{Name: "faults", Status: verdict.Pass,
		Summary: fmt.Sprintf("%d of %d %s faults took effect (%.1f per minute)", r.Applied, r.Faults, nemesis, r.PerMinute())}
	for _, e := range r.Errors {
		c.Warn("%s", e)
	}
	for _, e := range r.PlanErrors {
		c.Warn("%s (retried)", e)
	}
	for _, n := range r.Notes {
		c.Warn("%s", n)
	}
	switch {
	case errors.Is(schedErr, cluster.ErrUnsupported):
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("%s cannot be injected on this backend, so the run proves nothing about it: %v", nemesis, schedErr)
	case schedErr != nil:
		c.Status = verdict.Fail
		c.Summary = schedErr.Error()
	case r.Applied == 0 && nemesis != "none":
		c.Status = verdict.Unknown
		switch {
		case r.Faults == 0 && interrupted:
			c.Summary = fmt.Sprintf("no %s fault was injected before the run was interrupted", nemesis)
		case r.Faults == 0:
			c.Summary = fmt.Sprintf("no %s fault was injected: the run was shorter than the schedule's warm-up, or every plan failed", nemesis)
		default:
			c.Summary = fmt.Sprintf("none of the %d %s faults took effect, so the run proves nothing about them", r.Faults, nemesis)
		}
		// A fault's own error says most; with none attempted, a failed
		// plan is the reason.
		if len(r.Errors) > 0 {
			c.Summary += "; first error: " + r.Errors[0]
		} else if len(r.PlanErrors) > 0 {
			c.Summary += "; first plan error: " + r.PlanErrors[0]
		}
	}
	return c
}

func withDefaults(s chaos.Schedule, n chaos.Nemesis, seed int64) chaos.Schedule {
	d := chaos.DefaultSchedule(n, seed)
	if s.Warmup > 0 {
		d.Warmup = s.Warmup
	}
	if s.Duration > 0 {
		d.Duration = s.Duration
	}
	if s.Interval > 0 {
		d.Interval = s.Interval
	}
	if s.Recovery > 0 {
		d.Recovery = s.Recovery
	}
	d.MaxFaults = s.MaxFaults
	d.OnFault = s.OnFault
	return d
}

func reportProgress(ctx context.Context, rec *history.Recorder, f func(int64, int)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ops, faults := rec.Counts()
			f(ops, faults)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
