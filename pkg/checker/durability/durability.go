// Package durability checks the promise users care about most and checkers
// most often take for granted: every write etcd acknowledged is still there
// at the end. It compares the final full reads that the workload records
// after the faults are healed (workload.FinalRead) with the last acknowledged
// write of every key, and says plainly when acknowledged writes were lost,
// for example when every pod of a cluster without persistence was deleted and
// the members silently bootstrapped a new, empty cluster.
//
// Such a cluster restarts its revisions at 1 while traffic goes on writing
// the same keys, and after enough writes its revisions pass the old ones, so
// comparing revision numbers at the end proves nothing. Two findings do not
// depend on them: the store revision going backwards in real time, and a
// key whose version at the end is too low for the acknowledged puts that
// certainly preceded its final value (it was created anew, although nothing
// deleted it).
package durability

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Name is the check's name in reports.
const Name = "durability"

// write is the effect an operation had, or may have had, on one key.
type write struct {
	op      *history.Operation
	rev     int64 // 0 when the outcome is unknown
	deletes bool
	value   string
	lease   int64 // the lease a put attached the key to
}

// Check finds the final read of each prefix and checks it against the
// acknowledged writes. Independently of any final read, it reports a store
// revision that went backwards in real time: the mark of a cluster that was
// recreated empty, which restarts revisions at 1 and then, given enough
// traffic, catches up with the old numbers so that no single revision
// comparison at the end notices.
func Check(h *history.History) verdict.Check {
	start := time.Now()
	c := verdict.Check{Name: Name, Status: verdict.Pass}
	defer func() { c.Duration = time.Since(start) }()

	regressions := revisionRegressions(h, &c)
	finals := finalReads(h)
	if len(finals) == 0 {
		if regressions > 0 {
			c.Summary = fmt.Sprintf("LOST ACKNOWLEDGED WRITES: the store revision went backwards (%d operations saw a lower revision than one already returned)", regressions)
			return c
		}
		c.Status = verdict.Skipped
		c.Summary = "no final read recorded after the traffic stopped"
		return c
	}
	writes := keyWrites(h)

	lost, checked := 0, 0
	var lostKeys []string
	for _, f := range finals {
		got := map[string]history.KV{}
		for _, kv := range f.Resp.KVs {
			got[kv.Key] = kv
		}
		for key, ws := range writes {
			if !keyspace.InRange(key, f.Key, f.End) {
				continue
			}
			checked++
			msg := checkKey(key, ws, got[key], f)
			if msg == "" {
				msg = checkIncarnation(key, ws, got[key], f)
			}
			if msg != "" {
				lost++
				lostKeys = append(lostKeys, key)
				c.Violate("%s", msg)
			}
		}
	}
	sort.Strings(lostKeys)
	switch {
	case lost > 0:
		c.Summary = fmt.Sprintf("LOST ACKNOWLEDGED WRITES: %d of %d keys no longer hold their last acknowledged write (%s)", lost, checked, abbreviate(lostKeys, 5))
		if regressions > 0 {
			c.Summary += fmt.Sprintf("; the store revision went backwards (%d operations)", regressions)
		}
	case c.Status == verdict.Fail:
		c.Summary = fmt.Sprintf("LOST ACKNOWLEDGED WRITES: the store revision went backwards (%d operations saw a lower revision than one already returned)", regressions)
	default:
		c.Summary = fmt.Sprintf("every acknowledged write of %d keys is readable at the end", checked)
	}
	return c
}

// revisionRegressions reports every drop of the store revision in real
// time: a linearizable key-value operation called after another had
// returned, answered with a lower header revision. etcd's revision only
// grows: a write that returned is committed, and whatever member serves a
// later linearizable request has applied it first. Serializable reads are
// left out (a lagging member may serve them; pkg/checker/serializable
// judges those), and so are lease operations, whose headers this check
// does not need. Each drop below the same earlier operation is reported
// once, with a count, so that a recreated cluster yields one line, not one
// per operation until it catches up. It returns how many operations saw a
// lower revision.
func revisionRegressions(h *history.History, c *verdict.Check) int {
	var ops []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome != history.OK || op.Resp == nil || op.Resp.Revision <= 0 || op.Serializable {
			continue
		}
		switch op.Kind {
		case history.Get, history.Range, history.Put, history.Delete, history.Txn:
			ops = append(ops, op)
		}
	}
	byReturn := append([]*history.Operation(nil), ops...)
	sort.SliceStable(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })

	type drop struct {
		high, first *history.Operation
		lowest      int64
		n           int
	}
	var drops []*drop
	byHigh := map[*history.Operation]*drop{}
	var high *history.Operation
	j := 0
	for _, op := range ops {
		for j < len(byReturn) && byReturn[j].Return < op.Call {
			if high == nil || byReturn[j].Resp.Revision > high.Resp.Revision {
				high = byReturn[j]
			}
			j++
		}
		if high == nil || op.Resp.Revision >= high.Resp.Revision {
			continue
		}
		d := byHigh[high]
		if d == nil {
			d = &drop{high: high, first: op, lowest: op.Resp.Revision}
			byHigh[high] = d
			drops = append(drops, d)
		}
		d.n++
		d.lowest = min(d.lowest, op.Resp.Revision)
	}
	total := 0
	for _, d := range drops {
		total += d.n
		more := ""
		if d.n > 1 {
			more = fmt.Sprintf("; %d operations called after it returned saw revisions as low as %d", d.n, d.lowest)
		}
		cause := "acknowledged writes were lost (was the cluster recreated empty?)"
		if !d.first.Kind.IsWrite() {
			cause = "the read saw a store older than one already acknowledged: a stale read, or acknowledged writes were lost (was the cluster recreated empty?)"
		}
		c.Violate("store revision went backwards: %s returned revision %d at %s, then %s, called %s later, got revision %d%s; %s",
			describe(d.high), d.high.Resp.Revision, secs(d.high.Return), describe(d.first), secs(d.first.Call-d.high.Return), d.first.Resp.Revision, more, cause)
	}
	return total
}

// checkKey returns a description of the loss, or "" if the final value is
// one the key may hold.
func checkKey(key string, ws []write, kv history.KV, final *history.Operation) string {
	// The last acknowledged write of the key, by revision.
	var last *write
	for i := range ws {
		if ws[i].rev > 0 && (last == nil || ws[i].rev > last.rev) {
			last = &ws[i]
		}
	}
	if last == nil {
		return "" // nothing acknowledged for this key
	}
	present := kv.Key != ""
	if present && kv.ModRevision >= last.rev {
		// Same or a later write; the linearizability checker judges which.
		return ""
	}
	if !present && last.deletes {
		return ""
	}
	if !present && last.lease != 0 {
		// A key on a lease vanishes when the lease expires, which no
		// operation records: an expired keep-alive during a partition is
		// etcd keeping its promise. lease/keepalive judges whether the
		// lease should have survived.
		return ""
	}
	// A write with an unknown outcome, called before the final read
	// returned, may have overwritten or deleted the key later than the
	// last acknowledged one. An unknown put with a lease may have attached
	// the key to a lease that then expired or was revoked. A revoke alone
	// excuses nothing: it deletes only a version of the key attached to its
	// lease, and the last acknowledged version carries none (the lease of
	// an earlier version went with that version).
	for _, w := range ws {
		if w.rev != 0 || w.op.Call > final.Return {
			continue
		}
		if present && !w.deletes && w.value == kv.Value {
			return ""
		}
		if !present && (w.deletes || w.lease != 0) {
			return ""
		}
	}
	if present {
		return fmt.Sprintf("key %s: acknowledged write op %d (%q at revision %d) is lost; the final read at revision %d shows %q at revision %d", key, last.op.ID, last.value, last.rev, final.Resp.Revision, kv.Value, kv.ModRevision)
	}
	return fmt.Sprintf("key %s: acknowledged write op %d (%q at revision %d) is lost; the final read at revision %d does not find the key", key, last.op.ID, last.value, last.rev, final.Resp.Revision)
}

// checkIncarnation compares the final value's version with the puts that
// certainly preceded it. A key's version counts the puts since it was last
// created; when an acknowledged put returned before the final value's write
// was sent, and nothing that may remove the key (a delete, a write with an
// unknown outcome that may have been a delete, a version on a lease that may
// expire or be revoked) could fall between them, the key lived on from that
// put to the final write, and the final version counts both. A lower version
// means the key was created anew in between: the earlier put's effect is
// gone although no operation removed it. Revision numbers are not used, so
// this holds across a cluster that restarted its revisions at 1, however
// many writes followed.
func checkIncarnation(key string, ws []write, kv history.KV, final *history.Operation) string {
	if kv.Key == "" || kv.Version <= 0 {
		return ""
	}
	var w2 *write
	for i := range ws {
		if !ws[i].deletes && ws[i].value == kv.Value {
			w2 = &ws[i]
			break
		}
	}
	if w2 == nil {
		return "" // written before the run (baseline) or by no recorded op
	}
	// Until when a remover could strike before the final value was
	// written: its write's return, or the final read when its outcome is
	// unknown (it may have applied any time before the read saw it).
	end := w2.op.Return
	if w2.rev == 0 {
		end = final.Return
	}
	// A remover is a delete, or a put that left a version on a lease (the
	// lease may expire or be revoked while that version is current); a put
	// without a lease only overwrites, which never lowers the version. One
	// with an unknown outcome may fall anywhere after its call; an
	// acknowledged one falls between w and w2 when it may take effect
	// before w2 did and returned after w was sent.
	var removedUntil int64 = -1
	for i := range ws {
		d := &ws[i]
		if d == w2 || !d.deletes && d.lease == 0 || d.op.Call >= end {
			continue
		}
		if d.rev == 0 {
			return "" // may have removed the key at any time
		}
		removedUntil = max(removedUntil, d.op.Return)
	}
	var chained []*write
	for i := range ws {
		w := &ws[i]
		if w == w2 || w.rev == 0 || w.deletes || w.lease != 0 || w.op.Return >= w2.op.Call || w.op.Call < removedUntil {
			continue
		}
		chained = append(chained, w)
	}
	if int64(len(chained))+1 <= kv.Version {
		return ""
	}
	first := chained[0]
	for _, w := range chained {
		if w.op.Call < first.op.Call {
			first = w
		}
	}
	return fmt.Sprintf("key %s: acknowledged write op %d (%q at revision %d) is lost; the final read shows %q (op %d) with version %d created at revision %d, yet %d acknowledged puts of the key returned before op %d was sent with nothing able to remove the key in between, so the key was recreated empty",
		key, first.op.ID, first.value, first.rev, kv.Value, w2.op.ID, kv.Version, kv.CreateRevision, len(chained), w2.op.ID)
}

// finalReads returns, per distinct range, the last successful range read
// that started after every write to that range had returned: the workload's
// final read.
func finalReads(h *history.History) []*history.Operation {
	byRange := map[string]*history.Operation{}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind != history.Range || op.Outcome != history.OK || op.Serializable || op.Limit != 0 || op.Revision != 0 {
			continue
		}
		k := op.Key + "\x00" + op.End
		if prev := byRange[k]; prev == nil || op.Call > prev.Call {
			byRange[k] = op
		}
	}
	var out []*history.Operation
	for _, f := range byRange {
		after := true
		for i := range h.Operations {
			w := &h.Operations[i]
			if w.Kind.IsWrite() && w.Outcome != history.Unknown && keyspace.InRange(w.Key, f.Key, f.End) && w.Return > f.Call {
				after = false
				break
			}
		}
		if after {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// keyWrites collects, per key, every write that succeeded or may have. A
// lease revoke is not among them: it deletes only a version of a key that
// is attached to its lease, so the puts that attached the lease (each
// recorded with its lease) carry that possibility.
func keyWrites(h *history.History) map[string][]write {
	out := map[string][]write{}
	var ranged []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome == history.Fail {
			continue
		}
		rev := int64(0)
		if op.Outcome == history.OK {
			rev = op.Resp.Revision
		}
		switch op.Kind {
		case history.Put:
			out[op.Key] = append(out[op.Key], write{op: op, rev: rev, value: op.Value, lease: op.Lease})
		case history.Txn:
			if op.Outcome == history.OK && !op.Changed() {
				continue
			}
			if op.DeletesKey() {
				out[op.Key] = append(out[op.Key], write{op: op, rev: rev, deletes: true})
				continue
			}
			out[op.Key] = append(out[op.Key], write{op: op, rev: rev, value: op.Value, lease: op.Lease})
		case history.Delete:
			if op.Outcome == history.OK && op.Resp.Deleted == 0 {
				continue
			}
			if op.End != "" {
				ranged = append(ranged, op)
				continue
			}
			out[op.Key] = append(out[op.Key], write{op: op, rev: rev, deletes: true})
		}
	}
	// A range delete may have removed any key in its range; which ones it
	// did the history does not say, so it counts as a delete whose
	// revision is unknown.
	for _, op := range ranged {
		for key := range out {
			if keyspace.InRange(key, op.Key, op.End) {
				out[key] = append(out[key], write{op: op, deletes: true})
			}
		}
	}
	return out
}

func abbreviate(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}

func describe(op *history.Operation) string {
	return fmt.Sprintf("%s op %d (client %d)", op.Kind, op.ID, op.ClientID)
}

func secs(ns int64) string { return fmt.Sprintf("%.3fs", time.Duration(ns).Seconds()) }
