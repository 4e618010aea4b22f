package histgen

import (
	"sort"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Prefix cuts a recorded history down to about its first n operations (by
// call), keeping it a history a correct cluster could have produced, so
// that real recordings can be trimmed into small test data.
//
// The cut falls at the call time T of operation n. Operations called after T
// are dropped. An operation still in flight at T is cut short: a write
// becomes an unknown outcome (it may have taken effect, and a kept read may
// have seen it), a read or keep-alive is dropped (it promised nothing). Every
// revision a kept write or read reports was then made by a write called
// before T, which is kept. Watch responses and faults after T are dropped.
func Prefix(h *history.History, n int) *history.History {
	out := &history.History{Meta: h.Meta}
	ops := append([]history.Operation(nil), h.Operations...)
	sort.SliceStable(ops, func(i, j int) bool {
		if ops[i].Call != ops[j].Call {
			return ops[i].Call < ops[j].Call
		}
		return ops[i].ID < ops[j].ID
	})
	if n >= len(ops) {
		out.Operations = ops
		out.Watches, out.Faults = h.Watches, h.Faults
		return out
	}
	cut := ops[n].Call
	for _, op := range ops[:n] {
		if op.Return >= cut && op.Outcome != history.Fail {
			if !op.Kind.IsWrite() || op.Kind == history.LeaseKeepAlive {
				continue
			}
			op.Outcome, op.Resp, op.Error = history.Unknown, nil, "cut short by histgen.Prefix"
			op.Return = cut
		}
		if op.Return >= cut {
			op.Return = cut
		}
		out.Operations = append(out.Operations, op)
	}
	for _, w := range h.Watches {
		if w.Call >= cut {
			continue
		}
		w.Responses = append([]history.WatchResponse(nil), w.Responses...)
		k := sort.Search(len(w.Responses), func(i int) bool { return w.Responses[i].Time >= cut })
		w.Responses = w.Responses[:k]
		out.Watches = append(out.Watches, w)
	}
	for _, f := range h.Faults {
		if f.Start >= cut {
			continue
		}
		if f.End >= cut {
			f.End = 0 // still active when the history ends
		}
		out.Faults = append(out.Faults, f)
	}
	return out
}

// Thin drops the successful linearizable gets and ranges for which keep
// returns false. Dropping a read removes an observation and nothing else, so
// a linearizable history stays linearizable, and what the kept operations
// show is unchanged: it shrinks real recordings for test data while
// keeping every write, lease operation and failure they hold.
func Thin(h *history.History, keep func(op *history.Operation) bool) *history.History {
	out := *h
	out.Operations = make([]history.Operation, 0, len(h.Operations))
	for i := range h.Operations {
		op := &h.Operations[i]
		if (op.Kind == history.Get || op.Kind == history.Range) && op.Outcome == history.OK && !keep(op) {
			continue
		}
		out.Operations = append(out.Operations, *op)
	}
	return &out
}

// DropKeys removes every operation on a key under prefix, writes included,
// and the grants and revokes of leases that no remaining operation uses.
// The result is a history whose store also holds writes it does not record,
// to keys none of its operations show (a revoke deleting only dropped keys
// is such a write): check it with foreign writes allowed
// (linearizable.Options.ForeignWrites). It cuts a real recording down to
// the keys a test is about.
func DropKeys(h *history.History, prefix string) *history.History {
	out := *h
	out.Operations = make([]history.Operation, 0, len(h.Operations))
	used := map[int64]bool{}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Key != "" && strings.HasPrefix(op.Key, prefix) {
			continue
		}
		switch op.Kind {
		case history.Put, history.Txn, history.LeaseKeepAlive:
			used[op.Lease] = true
		}
		if op.Resp != nil {
			for _, kv := range op.Resp.KVs {
				used[kv.Lease] = true
			}
		}
		out.Operations = append(out.Operations, *op)
	}
	kept := out.Operations[:0]
	for _, op := range out.Operations {
		switch {
		case op.Kind == history.LeaseRevoke && !used[op.Lease]:
			continue
		case op.Kind == history.LeaseGrant && (op.Resp == nil || !used[op.Resp.LeaseID]):
			continue
		}
		kept = append(kept, op)
	}
	out.Operations = kept
	return &out
}
