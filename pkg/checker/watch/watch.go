// Package watch checks the guarantees etcd's watch API makes (ordered,
// unique, atomic, bookmarkable, reliable, resumable; see
// https://etcd.io/docs/v3.6/learning/api_guarantees/#watch-apis), plus that
// every event matches the watched range and agrees with the store's history.
// It follows etcd's own robustness suite (tests/robustness/validate/watch.go)
// but compares against a revision log rebuilt from all the evidence in the
// history (package revlog), not only against other watches.
package watch

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/revlog"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Check names, in the order Check returns them.
const (
	Ordered      = "watch/ordered"
	Unique       = "watch/unique"
	Atomic       = "watch/atomic"
	Bookmarkable = "watch/bookmarkable"
	Reliable     = "watch/reliable"
	Resumable    = "watch/resumable"
	Consistent   = "watch/consistent"
	Filter       = "watch/filter"
)

// Names lists every check this package produces.
var Names = []string{Ordered, Unique, Atomic, Bookmarkable, Reliable, Resumable, Consistent, Filter}

// maxMissingPerWatch bounds the missing-event lines one logical watch adds,
// so that one dead stream does not crowd out every other finding.
const maxMissingPerWatch = 5

// Check runs every watch check on h. Every check is Skipped when h holds no
// watch.
func Check(h *history.History) []verdict.Check {
	if len(h.Watches) == 0 {
		return CheckLog(h, nil, nil)
	}
	log, conflicts := revlog.Build(h)
	return CheckLog(h, log, conflicts)
}

// CheckLog is Check with the revision log (and its conflicts) already built
// from h, so that the checks sharing it build it once.
func CheckLog(h *history.History, log *revlog.Log, conflicts []string) []verdict.Check {
	start := time.Now()
	checks := make([]verdict.Check, len(Names))
	for i, n := range Names {
		checks[i] = verdict.Check{Name: n, Status: verdict.Pass}
	}
	if len(h.Watches) == 0 {
		for i := range checks {
			checks[i].Status = verdict.Skipped
			checks[i].Summary = "no watches in the history"
		}
		return checks
	}
	c := &checker{h: h, log: log}
	for i := range h.Operations {
		if op := &h.Operations[i]; op.Kind == history.Compact && op.Outcome != history.Fail {
			c.compacted = max(c.compacted, op.Revision)
		}
	}
	// Compactions the history did not record (a nemesis's, an apiserver's)
	// show in the compact revisions etcd refused watches with.
	for i := range h.Watches {
		for _, r := range h.Watches[i].Responses {
			c.compacted = max(c.compacted, r.CompactRevision)
		}
	}
	for i := range h.Watches {
		c.events += countEvents(&h.Watches[i])
	}
	c.chains = chains(h.Watches)

	byName := map[string]*verdict.Check{}
	for i := range checks {
		byName[checks[i].Name] = &checks[i]
	}
	for _, ch := range c.chains {
		c.ordered(byName[Ordered], ch)
		c.unique(byName[Unique], ch)
		c.bookmarkable(byName[Bookmarkable], ch)
		c.reliable(byName[Reliable], ch)
	}
	for i := range h.Watches {
		w := &h.Watches[i]
		c.atomic(byName[Atomic], w)
		c.resumable(byName[Resumable], w)
		c.consistent(byName[Consistent], w)
		c.filter(byName[Filter], w)
	}
	for _, s := range conflicts {
		// The rest are contradictions between operations, which
		// revlog.Check reports under a name of their own.
		if revlog.TouchesWatch(s) {
			byName[Consistent].Violate("conflicting evidence: %s", s)
		}
	}

	scope := fmt.Sprintf("%d watch streams (%d logical watches), %d events, revisions up to %d",
		len(h.Watches), len(c.chains), c.events, log.MaxRevision())
	elapsed := time.Since(start)
	for i := range checks {
		ck := &checks[i]
		ck.Duration = elapsed
		if ck.Status == verdict.Pass {
			ck.Summary = "holds on " + scope
		} else {
			n := len(ck.Violations) + ck.Omitted
			ck.Summary = fmt.Sprintf("%d violation(s) on %s", n, scope)
		}
	}
	return checks
}

type checker struct {
	h      *history.History
	log    *revlog.Log
	chains [][]*history.Watch
	events int
	// compacted is the highest revision a compact that may have applied
	// (outcome not fail) asked for, or a watch was refused at: an event at or below it may lack its
	// prev_kv, which that compaction removed.
	compacted int64
}

func countEvents(w *history.Watch) int {
	n := 0
	for _, r := range w.Responses {
		n += len(r.Events)
	}
	return n
}

// chains groups watches into logical watches: a client that resumes a
// broken stream opens a new watch on the same range starting after the last
// revision it saw, and the guarantees hold across the whole chain. A watch
// joins a chain when it has the same client, range and prev-kv option, asks
// for a start revision past everything the chain saw, and was opened after
// the chain's last stream went quiet; otherwise it starts a chain of its own.
func chains(ws []history.Watch) [][]*history.Watch {
	idx := make([]int, len(ws))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		wa, wb := &ws[idx[a]], &ws[idx[b]]
		if wa.Call != wb.Call {
			return wa.Call < wb.Call
		}
		return wa.ID < wb.ID
	})
	type chain struct {
		ws      []*history.Watch
		lastRev int64
		quiet   int64 // time of the last response of the last stream
	}
	var all []*chain
	for _, i := range idx {
		w := &ws[i]
		var join *chain
		if w.StartRevision > 0 {
			for _, c := range all {
				last := c.ws[len(c.ws)-1]
				if last.ClientID == w.ClientID && last.Key == w.Key && last.End == w.End && last.PrevKV == w.PrevKV &&
					w.StartRevision > c.lastRev && c.quiet <= w.Call {
					join = c
				}
			}
		}
		if join == nil {
			join = &chain{}
			all = append(all, join)
		}
		join.ws = append(join.ws, w)
		join.quiet = w.Call
		for _, r := range w.Responses {
			join.quiet = max(join.quiet, r.Time)
			for _, e := range r.Events {
				join.lastRev = max(join.lastRev, e.ModRevision)
			}
			if r.Progress {
				join.lastRev = max(join.lastRev, r.Revision)
			}
		}
	}
	out := make([][]*history.Watch, len(all))
	for i, c := range all {
		out[i] = c.ws
	}
	return out
}

// describe names a watch in violation messages.
func describe(w *history.Watch) string {
	ep := w.Endpoint
	if ep == "" {
		ep = "all endpoints"
	}
	return fmt.Sprintf("watch %d (client %d, %s, %s from rev %d)", w.ID, w.ClientID, ep, rangeString(w.Key, w.End), w.StartRevision)
}

func rangeString(key, end string) string {
	switch end {
	case "":
		return fmt.Sprintf("key %q", key)
	case "\x00":
		return fmt.Sprintf("keys >= %q", key)
	}
	return fmt.Sprintf("range [%q, %q)", key, end)
}

// ordered compares each event with the one delivered just before it. The
// logical watch is ordered exactly when every such pair is, and one event
// out of place is then one violation: measured against the highest
// revision seen instead, a single event from far in the future made every
// later event a violation (thousands for one fault).
func (c *checker) ordered(ck *verdict.Check, ch []*history.Watch) {
	var prev int64
	var prevW *history.Watch
	for _, w := range ch {
		for _, r := range w.Responses {
			for _, e := range r.Events {
				if e.ModRevision < prev {
					where := "just before it in the stream"
					if prevW != w {
						where = fmt.Sprintf("last on watch %d, which this one resumed", prevW.ID)
					}
					ck.Violate("%s: event on %q at revision %d arrived after an event at revision %d %s",
						describe(w), e.Key, e.ModRevision, prev, where)
				}
				prev, prevW = e.ModRevision, w
			}
		}
	}
}

func (c *checker) unique(ck *verdict.Check, ch []*history.Watch) {
	type revKey struct {
		rev int64
		key string
	}
	seen := map[revKey]int64{}
	for _, w := range ch {
		for _, r := range w.Responses {
			for _, e := range r.Events {
				k := revKey{e.ModRevision, e.Key}
				if first, dup := seen[k]; dup {
					ck.Violate("%s: event on %q at revision %d delivered twice (first on watch %d)", describe(w), e.Key, e.ModRevision, first)
					continue
				}
				seen[k] = w.ID
			}
		}
	}
}

// bookmarkable checks that no event arrives at or below a revision a
// progress notification of the logical watch vouched for, and that one
// stream's notifications never go back. Across streams they may: a watch
// resumed on another member (a spread watcher, or a client on every
// endpoint) hears that member's current revision, which may lag the last
// one's, and a watch from a future revision hears the current revision,
// below its start. Its events still come after everything vouched for,
// since it resumes past it.
func (c *checker) bookmarkable(ck *verdict.Check, ch []*history.Watch) {
	var progress int64
	for _, w := range ch {
		var stream int64
		for _, r := range w.Responses {
			for _, e := range r.Events {
				if e.ModRevision <= progress {
					ck.Violate("%s: event on %q at revision %d arrived after a progress notification at revision %d promised every event up to it",
						describe(w), e.Key, e.ModRevision, progress)
				}
			}
			if r.Progress {
				if r.Revision < stream {
					ck.Violate("%s: progress notification at revision %d after one at revision %d", describe(w), r.Revision, stream)
				}
				stream = max(stream, r.Revision)
				progress = max(progress, r.Revision)
			}
		}
	}
}

// atomic checks that no revision is split across responses, and that a
// response holding events of a revision holds all of that revision's events
// in the watched range.
func (c *checker) atomic(ck *verdict.Check, w *history.Watch) {
	var lastRev int64
	for ri, r := range w.Responses {
		if len(r.Events) == 0 {
			continue
		}
		split := int64(-1)
		if r.Events[0].ModRevision == lastRev {
			split = lastRev
			ck.Violate("%s: events of revision %d split across responses %d and %d", describe(w), lastRev, ri-1, ri)
		}
		lastRev = r.Events[len(r.Events)-1].ModRevision
		got := map[int64]map[string]bool{}
		for _, e := range r.Events {
			if got[e.ModRevision] == nil {
				got[e.ModRevision] = map[string]bool{}
			}
			got[e.ModRevision][e.Key] = true
		}
		for rev, keys := range got {
			if rev == split || (ri+1 < len(w.Responses) && firstRev(w.Responses[ri+1]) == rev) {
				continue // already reported as a split
			}
			var missing []string
			for _, e := range c.log.EventsAt(rev) {
				if keyspace.InRange(e.Key, w.Key, w.End) && !keys[e.Key] {
					missing = append(missing, fmt.Sprintf("%q", e.Key))
				}
			}
			if len(missing) > 0 {
				ck.Violate("%s: response %d holds %d event(s) of revision %d but lacks %s of the same revision",
					describe(w), ri, len(keys), rev, strings.Join(missing, ", "))
			}
		}
	}
}

func firstRev(r history.WatchResponse) int64 {
	if len(r.Events) == 0 {
		return -1
	}
	return r.Events[0].ModRevision
}

// observed returns the first revision a stream vouches for (its first
// event, or one past the header of a first event-less response, but never
// below the revision it asked for: a watch from a future revision hears
// progress at the current one) and the last revision it vouches for (its
// last event or progress notification).
func observed(w *history.Watch) (from, to int64) {
	defer func() {
		if from > 0 {
			from = max(from, w.StartRevision)
		}
	}()
	for _, r := range w.Responses {
		if r.CompactRevision > 0 {
			continue
		}
		if from == 0 {
			if len(r.Events) > 0 {
				from = r.Events[0].ModRevision
			} else if r.Progress && r.Revision > 0 {
				from = r.Revision + 1
			}
		}
		for _, e := range r.Events {
			to = max(to, e.ModRevision)
		}
		if r.Progress {
			to = max(to, r.Revision)
		}
	}
	return from, to
}

// reliable compares what a logical watch delivered with every event the log
// holds for its range, from the first revision it showed to the last it
// observed. Revisions a compacted stream could not serve are excused.
func (c *checker) reliable(ck *verdict.Check, ch []*history.Watch) {
	var from, to int64
	type excuse struct{ from, to int64 }
	var excused []excuse
	delivered := map[int64]map[string]bool{}
	for _, w := range ch {
		f, t := observed(w)
		if f > 0 && t >= f {
			if from == 0 || f < from {
				from = f
			}
			to = max(to, t)
		}
		for _, r := range w.Responses {
			if r.CompactRevision > 0 {
				excused = append(excused, excuse{w.StartRevision, r.CompactRevision - 1})
			}
			for _, e := range r.Events {
				if delivered[e.ModRevision] == nil {
					delivered[e.ModRevision] = map[string]bool{}
				}
				delivered[e.ModRevision][e.Key] = true
			}
		}
	}
	if from == 0 {
		return
	}
	w := ch[0]
	missing := 0
	for _, e := range c.log.Range(from, to, w.Key, w.End) {
		if delivered[e.ModRevision][e.Key] {
			continue
		}
		skip := false
		for _, x := range excused {
			if x.from <= e.ModRevision && e.ModRevision <= x.to {
				skip = true
			}
		}
		if skip {
			continue
		}
		missing++
		if missing <= maxMissingPerWatch {
			ck.Violate("%s: missed %s (known from %s) although it observed revisions %d..%d",
				describe(streamAt(ch, e.ModRevision)), &e, strings.Join(e.Sources, ", "), from, to)
		}
	}
	if missing > maxMissingPerWatch {
		ck.Violate("%s: missed %d more events in revisions %d..%d", describe(w), missing-maxMissingPerWatch, from, to)
	}
}

// streamAt returns the stream of a chain responsible for rev: the last one
// that started at or before it.
func streamAt(ch []*history.Watch, rev int64) *history.Watch {
	w := ch[0]
	for _, x := range ch[1:] {
		if x.StartRevision <= rev {
			w = x
		}
	}
	return w
}

// resumable checks that a watch from revision R first gets the first event in
// its range at or after R.
func (c *checker) resumable(ck *verdict.Check, w *history.Watch) {
	if w.StartRevision <= 0 {
		return
	}
	var first *history.Event
	for ri := range w.Responses {
		r := &w.Responses[ri]
		if r.CompactRevision > 0 {
			return
		}
		if len(r.Events) > 0 {
			first = &r.Events[0]
			break
		}
	}
	if first == nil {
		return
	}
	if first.ModRevision < w.StartRevision {
		ck.Violate("%s: first event is on %q at revision %d, before the requested start revision", describe(w), first.Key, first.ModRevision)
		return
	}
	want := c.log.Range(w.StartRevision, first.ModRevision-1, w.Key, w.End)
	if len(want) > 0 {
		e := want[0]
		ck.Violate("%s: first event is on %q at revision %d, but the first event in range at or after revision %d is %s (known from %s)",
			describe(w), first.Key, first.ModRevision, w.StartRevision, &e, strings.Join(e.Sources, ", "))
	}
}

// consistent checks each event against the acknowledged writes and the
// key's state just before the event's revision.
func (c *checker) consistent(ck *verdict.Check, w *history.Watch) {
	for _, r := range w.Responses {
		for i := range r.Events {
			e := &r.Events[i]
			for _, msg := range c.eventProblems(w, e) {
				ck.Violate("%s: event on %q at revision %d: %s", describe(w), e.Key, e.ModRevision, msg)
			}
		}
	}
}

func (c *checker) eventProblems(w *history.Watch, e *history.Event) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch e.Type {
	case revlog.PutEvent:
		op, ok := c.log.Writer(e.Value)
		switch {
		case !ok:
			bad("value %q was never written by any operation", e.Value)
		case op.Key != e.Key:
			bad("value %q was written to %q by %s op %d", e.Value, op.Key, op.Kind, op.ID)
		case op.Outcome == history.Fail:
			bad("value %q comes from %s op %d, which failed and so must not have taken effect", e.Value, op.Kind, op.ID)
		case op.Kind == history.Txn && op.Outcome == history.OK && op.Resp != nil && !op.Resp.Succeeded:
			bad("value %q comes from txn op %d, whose compare failed so it wrote nothing", e.Value, op.ID)
		case op.Outcome == history.OK && op.Resp != nil && op.Resp.Revision != e.ModRevision:
			bad("value %q was written by %s op %d at revision %d", e.Value, op.Kind, op.ID, op.Resp.Revision)
		case op.Kind == history.Put && op.Lease != e.Lease:
			bad("lease %x but put op %d attached lease %x", e.Lease, op.ID, op.Lease)
		}
		if e.CreateRevision != 0 && e.IsCreate != (e.CreateRevision == e.ModRevision) {
			bad("is_create=%v but create revision %d and mod revision %d", e.IsCreate, e.CreateRevision, e.ModRevision)
		}
		if e.Version != 0 && e.IsCreate != (e.Version == 1) {
			bad("is_create=%v but version %d", e.IsCreate, e.Version)
		}
	case revlog.DeleteEvent:
		if e.IsCreate {
			bad("a delete marked is_create")
		}
	default:
		bad("unknown event type %q", e.Type)
	}

	prev, exists, certain := c.log.Before(e.Key, e.ModRevision)
	if certain {
		switch {
		case e.Type == revlog.PutEvent && exists && e.IsCreate:
			bad("is_create=true but the key already held %q (mod revision %d)", prev.Value, prev.ModRevision)
		case e.Type == revlog.PutEvent && !exists && !e.IsCreate:
			bad("is_create=false but the key did not exist before")
		case e.Type == revlog.PutEvent && exists && e.CreateRevision != 0 && prev.CreateRevision != 0 && e.CreateRevision != prev.CreateRevision:
			bad("create revision %d but the key was created at revision %d", e.CreateRevision, prev.CreateRevision)
		case e.Type == revlog.PutEvent && exists && e.Version != 0 && prev.Version != 0 && e.Version != prev.Version+1:
			bad("version %d but the key was at version %d", e.Version, prev.Version)
		case e.Type == revlog.DeleteEvent && !exists:
			bad("delete of a key that did not exist")
		}
	}
	if !w.PrevKV {
		if e.PrevKV != nil {
			bad("carries a prev_kv the watch did not ask for")
		}
		return out
	}
	switch {
	case e.PrevKV == nil:
		// A compaction at C removes every version superseded at or
		// before C, so an event at or below C may have lost its prev_kv.
		if certain && exists && e.ModRevision > c.compacted {
			bad("prev_kv missing; the key held %q (mod revision %d)", prev.Value, prev.ModRevision)
		}
	case certain && !exists:
		bad("prev_kv %q@%d but the key did not exist before", e.PrevKV.Value, e.PrevKV.ModRevision)
	case certain && exists:
		if d := kvDiff(*e.PrevKV, prev); d != "" {
			bad("prev_kv %q@%d but the key held %q@%d (%s)", e.PrevKV.Value, e.PrevKV.ModRevision, prev.Value, prev.ModRevision, d)
		}
	default:
		// The prior state is not certain; still, prev_kv must name an
		// earlier write of this key.
		if e.PrevKV.Key != e.Key || e.PrevKV.ModRevision >= e.ModRevision {
			bad("prev_kv %q@%d is not an earlier state of the key", e.PrevKV.Key, e.PrevKV.ModRevision)
		} else if op, ok := c.log.Writer(e.PrevKV.Value); !ok || op.Key != e.Key {
			bad("prev_kv value %q was never written to this key", e.PrevKV.Value)
		}
	}
	return out
}

// kvDiff names the first field on which a prev_kv differs from the state the
// log holds; fields the log does not know (zero) agree with anything.
func kvDiff(got, want history.KV) string {
	switch {
	case got.Key != want.Key:
		return "key differs"
	case got.Value != want.Value:
		return "value differs"
	case got.ModRevision != want.ModRevision:
		return "mod revision differs"
	case want.CreateRevision != 0 && got.CreateRevision != want.CreateRevision:
		return fmt.Sprintf("create revision %d, want %d", got.CreateRevision, want.CreateRevision)
	case want.Version != 0 && got.Version != want.Version:
		return fmt.Sprintf("version %d, want %d", got.Version, want.Version)
	case got.Lease != want.Lease:
		return fmt.Sprintf("lease %x, want %x", got.Lease, want.Lease)
	}
	return ""
}

func (c *checker) filter(ck *verdict.Check, w *history.Watch) {
	for _, r := range w.Responses {
		for _, e := range r.Events {
			if !keyspace.InRange(e.Key, w.Key, w.End) {
				ck.Violate("%s: event on %q at revision %d is outside the watched range", describe(w), e.Key, e.ModRevision)
			}
			if e.PrevKV != nil && e.PrevKV.Key != e.Key {
				ck.Violate("%s: event on %q at revision %d carries a prev_kv for key %q", describe(w), e.Key, e.ModRevision, e.PrevKV.Key)
			}
		}
	}
}
