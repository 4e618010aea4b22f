// Package history holds what a run observed: every client operation with its
// real-time call and return, every watch response, and every fault, in one
// value that is saved as JSON Lines and loaded back by the checkers and the
// report. The format is documented in docs/history-format.md.
//
// Times are nanoseconds on a monotonic clock since the run's start, so that
// call/return intervals from different goroutines compare correctly even when
// the wall clock jumps.
package history

import (
	"sort"
	"strconv"
	"sync"
	"time"
)

// FormatVersion is written into every saved history; Load refuses others.
const FormatVersion = 1

// Kind names a client operation.
type Kind string

// Operation kinds. Every write carries a value unique to the whole run, so that
// an unknown outcome can later be resolved by whoever reads that value.
const (
	Get            Kind = "get"    // linearizable (or serializable) get of Key
	Put            Kind = "put"    // put Key=Value, with Lease when non-zero
	Delete         Kind = "delete" // delete Key
	Txn            Kind = "txn"    // compare, then put or delete Key, else get it; see Operation.ExpectModRev, ExpectValue and Then
	Range          Kind = "range"  // range [Key, End)
	LeaseGrant     Kind = "lease-grant"
	LeaseRevoke    Kind = "lease-revoke"
	LeaseKeepAlive Kind = "lease-keepalive"
	// Compact compacts the store's history at Revision. It changes neither
	// the key-value state nor the revision, so the linearizability model
	// leaves it out; the compaction check uses it.
	Compact Kind = "compact"
	// Defragment defragments the backend of the member at Endpoint. It
	// changes no state at all.
	Defragment Kind = "defragment"
)

// IsWrite reports whether an operation of this kind can change the store.
func (k Kind) IsWrite() bool {
	switch k {
	case Put, Delete, Txn, LeaseRevoke, LeaseGrant:
		return true
	}
	return false
}

// Outcome is what the client learned about an operation.
type Outcome string

const (
	// OK: the server answered with success.
	OK Outcome = "ok"
	// Fail: the server answered with an error that proves the operation did
	// not take effect (for example, lease not found).
	Fail Outcome = "fail"
	// Unknown: the client timed out or lost its connection. The operation may
	// have taken effect at any moment after its call, even after the run.
	Unknown Outcome = "unknown"
)

// KV is one key-value pair as etcd returned it.
type KV struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	ModRevision    int64  `json:"mod_rev"`
	CreateRevision int64  `json:"create_rev,omitempty"`
	Version        int64  `json:"version,omitempty"`
	Lease          int64  `json:"lease,omitempty"`
}

// Response is what etcd answered for an operation with outcome OK.
type Response struct {
	// Revision is the response header's revision: the store revision after
	// the operation.
	Revision int64 `json:"rev"`
	// KVs holds what a get, a range, or the else branch of a txn returned.
	KVs []KV `json:"kvs,omitempty"`
	// Count is the range's total count (may exceed len(KVs) with a limit).
	Count int64 `json:"count,omitempty"`
	// Deleted is how many keys a delete removed.
	Deleted int64 `json:"deleted,omitempty"`
	// Succeeded tells which branch a txn took.
	Succeeded bool `json:"succeeded,omitempty"`
	// LeaseID is the lease a grant created.
	LeaseID int64 `json:"lease_id,omitempty"`
	// TTL is the TTL a grant or keep-alive returned, in seconds.
	TTL int64 `json:"ttl,omitempty"`
	// MemberID is the member that served the request (response header).
	MemberID uint64 `json:"member_id,omitempty"`
}

// Operation is one client request and what came of it.
type Operation struct {
	ID       int64  `json:"id"`
	ClientID int    `json:"client"`
	Kind     Kind   `json:"kind"`
	Key      string `json:"key,omitempty"`
	// End is the exclusive range end for Range.
	End   string `json:"end,omitempty"`
	Value string `json:"value,omitempty"`
	// Lease is the lease a put attaches to, or the lease a revoke or
	// keep-alive names.
	Lease int64 `json:"lease,omitempty"`
	// TTL is the requested TTL of a grant, in seconds.
	TTL int64 `json:"ttl,omitempty"`
	// ExpectModRev is a txn's revision compare, used when ExpectValue is
	// nil: if mod_revision(Key)==ExpectModRev then put Key=Value (or
	// delete Key, see Then) else get Key. 0 means "key does not exist".
	ExpectModRev int64 `json:"expect_mod_rev,omitempty"`
	// Then is what a txn's then branch does to Key: "" puts Value (with
	// Lease), Delete deletes it, and the response's Deleted says whether
	// it removed anything. A Kubernetes apiserver deletes so, on the mod
	// revision it last read.
	Then Kind `json:"then,omitempty"`
	// ExpectValue, when set, makes a txn a compare-and-set on the value:
	// if value(Key)==*ExpectValue then put Key=Value, else nothing (the
	// txn has no else branch, so a failed one returns no keys), or with
	// ElseGet, else get Key. As in etcd, a value compare on a missing key
	// fails. A pointer, because comparing against the empty value is a
	// different compare from none.
	ExpectValue *string `json:"expect_value,omitempty"`
	// ElseGet gives a value-compare txn an else branch that gets Key, as
	// a revision-compare txn always has: a failed one returns the key as
	// the store held it (no keys: absent). Only with ExpectValue.
	ElseGet bool `json:"else_get,omitempty"`
	// Limit bounds a range; 0 means no limit.
	Limit int64 `json:"limit,omitempty"`
	// Revision is the revision a compact compacts at, or the revision a
	// get or range reads at (0: the latest). A read at a revision is
	// judged by the serializable check against the revision log, not by
	// the linearizability model.
	Revision int64 `json:"rev,omitempty"`
	// Serializable marks a read served by one member without consensus. It is
	// recorded so the checker can tell which reads promise linearizability.
	Serializable bool `json:"serializable,omitempty"`
	// Endpoint is the member endpoint the client was pinned to, or empty when
	// it used all endpoints.
	Endpoint string `json:"endpoint,omitempty"`

	Call    int64     `json:"call"`
	Return  int64     `json:"return"`
	Outcome Outcome   `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	Resp    *Response `json:"resp,omitempty"`
}

// WritesValue reports whether op, when it takes effect, stores Value
// under Key: a put, or a txn whose then branch puts.
func (op *Operation) WritesValue() bool {
	return op.Kind == Put || op.Kind == Txn && op.Then != Delete
}

// DeletesKey reports whether op, when it takes effect, deletes Key: a
// delete, or a txn whose then branch deletes.
func (op *Operation) DeletesKey() bool {
	return op.Kind == Delete || op.Kind == Txn && op.Then == Delete
}

// Changed reports whether an ok operation's response says it changed
// Key: a put; a txn whose compare held, and whose then branch put or
// deleted something; a delete that deleted something. A succeeded txn
// that deletes an absent key (compare on mod revision 0) changed nothing,
// and etcd spends no revision on it.
func (op *Operation) Changed() bool {
	if op.Outcome != OK || op.Resp == nil {
		return false
	}
	switch op.Kind {
	case Put:
		return true
	case Txn:
		return op.Resp.Succeeded && (op.Then != Delete || op.Resp.Deleted > 0)
	case Delete:
		return op.Resp.Deleted > 0
	}
	return false
}

// ElseReads reports whether op is a txn whose else branch gets its key, so
// that a failed one is a read of the key: every revision-compare txn, and a
// value-compare txn with ElseGet. A failed value-compare txn without it
// read nothing, and its empty KVs say nothing about the key.
func (op *Operation) ElseReads() bool {
	return op.Kind == Txn && (op.ExpectValue == nil || op.ElseGet)
}

// Event is one event of a watch response.
type Event struct {
	Type           string `json:"type"` // "put" or "delete"
	Key            string `json:"key"`
	Value          string `json:"value,omitempty"`
	ModRevision    int64  `json:"mod_rev"`
	CreateRevision int64  `json:"create_rev,omitempty"`
	Version        int64  `json:"version,omitempty"`
	Lease          int64  `json:"lease,omitempty"`
	IsCreate       bool   `json:"is_create,omitempty"`
	// PrevKV is set when the watch asked for it and the key existed before.
	PrevKV *KV `json:"prev_kv,omitempty"`
}

// WatchResponse is one response on a watch stream.
type WatchResponse struct {
	Time            int64   `json:"time"`
	Revision        int64   `json:"rev"`
	Events          []Event `json:"events,omitempty"`
	Progress        bool    `json:"progress,omitempty"`
	Canceled        bool    `json:"canceled,omitempty"`
	CompactRevision int64   `json:"compact_rev,omitempty"`
	Error           string  `json:"error,omitempty"`
}

// Watch is one watch request and every response it got, until the stream
// ended (error, cancel, or end of run). A client that resumes after an error
// opens a new Watch whose StartRevision is the last revision seen + 1.
type Watch struct {
	ID       int64  `json:"id"`
	ClientID int    `json:"client"`
	Key      string `json:"key"`
	// End is the exclusive range end; empty watches the single Key.
	End           string          `json:"end,omitempty"`
	StartRevision int64           `json:"start_rev"`
	PrevKV        bool            `json:"prev_kv,omitempty"`
	Endpoint      string          `json:"endpoint,omitempty"`
	Call          int64           `json:"call"`
	Responses     []WatchResponse `json:"responses,omitempty"`
}

// Fault is one fault window on the timeline.
type Fault struct {
	ID      int      `json:"id"`
	Nemesis string   `json:"nemesis"`
	Action  string   `json:"action"`
	Targets []string `json:"targets,omitempty"`
	Start   int64    `json:"start"`
	// End is when the fault was healed; 0 while it is still active.
	End   int64  `json:"end,omitempty"`
	Error string `json:"error,omitempty"`
	// Compacts says the fault compacts the store (or may) without a
	// recorded compact operation, from Start on: a compaction failpoint
	// triggers its own compaction to crash a member applying it.
	Compacts bool `json:"compacts,omitempty"`
}

// Meta describes the run that produced a history.
type Meta struct {
	Format      int       `json:"format"`
	Scenario    string    `json:"scenario,omitempty"`
	Backend     string    `json:"backend,omitempty"`
	Members     int       `json:"members,omitempty"`
	EtcdVersion string    `json:"etcd_version,omitempty"`
	Nemesis     string    `json:"nemesis,omitempty"`
	Seed        int64     `json:"seed"`
	Started     time.Time `json:"started"`
	// Rerun is the command that re-runs the same scenario and schedule.
	Rerun string `json:"rerun,omitempty"`
	// Notes carries backend facts worth keeping next to the data, such as
	// "persistence disabled".
	Notes []string `json:"notes,omitempty"`
	// Interrupted says when and why the run stopped early, when it did
	// ("after 18s of the 30s of traffic (interrupted by SIGINT)"): its
	// history is what was recorded until then, and its verdict is never
	// pass.
	Interrupted string `json:"interrupted,omitempty"`
	// NoRevisions says the history carries no revisions: its responses
	// have no header or mod revisions (a Jepsen log, a client log that
	// did not keep them). The checkers then judge values only and skip
	// every check that needs revisions, saying so. A history without it
	// must carry the header revision of every ok key-value operation.
	NoRevisions bool `json:"no_revisions,omitempty"`
	// Compactions says which compactions of the store the history shows,
	// so that a read refused as compacted can be judged: CompactionsRecorded
	// when the store compacts only through recorded compact operations and
	// inside faults marked Compacts; any other text says why the store may
	// compact at any time without a record ("members run with
	// --auto-compaction-retention=1h"). Empty (a history written before
	// this field, a backend that cannot tell) means not known, and is
	// judged as not recorded.
	Compactions string `json:"compactions,omitempty"`
}

// CompactionsRecorded is Meta.Compactions of a run whose every compaction
// is a recorded compact operation or inside a fault marked Compacts.
const CompactionsRecorded = "recorded"

// History is everything one run recorded.
type History struct {
	Meta       Meta        `json:"meta"`
	Operations []Operation `json:"operations"`
	Watches    []Watch     `json:"watches"`
	Faults     []Fault     `json:"faults"`
}

// SortOperations orders operations by call time, then ID, which is the order
// the checkers and the report expect.
func (h *History) SortOperations() {
	sort.SliceStable(h.Operations, func(i, j int) bool {
		a, b := h.Operations[i], h.Operations[j]
		if a.Call != b.Call {
			return a.Call < b.Call
		}
		return a.ID < b.ID
	})
}

// End returns the latest time anything in the history happened.
func (h *History) End() int64 {
	var end int64
	for _, op := range h.Operations {
		end = max(end, op.Call, op.Return)
	}
	for _, w := range h.Watches {
		for _, r := range w.Responses {
			end = max(end, r.Time)
		}
	}
	for _, f := range h.Faults {
		end = max(end, f.Start, f.End)
	}
	return end
}

// Recorder collects a history from many goroutines. Its zero value is not
// usable; call NewRecorder.
type Recorder struct {
	start time.Time
	// runTag is RunTag, formatted once: every write's value embeds it.
	runTag string

	mu      sync.Mutex
	meta    Meta
	ops     []Operation
	watches []Watch
	faults  []Fault
	nextID  int64
}

// NewRecorder starts the run's clock now.
func NewRecorder(meta Meta) *Recorder {
	meta.Format = FormatVersion
	start := time.Now()
	if meta.Started.IsZero() {
		meta.Started = start
	}
	return &Recorder{start: start, runTag: strconv.FormatInt(start.UnixNano()/1000%(36*36*36*36*36), 36), meta: meta}
}

// Now returns nanoseconds since the run started on the monotonic clock.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// RunTag is a short string unique to this run (from its start time). Write
// values embed it so they stay unique across runs that share a store, such
// as a run on a cluster restored from an earlier run's snapshot.
func (r *Recorder) RunTag() string { return r.runTag }

// NextID hands out an ID unique within the run; operations and watches share
// the sequence so that values derived from IDs stay unique.
func (r *Recorder) NextID() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	return r.nextID
}

// AddOperation records a finished operation.
func (r *Recorder) AddOperation(op Operation) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// AddWatch records a finished watch stream.
func (r *Recorder) AddWatch(w Watch) {
	r.mu.Lock()
	r.watches = append(r.watches, w)
	r.mu.Unlock()
}

// StartFault records the start of a fault and returns its ID for EndFault.
func (r *Recorder) StartFault(nemesis, action string, targets ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := len(r.faults) + 1
	r.faults = append(r.faults, Fault{ID: id, Nemesis: nemesis, Action: action, Targets: targets, Start: r.Now()})
	return id
}

// FaultCompacts marks fault id as one that compacts the store without a
// recorded compact operation (Fault.Compacts).
func (r *Recorder) FaultCompacts(id int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id >= 1 && id <= len(r.faults) {
		r.faults[id-1].Compacts = true
	}
}

// EndFault records that fault id was healed; a non-nil err is kept with it.
func (r *Recorder) EndFault(id int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.faults) {
		return
	}
	f := &r.faults[id-1]
	f.End = r.Now()
	if err != nil {
		f.Error = err.Error()
	}
}

// Counts returns how many operations and faults were recorded so far, for
// progress output.
func (r *Recorder) Counts() (ops int64, faults int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int64(len(r.ops)), len(r.faults)
}

// History returns a sorted copy of everything recorded so far. Faults still
// active are closed at the current time so the timeline has no open windows.
func (r *Recorder) History() *History {
	r.mu.Lock()
	h := &History{
		Meta:       r.meta,
		Operations: append([]Operation(nil), r.ops...),
		Watches:    append([]Watch(nil), r.watches...),
		Faults:     append([]Fault(nil), r.faults...),
	}
	r.mu.Unlock()
	now := r.Now()
	for i := range h.Faults {
		if h.Faults[i].End == 0 {
			h.Faults[i].End = now
		}
	}
	h.SortOperations()
	return h
}
