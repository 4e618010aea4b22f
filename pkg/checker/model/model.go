// Package model is a pure, deterministic sequential specification of etcd's
// key-value store and leases, in the style of etcd's tests/robustness/model.
// The linearizability checker feeds it to porcupine, and the fast path uses
// the same step function so that both judge a history by one definition.
//
// The model checks values and revisions: every response's header revision
// must equal the store revision after the operation, and every returned key
// must carry the mod revision the model holds for it. Create revisions and
// versions are derived data and are not checked: a unique value at a checked
// mod revision already pins the write that produced it.
//
// States are immutable values. A step that changes nothing returns the same
// backing slices; a step that writes copies only the small sorted key slice,
// and the state's hash is maintained incrementally so porcupine's cache
// lookups cost O(1).
package model

import (
	"context"
	"fmt"
	"hash/maphash"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
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

// Hash returns a hash consistent with Equal.
func (s State) Hash() uint64 { return s.kvHash ^ s.lsHash ^ hashInt('r', s.Revision) }

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

// revoke removes the lease and every key attached to it, bumping the revision
// once if any key was deleted, as etcd does.
func (s State) revoke(id int64) State {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	if i == len(s.leases) || s.leases[i] != id {
		return s
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
		return s
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
	s.Revision++
	return s
}

// RangeEnd interprets an operation's range: End "" is the single key Key,
// End "\x00" is every key >= Key.
func inRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

// Range returns the live keys in [key, end) in key order, at most limit of
// them (0: no limit), and how many there are in total.
func (s State) Range(key, end string, limit int64) (kvs []KeyValue, count int64) {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= key })
	for ; i < len(s.kvs) && inRange(s.kvs[i].Key, key, end); i++ {
		if limit == 0 || int64(len(kvs)) < limit {
			kvs = append(kvs, s.kvs[i])
		}
		count++
	}
	return kvs, count
}

// Included reports whether op takes part in the linearizability check.
// Failed operations never took effect; reads that did not answer carry no
// information; serializable reads promise no linearizability and are left out
// unless includeSerializable is set.
func Included(op *history.Operation, includeSerializable bool) bool {
	switch op.Outcome {
	case history.Fail:
		return false
	case history.Unknown:
		return op.Kind.IsWrite()
	}
	if op.Resp == nil {
		return false
	}
	if op.Serializable && !includeSerializable && (op.Kind == history.Get || op.Kind == history.Range) {
		return false
	}
	return true
}

// Step applies op to s. resp is the response for an operation with outcome
// OK, or nil when the outcome is unknown, in which case any response is
// accepted. It reports whether the response is one etcd could have given in
// state s, and the state after op.
func Step(s State, op *history.Operation, resp *history.Response) (bool, State) {
	ok, n, _ := step(s, op, resp)
	return ok, n
}

// Explain is Step that also says why a response is impossible in s.
func Explain(s State, op *history.Operation, resp *history.Response) (bool, State, string) {
	return step(s, op, resp)
}

func step(s State, op *history.Operation, resp *history.Response) (bool, State, string) {
	unknown := resp == nil
	switch op.Kind {
	case history.Get, history.Range:
		if unknown {
			return true, s, ""
		}
		end := op.End
		if op.Kind == history.Get {
			end = ""
		}
		kvs, _ := s.Range(op.Key, end, op.Limit)
		if resp.Revision != s.Revision {
			return false, s, fmt.Sprintf("header revision %d, store is at %d", resp.Revision, s.Revision)
		}
		if why := sameKVs(kvs, resp.KVs); why != "" {
			return false, s, why
		}
		return true, s, ""
	case history.Put:
		if op.Lease != 0 && !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("put succeeded with lease %x, which does not exist", op.Lease)
		}
		n := s.put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: s.Revision + 1, Lease: op.Lease})
		n.Revision++
		if !unknown && resp.Revision != n.Revision {
			return false, s, fmt.Sprintf("put returned revision %d, expected %d", resp.Revision, n.Revision)
		}
		return true, n, ""
	case history.Delete:
		_, exists := s.Get(op.Key)
		if unknown {
			if !exists {
				return true, s, ""
			}
			n := s.del(op.Key)
			n.Revision++
			return true, n, ""
		}
		if (resp.Deleted > 0) != exists {
			return false, s, fmt.Sprintf("delete removed %d keys, key exists=%v", resp.Deleted, exists)
		}
		n := s
		if exists {
			n = s.del(op.Key)
			n.Revision++
		}
		if resp.Revision != n.Revision {
			return false, s, fmt.Sprintf("delete returned revision %d, expected %d", resp.Revision, n.Revision)
		}
		return true, n, ""
	case history.Txn:
		cur, exists := s.Get(op.Key)
		var mod int64
		if exists {
			mod = cur.ModRevision
		}
		succeed := mod == op.ExpectModRev
		if succeed && op.Lease != 0 && !s.HasLease(op.Lease) {
			// etcd rejects the whole txn when the lease is missing.
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("txn succeeded with lease %x, which does not exist", op.Lease)
		}
		if unknown {
			if !succeed {
				return true, s, ""
			}
			n := s.put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: s.Revision + 1, Lease: op.Lease})
			n.Revision++
			return true, n, ""
		}
		if resp.Succeeded != succeed {
			return false, s, fmt.Sprintf("txn succeeded=%v but key's mod revision is %d (compare against %d)", resp.Succeeded, mod, op.ExpectModRev)
		}
		if !succeed {
			if resp.Revision != s.Revision {
				return false, s, fmt.Sprintf("txn header revision %d, store is at %d", resp.Revision, s.Revision)
			}
			var want []KeyValue
			if exists {
				want = []KeyValue{cur}
			}
			if why := sameKVs(want, resp.KVs); why != "" {
				return false, s, why
			}
			return true, s, ""
		}
		n := s.put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: s.Revision + 1, Lease: op.Lease})
		n.Revision++
		if resp.Revision != n.Revision {
			return false, s, fmt.Sprintf("txn returned revision %d, expected %d", resp.Revision, n.Revision)
		}
		return true, n, ""
	case history.LeaseGrant:
		id := op.Lease
		if !unknown {
			id = resp.LeaseID
			if resp.Revision != 0 && resp.Revision != s.Revision {
				return false, s, fmt.Sprintf("lease grant header revision %d, store is at %d", resp.Revision, s.Revision)
			}
		}
		if id == 0 {
			return true, s, ""
		}
		return true, s.grant(id), ""
	case history.LeaseRevoke:
		if !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("revoke of lease %x succeeded, but it does not exist", op.Lease)
		}
		n := s.revoke(op.Lease)
		if !unknown && resp.Revision != n.Revision {
			return false, s, fmt.Sprintf("revoke returned revision %d, expected %d", resp.Revision, n.Revision)
		}
		return true, n, ""
	case history.LeaseKeepAlive:
		if unknown || s.HasLease(op.Lease) {
			return true, s, ""
		}
		return false, s, fmt.Sprintf("keep-alive of lease %x succeeded, but it does not exist", op.Lease)
	}
	return false, s, fmt.Sprintf("unsupported operation kind %q", op.Kind)
}

func sameKVs(want []KeyValue, got []history.KV) string {
	if len(want) != len(got) {
		return fmt.Sprintf("returned %s, store holds %s", descGot(got), descWant(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Key != g.Key || w.Value != g.Value || w.ModRevision != g.ModRevision {
			return fmt.Sprintf("returned %s, store holds %s", descGot(got), descWant(want))
		}
	}
	return ""
}

func descGot(kvs []history.KV) string {
	if len(kvs) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, len(kvs))
	for i, kv := range kvs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("... (%d keys)", len(kvs)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s=%q@%d", kv.Key, kv.Value, kv.ModRevision))
	}
	return strings.Join(parts, ",")
}

func descWant(kvs []KeyValue) string {
	if len(kvs) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, len(kvs))
	for i, kv := range kvs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("... (%d keys)", len(kvs)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s=%q@%d", kv.Key, kv.Value, kv.ModRevision))
	}
	return strings.Join(parts, ",")
}

// Describe renders an operation and its response for people: violations and
// the porcupine visualisation.
func Describe(op *history.Operation, resp *history.Response) string {
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
		fmt.Fprintf(&b, "txn(if mod(%s)==%d then put %q)", op.Key, op.ExpectModRev, op.Value)
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
		b.WriteString(descGot(resp.KVs))
	case history.Delete:
		fmt.Fprintf(&b, "deleted %d", resp.Deleted)
	case history.Txn:
		if resp.Succeeded {
			b.WriteString("succeeded")
		} else {
			b.WriteString("failed, got " + descGot(resp.KVs))
		}
	case history.LeaseGrant:
		fmt.Fprintf(&b, "lease %x", resp.LeaseID)
	default:
		b.WriteString("ok")
	}
	fmt.Fprintf(&b, " @rev %d", resp.Revision)
	return b.String()
}

// Input is what porcupine carries for one operation; Output is its response,
// nil for an unknown outcome.
type Input = *history.Operation

// Porcupine returns the model in porcupine's terms. Inputs are
// *history.Operation and outputs *history.Response (nil: unknown outcome).
func Porcupine() porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return Init() },
		StepContext: func(_ context.Context, state, input, output interface{}) (bool, interface{}) {
			ok, n := Step(state.(State), input.(*history.Operation), output.(*history.Response))
			return ok, n
		},
		Equal: func(a, b interface{}) bool { return a.(State).Equal(b.(State)) },
		Hash:  func(s interface{}) uint64 { return s.(State).Hash() },
		DescribeOperation: func(input, output interface{}) string {
			return Describe(input.(*history.Operation), output.(*history.Response))
		},
		DescribeState: func(state interface{}) string { return state.(State).String() },
	}
}

// String renders the state compactly for the visualisation.
func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d {", s.Revision)
	for i, kv := range s.kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 20 {
			fmt.Fprintf(&b, "... %d keys", len(s.kvs))
			break
		}
		fmt.Fprintf(&b, "%s=%q@%d", kv.Key, kv.Value, kv.ModRevision)
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
