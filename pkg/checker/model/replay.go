package model

import (
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// Replay is a Store that changes in place, for one linear replay of a
// linearization (the certificate check): a write costs O(1) on a key it
// was told of, where a State copies its key slice. It holds no history of
// states, so it cannot back a search.
type Replay struct {
	rev      int64
	keys     []string // sorted; absent keys stay, marked not live
	idx      map[string]int
	kvs      []KeyValue
	live     []bool
	leases   map[int64]bool
	leaseKey map[int64]int // live keys per lease
	buf      []KeyValue    // Range's answer, reused
}

// NewReplay returns a Replay holding s, indexed for keys (the keys the
// replay will touch; any other is added when written, at O(keys) cost).
func NewReplay(s State, keys []string) *Replay {
	r := &Replay{rev: s.Revision, idx: map[string]int{}, leases: map[int64]bool{}, leaseKey: map[int64]int{}}
	all := make([]string, 0, len(keys)+len(s.kvs))
	all = append(all, keys...)
	for _, kv := range s.kvs {
		all = append(all, kv.Key)
	}
	sort.Strings(all)
	for i, k := range all {
		if i == 0 || k != all[i-1] {
			r.keys = append(r.keys, k)
		}
	}
	r.kvs = make([]KeyValue, len(r.keys))
	r.live = make([]bool, len(r.keys))
	r.reindex()
	for _, kv := range s.kvs {
		r.Put(kv)
	}
	for _, l := range s.leases {
		r.leases[l] = true
	}
	return r
}

func (r *Replay) reindex() {
	for i, k := range r.keys {
		r.idx[k] = i
	}
}

// Rev returns the store revision.
func (r *Replay) Rev() int64 { return r.rev }

// SetRev sets the store revision.
func (r *Replay) SetRev(rev int64) { r.rev = rev }

// Get returns the live key k.
func (r *Replay) Get(k string) (KeyValue, bool) {
	i, ok := r.idx[k]
	if !ok || !r.live[i] {
		return KeyValue{}, false
	}
	return r.kvs[i], true
}

// Range returns the live keys in [key, end) in key order, at most limit.
// The slice is valid until the next call.
func (r *Replay) Range(key, end string, limit int64) []KeyValue {
	out := r.buf[:0]
	if end == "" {
		if kv, ok := r.Get(key); ok {
			out = append(out, kv)
		}
		r.buf = out
		return out
	}
	for i := sort.SearchStrings(r.keys, key); i < len(r.keys) && keyspace.InRange(r.keys[i], key, end) && (limit == 0 || int64(len(out)) < limit); i++ {
		if r.live[i] {
			out = append(out, r.kvs[i])
		}
	}
	r.buf = out
	return out
}

// Put stores kv.
func (r *Replay) Put(kv KeyValue) {
	i, ok := r.idx[kv.Key]
	if !ok {
		i = sort.SearchStrings(r.keys, kv.Key)
		r.keys = append(r.keys[:i], append([]string{kv.Key}, r.keys[i:]...)...)
		r.kvs = append(r.kvs[:i], append([]KeyValue{{}}, r.kvs[i:]...)...)
		r.live = append(r.live[:i], append([]bool{false}, r.live[i:]...)...)
		r.reindex()
	}
	r.drop(i)
	r.kvs[i], r.live[i] = kv, true
	if kv.Lease != 0 {
		r.leaseKey[kv.Lease]++
	}
}

// drop marks key i absent.
func (r *Replay) drop(i int) {
	if r.live[i] && r.kvs[i].Lease != 0 {
		r.leaseKey[r.kvs[i].Lease]--
	}
	r.live[i] = false
}

// Delete removes key k.
func (r *Replay) Delete(k string) {
	if i, ok := r.idx[k]; ok {
		r.drop(i)
	}
}

// HasLease reports whether lease id is granted and not revoked.
func (r *Replay) HasLease(id int64) bool { return r.leases[id] }

// Grant adds lease id.
func (r *Replay) Grant(id int64) { r.leases[id] = true }

// Revoke removes lease id and its keys, and reports whether any key went.
func (r *Replay) Revoke(id int64) bool {
	delete(r.leases, id)
	if r.leaseKey[id] == 0 {
		return false
	}
	for i := range r.kvs {
		if r.live[i] && r.kvs[i].Lease == id {
			r.drop(i)
		}
	}
	return true
}
