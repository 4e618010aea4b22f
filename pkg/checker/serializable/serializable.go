// Package serializable checks the reads etcd serves from one member without
// consensus (WithSerializable). They promise no linearizability: a lagging
// member (partitioned, paused, catching up after a restart) answers from its
// own, possibly old, state. What they do promise is checked here:
//
//   - no value from the future: every value read was written by an
//     operation sent before the read returned, which did not fail;
//   - a committed state: the answer is the store as it was at the read's
//     header revision (etcd answers a range from one read transaction at
//     that revision), so no event on a key read may fall after the value's
//     revision and at or before the header, and a key shown absent may not
//     certainly exist at the header;
//   - monotonic per member: once a member has answered at revision R (any
//     key-value operation it served: a read, or a write it applied before
//     answering), a serializable read it serves later answers at R or
//     above.
//
// Members are told apart by the member ID in the response header, or by the
// pinned endpoint when a history lacks IDs. The monotonicity rule assumes a
// member never rolls its applied state back: a member restarted from its
// data directory replays its WAL before it serves clients (etcd waits for
// the member to publish itself through raft, an entry it applies after every
// entry it had), and one whose data was wiped and re-added gets a new member
// ID, or catches up from the leader before it serves. Only a whole cluster
// bootstrapped again from empty data keeps its old member IDs at lower
// revisions, and that is data loss, which durability reports as well.
//
// Reads at a revision (WithRev; history.Operation.Revision) are judged here
// too, against the same revision log, since they answer with history rather
// than with the state at their linearization point, which the
// linearizability model does not decide:
//
//   - an answer is the store at the revision asked for: the same value,
//     committed-state and absence rules as above, at that revision instead
//     of the header's; a page (a limit) must hold every key of its range
//     below its last one, and every key when it is not full; and the
//     header is not below the revision asked for;
//   - a refusal as compacted is right only if a compaction above the
//     revision may have applied before the read returned (a recorded
//     compact that did not fail, or the compact revision of a watch
//     refused as compacted); when the history says compactions may have
//     applied without a record by then (meta.compactions not "recorded",
//     or a fault marked compacts that started before the read returned),
//     the refusal is not judged;
//   - a refusal as a future revision is right only if no operation that
//     returned before the read was sent had seen the store at or past it.
//
// A read whose answer the log cannot decide is not judged, and the summary
// says how many were left so.
package serializable

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/revlog"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Name is the check's name in reports.
const Name = "serializable"

// Check judges every acknowledged serializable read in h. It is Skipped when
// there is none.
func Check(h *history.History) verdict.Check {
	return CheckLog(h, nil)
}

// CheckLog is Check with the revision log already built from h; with a nil
// log it builds one when h has serializable reads.
func CheckLog(h *history.History, log *revlog.Log) verdict.Check {
	start := time.Now()
	c := verdict.Check{Name: Name, Status: verdict.Pass}
	defer func() { c.Duration = time.Since(start) }()

	var reads, atRev []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind != history.Get && op.Kind != history.Range {
			continue
		}
		if op.Revision != 0 {
			atRev = append(atRev, op)
			continue
		}
		if op.Serializable && op.Outcome == history.OK && op.Resp != nil {
			reads = append(reads, op)
		}
	}
	if len(reads) == 0 && len(atRev) == 0 {
		c.Status, c.Summary = verdict.Skipped, "no acknowledged serializable reads and no reads at a revision in the history"
		return c
	}
	if log == nil {
		log, _ = revlog.Build(h) // its conflicts are revlog.Check's and watch/consistent's
	}
	x := &checker{h: h, log: log, c: &c, keys: writtenKeys(h), writers: map[string][]*history.Operation{}, baseline: map[string]bool{}}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.WritesValue() {
			k := op.Key + "\x00" + op.Value
			x.writers[k] = append(x.writers[k], op)
		}
	}
	if base := revlog.Baseline(h); base != nil {
		for _, kv := range base.Resp.KVs {
			x.baseline[kv.Key+"\x00"+kv.Value] = true
		}
	}
	for _, rd := range reads {
		x.values(rd, rd.Resp.Revision)
		x.absent(rd, rd.Resp.Revision)
	}
	members := x.monotonic(reads)
	stale, worst := staleness(h, reads)
	judged, unjudged := x.readsAtRevision(atRev)

	var parts []string
	if len(reads) > 0 {
		parts = append(parts, fmt.Sprintf("%d serializable reads served by %d members; %d were stale (up to %d revisions behind an acknowledged operation)", len(reads), members, stale, worst))
	}
	if len(atRev) > 0 {
		parts = append(parts, fmt.Sprintf("%d reads at a revision: %d judged, %d left unjudged (unknown outcome, an error that proves nothing, or a compaction the history did not record); the linearizability check leaves them out", len(atRev), judged, unjudged))
	}
	c.Summary = strings.Join(parts, "; ")
	if c.Status == verdict.Fail {
		c.Summary = fmt.Sprintf("%d violation(s); ", len(c.Violations)+c.Omitted) + c.Summary
	}
	return c
}

type checker struct {
	h    *history.History
	log  *revlog.Log
	c    *verdict.Check
	keys []string // every key a recorded put or txn writes, sorted
	// writers are the puts and txns of each key and value, whatever their
	// outcome; baseline holds the pairs the store held before the run.
	writers  map[string][]*history.Operation
	baseline map[string]bool
}

// writtenKeys returns the keys recorded writes target. A value on any other
// key may come from a writer the history does not record (etcd's client
// helpers for locks and sessions), so only these keys can show a phantom.
func writtenKeys(h *history.History) []string {
	seen := map[string]bool{}
	var out []string
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.WritesValue() && !seen[op.Key] {
			seen[op.Key] = true
			out = append(out, op.Key)
		}
	}
	sort.Strings(out)
	return out
}

func (x *checker) written(key string) bool {
	i := sort.SearchStrings(x.keys, key)
	return i < len(x.keys) && x.keys[i] == key
}

func describe(op *history.Operation) string {
	what := "serializable"
	if op.Revision != 0 {
		what = fmt.Sprintf("revision-%d", op.Revision)
	}
	s := fmt.Sprintf("%s %s op %d (client %d", what, op.Kind, op.ID, op.ClientID)
	if op.Resp != nil && op.Resp.MemberID != 0 {
		s += fmt.Sprintf(", member %x", op.Resp.MemberID)
	} else if op.Endpoint != "" {
		s += ", " + op.Endpoint
	}
	return s + ")"
}

func ms(ns int64) string { return time.Duration(ns).Round(time.Millisecond / 10).String() }

// values checks every key-value pair a read returned, as the store at
// revision hdr (the header's, or the one a read at a revision asked for).
func (x *checker) values(rd *history.Operation, hdr int64) {
	for _, kv := range rd.Resp.KVs {
		ws := x.writers[kv.Key+"\x00"+kv.Value]
		if len(ws) == 0 {
			if x.written(kv.Key) && !x.baseline[kv.Key+"\x00"+kv.Value] {
				x.c.Violate("%s read %q=%q (mod revision %d), a value no recorded operation wrote to that key", describe(rd), kv.Key, kv.Value, kv.ModRevision)
			}
			continue
		}
		// Values are unique per run; should one repeat, any of its writers
		// may explain the read.
		var failed, future *history.Operation
		explained := false
		for _, w := range ws {
			switch {
			case w.Outcome == history.Fail || w.Kind == history.Txn && w.Outcome == history.OK && !w.Resp.Succeeded:
				failed = w // it wrote nothing
			case w.Call > rd.Return:
				future = w
			default:
				explained = true
			}
		}
		switch {
		case explained:
		case future != nil:
			x.c.Violate("%s read %q=%q from the future: %s op %d (client %d) sent that value %s after the read returned", describe(rd), kv.Key, kv.Value, future.Kind, future.ID, future.ClientID, ms(future.Call-rd.Return))
			continue
		default:
			why := "which failed: " + failed.Error
			if failed.Outcome == history.OK {
				why = "whose compare failed, so it wrote nothing"
			}
			x.c.Violate("%s read %q=%q, sent by %s op %d (client %d), %s", describe(rd), kv.Key, kv.Value, failed.Kind, failed.ID, failed.ClientID, why)
			continue
		}
		if hdr > 0 && kv.ModRevision > hdr {
			x.c.Violate("%s read %q=%q at mod revision %d, above %s %d", describe(rd), kv.Key, kv.Value, kv.ModRevision, readAt(rd, "its own header revision"), hdr)
			continue
		}
		if hdr <= 0 {
			continue
		}
		if e, ok := x.log.Latest(kv.Key, hdr); ok && e.ModRevision > kv.ModRevision {
			x.c.Violate("%s read %q=%q (mod revision %d) at header revision %d, a state no member had: %s came between (%s)",
				describe(rd), kv.Key, kv.Value, kv.ModRevision, hdr, e.String(), sources(e))
		}
	}
}

// absent checks the keys a read found missing: none may certainly exist at
// revision hdr. A read with a limit that came back full vouches only for
// the keys below its last one.
func (x *checker) absent(rd *history.Operation, hdr int64) {
	if hdr <= 0 {
		return
	}
	got := map[string]bool{}
	for _, kv := range rd.Resp.KVs {
		got[kv.Key] = true
	}
	var keys []string
	switch {
	case rd.Kind == history.Get && rd.End == "":
		keys = []string{rd.Key}
	default:
		full := rd.Limit > 0 && int64(len(rd.Resp.KVs)) >= rd.Limit
		if full && len(rd.Resp.KVs) == 0 {
			break
		}
		for i := sort.SearchStrings(x.keys, rd.Key); i < len(x.keys) && keyspace.InRange(x.keys[i], rd.Key, rd.End); i++ {
			if full && x.keys[i] >= rd.Resp.KVs[len(rd.Resp.KVs)-1].Key {
				break
			}
			keys = append(keys, x.keys[i])
		}
	}
	for _, key := range keys {
		if got[key] {
			continue
		}
		if kv, exists, certain := x.log.Before(key, hdr+1); exists && certain {
			x.c.Violate("%s found %q missing at %s %d, but it held %q from revision %d with no delete after it up to then",
				describe(rd), key, readAt(rd, "header revision"), hdr, kv.Value, kv.ModRevision)
		}
	}
}

// readAt names the revision a read answered at in messages: the header's
// (called def) or, for a read at a revision, the one it asked for.
func readAt(rd *history.Operation, def string) string {
	if rd.Revision != 0 {
		return "the revision it read at,"
	}
	return def
}

func sources(e revlog.Event) string {
	if len(e.Sources) == 0 {
		return "derived"
	}
	return e.Sources[0]
}

// member names who served an operation, or "" when the history does not
// say.
func member(op *history.Operation) string {
	if op.Resp != nil && op.Resp.MemberID != 0 {
		return fmt.Sprintf("member %x", op.Resp.MemberID)
	}
	if op.Endpoint != "" {
		return "endpoint " + op.Endpoint
	}
	return ""
}

// monotonic checks, per member, that no serializable read answers at a
// revision below one the member had already answered at: the revision of
// any key-value operation it served that returned before the read was sent.
// It returns how many members served serializable reads.
func (x *checker) monotonic(reads []*history.Operation) int {
	served := map[string][]*history.Operation{}
	for i := range x.h.Operations {
		op := &x.h.Operations[i]
		if op.Outcome != history.OK || op.Resp == nil || op.Resp.Revision <= 0 {
			continue
		}
		switch op.Kind {
		case history.Get, history.Range, history.Put, history.Delete, history.Txn:
		default:
			continue
		}
		if m := member(op); m != "" {
			served[m] = append(served[m], op)
		}
	}
	byMember := map[string][]*history.Operation{}
	for _, rd := range reads {
		if m := member(rd); m != "" {
			byMember[m] = append(byMember[m], rd)
		}
	}
	names := make([]string, 0, len(byMember))
	for m := range byMember {
		names = append(names, m)
	}
	sort.Strings(names)
	for _, m := range names {
		ops := served[m]
		sort.Slice(ops, func(i, j int) bool { return ops[i].Return < ops[j].Return })
		rds := byMember[m]
		sort.Slice(rds, func(i, j int) bool { return rds[i].Call < rds[j].Call })
		var high *history.Operation
		reported := map[*history.Operation]bool{}
		j := 0
		for _, rd := range rds {
			for ; j < len(ops) && ops[j].Return < rd.Call; j++ {
				if high == nil || ops[j].Resp.Revision > high.Resp.Revision {
					high = ops[j]
				}
			}
			if high == nil || rd.Resp.Revision >= high.Resp.Revision || reported[high] {
				continue
			}
			reported[high] = true
			x.c.Violate("%s went backwards: it had answered %s op %d (client %d) at revision %d, then %s, sent %s later, answered at revision %d",
				m, high.Kind, high.ID, high.ClientID, high.Resp.Revision, describe(rd), ms(rd.Call-high.Return), rd.Resp.Revision)
		}
	}
	return len(names)
}

// staleness counts the reads whose header revision is below that of an
// acknowledged linearizable operation that returned before the read was
// sent, and the largest such lag: how far behind a lagging member answered.
// It is reported, not judged; a serializable read may be stale.
func staleness(h *history.History, reads []*history.Operation) (stale int, worst int64) {
	var ops []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome == history.OK && op.Resp != nil && !op.Serializable && op.Resp.Revision > 0 {
			switch op.Kind {
			case history.Get, history.Range, history.Put, history.Delete, history.Txn:
				ops = append(ops, op)
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Return < ops[j].Return })
	rds := append([]*history.Operation(nil), reads...)
	sort.Slice(rds, func(i, j int) bool { return rds[i].Call < rds[j].Call })
	var high int64
	j := 0
	for _, rd := range rds {
		for ; j < len(ops) && ops[j].Return < rd.Call; j++ {
			high = max(high, ops[j].Resp.Revision)
		}
		if lag := high - rd.Resp.Revision; lag > 0 {
			stale++
			worst = max(worst, lag)
		}
	}
	return stale, worst
}

// Errors etcd gives a read at a revision it cannot serve (mvcc's
// ErrCompacted and ErrFutureRev, as clientv3 reports them).
const (
	errCompacted = "required revision has been compacted"
	errFutureRev = "required revision is a future revision"
)

// readsAtRevision judges the reads at a revision and returns how many it
// judged and how many it could not.
func (x *checker) readsAtRevision(rds []*history.Operation) (judged, unjudged int) {
	// Compactions that may have applied: recorded compacts that did not
	// fail (by call time), and compact revisions etcd refused watches with
	// (time unknown, so they excuse any read).
	type compact struct {
		rev, call int64
	}
	var compacts []compact
	var refusedAt int64
	for i := range x.h.Operations {
		if op := &x.h.Operations[i]; op.Kind == history.Compact && op.Outcome != history.Fail {
			compacts = append(compacts, compact{op.Revision, op.Call})
		}
	}
	for i := range x.h.Watches {
		for _, r := range x.h.Watches[i].Responses {
			refusedAt = max(refusedAt, r.CompactRevision)
		}
	}
	// unrecordedFrom is when a compaction the history does not show may
	// first have applied: never when the run says every compaction is
	// recorded, from the start of the first fault that compacts without a
	// record, and from the beginning when the run says its store may
	// compact on its own or (an older history) does not say.
	unrecordedFrom := int64(math.MaxInt64)
	if x.h.Meta.Compactions != history.CompactionsRecorded {
		unrecordedFrom = math.MinInt64
	}
	for _, f := range x.h.Faults {
		if f.Compacts {
			unrecordedFrom = min(unrecordedFrom, f.Start)
		}
	}
	// seenBy[i] is the highest header revision of an operation that
	// returned at or before returns[i].
	type ret struct{ at, rev int64 }
	var rets []ret
	for i := range x.h.Operations {
		op := &x.h.Operations[i]
		if op.Outcome == history.OK && op.Resp != nil && op.Resp.Revision > 0 && !op.Serializable {
			rets = append(rets, ret{op.Return, op.Resp.Revision})
		}
	}
	sort.Slice(rets, func(i, j int) bool { return rets[i].at < rets[j].at })
	for i := 1; i < len(rets); i++ {
		rets[i].rev = max(rets[i].rev, rets[i-1].rev)
	}
	seenBefore := func(t int64) int64 {
		i := sort.Search(len(rets), func(i int) bool { return rets[i].at >= t })
		if i == 0 {
			return 0
		}
		return rets[i-1].rev
	}
	for _, rd := range rds {
		r := rd.Revision
		switch {
		case rd.Outcome == history.OK && rd.Resp != nil:
			judged++
			if rd.Resp.Revision > 0 && rd.Resp.Revision < r {
				x.c.Violate("%s answered with header revision %d, below the revision it asked for: etcd must refuse a future revision", describe(rd), rd.Resp.Revision)
			}
			x.values(rd, r)
			x.absent(rd, r)
		case rd.Outcome == history.Fail && strings.Contains(rd.Error, errCompacted):
			may := refusedAt > r
			for _, c := range compacts {
				may = may || c.rev > r && c.call < rd.Return
			}
			switch {
			case may:
				judged++
			case rd.Return > unrecordedFrom:
				unjudged++
			default:
				judged++
				x.c.Violate("%s was refused as compacted, but no compaction above revision %d was sent before it returned", describe(rd), r)
			}
		case rd.Outcome == history.Fail && strings.Contains(rd.Error, errFutureRev):
			judged++
			if seen := seenBefore(rd.Call); seen >= r {
				x.c.Violate("%s was refused as a future revision, but an operation that returned before it was sent had seen revision %d", describe(rd), seen)
			}
		default:
			unjudged++
		}
	}
	return judged, unjudged
}
