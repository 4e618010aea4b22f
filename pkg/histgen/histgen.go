// Package histgen simulates etcd traffic to produce realistic, seeded
// histories for the checkers' tests and benchmarks: concurrent clients with
// the workload's operation mix, random latencies, fault windows in which some
// operations time out (some of which took effect) or fail, and optionally an
// injected bug that makes the history one a correct checker must reject.
//
// The simulated store is linearizable by construction: every operation takes
// effect at one instant between its call and its return. With no bug, the
// history is linearizable; the tests rely on that.
package histgen

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Bug names a fault injected into the simulated store.
type Bug int

const (
	// NoBug: the store is linearizable.
	NoBug Bug = iota
	// StaleRead: one get returns the key's previous value at the current
	// header revision.
	StaleRead
	// LostWrite: one put is acknowledged with a revision but never applied.
	LostWrite
	// RevisionRegression: one get answers with a header revision older than
	// one its client already saw.
	RevisionRegression
	// MovedDelete: one conditional delete (Config.CondDeletes) deletes its
	// key and is acknowledged as succeeded although the key's mod revision
	// had moved from the one it compared.
	MovedDelete
)

func (b Bug) String() string {
	switch b {
	case NoBug:
		return "none"
	case StaleRead:
		return "stale-read"
	case LostWrite:
		return "lost-write"
	case RevisionRegression:
		return "revision-regression"
	case MovedDelete:
		return "moved-delete"
	}
	return "bug(" + strconv.Itoa(int(b)) + ")"
}

// Config says what to generate. Zero fields take the defaults noted.
type Config struct {
	Ops     int   // operations to record (default 1000)
	Clients int   // concurrent clients (default 4)
	Seed    int64 // seed of every random choice
	// UnknownRate is the chance that an operation inside a fault window
	// times out (half of those timed-out writes took effect); half as many
	// again fail outright. 0 disables fault windows.
	UnknownRate float64
	// Bug is injected once, in the second half of the run.
	Bug Bug
	// Keys is the size of the /kv/ key space (default 10).
	Keys int
	// FaultEvery and FaultLength shape the fault windows in simulated
	// nanoseconds (default: 20ms of every 200ms).
	FaultEvery, FaultLength int64
	// CondDeletes makes a quarter of the txns deletes on the mod revision
	// the client last saw (then "delete", else get), as a Kubernetes
	// apiserver deletes. Off, the random choices are those of a history
	// generated before conditional deletes existed.
	CondDeletes bool
}

type kvState struct {
	value string
	mod   int64
	lease int64
	acked bool // written by an operation that returned OK
	prev  *history.KV
}

type store struct {
	rev    int64
	kvs    map[string]*kvState
	leases map[int64]bool
	nextLs int64
}

type event struct {
	at     int64
	call   bool // a client's call; otherwise an operation's effect
	client int
	op     int // index into ops for effects
	seq    int64
}

type events []event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int)  { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)    { *e = append(*e, x.(event)) }
func (e *events) Pop() any      { o := *e; x := o[len(o)-1]; *e = o[:len(o)-1]; return x }
func (e *events) push(ev event) { heap.Push(e, ev) }

type client struct {
	lastRev int64
	seenMod map[string]int64
}

type gen struct {
	cfg      Config
	rnd      *rand.Rand
	st       store
	ops      []history.Operation
	clients  []client
	keys     []string
	leaseKey []string
	leases   []int64 // leases granted with an OK answer, as clients know them
	bugDone  bool
	seq      int64
}

// Generate simulates cfg and returns the history, operations sorted by call.
func Generate(cfg Config) *history.History {
	if cfg.Ops <= 0 {
		cfg.Ops = 1000
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 4
	}
	if cfg.Keys <= 0 {
		cfg.Keys = 10
	}
	if cfg.FaultEvery <= 0 {
		cfg.FaultEvery = 200e6
	}
	if cfg.FaultLength <= 0 {
		cfg.FaultLength = 20e6
	}
	g := &gen{
		cfg: cfg,
		rnd: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)),
		st:  store{rev: 1, kvs: map[string]*kvState{}, leases: map[int64]bool{}, nextLs: 0x7a000},
		ops: make([]history.Operation, 0, cfg.Ops),
	}
	for i := 0; i < cfg.Keys; i++ {
		g.keys = append(g.keys, fmt.Sprintf("/kv/k%03d", i))
	}
	for i := 0; i < 4; i++ {
		g.leaseKey = append(g.leaseKey, fmt.Sprintf("/lease-keep/k%d", i))
	}
	g.clients = make([]client, cfg.Clients)
	h := &history.History{Meta: history.Meta{Format: history.FormatVersion, Scenario: "histgen", Backend: "simulated", Seed: cfg.Seed}}
	if cfg.Bug != NoBug {
		h.Meta.Notes = append(h.Meta.Notes, "injected bug: "+cfg.Bug.String())
	}
	var q events
	for c := range g.clients {
		g.clients[c].seenMod = map[string]int64{}
		q.push(event{at: int64(g.rnd.IntN(1e5)), call: true, client: c, seq: g.next()})
	}
	for q.Len() > 0 {
		ev := heap.Pop(&q).(event)
		if !ev.call {
			g.apply(ev.op)
			continue
		}
		if len(g.ops) == cfg.Ops {
			continue // let in-flight effects land, start nothing new
		}
		idx, effectAt := g.call(ev.client, ev.at)
		op := &g.ops[idx]
		if effectAt >= 0 {
			q.push(event{at: effectAt, op: idx, seq: g.next()})
		}
		q.push(event{at: op.Return + 1 + int64(g.rnd.IntN(2e5)), call: true, client: ev.client, seq: g.next()})
	}
	for i := range g.ops {
		if g.ops[i].Outcome == history.Unknown {
			g.ops[i].Resp = nil
		}
	}
	h.Operations = g.ops
	if cfg.UnknownRate > 0 {
		end := h.End()
		for s, id := int64(cfg.FaultEvery/2), 1; s < end; s, id = s+cfg.FaultEvery, id+1 {
			h.Faults = append(h.Faults, history.Fault{ID: id, Nemesis: "simulated", Action: "timeouts", Start: s, End: s + cfg.FaultLength})
		}
	}
	h.SortOperations()
	return h
}

func (g *gen) next() int64 { g.seq++; return g.seq }

func (g *gen) inFault(t int64) bool {
	if g.cfg.UnknownRate <= 0 {
		return false
	}
	off := t - g.cfg.FaultEvery/2
	return off >= 0 && off%g.cfg.FaultEvery < g.cfg.FaultLength
}

// call starts one operation for client c at time t and returns its index and
// when it takes effect (-1: never).
func (g *gen) call(c int, t int64) (int, int64) {
	id := int64(len(g.ops) + 1)
	op := history.Operation{ID: id, ClientID: c, Call: t}
	r := g.rnd.IntN(100)
	key := g.keys[g.rnd.IntN(len(g.keys))]
	switch {
	case r < 40:
		op.Kind, op.Key, op.Value = history.Put, key, "v"+strconv.FormatInt(id, 10)
	case r < 65:
		op.Kind, op.Key = history.Get, key
		if g.rnd.IntN(10) == 0 {
			op.Key = g.leaseKey[g.rnd.IntN(len(g.leaseKey))]
		}
	case r < 75:
		op.Kind = history.Range
		a, b := g.rnd.IntN(len(g.keys)), g.rnd.IntN(len(g.keys))
		if a > b {
			a, b = b, a
		}
		op.Key, op.End = g.keys[a], g.keys[b]+"\x00"
		if g.rnd.IntN(3) == 0 {
			op.Limit = int64(1 + g.rnd.IntN(3))
		}
	case r < 90:
		op.Kind, op.Key, op.Value = history.Txn, key, "v"+strconv.FormatInt(id, 10)
		op.ExpectModRev = g.clients[c].seenMod[key]
		if g.cfg.CondDeletes && g.rnd.IntN(4) == 0 {
			op.Then, op.Value = history.Delete, ""
		}
	case r < 95:
		op.Kind, op.Key = history.Delete, key
	default:
		switch g.rnd.IntN(3) {
		case 0:
			op.Kind, op.TTL = history.LeaseGrant, 600
		case 1:
			op.Kind, op.Value = history.Put, "v"+strconv.FormatInt(id, 10)
			op.Key = g.leaseKey[g.rnd.IntN(len(g.leaseKey))]
			if len(g.leases) > 0 {
				op.Lease = g.leases[g.rnd.IntN(len(g.leases))]
			}
		default:
			op.Kind = history.LeaseRevoke
			if len(g.leases) == 0 {
				op.Kind, op.TTL = history.LeaseGrant, 600
			} else {
				op.Lease = g.leases[g.rnd.IntN(len(g.leases))]
			}
		}
	}
	latency := int64(2e5 + g.rnd.IntN(3e6))
	op.Return = t + latency
	effect := t + 1 + g.rnd.Int64N(latency-1)
	op.Outcome = history.OK
	if g.inFault(t) {
		x := g.rnd.Float64()
		switch {
		case x < g.cfg.UnknownRate:
			op.Outcome, op.Error = history.Unknown, "context deadline exceeded"
			op.Return = t + 50e6
			if !op.Kind.IsWrite() || g.rnd.IntN(2) == 0 {
				effect = -1
			} else {
				effect = t + 1 + g.rnd.Int64N(5*latency)
			}
		case x < g.cfg.UnknownRate*1.5:
			op.Outcome, op.Error, effect = history.Fail, "etcdserver: request timed out", -1
		}
	}
	g.ops = append(g.ops, op)
	return len(g.ops) - 1, effect
}

// apply makes operation i take effect on the store and fills its response.
func (g *gen) apply(i int) {
	op := &g.ops[i]
	st := &g.st
	cl := &g.clients[op.ClientID]
	resp := &history.Response{}
	ok := op.Outcome == history.OK
	switch op.Kind {
	case history.Get:
		kv := st.kvs[op.Key]
		resp.Revision = st.rev
		if kv != nil {
			resp.KVs = []history.KV{{Key: op.Key, Value: kv.value, ModRevision: kv.mod, Lease: kv.lease}}
			resp.Count = 1
		}
		if ok && !g.bugDone && i >= g.cfg.Ops/2 && !g.inFault(op.Call) {
			switch g.cfg.Bug {
			case StaleRead:
				if kv != nil && kv.acked && kv.prev != nil {
					resp.KVs = []history.KV{*kv.prev}
					g.bugDone = true
				}
			case RevisionRegression:
				if kv != nil && kv.mod < cl.lastRev {
					resp.Revision = kv.mod
					g.bugDone = true
				}
			}
		}
		if kv != nil {
			cl.seenMod[op.Key] = kv.mod
		} else {
			cl.seenMod[op.Key] = 0
		}
	case history.Range:
		resp.Revision = st.rev
		for _, k := range g.keys {
			if k < op.Key || k >= op.End {
				continue
			}
			if kv := st.kvs[k]; kv != nil {
				resp.Count++
				if op.Limit == 0 || int64(len(resp.KVs)) < op.Limit {
					resp.KVs = append(resp.KVs, history.KV{Key: k, Value: kv.value, ModRevision: kv.mod, Lease: kv.lease})
				}
			}
		}
	case history.Put:
		if op.Lease != 0 && !st.leases[op.Lease] {
			if ok {
				op.Outcome, op.Error, op.Resp = history.Fail, "etcdserver: requested lease not found", nil
			}
			return
		}
		st.rev++
		resp.Revision = st.rev
		if ok && g.cfg.Bug == LostWrite && !g.bugDone && i >= g.cfg.Ops/2 && op.Lease == 0 && !g.inFault(op.Call) {
			g.bugDone = true
			break
		}
		g.write(op.Key, op.Value, op.Lease, ok)
	case history.Delete:
		if st.kvs[op.Key] != nil {
			st.rev++
			delete(st.kvs, op.Key)
			resp.Deleted = 1
		}
		resp.Revision = st.rev
	case history.Txn:
		var mod int64
		if kv := st.kvs[op.Key]; kv != nil {
			mod = kv.mod
		}
		moved := ok && g.cfg.Bug == MovedDelete && !g.bugDone && i >= g.cfg.Ops/2 && !g.inFault(op.Call) &&
			op.Then == history.Delete && st.kvs[op.Key] != nil && mod != op.ExpectModRev
		if moved {
			g.bugDone = true
		}
		if op.Then == history.Delete && (mod == op.ExpectModRev || moved) {
			if st.kvs[op.Key] != nil {
				st.rev++
				delete(st.kvs, op.Key)
				resp.Deleted = 1
			}
			resp.Succeeded = true
			if ok {
				cl.seenMod[op.Key] = 0
			}
		} else if mod == op.ExpectModRev {
			st.rev++
			g.write(op.Key, op.Value, 0, ok)
			resp.Succeeded = true
			if ok {
				cl.seenMod[op.Key] = st.rev
			}
		} else if kv := st.kvs[op.Key]; kv != nil {
			resp.KVs = []history.KV{{Key: op.Key, Value: kv.value, ModRevision: kv.mod, Lease: kv.lease}}
			if ok {
				cl.seenMod[op.Key] = kv.mod
			}
		} else if ok {
			cl.seenMod[op.Key] = 0
		}
		resp.Revision = st.rev
	case history.LeaseGrant:
		st.nextLs++
		st.leases[st.nextLs] = true
		resp.LeaseID, resp.TTL, resp.Revision = st.nextLs, op.TTL, st.rev
		if ok {
			g.leases = append(g.leases, st.nextLs)
		}
	case history.LeaseRevoke:
		if !st.leases[op.Lease] {
			if ok {
				op.Outcome, op.Error, op.Resp = history.Fail, "etcdserver: requested lease not found", nil
			}
			return
		}
		delete(st.leases, op.Lease)
		deleted := false
		for k, kv := range st.kvs {
			if kv.lease == op.Lease {
				delete(st.kvs, k)
				deleted = true
			}
		}
		if deleted {
			st.rev++
		}
		resp.Revision = st.rev
	}
	if ok {
		op.Resp = resp
		cl.lastRev = max(cl.lastRev, resp.Revision)
	}
}

func (g *gen) write(key, value string, lease int64, acked bool) {
	kv := g.st.kvs[key]
	var prev *history.KV
	if kv != nil && kv.acked {
		prev = &history.KV{Key: key, Value: kv.value, ModRevision: kv.mod, Lease: kv.lease}
	}
	g.st.kvs[key] = &kvState{value: value, mod: g.st.rev, lease: lease, acked: acked, prev: prev}
}
