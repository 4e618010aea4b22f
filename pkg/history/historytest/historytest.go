// Package historytest builds histories by hand for the checkers' tests, so
// every package fills in operations the same way: IDs from one sequence
// that watches share (as the Recorder hands them out), client 1 unless
// set, outcome ok unless set, and a response on every ok operation. Each
// test keeps its own clock: times are the caller's.
package historytest

import "github.com/etcd-chaos/etcd-chaos/pkg/history"

// Builder assembles one history. The zero value is an empty history.
type Builder struct {
	H  history.History
	id int64
}

// NextID returns the next ID of the sequence operations and watches share.
func (b *Builder) NextID() int64 {
	b.id++
	return b.id
}

// Add appends op and returns it, valid until the next Add. Its ID is the
// next of the sequence unless set, its client 1 unless set, its outcome
// ok unless set, and an ok operation without a response gets an empty one
// (a loaded history never has an ok operation without one).
func (b *Builder) Add(op history.Operation) *history.Operation {
	if op.ID == 0 {
		op.ID = b.NextID()
	}
	if op.ClientID == 0 {
		op.ClientID = 1
	}
	if op.Outcome == "" {
		op.Outcome = history.OK
	}
	if op.Outcome == history.OK && op.Resp == nil {
		op.Resp = &history.Response{}
	}
	b.H.Operations = append(b.H.Operations, op)
	return &b.H.Operations[len(b.H.Operations)-1]
}

// AddWatch appends w, with the next ID unless set, and returns it, valid
// until the next AddWatch.
func (b *Builder) AddWatch(w history.Watch) *history.Watch {
	if w.ID == 0 {
		w.ID = b.NextID()
	}
	b.H.Watches = append(b.H.Watches, w)
	return &b.H.Watches[len(b.H.Watches)-1]
}

// History returns a copy of the history with its operations in call order,
// as history.Read returns one.
func (b *Builder) History() *history.History {
	h := b.H
	h.Operations = append([]history.Operation(nil), b.H.Operations...)
	h.SortOperations()
	return &h
}

// Put is an acknowledged put of key=value at revision rev, on lease unless
// it is 0.
func Put(key, value string, lease, rev int64) history.Operation {
	return history.Operation{Kind: history.Put, Key: key, Value: value, Lease: lease, Outcome: history.OK, Resp: &history.Response{Revision: rev}}
}

// Get is an acknowledged linearizable get of key at header revision rev
// that returned kvs (none: the key was absent).
func Get(key string, rev int64, kvs ...history.KV) history.Operation {
	return history.Operation{Kind: history.Get, Key: key, Outcome: history.OK, Resp: &history.Response{Revision: rev, KVs: kvs, Count: int64(len(kvs))}}
}

// Revoke is an acknowledged revoke of lease at revision rev.
func Revoke(lease, rev int64) history.Operation {
	return history.Operation{Kind: history.LeaseRevoke, Lease: lease, Outcome: history.OK, Resp: &history.Response{Revision: rev}}
}

// Delete is an acknowledged delete of key that removed deleted keys at
// revision rev.
func Delete(key string, deleted, rev int64) history.Operation {
	return history.Operation{Kind: history.Delete, Key: key, Outcome: history.OK, Resp: &history.Response{Revision: rev, Deleted: deleted}}
}
