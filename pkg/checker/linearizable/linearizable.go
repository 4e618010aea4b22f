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
// certain for a few passes, then once more in a second order of guesses
// (decideFast); when it still cannot exhibit a consistent
// choice, it neither passes nor fails but falls back to porcupine's
// exhaustive search (on histories of up to porcupineLimit operations; larger
// ones get Unknown). Porcupine runs under a heap watchdog
// (Options.MemoryLimit) and ctx: either abandons the search with verdict
// Unknown. So the fast path only ever answers Pass with a
// linearization in hand, and Fail with a contradiction that no choice of
// unknown outcomes can remove.
//
// The fast path applies every write through the model's step function
// (model.Apply) on its own per-key store, and every Pass, from either
// decider, carries its linearization, which is replayed through the model
// once more (certificate.go) before the verdict is Pass: each operation in
// order, within its call and return, with the model's response. A
// linearization that fails that replay makes the verdict Unknown.
//
// Assumptions: the cluster starts empty at revision 1, or as a baseline
// read at the start of the history showed it, and every write to it is in
// the history (values unique per run), unless foreign writes are allowed
// (Options.ForeignWrites), in which case unrecorded writes to keys the
// history never shows may take revisions; every successful operation
// except keep-alive carries its header revision; lease expiry is modelled
// as a revoke that may happen any time from 95% of the TTL after the grant
// was called.
package linearizable

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
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
	// ForeignWrites allows writes the history does not record, to keys no
	// recorded operation shows, so that the store revision may advance with
	// no recorded write claiming it (etcd's concurrency.Mutex and the
	// client's session keys do this). It is switched on automatically when
	// the history has an operation on a key with foreign writers
	// (keyspace.HasForeignWriters).
	ForeignWrites bool
	// MemoryLimit abandons porcupine's search (verdict Unknown) when it
	// grows the Go heap by more than this many bytes. Zero means
	// DefaultMemoryLimit.
	MemoryLimit uint64
	// InitialState overrides the store the history starts from. When nil,
	// a baseline read found in the history is used (see Check), else an
	// empty store at revision 1.
	InitialState *InitialState

	// mode forces one decider; tests use it to compare them.
	mode mode
	// tamper, when set, changes a decider's linearization before it is
	// verified; tests use it to show a bad certificate is never a Pass.
	tamper func(lin []int32) []int32
}

type mode int

const (
	modeAuto mode = iota
	modeFastOnly
	modePorcupineOnly
)

// InitialState is the store a history starts from: the keys that exist and
// the revision, as a read of them returned.
type InitialState struct {
	Revision int64
	KVs      []history.KV
}

// DefaultMemoryLimit bounds the heap porcupine may grow when
// Options.MemoryLimit is zero.
const DefaultMemoryLimit = 2 << 30

// hasForeignWriters reports whether h uses keys whose helpers write
// unrecorded keys.
func hasForeignWriters(h *history.History) bool {
	for i := range h.Operations {
		if keyspace.HasForeignWriters(h.Operations[i].Key) {
			return true
		}
	}
	return false
}

// baselineRead returns the history's baseline read: its first operation
// (by call) when that is a successful linearizable unlimited range that
// returned before any other operation was called; else nil.
func baselineRead(h *history.History) *history.Operation {
	if len(h.Operations) == 0 {
		return nil
	}
	first := 0
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Call < h.Operations[first].Call || op.Call == h.Operations[first].Call && op.ID < h.Operations[first].ID {
			first = i
		}
	}
	b := &h.Operations[first]
	if b.Kind != history.Range || b.Outcome != history.OK || b.Resp == nil || b.Serializable || b.Limit != 0 {
		return nil
	}
	for i := range h.Operations {
		if i != first && h.Operations[i].Call <= b.Return {
			return nil
		}
	}
	return b
}

// baseline finds the history's initial state from its baseline read. Keys
// outside the range are taken as absent.
func baseline(h *history.History) *InitialState {
	b := baselineRead(h)
	if b == nil || b.Resp.Revision < model.InitialRevision {
		return nil
	}
	return &InitialState{Revision: b.Resp.Revision, KVs: b.Resp.KVs}
}

// Check decides whether h's key-value and lease operations are linearizable.
//
// When the history's first operation is a successful range that returned
// before any other operation was called (the scenario runner's baseline
// read), the store is taken to start as that range showed it: its keys at
// its header revision, no other keys. Otherwise it starts empty at
// revision 1.
func Check(ctx context.Context, h *history.History, opts Options) verdict.Check {
	start := time.Now()
	c := check(ctx, h, opts)
	c.Duration = time.Since(start)
	return c
}

// prepare is where both checks (with and without revisions) start: it
// fills opts' defaults, bounds the search by ctx's deadline and selects the
// operations to check. A non-nil done is the verdict already: no time
// left, or nothing to check.
func prepare(ctx context.Context, h *history.History, opts Options, c verdict.Check) (_ Options, ops []*history.Operation, counts opCounts, done *verdict.Check) {
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
		return opts, nil, counts, &c
	}
	if opts.MemoryLimit == 0 {
		opts.MemoryLimit = DefaultMemoryLimit
	}
	ops, counts = selectOps(h, opts.IncludeSerializable)
	if counts.ok == 0 {
		c.Status = verdict.Skipped
		c.Summary = "no key-value or lease operation answered, nothing to check"
		return opts, nil, counts, &c
	}
	return opts, ops, counts, nil
}

func check(ctx context.Context, h *history.History, opts Options) verdict.Check {
	c := verdict.Check{Name: Name}
	opts, ops, counts, done := prepare(ctx, h, opts, c)
	if done != nil {
		return *done
	}
	cfg := config{foreign: opts.ForeignWrites || hasForeignWriters(h), init: opts.InitialState}
	if cfg.init == nil {
		cfg.init = baseline(h)
	}
	if cfg.init != nil && (cfg.init.Revision != model.InitialRevision || len(cfg.init.KVs) > 0) {
		// An empty baseline at revision 1 is the default; say nothing.
		counts.baseline = cfg.init.Revision
	}
	countText := counts.String()

	if opts.mode != modePorcupineOnly {
		fr, last, second := decideFast(ctx, ops, cfg)
		localised := 0
		if fr.undecided != "" && len(fr.definite) == 0 && opts.mode == modeAuto {
			// Ask porcupine about a small window around the revision the
			// fast path stuck at, and let the fast path replay with what
			// it says; the verdict is still the fast path's own.
			if lr, n := localiseAll(ctx, ops, cfg, last, min(opts.Timeout, 10*time.Second), opts.MemoryLimit); n > 0 && lr.undecided == "" && len(lr.definite) == 0 {
				fr, localised = lr, n
			}
		}
		if cfg.foreign {
			countText += fmt.Sprintf("; foreign writes allowed: %d revisions not claimed by recorded writes", fr.foreign)
		}
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
				pr := runPorcupine(ctx, h, ops, cfg, min(opts.Timeout, 10*time.Second), opts.MemoryLimit, opts.ArtifactDir)
				addArtifact(&c, pr)
			}
			return c
		case fr.undecided == "":
			if opts.tamper != nil {
				fr.lin = opts.tamper(fr.lin)
			}
			if err := verifyCertificate(ops, fr.lin, cfg, fr.keys); err != nil {
				return certificateFailed(c, "the revision fast path", err, countText)
			}
			c.Status = verdict.Pass
			c.Summary = fmt.Sprintf("linearizable (decided by the revision fast path: %d revisions, %d filled by unknown writes; its linearization of %d operations replayed through the model); %s", fr.revisions, fr.filled, len(fr.lin), countText)
			if second {
				c.Summary = fmt.Sprintf("linearizable (decided by the revision fast path, in its second order of guesses: %d revisions, %d filled by unknown writes; its linearization of %d operations replayed through the model); %s", fr.revisions, fr.filled, len(fr.lin), countText)
			}
			if localised > 0 {
				c.Summary = fmt.Sprintf("linearizable (decided by the revision fast path guided by porcupine on a window of %d operations: %d revisions, %d filled by unknown writes; its linearization of %d operations replayed through the model); %s", localised, fr.revisions, fr.filled, len(fr.lin), countText)
			}
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
	pr := runPorcupine(ctx, h, ops, cfg, opts.Timeout, opts.MemoryLimit, opts.ArtifactDir)
	switch {
	case pr.abandoned != "":
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("linearizability unknown: porcupine's search was abandoned (%s); %s", pr.abandoned, countText)
		return c
	}
	switch pr.result {
	case porcupine.Ok:
		if opts.tamper != nil {
			pr.lin = opts.tamper(pr.lin)
		}
		if err := verifyCertificate(ops, pr.lin, cfg, nil); err != nil {
			return certificateFailed(c, "porcupine", err, countText)
		}
		c.Status = verdict.Pass
		c.Summary = fmt.Sprintf("linearizable (decided by porcupine; its linearization of %d operations replayed through the model); %s", len(pr.lin), countText)
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

// certificateFailed makes c Unknown because the decider's linearization
// did not survive its replay through the model: a bug in the checker, not
// a verdict on the history, so it is neither Pass nor Fail.
func certificateFailed(c verdict.Check, decider string, err error, countText string) verdict.Check {
	c.Status = verdict.Unknown
	c.Summary = fmt.Sprintf("linearizability unknown: %s found the history linearizable, but its linearization failed the replay through the model (%v); this is a checker bug, please report it with the history; %s", decider, err, countText)
	return c
}

// porcupineLimit bounds the history size Check hands to porcupine. Its
// search over this global-revision model needed 20 GB on 10k real
// operations; a few hundred stay within seconds and megabytes, and the heap
// watchdog (Options.MemoryLimit) guards what this bound does not.
const porcupineLimit = 1000

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
	baseline                                    int64
}

func (c opCounts) String() string {
	s := fmt.Sprintf("%d ok, %d failed, %d unknown operations", c.ok, c.failed, c.unknown)
	if c.baseline != 0 {
		s += fmt.Sprintf(", store taken to start at revision %d as the baseline read showed it", c.baseline)
	}
	if c.serializable > 0 {
		s += fmt.Sprintf(", %d serializable reads left out", c.serializable)
	}
	if c.expiries > 0 {
		s += fmt.Sprintf(", %d possible lease expiries", c.expiries)
	}
	return s
}

// A possible lease expiry is a synthetic revoke by this client, with this
// error text; no recorded operation has either.
const (
	expiryClient = -1
	expiryError  = "possible lease expiry"
)

// isExpiry reports whether op is a possible lease expiry made by selectOps.
func isExpiry(op *history.Operation) bool {
	return op.Kind == history.LeaseRevoke && op.ClientID == expiryClient && op.Error == expiryError
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
					ID: -op.ID, ClientID: expiryClient, Kind: history.LeaseRevoke, Lease: op.Resp.LeaseID,
					Call: at, Return: at, Outcome: history.Unknown, Error: expiryError,
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

func sortByCall(ops []*history.Operation) {
	sort.SliceStable(ops, func(i, j int) bool {
		if ops[i].Call != ops[j].Call {
			return ops[i].Call < ops[j].Call
		}
		return ops[i].ID < ops[j].ID
	})
}
