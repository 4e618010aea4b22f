package snapshot

import (
	"context"
	"fmt"
	"sort"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Check names.
const (
	CheckContent = "snapshot/content"
	CheckHashKV  = "snapshot/hashkv"
)

// rangePage bounds one range response, so a large restored store is read in
// pages that fit gRPC's message limits.
const rangePage = 5000

// CheckRestored checks a cluster restored from the snapshot info describes.
//
// "snapshot/content": the restored revision equals info.Revision (or is
// higher only because restored leases expired and deleted their keys), the
// key count equals info.TotalKeys, and, when h is not nil, the content equals the
// state at info.Revision that the recorded history implies: every write
// acknowledged at or below that revision is present with its value and mod
// revision unless a later acknowledged write at or below it replaced it;
// nothing written after it is present; a value from a write with unknown
// outcome is accepted only where that write could have landed. Keys no
// recorded write touched (locks, registrations made by other clients) cannot
// be judged and are reported as a warning.
//
// "snapshot/hashkv": every restored member hashes the store at info.Revision
// to the same value.
func CheckRestored(ctx context.Context, c cluster.Cluster, h *history.History, info Info) []verdict.Check {
	return []verdict.Check{checkContent(ctx, c, h, info), checkHashKV(ctx, c, info)}
}

func checkHashKV(ctx context.Context, c cluster.Cluster, info Info) verdict.Check {
	start := time.Now()
	ch := verdict.Check{Name: CheckHashKV, Status: verdict.Pass}
	defer func() { ch.Duration = time.Since(start) }()
	hashes, err := cluster.CompareHashKV(ctx, c, info.Revision)
	if err != nil {
		ch.Violate("%v", err)
		ch.Summary = "restored members do not agree on the store's hash"
		return ch
	}
	if len(hashes) == 1 {
		ch.Summary = fmt.Sprintf("single member: hash %d at revision %d (nothing to compare)", hashes[0].Hash, info.Revision)
		return ch
	}
	ch.Summary = fmt.Sprintf("%d members agree: hash %d at revision %d", len(hashes), hashes[0].Hash, info.Revision)
	return ch
}

// currentRevision asks the cluster for its revision with a linearizable
// request.
func currentRevision(ctx context.Context, cli *clientv3.Client) (int64, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := cli.Get(rctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the restored revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// readAll reads every key as of revision rev with linearizable ranges, in
// pages, so a large store fits gRPC's message limits and the pages form one
// consistent view.
func readAll(ctx context.Context, cli *clientv3.Client, rev int64) (map[string]history.KV, error) {
	kvs := map[string]history.KV{}
	key := "\x00"
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cli.Get(rctx, key, clientv3.WithFromKey(), clientv3.WithLimit(rangePage),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read restored keys at revision %d: %w", rev, err)
		}
		for _, kv := range resp.Kvs {
			kvs[string(kv.Key)] = history.KV{Key: string(kv.Key), Value: string(kv.Value), ModRevision: kv.ModRevision,
				CreateRevision: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return kvs, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func checkContent(ctx context.Context, c cluster.Cluster, h *history.History, info Info) verdict.Check {
	start := time.Now()
	ch := verdict.Check{Name: CheckContent, Status: verdict.Pass}
	defer func() { ch.Duration = time.Since(start) }()
	unknown := func(err error) verdict.Check {
		ch.Status = verdict.Unknown
		ch.Summary = fmt.Sprintf("could not read the restored cluster: %v", err)
		return ch
	}
	cli, err := c.Client(ctx)
	if err != nil {
		return unknown(err)
	}
	defer cli.Close()
	rev, err := currentRevision(ctx, cli)
	if err != nil {
		return unknown(err)
	}
	actual, err := readAll(ctx, cli, min(rev, info.Revision))
	if err != nil {
		return unknown(err)
	}
	switch {
	case rev < info.Revision:
		ch.Violate("restored cluster is at revision %d, but the snapshot holds revision %d", rev, info.Revision)
	case rev > info.Revision:
		// A restored lease can expire and delete its keys before this
		// check runs. Accept a higher revision only when that explains
		// every change, and judge the content as of the snapshot
		// revision, which nothing has compacted.
		now, err := readAll(ctx, cli, rev)
		if err != nil {
			return unknown(err)
		}
		if explained := onlyExpiries(&ch, actual, now, info.Revision, rev); explained > 0 {
			ch.Warn("restored cluster moved from revision %d to %d before it was read: %d leased keys expired; judging the content as of revision %d", info.Revision, rev, explained, info.Revision)
		}
		rev = info.Revision
	}
	if len(actual) != info.TotalKeys {
		ch.Violate("restored cluster holds %d keys, but the snapshot holds %d", len(actual), info.TotalKeys)
	}
	if h == nil {
		if ch.Status == verdict.Pass {
			ch.Summary = fmt.Sprintf("revision %d and %d keys match the snapshot (no history to compare content with)", rev, len(actual))
		} else {
			ch.Summary = "restored cluster differs from the snapshot"
		}
		return ch
	}
	exp := expectedState(h, info.Revision)
	judged, unjudged, viaUnknown := compareState(&ch, exp, actual, info.Revision)
	if unjudged > 0 {
		ch.Warn("%d restored keys were written by no recorded operation and were not judged", unjudged)
	}
	if ch.Status == verdict.Pass {
		ch.Summary = fmt.Sprintf("revision %d: %d keys match the history's state at the snapshot revision (%d from writes with unknown outcome)", rev, judged, viaUnknown)
	} else {
		ch.Summary = fmt.Sprintf("restored content does not match the history's state at revision %d", info.Revision)
	}
	return ch
}

// onlyExpiries checks that going from before (at the snapshot revision) to
// after (at the restored cluster's current revision) only deleted keys
// attached to leases, which is what lease expiry does, and returns how many.
func onlyExpiries(ch *verdict.Check, before, after map[string]history.KV, snapRev, rev int64) int {
	n := 0
	for k, b := range before {
		a, ok := after[k]
		switch {
		case !ok && b.Lease != 0:
			n++
		case !ok:
			ch.Violate("key %q vanished from the restored cluster after the snapshot revision %d, and it has no lease that could have expired", k, snapRev)
		case a != b:
			ch.Violate("key %q changed in the restored cluster after the snapshot revision %d (now mod revision %d)", k, snapRev, a.ModRevision)
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			ch.Violate("key %q appeared in the restored cluster after the snapshot revision %d (mod revision %d)", k, snapRev, a.ModRevision)
		}
	}
	if n == 0 && ch.Status == verdict.Pass {
		ch.Violate("restored cluster is at revision %d, but the snapshot holds revision %d, and no lease expiry explains the difference", rev, snapRev)
	}
	return n
}

// write is one write of a key that the history records.
type write struct {
	op      *history.Operation
	rev     int64 // revision it created; 0 when the outcome is unknown
	value   string
	lease   int64
	deleted bool
}

// keyState is the expected state of one key at the snapshot revision.
type keyState struct {
	// last is the latest acknowledged write at or below the snapshot
	// revision, nil if none.
	last *write
	// mayBeGone: the key may be absent even though last is a put (its
	// lease may have expired or been revoked by an operation with unknown
	// outcome; a delete with unknown outcome may have landed).
	mayBeGone bool
}

// expected is the state at a revision implied by a history.
type expected struct {
	keys map[string]*keyState
	// byValue finds the write a unique value came from.
	byValue map[string]*write
	// okRevs marks revisions taken by acknowledged writes: a write with an
	// unknown outcome cannot have landed on one of them.
	okRevs map[int64]bool
	// minRev is, for a write with unknown outcome, the lowest revision it
	// could have created: above every revision observed before it was
	// called.
	minRev map[*history.Operation]int64
}

// expectedState replays the history's acknowledged writes in revision order
// up to rev.
func expectedState(h *history.History, rev int64) *expected {
	e := &expected{keys: map[string]*keyState{}, byValue: map[string]*write{}, okRevs: map[int64]bool{}, minRev: map[*history.Operation]int64{}}
	state := func(k string) *keyState {
		s := e.keys[k]
		if s == nil {
			s = &keyState{}
			e.keys[k] = s
		}
		return s
	}
	var oks []*write
	var revokes []*history.Operation
	var unknowns []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		switch {
		case op.Outcome == history.Unknown && op.WritesValue():
			w := &write{op: op, value: op.Value, lease: op.Lease}
			e.byValue[op.Value] = w
			state(op.Key)
			unknowns = append(unknowns, op)
		case op.Outcome == history.Unknown && op.DeletesKey():
			state(op.Key).mayBeGone = true
		case op.Outcome != history.OK || op.Resp == nil:
		case op.Kind == history.LeaseRevoke:
			revokes = append(revokes, op)
		case !op.Changed():
		case op.WritesValue():
			w := &write{op: op, rev: op.Resp.Revision, value: op.Value, lease: op.Lease}
			e.byValue[op.Value] = w
			oks = append(oks, w)
			e.okRevs[w.rev] = true
		case op.DeletesKey():
			w := &write{op: op, rev: op.Resp.Revision, deleted: true}
			oks = append(oks, w)
			e.okRevs[w.rev] = true
		}
	}
	for _, w := range oks {
		state(w.op.Key)
	}

	// Replay in revision order. A revoke deletes, in one revision, every
	// key whose current value is attached to its lease; it sorts after a
	// write at the same revision because a revoke that deleted nothing
	// reports the current revision.
	type step struct {
		rev    int64
		w      *write
		revoke *history.Operation
	}
	var steps []step
	for _, w := range oks {
		steps = append(steps, step{rev: w.rev, w: w})
	}
	for _, r := range revokes {
		steps = append(steps, step{rev: r.Resp.Revision, revoke: r})
	}
	sort.SliceStable(steps, func(i, j int) bool {
		if steps[i].rev != steps[j].rev {
			return steps[i].rev < steps[j].rev
		}
		return steps[i].w != nil && steps[j].w == nil
	})
	for _, st := range steps {
		if st.rev > rev {
			break
		}
		if st.w != nil {
			e.keys[st.w.op.Key].last = st.w
			continue
		}
		for _, s := range e.keys {
			if st.revoke.Lease != 0 && s.last != nil && !s.last.deleted && s.last.lease == st.revoke.Lease {
				s.last = &write{op: st.revoke, rev: st.rev, deleted: true}
			}
		}
	}
	// Keys attached to a lease can vanish by expiry, which the history does
	// not record.
	for _, s := range e.keys {
		if s.last != nil && !s.last.deleted && s.last.lease != 0 {
			s.mayBeGone = true
		}
	}
	// A delete with unknown outcome (marked above) may have landed after
	// the key's latest acknowledged write, so it too leaves the key
	// possibly gone.

	// Lower bounds for unknown writes: the highest revision any
	// acknowledged operation reported before the unknown one was called.
	type ret struct {
		at  int64
		rev int64
	}
	var rets []ret
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome == history.OK && op.Resp != nil && !op.Serializable {
			rets = append(rets, ret{op.Return, op.Resp.Revision})
		}
	}
	sort.Slice(rets, func(i, j int) bool { return rets[i].at < rets[j].at })
	prefix := make([]int64, len(rets))
	for i, r := range rets {
		prefix[i] = r.rev
		if i > 0 {
			prefix[i] = max(prefix[i], prefix[i-1])
		}
	}
	for _, op := range unknowns {
		n := sort.Search(len(rets), func(i int) bool { return rets[i].at >= op.Call })
		if n > 0 {
			e.minRev[op] = prefix[n-1] + 1
		}
		if op.Lease != 0 {
			e.keys[op.Key].mayBeGone = true
		}
	}
	return e
}

// compareState judges every restored key against the expected state and
// reports expected keys that are missing.
func compareState(ch *verdict.Check, e *expected, actual map[string]history.KV, rev int64) (judged, unjudged, viaUnknown int) {
	keys := make([]string, 0, len(actual))
	for k := range actual {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := actual[k]
		s, ok := e.keys[k]
		if !ok {
			unjudged++
			continue
		}
		judged++
		if kv.ModRevision > rev {
			ch.Violate("key %q has mod revision %d, above the snapshot revision %d", k, kv.ModRevision, rev)
			continue
		}
		if s.last != nil && !s.last.deleted && kv.Value == s.last.value {
			if kv.ModRevision != s.last.rev {
				ch.Violate("key %q holds the value of operation %d but with mod revision %d; the write created revision %d", k, s.last.op.ID, kv.ModRevision, s.last.rev)
			}
			continue
		}
		w := e.byValue[kv.Value]
		switch {
		case w == nil:
			ch.Violate("key %q holds value %q (mod revision %d) that no recorded operation wrote", k, short(kv.Value), kv.ModRevision)
		case w.op.Key != k:
			ch.Violate("key %q holds value %q that operation %d wrote to key %q", k, short(kv.Value), w.op.ID, w.op.Key)
		case w.rev > rev:
			ch.Violate("key %q holds the value operation %d wrote at revision %d, after the snapshot revision %d", k, w.op.ID, w.rev, rev)
		case w.rev != 0:
			// An acknowledged write that a later acknowledged write or
			// delete at or below the snapshot revision replaced.
			ch.Violate("key %q holds the stale value of operation %d (revision %d); expected %s", k, w.op.ID, w.rev, describe(s.last))
		default:
			// A write with unknown outcome: it may have landed at
			// kv.ModRevision only if that revision is free, above what
			// was observed before it was called, and after the key's
			// latest acknowledged write at or below the snapshot.
			switch {
			case e.okRevs[kv.ModRevision]:
				ch.Violate("key %q holds the value of operation %d (outcome unknown) at mod revision %d, a revision an acknowledged write created", k, w.op.ID, kv.ModRevision)
			case kv.ModRevision < e.minRev[w.op]:
				ch.Violate("key %q holds the value of operation %d (outcome unknown) at mod revision %d, but revision %d was already observed before it was called", k, w.op.ID, kv.ModRevision, e.minRev[w.op]-1)
			case s.last != nil && s.last.rev > kv.ModRevision:
				ch.Violate("key %q holds the value of operation %d (outcome unknown) at mod revision %d, but it was replaced by %s", k, w.op.ID, kv.ModRevision, describe(s.last))
			default:
				viaUnknown++
			}
		}
	}
	missing := make([]string, 0)
	for k, s := range e.keys {
		if _, ok := actual[k]; ok || s.last == nil || s.last.deleted || s.mayBeGone {
			continue
		}
		missing = append(missing, k)
	}
	sort.Strings(missing)
	for _, k := range missing {
		s := e.keys[k]
		// An unknown-outcome write cannot explain a missing key, but a key
		// present with an unknown write's value was handled above.
		ch.Violate("key %q is missing: operation %d put it at revision %d, at or below the snapshot revision %d, and nothing acknowledged deleted it", k, s.last.op.ID, s.last.rev, rev)
	}
	return judged, unjudged, viaUnknown
}

func describe(w *write) string {
	if w == nil {
		return "the key to be absent"
	}
	if w.deleted {
		return fmt.Sprintf("the key to be absent (operation %d deleted it at revision %d)", w.op.ID, w.rev)
	}
	return fmt.Sprintf("the value of operation %d (revision %d)", w.op.ID, w.rev)
}

func short(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
