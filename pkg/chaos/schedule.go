package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Schedule injects faults from one nemesis, one at a time, while traffic
// runs: wait Warmup, then repeat { plan, apply, hold Duration, heal, wait
// until healthy (at most Recovery), wait Interval } until the context ends
// or MaxFaults faults were injected. The same Seed gives the same sequence
// of choices, so a failing run can be replayed.
type Schedule struct {
	Nemesis  Nemesis
	Seed     int64
	Warmup   time.Duration
	Duration time.Duration
	Interval time.Duration
	Recovery time.Duration
	// MaxFaults stops the schedule after this many faults; 0 means no limit.
	MaxFaults int
	// OnFault, if set, is told about every fault as it starts (progress).
	OnFault func(action string)
}

// DefaultSchedule returns the timings the suites use: a fault every few
// seconds, held long enough for an election to happen.
func DefaultSchedule(n Nemesis, seed int64) Schedule {
	return Schedule{
		Nemesis:  n,
		Seed:     seed,
		Warmup:   2 * time.Second,
		Duration: 3 * time.Second,
		Interval: 2 * time.Second,
		Recovery: 30 * time.Second,
	}
}

// Result summarises what a schedule did.
type Result struct {
	// Faults counts the faults attempted; Applied those whose Apply
	// succeeded. A run whose faults never took effect proved nothing about
	// them, whatever its checks say.
	Faults  int
	Applied int
	// Errors are what went wrong with faults: one that failed to apply, a
	// cluster that did not recover after one.
	Errors []string
	// PlanErrors are plans that failed and were retried after Interval,
	// such as finding no leader on a cluster mid-recovery. No fault was
	// attempted for them, so they are kept apart from Errors.
	PlanErrors []string
	// Notes say what the nemesis could not do on this cluster, such as
	// the nemeses "mix" left out and why.
	Notes   []string
	Elapsed time.Duration
}

// PerMinute is the rate of faults injected.
func (r Result) PerMinute() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Faults) / r.Elapsed.Minutes()
}

// healTimeout bounds a heal, which runs with a context of its own because
// it must happen even after the run's context has ended, or a paused or
// partitioned member would outlive the run. It covers a kubelet's crash-loop
// back-off: on Kubernetes, healing a kill waits for the kubelet to restart
// the container, and after repeated kills of the same member that back-off
// reaches five minutes (Kubernetes' default cap). A heal on the local
// backend takes seconds, so only a heal that is really stuck waits this long.
const healTimeout = 6 * time.Minute

// Run executes the schedule against c, recording fault windows in rec. It
// returns when ctx ends, after healing any active fault; it returns an error
// only when the cluster cannot be healed, or when the backend cannot inject
// the nemesis at all (cluster.ErrUnsupported from planning or applying, for
// example pod faults on the local backend, or kills on Kubernetes without
// node access).
func (s Schedule) Run(ctx context.Context, c cluster.Cluster, rec *history.Recorder) (Result, error) {
	start := time.Now()
	rng := rand.New(rand.NewPCG(uint64(s.Seed), 0x9e3779b97f4a7c15))
	var res Result
	defer func() { res.Elapsed = time.Since(start) }()
	if _, ok := s.Nemesis.(mix); ok {
		res.Notes = MixNotes(c)
	}
	if !sleep(ctx, s.Warmup) {
		res.Elapsed = time.Since(start)
		return res, nil
	}
	for s.MaxFaults == 0 || res.Faults < s.MaxFaults {
		if ctx.Err() != nil {
			break
		}
		f, err := s.Nemesis.Plan(ctx, c, rng)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, cluster.ErrUnsupported) {
				res.Elapsed = time.Since(start)
				return res, err
			}
			// A cluster mid-recovery may have no leader to pick; that is
			// not the nemesis's failure. Note it and try again later.
			res.PlanErrors = append(res.PlanErrors, fmt.Sprintf("plan %s: %v", s.Nemesis.Name(), err))
			if !sleep(ctx, s.Interval) {
				break
			}
			continue
		}
		if err := s.inject(ctx, c, rec, f, &res); err != nil {
			res.Elapsed = time.Since(start)
			return res, err
		}
		if !sleep(ctx, s.Interval) {
			break
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func (s Schedule) inject(ctx context.Context, c cluster.Cluster, rec *history.Recorder, f Fault, res *Result) error {
	if s.OnFault != nil {
		s.OnFault(f.Action)
	}
	id := rec.StartFault(s.Nemesis.Name(), f.Action, f.Targets...)
	if f.Compacts {
		rec.FaultCompacts(id)
	}
	res.Faults++
	applyErr := f.Apply(ctx)
	if applyErr == nil {
		res.Applied++
	} else if ctx.Err() == nil {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", f.Action, applyErr))
	}
	if !f.Instant {
		sleep(ctx, s.Duration)
	}
	// Heal with a context of its own: the run's context may have ended, and
	// a fault must never outlive the run.
	var healErr error
	if f.Heal != nil {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
		healErr = f.Heal(hctx)
		cancel()
	}
	rec.EndFault(id, errors.Join(applyErr, healErr))
	if healErr != nil {
		return fmt.Errorf("heal %q: %w", f.Action, healErr)
	}
	if errors.Is(applyErr, cluster.ErrUnsupported) {
		// Every later fault would fail the same way.
		return fmt.Errorf("%s: %w", f.Action, applyErr)
	}
	if s.Recovery > 0 && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, s.Recovery)
		err := c.WaitHealthy(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			res.Errors = append(res.Errors, fmt.Sprintf("after %s: cluster did not recover within %v: %v", f.Action, s.Recovery, err))
		}
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
