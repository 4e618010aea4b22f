// Package checker runs every check that applies to a recorded history:
// linearizability of the key-value and lease operations, the watch
// guarantees, lease expiry, and that no acknowledged write was lost. Each
// property lives in its own subpackage; this package only composes them.
package checker

import (
	"context"
	"time"

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
}

// Check runs every check on h.
func Check(ctx context.Context, h *history.History, opts Options) []verdict.Check {
	var out []verdict.Check
	// Filled in as the checkers land: linearizable, watch/*, lease/*, durability.
	return out
}
