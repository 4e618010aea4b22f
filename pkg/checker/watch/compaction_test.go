package watch

import (
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// compactedBase is base with a compaction at revision 4 after the writes: a
// watch from 4 starts at the compacted revision, where the superseded a1 is
// gone, so etcd sends a2's event without its prev_kv.
func compactedBase() *builder {
	b := base()
	b.op(history.Operation{Kind: history.Compact, Revision: 4, Outcome: history.OK, Resp: &history.Response{Revision: 9}})
	return b
}

func TestPrevKVMissingAtOrBelowCompactionAccepted(t *testing.T) {
	b := compactedBase()
	rs := goodEvents()[2:]
	rs[0].Events[0].PrevKV = nil // a2 at revision 4: its prev a1 was compacted
	b.watch(2, "/kv/", prefixEnd, 4, true, rs...)
	expectOnly(t, Check(&b.H))
}

func TestPrevKVMissingAboveCompactionRejected(t *testing.T) {
	b := compactedBase()
	rs := goodEvents()[2:]
	rs[1].Events[0].PrevKV = nil // delete of b at revision 5 is above the compaction: b1 is kept
	b.watch(2, "/kv/", prefixEnd, 4, true, rs...)
	expectOnly(t, Check(&b.H), "watch/consistent")
}

// An unrecorded compaction (a nemesis's) is known from the compact revision
// etcd refused a watch with.
func TestPrevKVMissingBelowUnrecordedCompactionAccepted(t *testing.T) {
	b := base()
	b.watch(3, "/kv/", prefixEnd, 2, true, history.WatchResponse{Revision: 9, Canceled: true, CompactRevision: 4})
	rs := goodEvents()[2:]
	rs[0].Events[0].PrevKV = nil
	b.watch(3, "/kv/", prefixEnd, 4, true, rs...)
	expectOnly(t, Check(&b.H))
}
