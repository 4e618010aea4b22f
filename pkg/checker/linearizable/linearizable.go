// Package linearizable checks that a recorded history of etcd key-value and
// lease operations is linearizable against pkg/checker/model, with values
// and revisions.
//
// Two deciders share the one model. The fast path uses the revisions etcd
// returned as a witness: every write that changed the store owns a unique
// revision, and every unique value read back pins the write that produced it,
// so replaying writes in revision order rebuilds the store at every revision
// in linear time, and each read and each real-time order can be checked
// directly. Where that witness leaves a choice open (a revision produced by a
// write whose outcome is unknown and whose effect nobody observed) the fast
// path guesses, replays, and learns from a contradiction it cannot call
// certain for a few passes; when it still cannot exhibit a consistent
// choice, it neither passes nor fails but falls back to porcupine's
// exhaustive search (on histories of up to porcupineLimit operations; larger
// ones get Unknown). So the fast path only ever answers Pass with a
// linearization in hand, and Fail with a contradiction that no choice of
// unknown outcomes can remove.
//
// Assumptions: the cluster starts empty at revision 1 and every write to it
// is in the history (values unique per run); every successful operation
// except keep-alive carries its header revision; lease expiry is modelled
// as a revoke that may happen any time from 95% of the TTL after the grant
// was called.
package linearizable

import (
	"context"
	"fmt"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Name is the check's name in verdicts and reports.
const Name = "linearizable"

// VisualizationFile is the porcupine visualisation written on a violation.
const VisualizationFile = "linearizability.html"

// DefaultTimeout bounds porcupine when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// Options tune the check.
type Options struct {
	// Timeout bounds porcupine's search; when it runs out the verdict is
	// Unknown. Zero means DefaultTimeout.
	Timeout time.Duration
	// ArtifactDir receives linearizability.html on a violation; empty: none.
	ArtifactDir string
	// IncludeSerializable checks serializable reads as if they promised
	// linearizability (they do not; this exists to test the checker).
	IncludeSerializable bool

	// mode forces one decider; tests use it to compare them.
	mode mode
}

type mode int

const (
	modeAuto mode = iota
	modeFastOnly
	modePorcupineOnly
)

// Check decides whether h's key-value and lease operations are linearizable.
func Check(ctx context.Context, h *history.History, opts Options) verdict.Check {
	start := time.Now()
	c := check(ctx, h, opts)
	c.Duration = time.Since(start)
	return c
}

func check(ctx context.Context, h *history.History, opts Options) verdict.Check {
	c := verdict.Check{Name: Name}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		opts.Timeout = min(opts.Timeout, time.Until(dl))
	}
	if opts.Timeout <= 0 {
		// Porcupine reads a zero timeout as "none"; an expired context
		// must not turn into an unbounded search.
		c.Status = verdict.Unknown
		c.Summary = "linearizability not decided: the context's deadline has passed"
		return c
	}
	ops, counts := selectOps(h, opts.IncludeSerializable)
	if counts.ok == 0 {
		c.Status = verdict.Skipped
		c.Summary = "no key-value or lease operation answered, nothing to check"
		return c
	}
	countText := counts.String()

	if opts.mode != modePorcupineOnly {
		fr := fastCheck(ctx, ops)
		switch {
		case len(fr.definite) > 0:
			c.Status = verdict.Fail
			c.Summary = fmt.Sprintf("not linearizable (decided by the revision fast path, %d violations); %s", len(fr.definite), countText)
			for _, v := range fr.definite {
				c.Violate("%s", v)
			}
			if opts.ArtifactDir != "" && len(ops) <= visualizeLimit && opts.mode == modeAuto {
				// The fast path has no picture to show; porcupine draws one
				// when the history is small enough to search.
				pr := runPorcupine(h, ops, min(opts.Timeout, 10*time.Second), opts.ArtifactDir)
				addArtifact(&c, pr)
			}
			return c
		case fr.undecided == "":
			c.Status = verdict.Pass
			c.Summary = fmt.Sprintf("linearizable (decided by the revision fast path: %d revisions, %d filled by unknown writes); %s", fr.revisions, fr.filled, countText)
			return c
		case opts.mode == modeFastOnly:
			c.Status = verdict.Unknown
			c.Summary = "fast path could not decide: " + fr.undecided
			return c
		}
		if len(ops) > porcupineLimit {
			// Porcupine's search over a global-revision model holds
			// gigabytes long before it ends on histories this large.
			c.Status = verdict.Unknown
			c.Summary = fmt.Sprintf("linearizability unknown: the revision fast path could not decide (%s) and %d operations are too many for porcupine (limit %d); %s",
				fr.undecided, len(ops), porcupineLimit, countText)
			return c
		}
		c.Warn("revision fast path could not decide (%s); fell back to porcupine", fr.undecided)
	}
	if err := ctx.Err(); err != nil {
		c.Status = verdict.Unknown
		c.Summary = "linearizability not decided: " + err.Error()
		return c
	}
	pr := runPorcupine(h, ops, opts.Timeout, opts.ArtifactDir)
	switch pr.result {
	case porcupine.Ok:
		c.Status = verdict.Pass
		c.Summary = "linearizable (decided by porcupine); " + countText
	case porcupine.Illegal:
		c.Status = verdict.Fail
		c.Summary = "not linearizable (decided by porcupine); " + countText
		for _, v := range pr.violations {
			c.Violate("%s", v)
		}
		addArtifact(&c, pr)
	default:
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("linearizability unknown: porcupine timed out after %s; %s", opts.Timeout, countText)
	}
	return c
}

// porcupineLimit bounds the history size Check hands to porcupine.
const porcupineLimit = 20000

// visualizeLimit bounds the history size for which a fast-path failure also
// runs porcupine to draw the visualisation.
const visualizeLimit = 5000

func addArtifact(c *verdict.Check, pr porcupineResult) {
	if pr.warn != "" {
		c.Warn("%s", pr.warn)
	}
	if pr.artifact != "" {
		if c.Artifacts == nil {
			c.Artifacts = map[string]string{}
		}
		c.Artifacts["visualization"] = pr.artifact
	}
}

type opCounts struct {
	ok, failed, unknown, serializable, expiries int
}

func (c opCounts) String() string {
	s := fmt.Sprintf("%d ok, %d failed, %d unknown operations", c.ok, c.failed, c.unknown)
	if c.serializable > 0 {
		s += fmt.Sprintf(", %d serializable reads left out", c.serializable)
	}
	if c.expiries > 0 {
		s += fmt.Sprintf(", %d possible lease expiries", c.expiries)
	}
	return s
}

// selectOps returns the operations the check covers, in call order, plus a
// possible expiry for every granted lease: an expiry is a revoke that may
// happen at any time after the lease's TTL has run from the grant's call.
func selectOps(h *history.History, includeSerializable bool) ([]*history.Operation, opCounts) {
	var cnt opCounts
	ops := make([]*history.Operation, 0, len(h.Operations))
	var expiries []history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		switch op.Outcome {
		case history.OK:
			cnt.ok++
		case history.Fail:
			cnt.failed++
		case history.Unknown:
			cnt.unknown++
		}
		if !model.Included(op, includeSerializable) {
			if op.Outcome == history.OK && op.Serializable {
				cnt.serializable++
			}
			continue
		}
		ops = append(ops, op)
		if op.Kind == history.LeaseGrant && op.Outcome == history.OK && op.Resp.LeaseID != 0 {
			ttl := op.Resp.TTL
			if ttl <= 0 {
				ttl = op.TTL
			}
			if ttl > 0 {
				// 5% slack absorbs clock-rate differences between the
				// recorder and the leader; an earlier expiry is only
				// more permissive.
				at := op.Call + ttl*int64(time.Second)*95/100
				expiries = append(expiries, history.Operation{
					ID: -op.ID, ClientID: -1, Kind: history.LeaseRevoke, Lease: op.Resp.LeaseID,
					Call: at, Return: at, Outcome: history.Unknown, Error: "possible lease expiry",
				})
			}
		}
	}
	if len(expiries) > 0 {
		// An expiry due after the run ended changes nothing anyone saw.
		end := h.End()
		for i := range expiries {
			if expiries[i].Call <= end {
				ops = append(ops, &expiries[i])
				cnt.expiries++
			}
		}
		sortByCall(ops)
	}
	return ops, cnt
}
