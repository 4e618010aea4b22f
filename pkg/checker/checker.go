// Package checker runs every check that applies to a recorded history:
// linearizability of the key-value and lease operations, what serializable
// reads promise, the watch guarantees, lease revoke, expiry and keep-alive,
// and that no acknowledged write was lost. Each property lives in its own subpackage; this package
// only composes them, so `etcd-chaos check` and the suites judge a history
// the same way.
package checker

import (
	"context"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/durability"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/lease"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/linearizable"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/serializable"
	"github.com/etcd-chaos/etcd-chaos/pkg/checker/watch"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

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
	out := []verdict.Check{
		linearizable.Check(ctx, h, linearizable.Options{Timeout: opts.Timeout, ArtifactDir: opts.ArtifactDir}),
		serializable.Check(h),
		durability.Check(h),
	}
	out = append(out, watch.Check(h)...)
	out = append(out, lease.Check(h, opts.Lease)...)
	return out
}
