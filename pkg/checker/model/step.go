package model

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Store is what a step reads and changes. *State implements it for
// porcupine's search and the certificate check; the linearizability fast
// path implements it over its per-key replay, so that both apply writes by
// this package's one definition (Apply).
type Store interface {
	Rev() int64
	SetRev(rev int64)
	Get(key string) (KeyValue, bool)
	// Range returns the live keys in [key, end) in key order (end ""
	// is the key alone, "\x00" every key from it), at most limit (0: all).
	Range(key, end string, limit int64) []KeyValue
	Put(kv KeyValue)
	Delete(key string)
	HasLease(id int64) bool
	Grant(id int64)
	// Revoke removes the lease and every key attached to it, and reports
	// whether any key went.
	Revoke(id int64) bool
}

// Rule says which writes to the store a history may leave out.
type Rule uint8

const (
	// Strict: every write is in the history, so every revision belongs to
	// a recorded write and every response's revision is exact.
	Strict Rule = iota
	// ForeignWrites: writes the history does not record, to keys it never
	// shows, may advance the store revision at any moment (etcd's
	// concurrency.Mutex and the client's session keys do this). The
	// store's revision is then a lower bound: a response may carry any
	// revision at or above it (above it for a write that changed the
	// store), and the store moves up to the revision the response names.
	// Values and mod revisions of the keys the history shows stay as
	// strict, except that an unknown-outcome write's mod revision is not
	// known until a read shows it (ModRevision 0 until then).
	ForeignWrites
	// NoRevisions: the history carries no revisions (history.Meta.
	// NoRevisions: a Jepsen log, a client log that kept only values), so
	// responses are judged by their keys and values, whether a txn's
	// compare held and whether a delete removed anything. The store's
	// revision stays where it started and every mod revision is 0, so two
	// states are equal exactly when they hold the same keys, values and
	// leases. What only revisions can show (a write applied twice, a store
	// that went back to an older state holding the same values) is out of
	// reach.
	NoRevisions
)

// Step applies op to s under rule. resp is the response for an operation
// with outcome OK, or nil when the outcome is unknown, in which case any
// response is accepted. It reports whether the response is one etcd could
// have given in state s, and the state after op; s itself is unchanged.
func Step(s State, op *history.Operation, resp *history.Response, rule Rule) (bool, State) {
	ok, n, _ := Explain(s, op, resp, rule)
	return ok, n
}

// Explain is Step that also says why a response is impossible in s.
func Explain(s State, op *history.Operation, resp *history.Response, rule Rule) (bool, State, string) {
	n := s
	if why := Apply(&n, op, resp, rule); why != "" {
		return false, s, why
	}
	return true, n, ""
}

// Apply is the step function: it changes st as op did and returns "" when
// resp is a response etcd could have given in st, else why not. resp nil
// means the outcome is unknown: op takes effect when it can, any response
// is accepted, and an op that cannot take effect changes nothing.
//
// A rejected write still changes st as resp says it did (the txn's put, the
// delete, the revoke): a replay that goes on past a contradiction to
// collect more (the fast path) then sees the store the response claims.
// Step discards the changed copy instead.
func Apply(st Store, op *history.Operation, resp *history.Response, rule Rule) string {
	unknown := resp == nil
	switch op.Kind {
	case history.Get, history.Range:
		if unknown {
			return ""
		}
		end := op.End
		if op.Kind == history.Get {
			end = ""
		}
		return rule.read(st, st.Range(op.Key, end, op.Limit), resp, "header")
	case history.Put:
		if op.Lease != 0 && !st.HasLease(op.Lease) {
			if unknown {
				return ""
			}
			return first(fmt.Sprintf("put succeeded with lease %x, which does not exist", op.Lease), rule.write(st, op, resp, "put returned"))
		}
		return rule.write(st, op, resp, "put returned")
	case history.Delete:
		_, exists := st.Get(op.Key)
		if unknown {
			if !exists {
				return ""
			}
			st.Delete(op.Key)
			return rule.advance(st, st.Rev()+1, nil, "")
		}
		if (resp.Deleted > 0) != exists {
			why := fmt.Sprintf("delete removed %d keys, but the key did not exist", resp.Deleted)
			if exists {
				why = "delete removed nothing, but the key existed"
			}
			return first(why, rule.advance(st, st.Rev()+boolInt(resp.Deleted > 0), resp, "delete returned"))
		}
		if !exists {
			return rule.advance(st, st.Rev(), resp, "delete returned")
		}
		st.Delete(op.Key)
		return rule.advance(st, st.Rev()+1, resp, "delete returned")
	case history.Txn:
		cur, exists := st.Get(op.Key)
		succeed, known := TxnCompare(cur, exists, op)
		if !known {
			if unknown {
				return "" // not knowing the key's mod revision, assume the compare failed
			}
			succeed = resp.Succeeded
		}
		if unknown {
			if !succeed {
				return ""
			}
			return rule.then(st, op, nil, exists)
		}
		if resp.Succeeded != succeed {
			why := fmt.Sprintf("txn's compare %s %s, but %s", rule.compareText(op), outcomeText(resp.Succeeded), rule.keyText(cur, exists))
			if resp.Succeeded {
				return first(why, rule.then(st, op, resp, exists))
			}
			return first(why, rule.advance(st, st.Rev(), resp, "txn header"))
		}
		if succeed {
			return rule.then(st, op, resp, exists)
		}
		if !op.ElseReads() {
			// A value-compare txn without else_get has no else branch:
			// it read nothing, and its empty KVs say nothing of the key.
			return rule.advance(st, st.Rev(), resp, "txn header")
		}
		var want []KeyValue
		if exists {
			want = []KeyValue{cur}
		}
		if why := rule.read(st, want, resp, "txn header"); why != "" {
			return why
		}
		if len(resp.KVs) == 1 {
			g := resp.KVs[0]
			if ok, _ := TxnCompare(KeyValue{Key: g.Key, Value: g.Value, ModRevision: g.ModRevision}, true, op); ok {
				return fmt.Sprintf("txn's compare %s failed, but it returned %s, which satisfies it", rule.compareText(op), rule.descGot(resp.KVs))
			}
		}
		return ""
	case history.LeaseGrant:
		id := op.Lease
		if !unknown {
			id = resp.LeaseID
		}
		if id != 0 {
			st.Grant(id)
		}
		if unknown || resp.Revision == 0 {
			return ""
		}
		return rule.advance(st, st.Rev(), resp, "lease grant header")
	case history.LeaseRevoke:
		if !st.HasLease(op.Lease) {
			if unknown {
				return ""
			}
			return fmt.Sprintf("revoke of lease %x succeeded, but it does not exist", op.Lease)
		}
		rev := st.Rev()
		if st.Revoke(op.Lease) {
			rev++
		}
		return rule.advance(st, rev, resp, "revoke returned")
	case history.LeaseKeepAlive:
		if unknown || st.HasLease(op.Lease) {
			return ""
		}
		return fmt.Sprintf("keep-alive of lease %x succeeded, but it does not exist", op.Lease)
	}
	return fmt.Sprintf("unsupported operation kind %q", op.Kind)
}

// then runs a txn's then branch on its key, which exists or not: the put
// of op's value, or the delete of the key (op.Then), checked against resp
// (nil: unknown outcome, the branch takes effect if it can).
func (r Rule) then(st Store, op *history.Operation, resp *history.Response, exists bool) string {
	if op.Then == history.Delete {
		if resp != nil && (resp.Deleted > 0) != exists {
			why := fmt.Sprintf("txn's delete removed %d keys, but the key did not exist", resp.Deleted)
			if exists {
				why = "txn's delete removed nothing, but the key existed"
			}
			if resp.Deleted > 0 {
				st.Delete(op.Key)
			}
			return first(why, r.advance(st, st.Rev()+boolInt(resp.Deleted > 0), resp, "txn returned"))
		}
		if !exists {
			// etcd spends no revision on a txn that changed nothing.
			return r.advance(st, st.Rev(), resp, "txn returned")
		}
		st.Delete(op.Key)
		return r.advance(st, st.Rev()+1, resp, "txn returned")
	}
	if op.Lease != 0 && !st.HasLease(op.Lease) {
		if resp == nil {
			return "" // etcd rejects the whole txn when the lease is missing
		}
		return first(fmt.Sprintf("txn succeeded with lease %x, which does not exist", op.Lease), r.write(st, op, resp, "txn returned"))
	}
	return r.write(st, op, resp, "txn returned")
}

// TxnCompare evaluates a txn's compare against its key as the store holds
// it (exists false: absent). known is false when the store cannot say: a
// key an unknown-outcome write made under ForeignWrites, whose mod revision
// no read has shown yet, compared against a revision other than 0.
func TxnCompare(cur KeyValue, exists bool, op *history.Operation) (succeed, known bool) {
	if op.ExpectValue != nil {
		// etcd fails a value compare on a missing key.
		return exists && cur.Value == *op.ExpectValue, true
	}
	if !exists {
		return op.ExpectModRev == 0, true
	}
	if cur.ModRevision == 0 {
		// It exists, so its real mod revision is not 0.
		return false, op.ExpectModRev == 0
	}
	return cur.ModRevision == op.ExpectModRev, true
}

func (r Rule) compareText(op *history.Operation) string {
	switch {
	case op.ExpectValue != nil:
		return fmt.Sprintf("value(%s)==%q", op.Key, *op.ExpectValue)
	case r == NoRevisions:
		return op.Key + " absent"
	}
	return fmt.Sprintf("mod(%s)==%d", op.Key, op.ExpectModRev)
}

func outcomeText(succeeded bool) string {
	if succeeded {
		return "succeeded"
	}
	return "failed"
}

func (r Rule) keyText(kv KeyValue, exists bool) string {
	switch {
	case !exists:
		return "the key did not exist"
	case r == NoRevisions:
		return fmt.Sprintf("the key held %q", kv.Value)
	}
	return fmt.Sprintf("the key's mod revision was %d", kv.ModRevision)
}

// write stores op's value under its key, as a put or a txn that succeeded,
// and moves the revision on.
func (r Rule) write(st Store, op *history.Operation, resp *history.Response, what string) string {
	mod := st.Rev() + 1
	switch {
	case r == NoRevisions:
		mod = 0
	case resp != nil && r == ForeignWrites:
		mod = resp.Revision
	case resp == nil && r == ForeignWrites:
		mod = 0 // unknown until a read shows it
	}
	st.Put(KeyValue{Key: op.Key, Value: op.Value, ModRevision: mod, Lease: op.Lease})
	return r.advance(st, st.Rev()+1, resp, what)
}

// read compares the keys a response returned with want, the keys the store
// holds, and the response's revision with the store's. Under ForeignWrites
// a held key with mod revision 0 matches any mod revision in (0, header],
// and the store learns it; under NoRevisions only keys and values count.
func (r Rule) read(st Store, want []KeyValue, resp *history.Response, what string) string {
	got := resp.KVs
	mismatch := func() string { return fmt.Sprintf("returned %s, store holds %s", r.descGot(got), r.descWant(want)) }
	if len(want) != len(got) {
		return mismatch()
	}
	var learned []KeyValue
	for i := range want {
		w, g := want[i], got[i]
		switch {
		case w.Key != g.Key || w.Value != g.Value:
			return mismatch()
		case w.ModRevision == g.ModRevision || r == NoRevisions:
		case r == ForeignWrites && w.ModRevision == 0 && g.ModRevision > 0 && g.ModRevision <= resp.Revision:
			w.ModRevision = g.ModRevision
			learned = append(learned, w)
		default:
			return mismatch()
		}
	}
	if why := r.advance(st, st.Rev(), resp, what); why != "" {
		return why
	}
	for _, kv := range learned {
		st.Put(kv)
	}
	return ""
}

// advance moves the store to its revision after an operation that leaves
// it at rev (its revision before, plus one if the operation changed the
// store), checking the response's revision: equal to rev, or under
// ForeignWrites at least rev (the store then moves up to it). Under
// NoRevisions the store's revision never moves.
func (r Rule) advance(st Store, rev int64, resp *history.Response, what string) string {
	if r == NoRevisions {
		return ""
	}
	var why string
	if resp != nil {
		switch {
		case r == Strict && resp.Revision != rev:
			why = fmt.Sprintf("%s revision %d, expected %d", what, resp.Revision, rev)
		case resp.Revision < rev:
			why = fmt.Sprintf("%s revision %d, expected at least %d", what, resp.Revision, rev)
		case r == ForeignWrites:
			rev = resp.Revision
		}
	}
	st.SetRev(rev)
	return why
}

// first returns the first non-empty reason.
func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Included reports whether op takes part in the linearizability check.
// Failed operations never took effect; reads that did not answer carry no
// information; serializable reads promise no linearizability and are left out
// unless includeSerializable is set; reads at a revision are left out.
func Included(op *history.Operation, includeSerializable bool) bool {
	if op.Kind == history.Compact || op.Kind == history.Defragment {
		// Neither changes the key-value state or the revision, and a
		// compact's header revision is read after it applied, not at its
		// linearization point: they carry nothing for the model.
		return false
	}
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
	if op.Revision != 0 && (op.Kind == history.Get || op.Kind == history.Range) {
		// A read at a past revision shows history, not the state at its
		// linearization point; pkg/checker/serializable judges it.
		return false
	}
	return true
}
