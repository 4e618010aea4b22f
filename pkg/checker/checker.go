// Package checker runs every check that applies to a recorded history:
// linearizability of the key-value and lease operations, what serializable
// reads promise, the watch guarantees, lease revoke, expiry and keep-alive,
// the lock counter, and that no acknowledged write was lost. Each property lives in its own subpackage; this package
// only composes them, so `etcd-chaos check` and the suites judge a history
// the same way.
package checker

import (
	"context"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/compaction"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/durability"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/lease"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/linearizable"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/lock"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/revlog"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/serializable"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/watch"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Interrupted names the check that marks an interrupted run's history.
const Interrupted = "interrupted"

// Options tune the checks.
type Options struct {
	// ArtifactDir receives files checks produce, such as porcupine's HTML
	// visualisation on a violation. Empty: none are written.
	ArtifactDir string
	// Timeout bounds the linearizability search; when it runs out the
	// verdict is Unknown, never Pass.
	Timeout time.Duration
	// Lease tunes the lease expiry tolerances.
	Lease lease.Options
}

// Check runs every check on h.
func Check(ctx context.Context, h *history.History, opts Options) []verdict.Check {
	if h.Meta.NoRevisions {
		return checkValues(ctx, h, opts)
	}
	// The revision log rebuilt from all the evidence is shared by the
	// checks that compare against it; building it is the costly part.
	log, conflicts := revlog.Build(h)
	out := []verdict.Check{
		linearizable.Check(ctx, h, linearizable.Options{Timeout: opts.Timeout, ArtifactDir: opts.ArtifactDir}),
		serializable.CheckLog(h, log),
		durability.Check(h),
		revlog.Check(conflicts, log.MaxRevision()),
		compaction.Check(h),
	}
	out = append(out, watch.CheckLog(h, log, conflicts)...)
	out = append(out, lease.Check(h, opts.Lease)...)
	out = append(out, lock.Check(h)...)
	if h.Meta.Interrupted != "" {
		out = append(out, interrupted(h))
	}
	return out
}

// NoRevisionsReason is why a check that needs revisions is skipped on a
// history that carries none.
const NoRevisionsReason = "the history carries no revisions (meta no_revisions), and this check needs them"

// checkValues judges a history without revisions: linearizability on
// values alone, the lock counter (which reads only which increments
// succeeded and the final count), and every check that needs revisions
// skipped with the reason, so the report says what was not checked rather
// than leaving it out.
func checkValues(ctx context.Context, h *history.History, opts Options) []verdict.Check {
	out := []verdict.Check{
		linearizable.CheckValues(ctx, h, linearizable.Options{Timeout: opts.Timeout, ArtifactDir: opts.ArtifactDir}),
	}
	names := []string{serializable.Name, durability.Name, revlog.ConsistentName, compaction.Name}
	names = append(names, watch.Names...)
	names = append(names, lease.Revoke, lease.Expiry, lease.KeepAlive)
	for _, n := range names {
		out = append(out, verdict.Check{Name: n, Status: verdict.Skipped, Summary: NoRevisionsReason})
	}
	out = append(out, lock.Check(h)...)
	if h.Meta.Interrupted != "" {
		out = append(out, interrupted(h))
	}
	return out
}

// interrupted keeps an interrupted run from passing: its other checks judged
// only what was recorded before the interrupt.
func interrupted(h *history.History) verdict.Check {
	return verdict.Check{Name: Interrupted, Status: verdict.Unknown,
		Summary: fmt.Sprintf("the run was interrupted %s; the other checks judged only the %d operations recorded until then", h.Meta.Interrupted, len(h.Operations))}
}
