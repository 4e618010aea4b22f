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
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
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
	// hook in here. Its error fails the run.
	DuringTraffic func(ctx context.Context, rec *history.Recorder) error
}

// Result is what a scenario produced.
type Result struct {
	History  *history.History
	Checks   []verdict.Check
	Traffic  workload.Stats
	Faults   chaos.Result
	Duration time.Duration
	// Report is the path of report.html, when an artifact dir was given.
	Report string
}

// Passed reports whether every check passed.
func (r *Result) Passed() bool { return verdict.Passed(r.Checks) }

// Run runs the scenario on c. It does not close c. An error means the
// scenario could not run (bad config, cluster unreachable at start); check
// failures are in Result.Checks.
func Run(ctx context.Context, c cluster.Cluster, cfg Config) (*Result, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("scenario: Duration must be positive")
	}
	nemesisName := cfg.Nemesis
	if nemesisName == "" {
		nemesisName = "none"
	}
	nemesis, err := chaos.ByName(nemesisName)
	if err != nil {
		return nil, err
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 5 * time.Minute
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

	rec := history.NewRecorder(history.Meta{
		Scenario:    cfg.Name,
		Backend:     c.Backend(),
		Members:     len(c.Members()),
		EtcdVersion: c.Version(),
		Nemesis:     nemesisName,
		Seed:        cfg.Seed,
		Rerun:       cfg.Rerun,
		Notes:       cfg.Notes,
	})
	started := time.Now()
	res := &Result{}

	// A baseline read of the whole key pool, before any other request, tells
	// the checkers what the store held at the start: nothing on a fresh
	// cluster, the restored data on a cluster restored from a snapshot.
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = workload.FinalRead(bctx, c, rec, workload.KVPrefix)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("baseline read: %w", err)
	}

	// Watchers start first so they see every write of the run.
	var watchers *workload.Watchers
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if cfg.Watch != nil {
		watchers, err = workload.StartWatch(watchCtx, c, rec, *cfg.Watch)
		if err != nil {
			return nil, fmt.Errorf("start watchers: %w", err)
		}
		defer watchers.Stop()
	}

	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	var wg sync.WaitGroup
	var trafficErr, leaseErr, duringErr error
	traffic := cfg.Traffic
	traffic.Seed = cfg.Seed
	wg.Add(1)
	go func() {
		defer wg.Done()
		res.Traffic, trafficErr = workload.Run(runCtx, c, rec, traffic)
	}()
	if cfg.Leases != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, leaseErr = workload.RunLeases(runCtx, c, rec, *cfg.Leases)
		}()
	}
	sched := withDefaults(cfg.Schedule, nemesis, cfg.Seed)
	if cfg.DuringTraffic != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sleepCtx(runCtx, sched.Warmup) {
				duringErr = cfg.DuringTraffic(runCtx, rec)
			}
		}()
	}
	if cfg.Progress != nil {
		go reportProgress(runCtx, rec, cfg.Progress)
	}
	var schedErr error
	if nemesisName != "none" {
		res.Faults, schedErr = sched.Run(runCtx, c, rec)
	}
	<-runCtx.Done()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("scenario interrupted: %w", ctx.Err())
	}
	if err := errors.Join(trafficErr, leaseErr); err != nil {
		return nil, fmt.Errorf("traffic: %w", err)
	}

	// Wind down: the cluster must recover, then one full read per prefix
	// proves what survived, and watchers catch up to the final revision.
	var endChecks []verdict.Check
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	recoverErr := c.WaitHealthy(rctx)
	cancel()
	if recoverErr != nil {
		endChecks = append(endChecks, verdict.Check{Name: "recovery", Status: verdict.Fail,
			Summary: fmt.Sprintf("cluster did not recover within 2m after the faults: %v", recoverErr)})
	}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	for _, prefix := range []string{workload.KVPrefix, workload.LeaseKeepPrefix} {
		if err := workload.FinalRead(fctx, c, rec, prefix); err != nil {
			endChecks = append(endChecks, verdict.Check{Name: "final-read", Status: verdict.Fail,
				Summary: fmt.Sprintf("could not read %s after the run: %v", prefix, err)})
		}
	}
	finalRev, revErr := currentRevision(fctx, c)
	cancel()
	if revErr != nil {
		endChecks = append(endChecks, verdict.Check{Name: "final-read", Status: verdict.Fail,
			Summary: fmt.Sprintf("could not read the final revision: %v", revErr)})
	}
	if watchers != nil {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := watchers.Drain(dctx, finalRev); err != nil {
			endChecks = append(endChecks, verdict.Check{Name: "watch/drain", Status: verdict.Fail,
				Summary: fmt.Sprintf("watchers did not catch up with revision %d within 30s: %v", finalRev, err)})
		}
		cancel()
		watchers.Stop()
	}
	if recoverErr == nil {
		endChecks = append(endChecks, HashKVCheck(ctx, c))
	}
	if schedErr != nil {
		endChecks = append(endChecks, verdict.Check{Name: "faults", Status: verdict.Fail, Summary: schedErr.Error()})
	}
	if duringErr != nil {
		endChecks = append(endChecks, verdict.Check{Name: "during-traffic", Status: verdict.Fail, Summary: duringErr.Error()})
	}

	res.History = rec.History()
	res.Duration = time.Since(started)
	if cfg.ArtifactDir != "" {
		// Save the history before checking it: if a check runs out of time
		// or memory, the evidence is already on disk for `etcd-chaos check`.
		if err := history.Save(filepath.Join(cfg.ArtifactDir, report.HistoryFile), res.History); err != nil {
			return nil, err
		}
	}
	checkCtx := ctx
	if dl, ok := ctx.Deadline(); ok {
		// Leave time for the report when the caller has a deadline.
		var cancel context.CancelFunc
		checkCtx, cancel = context.WithDeadline(ctx, dl.Add(-time.Until(dl)/5))
		defer cancel()
	}
	res.Checks = append(checker.Check(checkCtx, res.History, checker.Options{ArtifactDir: cfg.ArtifactDir, Timeout: cfg.CheckTimeout}), endChecks...)
	if len(res.Faults.Errors) > 0 {
		res.Checks = append(res.Checks, faultWarnings(res.Faults))
	}
	if cfg.ArtifactDir != "" {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if err := c.CollectLogs(lctx, filepath.Join(cfg.ArtifactDir, "logs")); err != nil {
			res.Checks = append(res.Checks, verdict.Check{Name: "logs", Status: verdict.Skipped, Summary: "could not collect member logs: " + err.Error()})
		}
		cancel()
		paths, err := report.Write(cfg.ArtifactDir, report.Run{
			History:  res.History,
			Checks:   res.Checks,
			Duration: res.Duration,
			Rerun:    cfg.Rerun,
			Notes:    cfg.Notes,
			LogDir:   "logs",
			Dir:      cfg.ArtifactDir,
			// Saved above, before the checks ran.
			HistorySaved: true,
		})
		if err != nil {
			return res, fmt.Errorf("write report: %w", err)
		}
		res.Report = paths.HTML
	}
	return res, nil
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

// faultWarnings turns a schedule's soft errors (a fault that could not be
// planned while the cluster recovered) into warnings beside the checks.
func faultWarnings(r chaos.Result) verdict.Check {
	c := verdict.Check{Name: "faults", Status: verdict.Pass,
		Summary: fmt.Sprintf("%d faults injected (%.1f per minute)", r.Faults, r.PerMinute())}
	for _, e := range r.Errors {
		c.Warn("%s", e)
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
