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

// This file is the value-only model, for histories that carry no revisions
// (history.Meta.NoRevisions: a Jepsen log, a client log that kept only
// values). It is the same store as the revision model, keys, values and
// leases, with every revision left out: a response is judged by the keys
// and values it returned, whether a txn's compare held and whether a
// delete removed anything. What only revisions can show (a write applied
// twice, a store that went back to an older revision holding the same
// values) is out of its reach, which the check's summary says.

// ValueKV is one live key of a ValueState.
type ValueKV struct {
	Key, Value string
	Lease      int64
}

// ValueState is the store without revisions. States are immutable; the zero
// value is the empty store.
type ValueState struct {
	kvs    []ValueKV // sorted by Key
	leases []int64   // sorted
	hash   uint64    // XOR of the hashes of kvs and leases
}

// ValueStateOf returns the store holding kvs (leases they name are
// granted), as a baseline read showed it.
func ValueStateOf(kvs []history.KV) ValueState {
	var s ValueState
	for _, kv := range kvs {
		s = s.put(ValueKV{Key: kv.Key, Value: kv.Value, Lease: kv.Lease})
		if kv.Lease != 0 {
			s = s.grant(kv.Lease)
		}
	}
	return s
}

func hashValueKV(kv ValueKV) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(kv.Key)
	h.WriteByte(0)
	h.WriteString(kv.Value)
	var b [8]byte
	putInt(b[:], kv.Lease)
	h.Write(b[:])
	return h.Sum64()
}

// Hash returns a hash consistent with Equal.
func (s ValueState) Hash() uint64 { return s.hash }

// Equal reports whether two states hold the same keys, values and leases.
func (s ValueState) Equal(o ValueState) bool {
	if s.hash != o.hash || len(s.kvs) != len(o.kvs) || len(s.leases) != len(o.leases) {
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
func (s ValueState) Get(k string) (ValueKV, bool) {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= k })
	if i < len(s.kvs) && s.kvs[i].Key == k {
		return s.kvs[i], true
	}
	return ValueKV{}, false
}

// HasLease reports whether lease id is granted and not revoked.
func (s ValueState) HasLease(id int64) bool {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	return i < len(s.leases) && s.leases[i] == id
}

func (s ValueState) put(kv ValueKV) ValueState {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= kv.Key })
	var n []ValueKV
	if i < len(s.kvs) && s.kvs[i].Key == kv.Key {
		n = append([]ValueKV(nil), s.kvs...)
		s.hash ^= hashValueKV(s.kvs[i])
		n[i] = kv
	} else {
		n = make([]ValueKV, 0, len(s.kvs)+1)
		n = append(append(append(n, s.kvs[:i]...), kv), s.kvs[i:]...)
	}
	s.hash ^= hashValueKV(kv)
	s.kvs = n
	return s
}

func (s ValueState) del(k string) ValueState {
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= k })
	if i == len(s.kvs) || s.kvs[i].Key != k {
		return s
	}
	s.hash ^= hashValueKV(s.kvs[i])
	n := make([]ValueKV, 0, len(s.kvs)-1)
	s.kvs = append(append(n, s.kvs[:i]...), s.kvs[i+1:]...)
	return s
}

func (s ValueState) grant(id int64) ValueState {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	if i < len(s.leases) && s.leases[i] == id {
		return s
	}
	n := make([]int64, 0, len(s.leases)+1)
	s.leases = append(append(append(n, s.leases[:i]...), id), s.leases[i:]...)
	s.hash ^= hashInt('l', id)
	return s
}

// revoke removes lease id and every key attached to it.
func (s ValueState) revoke(id int64) ValueState {
	i := sort.Search(len(s.leases), func(i int) bool { return s.leases[i] >= id })
	if i == len(s.leases) || s.leases[i] != id {
		return s
	}
	n := make([]int64, 0, len(s.leases)-1)
	s.leases = append(append(n, s.leases[:i]...), s.leases[i+1:]...)
	s.hash ^= hashInt('l', id)
	kvs := make([]ValueKV, 0, len(s.kvs))
	for _, kv := range s.kvs {
		if kv.Lease == id {
			s.hash ^= hashValueKV(kv)
			continue
		}
		kvs = append(kvs, kv)
	}
	s.kvs = kvs
	return s
}

// rangeOf returns the live keys in op's range, at most limit of them.
func (s ValueState) rangeOf(key, end string, limit int64) []ValueKV {
	var out []ValueKV
	i := sort.Search(len(s.kvs), func(i int) bool { return s.kvs[i].Key >= key })
	for ; i < len(s.kvs) && valueInRange(s.kvs[i].Key, key, end); i++ {
		if limit > 0 && int64(len(out)) == limit {
			break
		}
		out = append(out, s.kvs[i])
	}
	return out
}

// valueInRange is etcd's range rule: end "" is key alone, "\x00" every key
// from key on.
func valueInRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

// ValueCompare evaluates a txn's compare without revisions: the value
// compare, or (expect_mod_rev 0) that the key is absent. A compare on a
// non-zero mod revision cannot be evaluated; history.Read refuses it in a
// history without revisions.
func ValueCompare(s ValueState, op *history.Operation) bool {
	cur, exists := s.Get(op.Key)
	if op.ExpectValue != nil {
		// etcd: a value compare on a missing key fails.
		return exists && cur.Value == *op.ExpectValue
	}
	return !exists && op.ExpectModRev == 0
}

// ValueStep applies op to s, judging values only. resp is nil for an
// unknown outcome, which any response matches. It reports whether the
// response is possible in s, the state after op, and why not when it is not.
func ValueStep(s ValueState, op *history.Operation, resp *history.Response) (bool, ValueState, string) {
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
		if why := sameValues(s.rangeOf(op.Key, end, op.Limit), resp.KVs); why != "" {
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
		return true, s.put(ValueKV{Key: op.Key, Value: op.Value, Lease: op.Lease}), ""
	case history.Delete:
		_, exists := s.Get(op.Key)
		if !unknown && (resp.Deleted > 0) != exists {
			return false, s, fmt.Sprintf("delete removed %d keys, key exists=%v", resp.Deleted, exists)
		}
		return true, s.del(op.Key), ""
	case history.Txn:
		succeed := ValueCompare(s, op)
		if succeed && op.Lease != 0 && !s.HasLease(op.Lease) {
			if unknown {
				return true, s, ""
			}
			return false, s, fmt.Sprintf("txn succeeded with lease %x, which does not exist", op.Lease)
		}
		if !unknown && resp.Succeeded != succeed {
			return false, s, fmt.Sprintf("txn succeeded=%v but %s", resp.Succeeded, describeCompare(s, op))
		}
		if !succeed {
			if !unknown && op.ElseReads() {
				// The else branch read the key (a revision txn's always,
				// a value txn's with else_get).
				cur, exists := s.Get(op.Key)
				var want []ValueKV
				if exists {
					want = []ValueKV{cur}
				}
				if why := sameValues(want, resp.KVs); why != "" {
					return false, s, why
				}
			}
			return true, s, ""
		}
		return true, s.put(ValueKV{Key: op.Key, Value: op.Value, Lease: op.Lease}), ""
	case history.LeaseGrant:
		id := op.Lease
		if !unknown {
			id = resp.LeaseID
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
		return true, s.revoke(op.Lease), ""
	case history.LeaseKeepAlive:
		if unknown || s.HasLease(op.Lease) {
			return true, s, ""
		}
		return false, s, fmt.Sprintf("keep-alive of lease %x succeeded, but it does not exist", op.Lease)
	}
	return false, s, fmt.Sprintf("unsupported operation kind %q", op.Kind)
}

func describeCompare(s ValueState, op *history.Operation) string {
	cur, exists := s.Get(op.Key)
	held := "the key is absent"
	if exists {
		held = fmt.Sprintf("the key holds %q", cur.Value)
	}
	if op.ExpectValue != nil {
		return fmt.Sprintf("%s (compare against %q)", held, *op.ExpectValue)
	}
	return held + " (compare: absent)"
}

func sameValues(want []ValueKV, got []history.KV) string {
	same := len(want) == len(got)
	for i := 0; same && i < len(want); i++ {
		same = want[i].Key == got[i].Key && want[i].Value == got[i].Value
	}
	if same {
		return ""
	}
	return fmt.Sprintf("returned %s, store holds %s", describeValues(got), describeValueKVs(want))
}

func describeValues(kvs []history.KV) string {
	v := make([]ValueKV, len(kvs))
	for i, kv := range kvs {
		v[i] = ValueKV{Key: kv.Key, Value: kv.Value}
	}
	return describeValueKVs(v)
}

func describeValueKVs(kvs []ValueKV) string {
	if len(kvs) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, min(len(kvs), 4))
	for i, kv := range kvs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("... (%d keys)", len(kvs)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s=%q", kv.Key, kv.Value))
	}
	return strings.Join(parts, ",")
}

// String renders the state for the visualisation and violations.
func (s ValueState) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, kv := range s.kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 20 {
			fmt.Fprintf(&b, "... %d keys", len(s.kvs))
			break
		}
		fmt.Fprintf(&b, "%s=%q", kv.Key, kv.Value)
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

// DescribeValue renders an operation and its response without revisions.
func DescribeValue(op *history.Operation, resp *history.Response) string {
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
		if op.ExpectValue != nil {
			fmt.Fprintf(&b, "txn(if value(%s)==%q then put %q)", op.Key, *op.ExpectValue, op.Value)
		} else {
			fmt.Fprintf(&b, "txn(if %s absent then put %q)", op.Key, op.Value)
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
		b.WriteString(describeValues(resp.KVs))
	case history.Delete:
		fmt.Fprintf(&b, "deleted %d", resp.Deleted)
	case history.Txn:
		if resp.Succeeded {
			b.WriteString("succeeded")
		} else if !op.ElseReads() {
			b.WriteString("failed")
		} else {
			b.WriteString("failed, got " + describeValues(resp.KVs))
		}
	case history.LeaseGrant:
		fmt.Fprintf(&b, "lease %x", resp.LeaseID)
	default:
		b.WriteString("ok")
	}
	return b.String()
}

// ValuePorcupine returns the value-only model in porcupine's terms, starting
// from init and partitioned by partition (nil: one partition). Inputs are
// *history.Operation and outputs *history.Response (nil: unknown outcome).
func ValuePorcupine(init ValueState, partition func([]porcupine.Operation) [][]porcupine.Operation) porcupine.Model {
	return porcupine.Model{
		Partition: partition,
		Init:      func() interface{} { return init },
		StepContext: func(_ context.Context, state, input, output interface{}) (bool, interface{}) {
			ok, n, _ := ValueStep(state.(ValueState), input.(*history.Operation), output.(*history.Response))
			return ok, n
		},
		Equal: func(a, b interface{}) bool { return a.(ValueState).Equal(b.(ValueState)) },
		Hash:  func(s interface{}) uint64 { return s.(ValueState).Hash() },
		DescribeOperation: func(input, output interface{}) string {
			return DescribeValue(input.(*history.Operation), output.(*history.Response))
		},
		DescribeState: func(state interface{}) string { return state.(ValueState).String() },
	}
}

// KVs returns the live keys in key order; callers must not modify them.
func (s ValueState) KVs() []ValueKV { return s.kvs }
