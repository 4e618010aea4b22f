// Package model is a pure, deterministic sequential specification of etcd's
// key-value store and leases, in the style of etcd's tests/robustness/model.
// It is the one definition of what an operation does: Apply is the only
// step function. Porcupine searches with it (Step on immutable States), the
// linearizability fast path replays writes with it on its own store, and
// every PASS is a linearization replayed through Apply once more.
//
// The model checks values and revisions: every response's header revision
// must equal the store revision after the operation, and every returned key
// must carry the mod revision the model holds for it. Create revisions and
// versions are derived data and are not checked: a unique value at a checked
// mod revision already pins the write that produced it. Where the history
// may leave writes out (Rule ForeignWrites), revisions are lower bounds.
//
// States are immutable values. A step that changes nothing returns the same
// backing slices; a step that writes copies only the small sorted key slice,
// and the state's hash is maintained incrementally so porcupine's cache
// lookups cost O(1).
package model

import (
	"fmt"
	"hash/maphash"
	"sort"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// InitialRevision is the revision of a fresh etcd cluster: the first write
// creates revision 2.
const InitialRevision = 1

// KeyValue is the model's view of one live key.
type KeyValue struct {
	Key         string
	Value       string
	ModRevision int64
	Lease       int64
}

// State is the whole store at one revision. The zero value is not valid; use
// Init.
type State struct {
	Revision int64
	kvs      []KeyValue // sorted by Key; never mutated once shared
	leases   []int64    // sorted lease IDs; never mutated once shared
	kvHash   uint64     // XOR of kvs' hashes
	lsHash   uint64     // XOR of leases' hashes
}

// Init returns the empty store at InitialRevision.
func Init() State { return State{Revision: InitialRevision} }

// StateOf builds the store at revision rev holding kvs and the granted
// leases (leases the keys name are added), for a check that starts in the
// middle of a history.
func StateOf(rev int64, kvs []KeyValue, leases []int64) State {
	s := State{Revision: rev}
	for _, kv := range kvs {
		s = s.put(kv)
		if kv.Lease != 0 {
			s = s.grant(kv.Lease)
		}
	}
	for _, l := range leases {
		s = s.grant(l)
	}
	return s
}

// InitWith returns a store that starts at revision rev holding kvs, as a
// cluster restored from a snapshot does. Leases the keys name are taken as
// granted: etcd keeps a key's lease alive as long as the key.
func InitWith(rev int64, kvs []history.KV) State {
	s := State{Revision: rev}
	for _, kv := range kvs {
		s = s.put(KeyValue{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision, Lease: kv.Lease})
		if kv.Lease != 0 {
			s = s.grant(kv.Lease)
		}
	}
	return s
}

// seed makes hashes stable within a process, which is all porcupine needs.
var seed = maphash.MakeSeed()

func hashKV(kv KeyValue) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(kv.Key)
	h.WriteByte(0)
	h.WriteString(kv.Value)
	var b [16]byte
	putInt(b[:8], kv.ModRevision)
	putInt(b[8:], kv.Lease)
	h.Write(b[:])
	return h.Sum64()
}

func hashInt(tag byte, v int64) uint64 {
	var b [9]byte
	b[0] = tag
	putInt(b[1:], v)
	return maphash.Bytes(seed, b[:])
}

func putInt(b []byte, v int64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// Hash returns a hash consistent with Equal. The revision is mixed in by a
// multiplication rather than hashed: porcupine asks for every state's hash,
// and the key and lease hashes already spread the bits.
func (s State) Hash() uint64 { return s.kvHash ^ s.lsHash ^ uint64(s.Revision)*0x9e3779b97f4a7c15 }

// Equal reports whether two states hold the same revision, keys and leases.
func (s State) Equal(o State) bool {
	if s.Revision != o.Revision || s.kvHash != o.kvHash || s.lsHash != o.lsHash ||
		len(s.kvs) != len(o.kvs) || len(s.leases) != len(o.leases) {
		return false
	}
	for i := range s.kvs {
		if s.kvs[i] != o.kvs[i] {
			return false
		}
	}
	for i := range s.leases {
		if s.leases[i] != o.leases[i] {
			return false
		}
	}
	return true
}

// Get returns the live key k.
func (s State) Get(k string) (KeyValue, bool) {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= k })
	if i < len(s.kvs) && s.kvs[i].Key == k {
		return s.kvs[i], true
	}
	return KeyValue{}, false
}

// HasLease reports whether lease id is granted and not revoked.
func (s State) HasLease(id int64) bool {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	return i < len(s.leases) && s.leases[i] == id
}

// Len returns the number of live keys.
func (s State) Len() int { return len(s.kvs) }

// put returns s with kv stored (insert or replace), revision unchanged.
func (s State) put(kv KeyValue) State {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= kv.Key })
	var n []KeyValue
	if i < len(s.kvs) && s.kvs[i].Key == kv.Key {
		n = make([]KeyValue, len(s.kvs))
		copy(n, s.kvs)
		s.kvHash ^= hashKV(s.kvs[i])
		n[i] = kv
	} else {
		n = make([]KeyValue, len(s.kvs)+1)
		copy(n, s.kvs[:i])
		n[i] = kv
		copy(n[i+1:], s.kvs[i:])
	}
	s.kvHash ^= hashKV(kv)
	s.kvs = n
	return s
}

// del returns s without key k, revision unchanged.
func (s State) del(k string) State {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= k })
	if i == len(s.kvs) || s.kvs[i].Key != k {
		return s
	}
	s.kvHash ^= hashKV(s.kvs[i])
	n := make([]KeyValue, 0, len(s.kvs)-1)
	n = append(n, s.kvs[:i]...)
	n = append(n, s.kvs[i+1:]...)
	s.kvs = n
	return s
}

func (s State) grant(id int64) State {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	if i < len(s.leases) && s.leases[i] == id {
		return s
	}
	n := make([]int64, len(s.leases)+1)
	copy(n, s.leases[:i])
	n[i] = id
	copy(n[i+1:], s.leases[i:])
	s.leases = n
	s.lsHash ^= hashInt('l', id)
	return s
}

// revoke removes the lease and every key attached to it, and reports
// whether any key went (etcd then spends a revision on it; the step does).
func (s State) revoke(id int64) (State, bool) {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	if i == len(s.leases) || s.leases[i] != id {
		return s, false
	}
	n := make([]int64, 0, len(s.leases)-1)
	n = append(n, s.leases[:i]...)
	n = append(n, s.leases[i+1:]...)
	s.leases = n
	s.lsHash ^= hashInt('l', id)
	deleted := false
	for _, kv := range s.kvs {
		if kv.Lease == id {
			deleted = true
			break
		}
	}
	if !deleted {
		return s, false
	}
	kvs := make([]KeyValue, 0, len(s.kvs))
	for _, kv := range s.kvs {
		if kv.Lease == id {
			s.kvHash ^= hashKV(kv)
			continue
		}
		kvs = append(kvs, kv)
	}
	s.kvs = kvs
	return s, true
}

// *State is a Store: each change replaces the changed slice with a copy,
// so states that shared it (porcupine's cache holds many) are untouched.

// Rev returns the store revision.
func (s *State) Rev() int64 { return s.Revision }

// SetRev sets the store revision.
func (s *State) SetRev(rev int64) { s.Revision = rev }

// Put stores kv, replacing the key's earlier value.
func (s *State) Put(kv KeyValue) { *s = s.put(kv) }

// Delete removes key k, if it is live.
func (s *State) Delete(k string) { *s = s.del(k) }

// Grant adds lease id.
func (s *State) Grant(id int64) { *s = s.grant(id) }

// Revoke removes lease id and its keys, and reports whether any key went.
func (s *State) Revoke(id int64) bool {
	n, deleted := s.revoke(id)
	*s = n
	return deleted
}

// Range returns the live keys in [key, end) in key order, at most limit of
// them (0: no limit).
func (s State) Range(key, end string, limit int64) []KeyValue {
	var kvs []KeyValue
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= key })
	for ; i < len(s.kvs) && keyspace.InRange(s.kvs[i].Key, key, end) && (limit == 0 || int64(len(kvs)) < limit); i++ {
		kvs = append(kvs, s.kvs[i])
	}
	return kvs
}

// descGot renders the keys a response returned.
func (r Rule) descGot(kvs []history.KV) string {
	w := make([]KeyValue, len(kvs))
	for i, kv := range kvs {
		w[i] = KeyValue{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision}
	}
	return r.descWant(w)
}

// descWant renders keys the store holds; without revisions, values only.
func (r Rule) descWant(kvs []KeyValue) string {
	if len(kvs) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, min(len(kvs), 4))
	for i, kv := range kvs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("... (%d keys)", len(kvs)))
			break
		}
		if r == NoRevisions {
			parts = append(parts, fmt.Sprintf("%s=%q", kv.Key, kv.Value))
		} else {
			parts = append(parts, fmt.Sprintf("%s=%q@%d", kv.Key, kv.Value, kv.ModRevision))
		}
	}
	return strings.Join(parts, ",")
}

// Describe renders an operation and its response for people: violations and
// the porcupine visualisation.
func Describe(op *history.Operation, resp *history.Response) string {
	return Strict.Describe(op, resp)
}

// Describe renders an operation and its response as the rule judges it:
// without revisions under NoRevisions.
func (r Rule) Describe(op *history.Operation, resp *history.Response) string {
	var b strings.Builder
	switch op.Kind {
	case history.Get:
		fmt.Fprintf(&b, "get(%s)", op.Key)
	case history.Range:
		fmt.Fprintf(&b, "range(%s, %q", op.Key, op.End)
		if op.Limit > 0 {
			fmt.Fprintf(&b, ", limit %d", op.Limit)
		}
		b.WriteString(")")
	case history.Put:
		fmt.Fprintf(&b, "put(%s, %q", op.Key, op.Value)
		if op.Lease != 0 {
			fmt.Fprintf(&b, ", lease %x", op.Lease)
		}
		b.WriteString(")")
	case history.Delete:
		fmt.Fprintf(&b, "delete(%s)", op.Key)
	case history.Txn:
		if op.Then == history.Delete {
			fmt.Fprintf(&b, "txn(if %s then delete)", r.compareText(op))
		} else {
			fmt.Fprintf(&b, "txn(if %s then put %q)", r.compareText(op), op.Value)
		}
	case history.LeaseGrant:
		fmt.Fprintf(&b, "lease-grant(ttl %d)", op.TTL)
	case history.LeaseRevoke:
		fmt.Fprintf(&b, "lease-revoke(%x)", op.Lease)
	case history.LeaseKeepAlive:
		fmt.Fprintf(&b, "lease-keepalive(%x)", op.Lease)
	default:
		b.WriteString(string(op.Kind))
	}
	if resp == nil {
		b.WriteString(" -> unknown")
		return b.String()
	}
	b.WriteString(" -> ")
	switch op.Kind {
	case history.Get, history.Range:
		b.WriteString(r.descGot(resp.KVs))
	case history.Delete:
		fmt.Fprintf(&b, "deleted %d", resp.Deleted)
	case history.Txn:
		switch {
		case resp.Succeeded && op.Then == history.Delete:
			fmt.Fprintf(&b, "succeeded, deleted %d", resp.Deleted)
		case resp.Succeeded:
			b.WriteString("succeeded")
		case !op.ElseReads():
			b.WriteString("failed")
		default:
			b.WriteString("failed, got " + r.descGot(resp.KVs))
		}
	case history.LeaseGrant:
		fmt.Fprintf(&b, "lease %x", resp.LeaseID)
	default:
		b.WriteString("ok")
	}
	if r != NoRevisions {
		fmt.Fprintf(&b, " @rev %d", resp.Revision)
	}
	return b.String()
}

// String renders the state compactly for the visualisation.
func (s State) String() string { return Strict.DescribeState(s) }

// DescribeState renders s compactly, without revisions under NoRevisions.
func (r Rule) DescribeState(s State) string {
	var b strings.Builder
	if r != NoRevisions {
		fmt.Fprintf(&b, "rev %d ", s.Revision)
	}
	b.WriteString("{")
	for i, kv := range s.kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 20 {
			fmt.Fprintf(&b, "... %d keys", len(s.kvs))
			break
		}
		if r == NoRevisions {
			fmt.Fprintf(&b, "%s=%q", kv.Key, kv.Value)
		} else {
			fmt.Fprintf(&b, "%s=%q@%d", kv.Key, kv.Value, kv.ModRevision)
		}
		if kv.Lease != 0 {
			fmt.Fprintf(&b, "/lease %x", kv.Lease)
		}
	}
	b.WriteString("}")
	if len(s.leases) > 0 {
		fmt.Fprintf(&b, " leases %x", s.leases)
	}
	return b.String()
}
