// Package durability checks the promise users care about most and checkers
// most often take for granted: every write etcd acknowledged is still there
// at the end. It compares the final full reads that the workload records
// after the faults are healed (workload.FinalRead) with the last acknowledged
// write of every key, and says plainly when acknowledged writes were lost,
// for example when every pod of a cluster without persistence was deleted and
// the members silently bootstrapped a new, empty cluster.
package durability

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
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
// acknowledged writes.
func Check(h *history.History) verdict.Check {
	start := time.Now()
	c := verdict.Check{Name: Name, Status: verdict.Pass}
	defer func() { c.Duration = time.Since(start) }()

	finals := finalReads(h)
	if len(finals) == 0 {
		c.Status = verdict.Skipped
		c.Summary = "no final read recorded after the traffic stopped"
		return c
	}
	writes := keyWrites(h)
	var maxAcked int64
	for _, ws := range writes {
		for _, w := range ws {
			maxAcked = max(maxAcked, w.rev)
		}
	}

	lost, checked := 0, 0
	var lostKeys []string
	for _, f := range finals {
		got := map[string]history.KV{}
		for _, kv := range f.Resp.KVs {
			got[kv.Key] = kv
		}
		if f.Resp.Revision < maxAcked {
			c.Violate("store revision went backwards: etcd acknowledged a write at revision %d, but the final read (op %d) is at revision %d; the cluster lost data (was it recreated empty?)", maxAcked, f.ID, f.Resp.Revision)
		}
		for key, ws := range writes {
			if !inRange(key, f.Key, f.End) {
				continue
			}
			checked++
			if msg := checkKey(key, ws, got[key], f); msg != "" {
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
	case c.Status == verdict.Fail:
		c.Summary = "acknowledged writes lost: the store revision went backwards"
	default:
		c.Summary = fmt.Sprintf("every acknowledged write of %d keys is readable at the end", checked)
	}
	return c
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
	// A write with an unknown outcome, called before the final read, may
	// have overwritten or deleted the key later than the last acknowledged one.
	for _, w := range ws {
		if w.rev != 0 || w.op.Call > final.Call {
			continue
		}
		if present && !w.deletes && w.value == kv.Value {
			return ""
		}
		if !present && w.deletes {
			return ""
		}
	}
	if present {
		return fmt.Sprintf("key %s: acknowledged write op %d (%q at revision %d) is lost; the final read at revision %d shows %q at revision %d", key, last.op.ID, last.value, last.rev, final.Resp.Revision, kv.Value, kv.ModRevision)
	}
	return fmt.Sprintf("key %s: acknowledged write op %d (%q at revision %d) is lost; the final read at revision %d does not find the key", key, last.op.ID, last.value, last.rev, final.Resp.Revision)
}

// finalReads returns, per distinct range, the last successful range read
// that started after every write to that range had returned: the workload's
// final read.
func finalReads(h *history.History) []*history.Operation {
	byRange := map[string]*history.Operation{}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind != history.Range || op.Outcome != history.OK || op.Serializable || op.Limit != 0 {
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
			if w.Kind.IsWrite() && w.Outcome != history.Unknown && inRange(w.Key, f.Key, f.End) && w.Return > f.Call {
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

// keyWrites collects, per key, every write that succeeded or may have.
func keyWrites(h *history.History) map[string][]write {
	out := map[string][]write{}
	// Keys attached to each lease, so a revoke counts as their delete.
	attached := map[int64][]string{}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind == history.Put && op.Lease != 0 && op.Outcome != history.Fail {
			attached[op.Lease] = append(attached[op.Lease], op.Key)
		}
	}
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
			if op.Outcome == history.OK && !op.Resp.Succeeded {
				continue
			}
			out[op.Key] = append(out[op.Key], write{op: op, rev: rev, value: op.Value})
		case history.Delete:
			if op.Outcome == history.OK && op.Resp.Deleted == 0 {
				continue
			}
			out[op.Key] = append(out[op.Key], write{op: op, rev: rev, deletes: true})
		case history.LeaseRevoke:
			// Whether a revoke deleted a key depends on whether the key was
			// overwritten without the lease first, which only a full replay
			// knows; so a revoke only ever excuses a key's absence (rev 0),
			// and the linearizability checker judges the rest.
			for _, k := range attached[op.Lease] {
				out[k] = append(out[k], write{op: op, deletes: true})
			}
		}
	}
	return out
}

func inRange(key, start, end string) bool {
	if end == "" {
		return key == start
	}
	if end == "\x00" {
		return key >= start
	}
	return key >= start && key < end
}

func abbreviate(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}
