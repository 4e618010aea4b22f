package linearizable

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// CheckValues decides a history that carries no revisions
// (history.Meta.NoRevisions) with the value-only model: porcupine,
// partitioned into groups of keys no operation spans (a key alone, unless a
// range or a lease ties it to others). The revision fast path needs
// revisions as its witness and does not run. The store starts empty, or as
// a baseline read at the start of the history showed it.
func CheckValues(ctx context.Context, h *history.History, opts Options) verdict.Check {
	start := time.Now()
	c := checkValues(ctx, h, opts)
	c.Duration = time.Since(start)
	return c
}

func checkValues(ctx context.Context, h *history.History, opts Options) verdict.Check {
	c := verdict.Check{Name: Name}
	opts, ops, counts, done := prepare(ctx, h, opts, c)
	if done != nil {
		return *done
	}
	init := valueBaseline(h)
	pops := toPorcupine(ops)
	parts := partitionByKeys(pops, init)
	m := porcupineModel(init, model.NoRevisions)
	m.Partition = func([]porcupine.Operation) [][]porcupine.Operation { return parts }
	res, info, why := searchBounded(ctx, m, pops, opts.Timeout, opts.MemoryLimit)
	countText := fmt.Sprintf("%s; %s checked in %s that share no key or lease", counts, plural(countKeys(ops), "key"), plural(len(parts), "group"))
	const valuesOnly = "values only; the revision fast path is skipped and no revision is checked, because the history carries none"
	switch {
	case why != "":
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("linearizability unknown: porcupine's search was abandoned (%s); %s; %s", why, valuesOnly, countText)
		return c
	case res == porcupine.Ok:
		if bad := replayValues(parts, info, init); bad != "" {
			c.Status = verdict.Unknown
			c.Summary = fmt.Sprintf("linearizability unknown: porcupine found a linearization that the model's replay rejects (%s), a checker bug; %s", bad, countText)
			return c
		}
		c.Status = verdict.Pass
		c.Summary = fmt.Sprintf("linearizable (decided by porcupine on %s); %s", valuesOnly, countText)
		return c
	case res != porcupine.Illegal:
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("linearizability unknown: porcupine timed out after %s (%s); %s", opts.Timeout, valuesOnly, countText)
		return c
	}
	c.Status = verdict.Fail
	c.Summary = fmt.Sprintf("not linearizable (decided by porcupine on %s); %s", valuesOnly, countText)
	for _, v := range explainValues(parts, info, init) {
		c.Violate("%s", v)
	}
	if len(c.Violations) == 0 {
		// Never a failure nobody can read.
		c.Violate("no linearization exists, but porcupine named no partition that failed")
	}
	if opts.ArtifactDir != "" {
		artifact, warn := visualize(m, info, h, opts.ArtifactDir)
		addArtifact(&c, porcupineResult{artifact: artifact, warn: warn})
	}
	return c
}

func countKeys(ops []*history.Operation) int {
	keys := map[string]bool{}
	for _, op := range ops {
		if op.Key != "" {
			keys[op.Key] = true
		}
	}
	return len(keys)
}

// valueBaseline is the store a history without revisions starts from: as
// its baseline read (baselineRead) showed it, else empty.
func valueBaseline(h *history.History) model.State {
	if b := baselineRead(h); b != nil {
		return model.ValuesInit(b.Resp.KVs)
	}
	return model.ValuesInit(nil)
}

// partitionByKeys splits the operations into groups that share no key and
// no lease, so porcupine searches each on its own: the history is
// linearizable exactly when every group is, because an operation's
// legality depends only on the keys and leases it touches. A range touches
// every key in it that the history (or the initial store) ever names; a put
// with a lease ties its key to the lease, whose revoke deletes it.
// Partitions keep call order within themselves and are ordered by their
// first operation, so the result is deterministic.
func partitionByKeys(pops []porcupine.Operation, init model.State) [][]porcupine.Operation {
	initKVs := init.Range("", "\x00", 0)
	keySet := map[string]bool{}
	for _, p := range pops {
		op := p.Input.(*history.Operation)
		if op.Kind != history.Range && op.Key != "" {
			keySet[op.Key] = true
		}
		if r, ok := p.Output.(*history.Response); ok && r != nil {
			for _, kv := range r.KVs {
				keySet[kv.Key] = true
			}
		}
	}
	for _, kv := range initKVs {
		keySet[kv.Key] = true
	}
	keys := make([]string, 0, len(keySet))
	for k := range keySet {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	keyIndex := make(map[string]int, len(keys))
	for i, k := range keys {
		keyIndex[k] = i
	}
	// Union-find over keys, then leases, then one node per operation that
	// touches neither (a lease grant whose outcome is unknown).
	parent := make([]int, len(keys), len(keys)+len(pops))
	for i := range parent {
		parent[i] = i
	}
	node := func() int { parent = append(parent, len(parent)); return len(parent) - 1 }
	find := func(x int) int {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	union := func(a, b int) {
		if ra, rb := find(a), find(b); ra != rb {
			parent[rb] = ra
		}
	}
	leaseNode := map[int64]int{}
	leaseOf := func(id int64) int {
		n, ok := leaseNode[id]
		if !ok {
			n = node()
			leaseNode[id] = n
		}
		return n
	}
	for _, kv := range initKVs {
		if kv.Lease != 0 {
			union(keyIndex[kv.Key], leaseOf(kv.Lease))
		}
	}
	home := make([]int, len(pops)) // a node of each operation
	for i, p := range pops {
		op := p.Input.(*history.Operation)
		var touched []int
		switch op.Kind {
		case history.Range:
			lo := sort.SearchStrings(keys, op.Key)
			for j := lo; j < len(keys) && keyspace.InRange(keys[j], op.Key, op.End); j++ {
				touched = append(touched, j)
			}
		case history.Get, history.Put, history.Delete, history.Txn:
			touched = append(touched, keyIndex[op.Key])
		}
		lease := op.Lease
		if op.Kind == history.LeaseGrant {
			lease = 0
			if r, ok := p.Output.(*history.Response); ok && r != nil {
				lease = r.LeaseID
			}
		}
		if lease != 0 {
			touched = append(touched, leaseOf(lease))
		}
		if len(touched) == 0 {
			touched = append(touched, node())
		}
		for _, t := range touched[1:] {
			union(touched[0], t)
		}
		home[i] = touched[0]
	}
	group := map[int]int{}
	var parts [][]porcupine.Operation
	for i, p := range pops {
		r := find(home[i])
		g, ok := group[r]
		if !ok {
			g = len(parts)
			group[r] = g
			parts = append(parts, nil)
		}
		parts[g] = append(parts[g], p)
	}
	return parts
}

// replayValues replays the linearization porcupine found for every group
// through the value model, so that a pass rests on an order that was
// checked step by step, as on histories with revisions. It returns why the
// replay failed, or "".
func replayValues(parts [][]porcupine.Operation, info porcupine.LinearizationInfo, init model.State) string {
	partials := info.PartialLinearizationsOperations()
	if len(partials) != len(parts) {
		return fmt.Sprintf("%d linearizations for %d groups", len(partials), len(parts))
	}
	for p, partial := range partials {
		var full []porcupine.Operation
		for _, l := range partial {
			if len(l) == len(parts[p]) {
				full = l
				break
			}
		}
		if full == nil {
			return fmt.Sprintf("no complete linearization of the group on %s", groupKeys(parts[p]))
		}
		s := init
		for _, o := range full {
			op := o.Input.(*history.Operation)
			ok, n, why := model.Explain(s, op, o.Output.(*history.Response), model.NoRevisions)
			if !ok {
				return fmt.Sprintf("op %d: %s", op.ID, why)
			}
			s = n
		}
	}
	return ""
}

// explainValues names, for every group porcupine could not linearize, the
// operation its longest partial linearization could not get past and why
// the value model rejects it there.
func explainValues(parts [][]porcupine.Operation, info porcupine.LinearizationInfo, init model.State) []string {
	var out []string
	partials := info.PartialLinearizationsOperations()
	for p, partial := range partials {
		if p >= len(parts) {
			break
		}
		var longest []porcupine.Operation
		for _, l := range partial {
			if len(l) > len(longest) {
				longest = l
			}
		}
		if len(longest) == len(parts[p]) {
			continue // this group is linearizable
		}
		in := map[*history.Operation]bool{}
		s := init
		for _, o := range longest {
			op := o.Input.(*history.Operation)
			in[op] = true
			_, s, _ = model.Explain(s, op, o.Output.(*history.Response), model.NoRevisions)
		}
		var pending []*history.Operation
		for _, o := range parts[p] {
			op := o.Input.(*history.Operation)
			if !in[op] && op.Outcome == history.OK {
				pending = append(pending, op)
			}
		}
		if len(pending) == 0 {
			out = append(out, fmt.Sprintf("no linearization exists: the longest partial linearization covers %d of %d operations on %s", len(longest), len(parts[p]), groupKeys(parts[p])))
			continue
		}
		sort.SliceStable(pending, func(a, b int) bool { return pending[a].Return < pending[b].Return })
		op := pending[0]
		_, _, why := model.Explain(s, op, op.Resp, model.NoRevisions)
		if why == "" {
			why = "placing it here makes a later operation impossible"
		}
		out = append(out, fmt.Sprintf("op %d (client %d, %s) cannot be linearized: %s, after the longest partial linearization (%d of %d operations on %s, store %s)",
			op.ID, op.ClientID, model.NoRevisions.Describe(op, op.Resp), why, len(longest), len(parts[p]), groupKeys(parts[p]), clipState(model.NoRevisions.DescribeState(s))))
	}
	return out
}

func groupKeys(part []porcupine.Operation) string {
	seen := map[string]bool{}
	var keys []string
	for _, o := range part {
		k := o.Input.(*history.Operation).Key
		if k != "" && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	switch {
	case len(keys) == 0:
		return "leases"
	case len(keys) > 3:
		return fmt.Sprintf("%d keys from %s", len(keys), keys[0])
	}
	return fmt.Sprintf("%v", keys)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func clipState(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
