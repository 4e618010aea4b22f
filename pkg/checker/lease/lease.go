// Package lease checks what etcd promises about leases, the primitive behind
// Kubernetes leader election and endpoint registration: a revoked lease's
// keys are gone for good, a lease nobody keeps alive expires about TTL after
// it was granted, and a lease that is kept alive keeps its keys.
//
// The workload's key-space conventions tell the checks which keys to watch:
// keys under /lease-expire/ are attached to leases that are never kept alive,
// keys under /lease-keep/ to leases that are.
package lease

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
	Revoke    = "lease/revoke"
	Expiry    = "lease/expiry"
	KeepAlive = "lease/keepalive"
)

// Options tune the timing checks.
type Options struct {
	// ExpiryTolerance is how long past its TTL a lease may take to expire
	// (and how much earlier than its TTL a kept-alive lease may be judged)
	// without comment: leader clocks, the lessor's check interval and the
	// raft round trip of the revoke all add to it. Default 2s.
	ExpiryTolerance time.Duration
	// LooseTolerance is the lateness beyond which an expiry is a violation
	// rather than a warning. etcd extends leases on a leader change, so a
	// failover during a lease's life makes it legitimately late by up to an
	// election. Default 10s.
	LooseTolerance time.Duration
}

func (o Options) withDefaults() Options {
	if o.ExpiryTolerance <= 0 {
		o.ExpiryTolerance = 2 * time.Second
	}
	if o.LooseTolerance <= 0 {
		o.LooseTolerance = 10 * time.Second
	}
	if o.LooseTolerance < o.ExpiryTolerance {
		o.LooseTolerance = o.ExpiryTolerance
	}
	return o
}

// Check runs the lease checks on h.
func Check(h *history.History, opts Options) []verdict.Check {
	start := time.Now()
	opts = opts.withDefaults()
	x := newIndex(h)
	checks := []verdict.Check{
		x.checkRevoke(),
		x.checkExpiry(opts),
		x.checkKeepAlive(opts),
	}
	for i := range checks {
		checks[i].Duration = time.Since(start)
	}
	return checks
}

// index holds the views of the history the checks share.
type index struct {
	h      *history.History
	grants map[int64]*history.Operation // lease ID -> acknowledged grant
	// keepalives are the acknowledged keep-alives of each lease, by call.
	keepalives map[int64][]*history.Operation
	failedKA   map[int64][]*history.Operation
	// revokes are every revoke of each lease, whatever its outcome.
	revokes map[int64][]*history.Operation
	// puts by value: values are unique per run.
	byValue map[string]*history.Operation
	// reads are acknowledged linearizable reads (gets, ranges, and the
	// else branch of failed txns), by call.
	reads []*history.Operation
	// readsByKey holds the single-key reads of reads; rangeReads the rest.
	readsByKey map[string][]*history.Operation
	rangeReads []*history.Operation
	// writes are every put, delete and txn of each key, whatever the outcome.
	writes map[string][]*history.Operation
	// deletes are watch delete events of each key.
	deletes map[string][]watchDelete
}

type watchDelete struct {
	time, rev int64
	watch     int64
}

func newIndex(h *history.History) *index {
	x := &index{h: h, grants: map[int64]*history.Operation{}, keepalives: map[int64][]*history.Operation{},
		failedKA: map[int64][]*history.Operation{}, revokes: map[int64][]*history.Operation{},
		byValue: map[string]*history.Operation{}, writes: map[string][]*history.Operation{}, deletes: map[string][]watchDelete{}}
	for i := range h.Operations {
		op := &h.Operations[i]
		switch op.Kind {
		case history.LeaseGrant:
			if op.Outcome == history.OK && op.Resp != nil && op.Resp.LeaseID != 0 {
				x.grants[op.Resp.LeaseID] = op
			}
		case history.LeaseKeepAlive:
			switch op.Outcome {
			case history.OK:
				x.keepalives[op.Lease] = append(x.keepalives[op.Lease], op)
			case history.Fail:
				x.failedKA[op.Lease] = append(x.failedKA[op.Lease], op)
			}
		case history.LeaseRevoke:
			x.revokes[op.Lease] = append(x.revokes[op.Lease], op)
		case history.Put, history.Txn, history.Delete:
			x.writes[op.Key] = append(x.writes[op.Key], op)
			if op.WritesValue() && op.Value != "" {
				if _, dup := x.byValue[op.Value]; !dup {
					x.byValue[op.Value] = op
				}
			}
		}
		if keyspace.LinearizableRead(op) {
			x.reads = append(x.reads, op)
		}
	}
	for _, ops := range x.keepalives {
		sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	}
	sort.SliceStable(x.reads, func(i, j int) bool { return x.reads[i].Call < x.reads[j].Call })
	x.readsByKey = map[string][]*history.Operation{}
	for _, rd := range x.reads {
		if rd.Kind == history.Range {
			x.rangeReads = append(x.rangeReads, rd)
		} else if rd.End == "" {
			x.readsByKey[rd.Key] = append(x.readsByKey[rd.Key], rd)
		}
	}
	for _, w := range h.Watches {
		for _, r := range w.Responses {
			for _, e := range r.Events {
				if e.Type == revlog.DeleteEvent {
					x.deletes[e.Key] = append(x.deletes[e.Key], watchDelete{time: r.Time, rev: e.ModRevision, watch: w.ID})
				}
			}
		}
	}
	return x
}

// covers reports whether a read tells the whole truth about key: a get of
// it, an unlimited range over it, or a txn's else-branch get.
func covers(op *history.Operation, key string) bool {
	switch op.Kind {
	case history.Get, history.Txn:
		return op.Key == key && op.End == ""
	case history.Range:
		return op.Limit == 0 && keyspace.InRange(key, op.Key, op.End)
	}
	return false
}

// lookup returns the KV a read returned for key, if any.
func lookup(op *history.Operation, key string) (history.KV, bool) {
	for _, kv := range op.Resp.KVs {
		if kv.Key == key {
			return kv, true
		}
	}
	return history.KV{}, false
}

func ttlOf(grant *history.Operation) time.Duration {
	ttl := grant.TTL
	if grant.Resp != nil && grant.Resp.TTL > 0 {
		ttl = grant.Resp.TTL
	}
	return time.Duration(ttl) * time.Second
}

func describeOp(op *history.Operation) string {
	return fmt.Sprintf("%s op %d (client %d)", op.Kind, op.ID, op.ClientID)
}

func secs(ns int64) string { return fmt.Sprintf("%.2fs", time.Duration(ns).Seconds()) }

// checkRevoke: once a revoke returned, no read called afterwards may see a
// value written with the lease, no watch may show one at a later revision,
// and no put may attach the lease again.
func (x *index) checkRevoke() verdict.Check {
	ck := verdict.Check{Name: Revoke, Status: verdict.Pass}
	// The first acknowledged revoke of each lease, by return.
	revoked := map[int64]*history.Operation{}
	for lease, ops := range x.revokes {
		for _, op := range ops {
			if op.Outcome != history.OK || op.Resp == nil {
				continue
			}
			if r := revoked[lease]; r == nil || op.Return < r.Return {
				revoked[lease] = op
			}
		}
	}
	if len(revoked) == 0 {
		ck.Status, ck.Summary = verdict.Skipped, "no acknowledged lease revokes in the history"
		return ck
	}
	// leaseOf names the lease a value was written with: the put's lease, or
	// the lease etcd reported on the KV.
	leaseOf := func(value string, kvLease int64) int64 {
		if op := x.byValue[value]; op != nil && op.Kind == history.Put && op.Lease != 0 && op.Outcome != history.Fail {
			return op.Lease
		}
		return kvLease
	}
	checked := 0
	for _, rd := range x.reads {
		for _, kv := range rd.Resp.KVs {
			l := leaseOf(kv.Value, kv.Lease)
			rv := revoked[l]
			if l == 0 || rv == nil {
				continue
			}
			checked++
			if rd.Call > rv.Return {
				ck.Violate("%s read %q=%q (mod revision %d), written with lease %x, %s after %s revoked that lease at revision %d",
					describeOp(rd), kv.Key, kv.Value, kv.ModRevision, l, secs(rd.Call-rv.Return), describeOp(rv), rv.Resp.Revision)
			}
		}
	}
	for _, w := range x.h.Watches {
		for _, r := range w.Responses {
			for _, e := range r.Events {
				if e.Type == revlog.DeleteEvent {
					continue
				}
				l := leaseOf(e.Value, e.Lease)
				rv := revoked[l]
				if l == 0 || rv == nil {
					continue
				}
				checked++
				if e.ModRevision > rv.Resp.Revision {
					ck.Violate("watch %d (client %d, %s) saw put %q=%q with lease %x at revision %d, after %s revoked that lease at revision %d",
						w.ID, w.ClientID, w.Endpoint, e.Key, e.Value, l, e.ModRevision, describeOp(rv), rv.Resp.Revision)
				}
			}
		}
	}
	for _, ops := range x.writes {
		for _, op := range ops {
			if op.Kind != history.Put || op.Lease == 0 || op.Outcome != history.OK {
				continue
			}
			if rv := revoked[op.Lease]; rv != nil && op.Call > rv.Return {
				ck.Violate("%s attached %q to lease %x %s after %s revoked it, and succeeded",
					describeOp(op), op.Key, op.Lease, secs(op.Call-rv.Return), describeOp(rv))
			}
		}
	}
	// A revoked lease is gone from every lessor: a keep-alive of it sent
	// after the revoke returned must answer "lease not found". etcd's leader
	// applies every committed entry before it renews a lease (a renewal
	// that skipped that wait was etcd issue 15247), so no lag excuses one.
	keptAfter := 0
	for lease, kas := range x.keepalives {
		rv := revoked[lease]
		if rv == nil {
			continue
		}
		for _, ka := range kas {
			if ka.Call <= rv.Return {
				continue
			}
			keptAfter++
			checked++
			ck.Violate("%s kept lease %x alive (TTL %ds) %s after %s revoked it at revision %d, and succeeded",
				describeOp(ka), lease, ka.Resp.TTL, secs(ka.Call-rv.Return), describeOp(rv), rv.Resp.Revision)
		}
	}
	ck.Summary = fmt.Sprintf("%d revoked leases, %d observations of their values", len(revoked), checked)
	if keptAfter > 0 {
		ck.Summary += fmt.Sprintf(", %d keep-alives after their revoke", keptAfter)
	}
	if ck.Status == verdict.Fail {
		ck.Summary = fmt.Sprintf("%d violation(s); ", len(ck.Violations)+ck.Omitted) + ck.Summary
	}
	return ck
}

// leasedPut is a put of a workload lease key together with its grant.
type leasedPut struct {
	put   *history.Operation
	grant *history.Operation
	ttl   time.Duration
}

// leasedPuts returns the puts under prefix attached to an acknowledged
// grant, in call order.
func (x *index) leasedPuts(prefix string) []leasedPut {
	var out []leasedPut
	for i := range x.h.Operations {
		op := &x.h.Operations[i]
		if op.Kind != history.Put || op.Lease == 0 || op.Outcome == history.Fail || !strings.HasPrefix(op.Key, prefix) {
			continue
		}
		g := x.grants[op.Lease]
		if g == nil {
			continue
		}
		out = append(out, leasedPut{put: op, grant: g, ttl: ttlOf(g)})
	}
	return out
}

// readsOf returns the reads that cover key and were called after t, by call.
func (x *index) readsOf(key string, after int64) []*history.Operation {
	byKey := x.readsByKey[key]
	i := sort.Search(len(byKey), func(i int) bool { return byKey[i].Call > after })
	out := append([]*history.Operation(nil), byKey[i:]...)
	j := sort.Search(len(x.rangeReads), func(j int) bool { return x.rangeReads[j].Call > after })
	merged := false
	for _, rd := range x.rangeReads[j:] {
		if covers(rd, key) {
			out = append(out, rd)
			merged = true
		}
	}
	if merged {
		sort.SliceStable(out, func(a, b int) bool { return out[a].Call < out[b].Call })
	}
	return out
}

// expiryDeadline returns when a lease granted at grantReturn must have
// expired. etcd refreshes every lease to its full TTL when a new leader is
// elected (lessor.Promote), so any fault window that begins before the
// lease is surely revoked may restart the clock: the deadline moves to the
// window's end plus the TTL. "Surely revoked" is the deadline plus the
// tolerance, because the leader notices expiry only on its next check and
// then must commit the revoke, and a leader killed in between takes the
// revoke with it. Without this, every leader change would read as a lease
// that outlived its TTL.
func (x *index) expiryDeadline(grantReturn int64, ttl, tolerance time.Duration) (deadline int64, extended bool) {
	deadline = grantReturn + int64(ttl)
	for moved := true; moved; {
		moved = false
		for _, f := range x.h.Faults {
			if f.Start <= deadline+int64(tolerance) && f.End+int64(ttl) > deadline {
				deadline = f.End + int64(ttl)
				extended, moved = true, true
			}
		}
	}
	return deadline, extended
}

// checkExpiry: a key attached to a lease nobody keeps alive is gone within
// TTL + ExpiryTolerance of the grant's return.
func (x *index) checkExpiry(opts Options) verdict.Check {
	ck := verdict.Check{Name: Expiry, Status: verdict.Pass}
	// sinceGrant is when each key was first seen gone, from its grant's
	// return; margin is that moment relative to the key's deadline
	// (negative: before it).
	var sinceGrant, margin []time.Duration
	var minTTL, maxTTL time.Duration
	keys, keptAlive, unobserved, extendedByFaults := 0, 0, 0, 0
	for _, lp := range x.leasedPuts(keyspace.LeaseExpirePrefix) {
		if len(x.keepalives[lp.put.Lease]) > 0 {
			// Not the workload's contract for this prefix; judging it would
			// need the keep-alive check's rules.
			keptAlive++
			continue
		}
		keys++
		if minTTL == 0 || lp.ttl < minTTL {
			minTTL = lp.ttl
		}
		maxTTL = max(maxTTL, lp.ttl)
		p, g := lp.put, lp.grant
		deadline, extended := x.expiryDeadline(g.Return, lp.ttl, opts.ExpiryTolerance)
		if extended {
			extendedByFaults++
		}
		// When the put is acknowledged, absence after it means expiry; when
		// its outcome is unknown, only after a read saw its value.
		known := p.Outcome == history.OK
		after := p.Return
		var worst *history.Operation
		var gone int64 = -1
		for _, rd := range x.readsOf(p.Key, p.Call) {
			kv, found := lookup(rd, p.Key)
			switch {
			case found && kv.Value == p.Value:
				known = true
				after = max(after, rd.Return)
				if worst == nil || rd.Call > worst.Call {
					worst = rd
				}
			case !found && known && rd.Call > after && gone < 0:
				gone = rd.Return
			}
		}
		for _, d := range x.deletes[p.Key] {
			if d.time > p.Call && (gone < 0 || d.time < gone) && (p.Resp == nil || d.rev > p.Resp.Revision) {
				gone = d.time
			}
		}
		if gone >= 0 {
			sinceGrant = append(sinceGrant, time.Duration(gone-g.Return))
			margin = append(margin, time.Duration(gone-deadline))
		} else {
			unobserved++
		}
		if worst == nil {
			continue
		}
		late := time.Duration(worst.Call - deadline)
		switch {
		case late > opts.LooseTolerance:
			ck.Violate("key %q (lease %x, TTL %s, granted by %s) still read with its value by %s, called %s after the lease should have expired (tolerance %s)",
				p.Key, p.Lease, lp.ttl, describeOp(g), describeOp(worst), late.Round(time.Millisecond), opts.LooseTolerance)
		case late > opts.ExpiryTolerance:
			ck.Warn("key %q (lease %x, TTL %s) still read by %s %s after the lease should have expired; expected within %s",
				p.Key, p.Lease, lp.ttl, describeOp(worst), late.Round(time.Millisecond), opts.ExpiryTolerance)
		}
	}
	if keys == 0 {
		ck.Status = verdict.Skipped
		ck.Summary = fmt.Sprintf("no keys under %s attached to a lease that was never kept alive", keyspace.LeaseExpirePrefix)
		return ck
	}
	// Say what is measured, against which deadline, and what fails: a
	// negative "delay" without that reads like keys vanishing early.
	ck.Summary = fmt.Sprintf("%d keys on leases never kept alive (TTL %s). Deadline: grant + TTL, restarted after any fault window "+
		"in the lease's life (a new leader refreshes every lease); reading a key's value past deadline + %s is a violation, past + %s a warning",
		keys, ttlRange(minTTL, maxTTL), opts.LooseTolerance, opts.ExpiryTolerance)
	if len(sinceGrant) > 0 {
		ck.Summary += fmt.Sprintf(". First seen gone %s after the grant (min / median / max, %d keys), %s",
			distribution(sinceGrant), len(sinceGrant), marginRange(margin))
	}
	if extendedByFaults > 0 {
		ck.Summary += fmt.Sprintf("; %d deadlines restarted by a fault window", extendedByFaults)
	}
	if unobserved > 0 {
		ck.Summary += fmt.Sprintf("; %d never observed gone", unobserved)
	}
	if keptAlive > 0 {
		ck.Summary += fmt.Sprintf("; %d skipped because their lease was kept alive", keptAlive)
	}
	if ck.Status == verdict.Fail {
		ck.Summary = fmt.Sprintf("%d violation(s); ", len(ck.Violations)+ck.Omitted) + ck.Summary
	}
	return ck
}

// distribution formats min / median / max of ds, sorting it.
func distribution(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%s / %s / %s", r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}

// marginRange says how the keys seen gone stand against their deadlines,
// in words rather than signed durations.
func marginRange(ds []time.Duration) string {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	say := func(d time.Duration) string {
		d = d.Round(time.Millisecond)
		if d <= 0 {
			return fmt.Sprintf("%s before", -d)
		}
		return fmt.Sprintf("%s after", d)
	}
	if ds[0] == ds[len(ds)-1] {
		return say(ds[0]) + " the deadline"
	}
	return fmt.Sprintf("from %s to %s the deadline", say(ds[0]), say(ds[len(ds)-1]))
}

func ttlRange(lo, hi time.Duration) string {
	if lo == hi {
		return lo.String()
	}
	return lo.String() + "–" + hi.String()
}

// checkKeepAlive: a key whose lease keeps being refreshed stays readable.
func (x *index) checkKeepAlive(opts Options) verdict.Check {
	ck := verdict.Check{Name: KeepAlive, Status: verdict.Pass}
	keys, reads, missing := 0, 0, 0
	tol := int64(opts.ExpiryTolerance)
	for _, lp := range x.leasedPuts(keyspace.LeaseKeepPrefix) {
		p, g := lp.put, lp.grant
		kas := x.keepalives[p.Lease]
		keys++
		ttl := int64(lp.ttl)
		// The lease is refreshed no earlier than each acknowledged refresh's
		// call, so it surely lives until call + TTL.
		refreshes := append([]*history.Operation{g}, kas...)
		// aliveUntil returns how long the lease surely lives given the
		// refreshes called up to t, and the longest pause between
		// consecutive refreshes before t that exceeded the TTL.
		aliveUntil := func(t int64) (until, pause int64) {
			prev := g.Call
			until = g.Call + ttl
			for _, r := range refreshes[1:] {
				if r.Call > t {
					break
				}
				if gap := r.Call - prev; gap > ttl-tol {
					pause = max(pause, gap)
				}
				prev = r.Call
				until = max(until, r.Call+ttl)
			}
			return until, pause
		}
		// Anything else that may remove the key makes a missing key
		// uninformative from then on.
		removedBy := func(t int64) *history.Operation {
			for _, op := range x.revokes[p.Lease] {
				if op.Call < t && op.Outcome != history.Fail {
					return op
				}
			}
			for _, op := range x.writes[p.Key] {
				if op != p && op.Call < t && op.Outcome != history.Fail {
					return op
				}
			}
			return nil
		}
		known := p.Outcome == history.OK
		after := p.Return
		for _, rd := range x.readsOf(p.Key, p.Call) {
			kv, found := lookup(rd, p.Key)
			reads++
			if found {
				if kv.Value == p.Value {
					known, after = true, max(after, rd.Return)
				}
				continue
			}
			if !known || rd.Call <= after || removedBy(rd.Return) != nil {
				continue
			}
			missing++
			until, pause := aliveUntil(rd.Call)
			switch {
			case pause > 0:
				ck.Warn("key %q (lease %x, TTL %s) missing in %s; keep-alives paused for %s before it, longer than the TTL, so the lease may have expired",
					p.Key, p.Lease, lp.ttl, describeOp(rd), secs(pause))
			case rd.Return < until-tol:
				ck.Violate("key %q (lease %x, TTL %s) missing in %s although its lease was kept alive: the last keep-alive before it was called %s earlier",
					p.Key, p.Lease, lp.ttl, describeOp(rd), secs(rd.Call-(until-ttl)))
			default:
				ck.Warn("key %q (lease %x, TTL %s) missing in %s, %s after the last successful refresh; keep-alives had stopped succeeding",
					p.Key, p.Lease, lp.ttl, describeOp(rd), secs(rd.Call-(until-ttl)))
			}
		}
		// A keep-alive that finds the lease gone while it should live means
		// the lease expired early, even if no read looked at the key then.
		for _, op := range x.failedKA[p.Lease] {
			if !strings.Contains(strings.ToLower(op.Error), "not found") || removedBy(op.Return) != nil {
				continue
			}
			until, pause := aliveUntil(op.Call)
			if pause == 0 && op.Return < until-tol {
				ck.Violate("%s found lease %x (key %q, TTL %s) gone while it was being kept alive: %s",
					describeOp(op), p.Lease, p.Key, lp.ttl, op.Error)
			}
		}
	}
	if keys == 0 {
		ck.Status = verdict.Skipped
		ck.Summary = fmt.Sprintf("no keys under %s attached to a granted lease", keyspace.LeaseKeepPrefix)
		return ck
	}
	ck.Summary = fmt.Sprintf("%d kept-alive keys, %d reads of them, %d found the key missing", keys, reads, missing)
	if ck.Status == verdict.Fail {
		ck.Summary = fmt.Sprintf("%d violation(s); ", len(ck.Violations)+ck.Omitted) + ck.Summary
	}
	return ck
}
