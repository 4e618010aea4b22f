// Package revlog reconstructs etcd's revision log from a recorded history:
// for each revision, the key events (put or delete, value, create revision,
// version, lease) that happened at it.
//
// etcd keeps no log the client can read after the fact, so the log is pieced
// together from every piece of evidence the run recorded: acknowledged
// writes and the revisions their responses carried, values seen by reads and
// watches (every write value is unique, so a value pins down the write that
// produced it, even one whose outcome was unknown), the watch events
// themselves, and lease revokes, whose deletes are derived from the keys
// attached to the lease. Two pieces of evidence that disagree about the same
// revision and key are a conflict, which the watch checker reports: one of
// them is a lie etcd told: watch/consistent reports those a watch is party
// to, kv/consistent (Check) the rest.
package revlog

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Event types, as in history.Event.Type.
const (
	PutEvent    = "put"
	DeleteEvent = "delete"
)

// firstRevision is the first revision a write can create: an empty etcd
// store is at revision 1.
const firstRevision = 2

// Event is one key change at one revision.
type Event struct {
	Type  string
	Key   string
	Value string
	// ModRevision is the revision the event happened at.
	ModRevision int64
	// CreateRevision and Version are 0 when no evidence told them and they
	// could not be derived from a certain prior state.
	CreateRevision int64
	Version        int64
	Lease          int64
	// Sources name the evidence, such as "put op 12" or "watch 3".
	Sources []string
}

// KV returns the key-value pair a put event left behind.
func (e *Event) KV() history.KV {
	return history.KV{Key: e.Key, Value: e.Value, ModRevision: e.ModRevision,
		CreateRevision: e.CreateRevision, Version: e.Version, Lease: e.Lease}
}

// String describes the event in one short phrase for messages.
func (e *Event) String() string {
	if e.Type == DeleteEvent {
		return fmt.Sprintf("delete %q@%d", e.Key, e.ModRevision)
	}
	return fmt.Sprintf("put %q=%q@%d", e.Key, e.Value, e.ModRevision)
}

type revision struct {
	events map[string]*Event
	// complete: some evidence accounts for the whole revision (an
	// acknowledged single-key write, a read of a single-key write's value,
	// a revoke whose attached keys are known).
	complete   bool
	completeBy string
}

// span is a revision interval during which a watch on [key, end) saw every
// event, so a revision in it with no event for a key in range had none.
type span struct {
	key, end string
	from, to int64
}

// Log is the reconstructed revision log. Build it with Build; it is read-only
// afterwards and safe for concurrent readers.
type Log struct {
	revs      map[int64]*revision
	order     []int64 // revisions with evidence, ascending
	byKey     map[string][]*Event
	max       int64
	writers   map[string]*history.Operation
	spans     []spanGroup
	uncertain []int64 // revisions in [firstRevision, max] that are not complete
	spanMax   int64   // the highest revision any watch saw through
	indexed   bool    // the sorted views are built and kept up to date
	frozen    bool    // Build is done; holes may be cached

	mu    sync.Mutex
	holes map[string][]int64 // covering-span signature -> uncertain revisions no span covers
}

// ConsistentName is the check that reports contradictions in the revision
// log that involve no watch: two operations (writes, reads, revokes) giving
// different accounts of one revision, such as a read of a value at a
// revision another write owns, or a txn whose answer contradicts the store.
// Contradictions a watch is party to are watch/consistent's.
const ConsistentName = "kv/consistent"

// watchSource matches the evidence names Build gives watch streams.
var watchSource = regexp.MustCompile(`\bwatch \d+ \(client -?\d+\)`)

// TouchesWatch reports whether a conflict Build returned involves evidence
// from a watch stream.
func TouchesWatch(conflict string) bool { return watchSource.MatchString(conflict) }

// Check reports the conflicts Build returned that involve no watch, under
// ConsistentName. revisions is the log's highest revision, for the summary.
func Check(conflicts []string, revisions int64) verdict.Check {
	c := verdict.Check{Name: ConsistentName, Status: verdict.Pass}
	n := 0
	for _, s := range conflicts {
		if !TouchesWatch(s) {
			n++
			c.Violate("contradicting answers: %s", s)
		}
	}
	if n == 0 {
		c.Summary = fmt.Sprintf("every answer agrees on what happened at each of %d revisions", revisions)
		return c
	}
	c.Summary = fmt.Sprintf("%d contradictions between operations' accounts of the same revision (up to revision %d): etcd gave two different answers about one revision", n, revisions)
	return c
}

// Build derives the revision log from h. The returned conflicts are pieces of
// evidence that contradict each other, one line each; a correct etcd and a
// correct recorder never produce any.
func Build(h *history.History) (*Log, []string) {
	l := &Log{revs: map[int64]*revision{}, byKey: map[string][]*Event{}, writers: map[string]*history.Operation{}}
	var conflicts []string
	conflict := func(format string, args ...any) { conflicts = append(conflicts, fmt.Sprintf(format, args...)) }

	for i := range h.Operations {
		op := &h.Operations[i]
		if op.WritesValue() && op.Value != "" {
			if _, dup := l.writers[op.Value]; !dup {
				l.writers[op.Value] = op
			}
		}
	}

	// A baseline read (the first operation, answered before any other was
	// called) shows what the store held before the history began: nothing
	// on a fresh cluster, the restored data after a snapshot restore. Its
	// values were written before the run; stand in a put for each, at its
	// mod revision, so that events and prev_kvs carrying them are explained.
	if base := Baseline(h); base != nil {
		for _, kv := range base.Resp.KVs {
			if _, dup := l.writers[kv.Value]; !dup {
				l.writers[kv.Value] = &history.Operation{ID: base.ID, ClientID: base.ClientID, Kind: history.Put,
					Key: kv.Key, Value: kv.Value, Lease: kv.Lease, Outcome: history.OK, Resp: &history.Response{Revision: kv.ModRevision}}
			}
		}
	}

	// Acknowledged writes first: they are the strongest evidence, and a
	// single-key write accounts for its whole revision.
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome != history.OK || op.Resp == nil {
			continue
		}
		src := fmt.Sprintf("%s op %d (client %d)", op.Kind, op.ID, op.ClientID)
		switch {
		case !op.Changed():
		case op.WritesValue():
			l.add(Event{Type: PutEvent, Key: op.Key, Value: op.Value, ModRevision: op.Resp.Revision, Lease: op.Lease}, src, true, conflict)
		case op.DeletesKey() && op.End == "":
			l.add(Event{Type: DeleteEvent, Key: op.Key, ModRevision: op.Resp.Revision}, src, true, conflict)
		}
	}
	// Values returned by reads: each names the put that wrote it.
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome != history.OK || op.Resp == nil {
			continue
		}
		for _, kv := range op.Resp.KVs {
			l.addKV(kv, fmt.Sprintf("%s op %d (client %d)", op.Kind, op.ID, op.ClientID), conflict)
		}
	}
	// Watch events, and the prev KVs they carry.
	var raw []span
	for i := range h.Watches {
		w := &h.Watches[i]
		src := fmt.Sprintf("watch %d (client %d)", w.ID, w.ClientID)
		for _, r := range w.Responses {
			for _, ev := range r.Events {
				e := Event{Type: ev.Type, Key: ev.Key, ModRevision: ev.ModRevision}
				if ev.Type != DeleteEvent {
					e.Type = PutEvent
					e.Value, e.CreateRevision, e.Version, e.Lease = ev.Value, ev.CreateRevision, ev.Version, ev.Lease
				}
				l.add(e, src, false, conflict)
				if ev.PrevKV != nil {
					l.addKV(*ev.PrevKV, src+" prev_kv", conflict)
				}
			}
		}
		if s, ok := watchSpan(w); ok {
			raw = append(raw, s)
			l.spanMax = max(l.spanMax, s.to)
		}
	}
	l.spans = groupSpans(raw)
	l.index()

	// Lease revokes delete every key still attached to the lease, all in the
	// revision the revoke returned. Process them in revision order so that a
	// revoke sees the deletes of earlier ones.
	revokes := []*history.Operation{}
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Kind == history.LeaseRevoke && op.Outcome == history.OK && op.Resp != nil && op.Lease != 0 {
			revokes = append(revokes, op)
		}
	}
	sort.SliceStable(revokes, func(i, j int) bool { return revokes[i].Resp.Revision < revokes[j].Resp.Revision })
	leaseKeys := map[int64][]string{}
	for key, evs := range l.byKey {
		for _, e := range evs {
			if e.Type == PutEvent && e.Lease != 0 && !slices.Contains(leaseKeys[e.Lease], key) {
				leaseKeys[e.Lease] = append(leaseKeys[e.Lease], key)
			}
		}
	}
	l.indexed = true
	for _, op := range revokes {
		l.addRevoke(op, leaseKeys[op.Lease], conflict)
	}
	l.frozen = true
	l.holes = map[string][]int64{}
	l.derive()
	return l, conflicts
}

// Baseline returns the history's baseline read: its first operation, when
// that is a successful range answered before any other operation (or
// watch) began. It returns nil when there is none.
func Baseline(h *history.History) *history.Operation {
	if len(h.Operations) == 0 {
		return nil
	}
	first := &h.Operations[0]
	for i := range h.Operations {
		if h.Operations[i].Call < first.Call {
			first = &h.Operations[i]
		}
	}
	if first.Kind != history.Range || first.Outcome != history.OK || first.Resp == nil {
		return nil
	}
	for i := range h.Operations {
		if op := &h.Operations[i]; op != first && op.Call <= first.Return {
			return nil
		}
	}
	for i := range h.Watches {
		if h.Watches[i].Call <= first.Return {
			return nil
		}
	}
	return first
}

// watchSpan is the revision interval a watch promised to deliver completely:
// from the revision it asked for (or the first it showed) to the last it
// observed through an event or a progress notification.
func watchSpan(w *history.Watch) (span, bool) {
	from := w.StartRevision
	var to int64
	for _, r := range w.Responses {
		if r.CompactRevision > 0 || r.Error != "" && len(r.Events) == 0 {
			continue
		}
		if from == 0 {
			if len(r.Events) > 0 {
				from = r.Events[0].ModRevision
			} else if r.Revision > 0 {
				from = r.Revision + 1
			}
		}
		for _, ev := range r.Events {
			to = max(to, ev.ModRevision)
		}
		if r.Progress {
			to = max(to, r.Revision)
		}
	}
	if from == 0 || to < from {
		return span{}, false
	}
	return span{key: w.Key, end: w.End, from: from, to: to}, true
}

func (l *Log) addKV(kv history.KV, src string, conflict func(string, ...any)) {
	if kv.ModRevision <= 0 {
		return
	}
	// A read value accounts for its whole revision only when it was written
	// by a single-key put or txn; otherwise other keys may share it.
	op, single := l.writers[kv.Value]
	single = single && op.Key == kv.Key
	l.add(Event{Type: PutEvent, Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision,
		CreateRevision: kv.CreateRevision, Version: kv.Version, Lease: kv.Lease}, src, single, conflict)
}

// add merges one piece of evidence into the log.
func (l *Log) add(e Event, src string, complete bool, conflict func(string, ...any)) {
	if e.ModRevision <= 0 {
		return
	}
	r := l.revs[e.ModRevision]
	if r == nil {
		r = &revision{events: map[string]*Event{}}
		l.revs[e.ModRevision] = r
	}
	if old := r.events[e.Key]; old != nil {
		if d := differ(old, &e); d != "" {
			conflict("revision %d key %q: %s says %s but %s says %s (%s)", e.ModRevision, e.Key,
				strings.Join(old.Sources, ", "), old, src, &e, d)
			return
		}
		if old.CreateRevision == 0 {
			old.CreateRevision = e.CreateRevision
		}
		if old.Version == 0 {
			old.Version = e.Version
		}
		if len(old.Sources) < 4 {
			old.Sources = append(old.Sources, src)
		}
	} else {
		if r.complete {
			conflict("revision %d: %s says it changed only its own key, but %s says %s", e.ModRevision, r.completeBy, src, &e)
			return
		}
		if complete && len(r.events) > 0 {
			for _, o := range r.events {
				conflict("revision %d: %s says it changed only %q, but %s says %s", e.ModRevision, src, e.Key, strings.Join(o.Sources, ", "), o)
				break
			}
			return
		}
		e.Sources = []string{src}
		r.events[e.Key] = &e
		if l.indexed {
			l.insert(&e)
		}
	}
	if complete && !r.complete {
		l.markComplete(r, e.ModRevision, src)
	}
}

// insert adds a new event to the sorted views, once they exist.
func (l *Log) insert(e *Event) {
	rev := e.ModRevision
	evs := l.byKey[e.Key]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].ModRevision > rev })
	l.byKey[e.Key] = slices.Insert(evs, i, e)
	if j, found := slices.BinarySearch(l.order, rev); !found {
		l.order = slices.Insert(l.order, j, rev)
	}
	for r := l.max + 1; r <= rev; r++ {
		l.uncertain = append(l.uncertain, r)
	}
	l.max = max(l.max, rev)
}

// markComplete records that evidence accounts for the whole revision.
func (l *Log) markComplete(r *revision, rev int64, src string) {
	r.complete, r.completeBy = true, src
	if !l.indexed {
		return
	}
	if j, found := slices.BinarySearch(l.uncertain, rev); found {
		l.uncertain = slices.Delete(l.uncertain, j, j+1)
	}
}

// differ names the first field on which two accounts of the same (revision,
// key) disagree, or returns "" when they agree. Zero create revisions and
// versions mean "not known" and agree with anything.
func differ(a, b *Event) string {
	switch {
	case a.Type != b.Type:
		return "type differs"
	case a.Type == DeleteEvent:
		return ""
	case a.Value != b.Value:
		return "value differs"
	case a.Lease != b.Lease:
		return fmt.Sprintf("lease %x vs %x", a.Lease, b.Lease)
	case a.CreateRevision != 0 && b.CreateRevision != 0 && a.CreateRevision != b.CreateRevision:
		return fmt.Sprintf("create revision %d vs %d", a.CreateRevision, b.CreateRevision)
	case a.Version != 0 && b.Version != 0 && a.Version != b.Version:
		return fmt.Sprintf("version %d vs %d", a.Version, b.Version)
	}
	return ""
}

// addRevoke adds the deletes of a revoke of a lease that was attached to
// candidates at some point.
func (l *Log) addRevoke(op *history.Operation, candidates []string, conflict func(string, ...any)) {
	rev := op.Resp.Revision
	var keys []string
	for _, key := range candidates {
		kv, exists, certain := l.Before(key, rev)
		if exists && certain && kv.Lease == op.Lease {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return
	}
	if r := l.revs[rev]; r != nil && r.complete {
		// Another write owns the revision the revoke returned, so the revoke
		// deleted nothing although keys were attached. The lease checker
		// reports keys that outlive their revoke; nothing to add here.
		return
	}
	sort.Strings(keys)
	src := fmt.Sprintf("lease-revoke op %d (client %d) of lease %x", op.ID, op.ClientID, op.Lease)
	for _, k := range keys {
		l.add(Event{Type: DeleteEvent, Key: k, ModRevision: rev}, src, false, conflict)
	}
	r := l.revs[rev]
	for k, e := range r.events {
		if e.Type != DeleteEvent || !containsString(keys, k) {
			conflict("revision %d: %s deleted %s, but %s says %s", rev, src, strings.Join(keys, ", "), strings.Join(e.Sources, ", "), e)
		}
	}
	l.markComplete(r, rev, src)
}

func containsString(s []string, x string) bool {
	i := sort.SearchStrings(s, x)
	return i < len(s) && s[i] == x
}

// index rebuilds the sorted views after evidence was added.
func (l *Log) index() {
	l.order = l.order[:0]
	l.byKey = map[string][]*Event{}
	l.max = 0
	for rev, r := range l.revs {
		l.order = append(l.order, rev)
		l.max = max(l.max, rev)
		for _, e := range r.events {
			l.byKey[e.Key] = append(l.byKey[e.Key], e)
		}
	}
	sort.Slice(l.order, func(i, j int) bool { return l.order[i] < l.order[j] })
	for _, evs := range l.byKey {
		sort.Slice(evs, func(i, j int) bool { return evs[i].ModRevision < evs[j].ModRevision })
	}
	l.uncertain = l.uncertain[:0]
	for rev := int64(firstRevision); rev <= l.max; rev++ {
		if r := l.revs[rev]; r == nil || !r.complete {
			l.uncertain = append(l.uncertain, rev)
		}
	}
}

// derive fills in create revisions and versions of events that no evidence
// carried, from the key's certain prior state. Revisions go in ascending
// order so that each event builds on an already derived predecessor.
func (l *Log) derive() {
	for _, rev := range l.order {
		for _, e := range l.revs[rev].events {
			if e.Type != PutEvent || (e.CreateRevision != 0 && e.Version != 0) {
				continue
			}
			prev, exists, certain := l.Before(e.Key, rev)
			if !certain {
				continue
			}
			switch {
			case !exists:
				e.CreateRevision, e.Version = rev, 1
			case prev.CreateRevision != 0 && prev.Version != 0:
				e.CreateRevision, e.Version = prev.CreateRevision, prev.Version+1
			}
		}
	}
}

// MaxRevision is the highest revision any evidence mentions.
func (l *Log) MaxRevision() int64 { return l.max }

// EventsAt returns the events known at rev, sorted by key.
func (l *Log) EventsAt(rev int64) []Event {
	r := l.revs[rev]
	if r == nil {
		return nil
	}
	out := make([]Event, 0, len(r.events))
	for _, e := range r.events {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Range returns the events in revisions [fromRev, toRev] whose key falls in
// [key, end) (see Match), ordered by revision then key.
func (l *Log) Range(fromRev, toRev int64, key, end string) []Event {
	var out []Event
	i := sort.Search(len(l.order), func(i int) bool { return l.order[i] >= fromRev })
	for ; i < len(l.order) && l.order[i] <= toRev; i++ {
		for _, e := range l.EventsAt(l.order[i]) {
			if keyspace.InRange(e.Key, key, end) {
				out = append(out, e)
			}
		}
	}
	return out
}

// StateAt returns the store as of rev: every key alive after rev, with the
// KV its last put left. It is only as complete as the evidence.
func (l *Log) StateAt(rev int64) map[string]history.KV {
	state := map[string]history.KV{}
	for _, r := range l.order {
		if r > rev {
			break
		}
		for _, e := range l.revs[r].events {
			if e.Type == DeleteEvent {
				delete(state, e.Key)
			} else {
				state[e.Key] = e.KV()
			}
		}
	}
	return state
}

// Known reports whether the whole content of rev is known: some evidence
// accounts for every event of that revision.
func (l *Log) Known(rev int64) bool {
	r := l.revs[rev]
	return r != nil && r.complete
}

// KnownFor reports whether it is known what happened to key at rev: either
// the whole revision is known, or a watch covering key saw through rev.
func (l *Log) KnownFor(rev int64, key string) bool {
	if l.Known(rev) {
		return true
	}
	for i := range l.spans {
		if g := &l.spans[i]; keyspace.InRange(key, g.key, g.end) && g.covers(rev) {
			return true
		}
	}
	return false
}

// Latest returns the last known event on key at or before rev, if any.
// Unlike Before it says nothing about revisions no evidence covers; it only
// reports what certainly happened.
func (l *Log) Latest(key string, rev int64) (Event, bool) {
	evs := l.byKey[key]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].ModRevision > rev }) - 1
	if i < 0 {
		return Event{}, false
	}
	return *evs[i], true
}

// Before returns the key's state just before rev: its KV and whether it
// existed. certain is false when some revision before rev may have changed
// the key without any evidence of it, so the answer is a best guess.
func (l *Log) Before(key string, rev int64) (kv history.KV, exists, certain bool) {
	evs := l.byKey[key]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].ModRevision >= rev }) - 1
	from := int64(firstRevision)
	if i >= 0 {
		from = evs[i].ModRevision + 1
		if evs[i].Type == PutEvent {
			kv, exists = evs[i].KV(), true
		}
	}
	certain = l.knownBetween(key, from, rev-1)
	return kv, exists, certain
}

// knownBetween reports whether every revision in [from, to] is known for key.
func (l *Log) knownBetween(key string, from, to int64) bool {
	if to > l.max {
		// Revisions past the last evidence may exist; nothing covers them
		// unless a watch saw past them.
		if to > l.spanMax {
			return false
		}
		for rev := max(from, l.max+1); rev <= to; rev++ {
			if !l.KnownFor(rev, key) {
				return false
			}
		}
	}
	if l.frozen {
		hs := l.holesFor(key)
		j := sort.Search(len(hs), func(j int) bool { return hs[j] >= from })
		return j == len(hs) || hs[j] > to
	}
	j := sort.Search(len(l.uncertain), func(j int) bool { return l.uncertain[j] >= from })
	for ; j < len(l.uncertain) && l.uncertain[j] <= to; j++ {
		if !l.KnownFor(l.uncertain[j], key) {
			return false
		}
	}
	return true
}

// holesFor returns the revisions up to max that are not known for key. Keys
// covered by the same watches share the answer, so it is cached by the set
// of covering watch spans.
func (l *Log) holesFor(key string) []int64 {
	var sig []byte
	var covering []*spanGroup
	for i := range l.spans {
		if g := &l.spans[i]; keyspace.InRange(key, g.key, g.end) {
			sig = binary.AppendUvarint(sig, uint64(i))
			covering = append(covering, g)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if hs, ok := l.holes[string(sig)]; ok {
		return hs
	}
	hs := []int64{}
	for _, rev := range l.uncertain {
		if !slices.ContainsFunc(covering, func(g *spanGroup) bool { return g.covers(rev) }) {
			hs = append(hs, rev)
		}
	}
	l.holes[string(sig)] = hs
	return hs
}

// spanGroup holds the merged spans of all watches on one range.
type spanGroup struct {
	key, end string
	iv       []span // disjoint, ascending
}

func (g *spanGroup) covers(rev int64) bool {
	i := sort.Search(len(g.iv), func(i int) bool { return g.iv[i].to >= rev })
	return i < len(g.iv) && g.iv[i].from <= rev
}

// groupSpans merges the spans of watches on the same range, so that coverage
// questions cost a binary search per watched range, however often the
// streams were resumed.
func groupSpans(raw []span) []spanGroup {
	sort.Slice(raw, func(i, j int) bool {
		a, b := raw[i], raw[j]
		if a.key != b.key {
			return a.key < b.key
		}
		if a.end != b.end {
			return a.end < b.end
		}
		return a.from < b.from
	})
	var out []spanGroup
	for _, s := range raw {
		if n := len(out); n == 0 || out[n-1].key != s.key || out[n-1].end != s.end {
			out = append(out, spanGroup{key: s.key, end: s.end})
		}
		g := &out[len(out)-1]
		if n := len(g.iv); n > 0 && s.from <= g.iv[n-1].to+1 {
			g.iv[n-1].to = max(g.iv[n-1].to, s.to)
			continue
		}
		g.iv = append(g.iv, s)
	}
	return out
}

// Writer returns the put or txn that wrote value (values are unique per
// run), whatever its outcome.
func (l *Log) Writer(value string) (*history.Operation, bool) {
	op, ok := l.writers[value]
	return op, ok
}
