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

// Range returns the live keys in [key, end) in key order, at most limit of
// them (0: no limit), and how many there are in total.
func (s State) Range(key, end string, limit int64) (kvs []KeyValue, count int64) {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= key })
	for ; i < len(s.kvs) && keyspace.InRange(s.kvs[i].Key, key, end); i++ {
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

// StepRelaxed is Step in the relaxed-revision mode: writes the history does
// not record (to keys it never shows) may advance the store revision at any
// moment. The state's revision is then a lower bound: a response may carry
// any revision at or above it (above it for a write that changed the store),
// and the state moves up to the revision the response names. Values and mod
// revisions of the keys the history does show are checked as strictly as in
// Step, except that an unknown-outcome write's mod revision is not known
// until a read shows it (ModRevision 0 in the state until then).
func StepRelaxed(s State, op *history.Operation, resp *history.Response) (bool, State) {
	ok, n, _ := relaxedStep(s, op, resp)
	return ok, n
}

// ExplainRelaxed is StepRelaxed that also says why a response is impossible.
func ExplainRelaxed(s State, op *history.Operation, resp *history.Response) (bool, State, string) {
	return relaxedStep(s, op, resp)
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

// relaxedStep implements StepRelaxed.
func relaxedStep(s State, op *history.Operation, resp *history.Response) (bool, State, string) {
	unknown := resp == nil
	// atLeast checks a response revision against the lower bound and moves
	// the state up to it.
	atLeast := func(n State, min int64, what string) (bool, State, string) {
		if resp.Revision < min {
			return false, s, fmt.Sprintf("%s revision %d, store is already at %d", what, resp.Revision, min)
		}
		n.Revision = resp.Revision
		return true, n, ""
	}
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
		n, why := learnKVs(s, kvs, resp.KVs, resp.Revision)
		if why != "" {
			return false, s, why
		}
		return atLeast(n, s.Revision, "header")
	case history.Put:
		if op.Lease != 0 && !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("put succeeded with lease %x, which does not exist", op.Lease)
		}
		if unknown {
			n := s.put(KeyValue{Key: op.Key, Value: op.Value, Lease: op.Lease})
			n.Revision++
			return true, n, ""
		}
		n := s.put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: resp.Revision, Lease: op.Lease})
		return atLeast(n, s.Revision+1, "put returned")
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
		if !exists {
			return atLeast(s, s.Revision, "delete returned")
		}
		return atLeast(s.del(op.Key), s.Revision+1, "delete returned")
	case history.Txn:
		cur, exists := s.Get(op.Key)
		var mod int64
		if exists {
			mod = cur.ModRevision
		}
		// A key whose mod revision is not known yet (0 while present)
		// matches any non-zero compare.
		succeed := mod == op.ExpectModRev || exists && mod == 0 && op.ExpectModRev != 0
		if !unknown && exists && mod == 0 && op.ExpectModRev != 0 {
			succeed = resp.Succeeded
		}
		if succeed && op.Lease != 0 && !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("txn succeeded with lease %x, which does not exist", op.Lease)
		}
		if unknown {
			if !succeed || mod == 0 && exists {
				// Not knowing the mod revision, assume the compare failed.
				return true, s, ""
			}
			n := s.put(KeyValue{Key: op.Key, Value: op.Value, Lease: op.Lease})
			n.Revision++
			return true, n, ""
		}
		if resp.Succeeded != succeed {
			return false, s, fmt.Sprintf("txn succeeded=%v but key's mod revision is %d (compare against %d)", resp.Succeeded, mod, op.ExpectModRev)
		}
		if !succeed {
			var want []KeyValue
			if exists {
				want = []KeyValue{cur}
			}
			n, why := learnKVs(s, want, resp.KVs, resp.Revision)
			if why != "" {
				return false, s, why
			}
			if len(resp.KVs) == 1 && resp.KVs[0].ModRevision == op.ExpectModRev {
				return false, s, fmt.Sprintf("txn failed its compare, but returned mod revision %d, as expected", op.ExpectModRev)
			}
			return atLeast(n, s.Revision, "txn header")
		}
		n := s.put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: resp.Revision, Lease: op.Lease})
		return atLeast(n, s.Revision+1, "txn returned")
	case history.LeaseGrant:
		id := op.Lease
		if !unknown {
			id = resp.LeaseID
		}
		n := s
		if id != 0 {
			n = s.grant(id)
		}
		if unknown || resp.Revision == 0 {
			return true, n, ""
		}
		return atLeast(n, s.Revision, "lease grant header")
	case history.LeaseRevoke:
		if !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("revoke of lease %x succeeded, but it does not exist", op.Lease)
		}
		n := s.revoke(op.Lease)
		if unknown {
			return true, n, ""
		}
		return atLeast(n, n.Revision, "revoke returned")
	case history.LeaseKeepAlive:
		return step(s, op, resp)
	}
	return false, s, fmt.Sprintf("unsupported operation kind %q", op.Kind)
}

// learnKVs compares a read against the keys the model holds, as sameKVs
// does, but a model key with mod revision 0 (written by an unknown-outcome
// write in relaxed mode) matches any mod revision in (0, header]; the
// returned state has learned it.
func learnKVs(s State, want []KeyValue, got []history.KV, header int64) (State, string) {
	if len(want) != len(got) {
		return s, fmt.Sprintf("returned %s, store holds %s", descGot(got), descWant(want))
	}
	n := s
	for i := range want {
		w, g := want[i], got[i]
		if w.Key != g.Key || w.Value != g.Value {
			return s, fmt.Sprintf("returned %s, store holds %s", descGot(got), descWant(want))
		}
		switch {
		case w.ModRevision == g.ModRevision:
		case w.ModRevision == 0 && g.ModRevision > 0 && g.ModRevision <= header:
			w.ModRevision = g.ModRevision
			n = n.put(w)
		default:
			return s, fmt.Sprintf("returned %s, store holds %s", descGot(got), descWant(want))
		}
	}
	return n, ""
}

// Input is what porcupine carries for one operation; Output is its response,
// nil for an unknown outcome.
type Input = *history.Operation

// Porcupine returns the model in porcupine's terms. Inputs are
// *history.Operation and outputs *history.Response (nil: unknown outcome).
func Porcupine() porcupine.Model { return PorcupineWith(Init(), false) }

// PorcupineWith is Porcupine starting from init, in the relaxed-revision
// mode of StepRelaxed when relaxed is set.
func PorcupineWith(init State, relaxed bool) porcupine.Model {
	stepFn := Step
	if relaxed {
		stepFn = StepRelaxed
	}
	return porcupine.Model{
		Init: func() interface{} { return init },
		StepContext: func(_ context.Context, state, input, output interface{}) (bool, interface{}) {
			ok, n := stepFn(state.(State), input.(*history.Operation), output.(*history.Response))
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
