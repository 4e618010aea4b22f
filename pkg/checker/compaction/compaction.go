// Package compaction checks what etcd promises about a compacted history,
// using the compactions the run recorded:
//
//   - a watch is refused with a compact revision only when it asked for a
//     revision the compaction removed: etcd cancels a watcher whose next
//     revision is below the compact revision, so the compact revision must
//     exceed both the requested start and the revision after the last event
//     the stream delivered;
//   - once a member has applied a compaction at C it never sends events
//     below C again. A compact's response header H is the member's
//     revision read after it applied the compaction, and revisions are
//     applied in log order, so every member that serves revision H+1 has
//     applied it: a watch response whose header is above H must not hold an
//     event below C.
//
// A compaction changes neither the key-value state nor the revision, so the
// linearizability model leaves compacts out (model.Included).
package compaction

import (
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Name is the check's name in reports.
const Name = "compaction"

// Check judges the watches of h against its recorded compactions.
func Check(h *history.History) verdict.Check {
	start := time.Now()
	ck := verdict.Check{Name: Name, Status: verdict.Pass}
	defer func() { ck.Duration = time.Since(start) }()

	var compacts []*history.Operation
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind == history.Compact && op.Outcome == history.OK && op.Resp != nil {
			compacts = append(compacts, op)
		}
	}
	refused := 0
	for wi := range h.Watches {
		w := &h.Watches[wi]
		next := w.StartRevision
		for ri, r := range w.Responses {
			if r.CompactRevision > 0 {
				refused++
				if next > 0 && r.CompactRevision <= next {
					ck.Violate("%s: response %d refused it as compacted at revision %d, but the stream's next revision %d was not compacted",
						describe(w), ri, r.CompactRevision, next)
				}
				continue
			}
			for _, e := range r.Events {
				next = max(next, e.ModRevision+1)
				for _, c := range compacts {
					if e.ModRevision < c.Revision && r.Revision > c.Resp.Revision {
						ck.Violate("%s: response %d (header revision %d) holds %s@%d, below compact op %d at revision %d, which its member had applied (the compact returned header %d); etcd must refuse it with ErrCompacted",
							describe(w), ri, r.Revision, e.Key, e.ModRevision, c.ID, c.Revision, c.Resp.Revision)
						break
					}
				}
			}
		}
	}
	if len(compacts) == 0 && refused == 0 {
		ck.Status = verdict.Skipped
		ck.Summary = "no compaction recorded and no watch refused as compacted"
		return ck
	}
	if ck.Status == verdict.Pass {
		ck.Summary = fmt.Sprintf("%d compaction(s); %d watch stream(s) refused as compacted, each rightly; no stream served events below a compaction its member had applied", len(compacts), refused)
	} else {
		ck.Summary = fmt.Sprintf("%d violation(s) of compaction guarantees", len(ck.Violations)+ck.Omitted)
	}
	return ck
}

func describe(w *history.Watch) string {
	s := fmt.Sprintf("watch %d (client %d, from revision %d", w.ID, w.ClientID, w.StartRevision)
	if w.Endpoint != "" {
		s += " on " + w.Endpoint
	}
	return s + ")"
}
