package watch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// sim is a tiny single-node model of etcd's store that records what a
// correct server would show clients: operations with their responses and the
// events of each revision, from which correct watch streams are cut.
type sim struct {
	rng    *rand.Rand
	h      history.History
	state  map[string]history.KV
	rev    int64
	now    int64
	id     int64
	byRev  [][]history.Event // byRev[r] are the events of revision r
	leases map[int64][]string
}

func newSim(seed uint64) *sim {
	return &sim{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), state: map[string]history.KV{}, rev: 1,
		byRev: make([][]history.Event, 2), leases: map[int64][]string{}}
}

func (s *sim) tick() int64 { s.now += int64(1 + s.rng.IntN(1e6)); return s.now }

func (s *sim) nextID() int64 { s.id++; return s.id }

// apply commits one revision of changes and returns it.
func (s *sim) apply(evs []history.Event) int64 {
	s.rev++
	for i := range evs {
		e := &evs[i]
		e.ModRevision = s.rev
		prev, existed := s.state[e.Key]
		if existed {
			p := prev
			e.PrevKV = &p
		}
		if e.Type == "put" {
			kv := history.KV{Key: e.Key, Value: e.Value, ModRevision: s.rev, CreateRevision: s.rev, Version: 1, Lease: e.Lease}
			if existed {
				kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
			}
			e.CreateRevision, e.Version, e.IsCreate = kv.CreateRevision, kv.Version, !existed
			s.state[e.Key] = kv
		} else {
			delete(s.state, e.Key)
		}
	}
	s.byRev = append(s.byRev, evs)
	return s.rev
}

func (s *sim) record(op history.Operation) {
	op.ID = s.nextID()
	op.ClientID = 1 + s.rng.IntN(4)
	op.Call = s.tick()
	op.Return = s.tick()
	s.h.Operations = append(s.h.Operations, op)
}

func (s *sim) step() {
	key := fmt.Sprintf("/kv/k%03d", s.rng.IntN(8))
	value := fmt.Sprintf("v%d", s.id+1)
	switch n := s.rng.IntN(100); {
	case n < 40: // put, sometimes with an unknown outcome
		op := history.Operation{Kind: history.Put, Key: key, Value: value, Outcome: history.OK}
		switch s.rng.IntN(10) {
		case 0: // timed out but applied
			s.apply([]history.Event{{Type: "put", Key: key, Value: value}})
			op.Outcome = history.Unknown
		case 1: // timed out, never applied
			op.Outcome = history.Unknown
		default:
			op.Resp = &history.Response{Revision: s.apply([]history.Event{{Type: "put", Key: key, Value: value}})}
		}
		s.record(op)
	case n < 50:
		op := history.Operation{Kind: history.Delete, Key: key, Outcome: history.OK, Resp: &history.Response{Revision: s.rev}}
		if _, ok := s.state[key]; ok {
			op.Resp = &history.Response{Revision: s.apply([]history.Event{{Type: "delete", Key: key}}), Deleted: 1}
		}
		s.record(op)
	case n < 60:
		cur := s.state[key]
		expect := cur.ModRevision
		if s.rng.IntN(2) == 0 {
			expect++
		}
		op := history.Operation{Kind: history.Txn, Key: key, Value: value, ExpectModRev: expect, Outcome: history.OK}
		if expect == cur.ModRevision {
			op.Resp = &history.Response{Revision: s.apply([]history.Event{{Type: "put", Key: key, Value: value}}), Succeeded: true}
		} else {
			op.Resp = &history.Response{Revision: s.rev}
			if _, ok := s.state[key]; ok {
				op.Resp.KVs = []history.KV{cur}
			}
		}
		s.record(op)
	case n < 70: // grant a lease and attach two keys
		lease := s.nextID()
		s.record(history.Operation{Kind: history.LeaseGrant, TTL: 5, Outcome: history.OK, Resp: &history.Response{LeaseID: lease, TTL: 5, Revision: s.rev}})
		for i := range 2 {
			k := fmt.Sprintf("/kv/lease%d-%d", lease, i)
			v := fmt.Sprintf("v%d", s.id+1)
			rev := s.apply([]history.Event{{Type: "put", Key: k, Value: v, Lease: lease}})
			s.record(history.Operation{Kind: history.Put, Key: k, Value: v, Lease: lease, Outcome: history.OK, Resp: &history.Response{Revision: rev}})
			s.leases[lease] = append(s.leases[lease], k)
		}
	case n < 80: // a lease ends: revoked, or expired (seen only by watches)
		for lease, keys := range s.leases {
			var evs []history.Event
			for _, k := range keys {
				if kv, ok := s.state[k]; ok && kv.Lease == lease {
					evs = append(evs, history.Event{Type: "delete", Key: k})
				}
			}
			rev := s.rev
			if len(evs) > 0 {
				rev = s.apply(evs)
			}
			if s.rng.IntN(2) == 0 {
				s.record(history.Operation{Kind: history.LeaseRevoke, Lease: lease, Outcome: history.OK, Resp: &history.Response{Revision: rev}})
			}
			delete(s.leases, lease)
			break
		}
	default:
		op := history.Operation{Kind: history.Get, Key: key, Outcome: history.OK, Resp: &history.Response{Revision: s.rev}}
		if kv, ok := s.state[key]; ok {
			op.Resp.KVs = []history.KV{kv}
		}
		s.record(op)
	}
}

// watch cuts a correct watch stream (or a chain of resumed streams) on
// [key, end) out of the recorded revisions.
func (s *sim) watch(client int, key, end string, start int64, prevKV bool) {
	w := history.Watch{ID: s.nextID(), ClientID: client, Key: key, End: end, StartRevision: start, PrevKV: prevKV, Call: s.tick()}
	from := start
	if from == 0 {
		from = 2 + int64(s.rng.IntN(5))
	}
	var last int64
	flush := func(evs []history.Event) {
		if len(evs) > 0 {
			w.Responses = append(w.Responses, history.WatchResponse{Time: s.tick(), Revision: evs[len(evs)-1].ModRevision, Events: evs})
		}
	}
	var pending []history.Event
	for rev := from; rev <= s.rev; rev++ {
		for _, e := range s.byRev[rev] {
			if !matchRange(key, end, e.Key) {
				continue
			}
			if !prevKV {
				e.PrevKV = nil
			}
			pending = append(pending, e)
			last = rev
		}
		// Batch revisions at random; never split one.
		if s.rng.IntN(3) == 0 {
			flush(pending)
			pending = nil
			if s.rng.IntN(4) == 0 {
				w.Responses = append(w.Responses, history.WatchResponse{Time: s.tick(), Revision: rev, Progress: true})
				last = rev
			}
		}
		// Break the stream and resume after the last revision seen.
		if s.rng.IntN(40) == 0 && rev < s.rev {
			flush(pending)
			pending = nil
			w.Responses = append(w.Responses, history.WatchResponse{Time: s.tick(), Canceled: true, Error: "rpc error: code = Unavailable"})
			s.h.Watches = append(s.h.Watches, w)
			resume := last + 1
			if last == 0 {
				resume = from
			}
			w = history.Watch{ID: s.nextID(), ClientID: client, Key: key, End: end, StartRevision: resume, PrevKV: prevKV, Call: s.tick()}
			rev = resume - 1
		}
	}
	flush(pending)
	s.h.Watches = append(s.h.Watches, w)
}

func matchRange(key, end, k string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

func simulate(seed uint64, steps int) *history.History {
	s := newSim(seed)
	for range steps {
		s.step()
	}
	s.watch(1, "/kv/", "/kv0", 2, true)
	s.watch(2, "", "\x00", 0, false)
	s.watch(3, "/kv/k001", "", 1, true)
	s.watch(4, "/kv/k002", "/kv/k005", 3, false)
	return &s.h
}

// TestSimulatedHistoriesPass runs the checks on correct histories of a
// model store, with resumed streams, progress notifications, revokes and
// expiries; any violation is a false positive.
func TestSimulatedHistoriesPass(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		h := simulate(seed, 300)
		for _, c := range Check(h) {
			if c.Status != verdict.Pass {
				t.Errorf("seed %d: %s = %s: %q", seed, c.Name, c.Status, c.Violations)
			}
		}
	}
}

// TestSimulatedMutationsFail drops, duplicates or moves one event in a
// correct history; some check must notice.
func TestSimulatedMutationsFail(t *testing.T) {
	tried := 0
	for seed := uint64(1); seed <= 30; seed++ {
		h := simulate(seed, 200)
		rng := rand.New(rand.NewPCG(seed, 7))
		w := &h.Watches[0] // the prefix watch with prev kv, resumed or not
		var withEvents []int
		for i, r := range w.Responses {
			if len(r.Events) > 0 {
				withEvents = append(withEvents, i)
			}
		}
		if len(withEvents) < 3 {
			continue
		}
		i := withEvents[1+rng.IntN(len(withEvents)-2)]
		r := &w.Responses[i]
		tried++
		mutation := rng.IntN(3)
		switch mutation {
		case 0: // lose the response's last event
			r.Events = r.Events[:len(r.Events)-1]
		case 1: // deliver its first event twice
			r.Events = append(r.Events, r.Events[0])
		case 2: // deliver it after the next response's events
			next := &w.Responses[withEvents[slices.Index(withEvents, i)+1]]
			next.Events = append(next.Events, r.Events...)
			r.Events = nil
		}
		if verdict.Passed(Check(h)) {
			t.Errorf("seed %d: mutation %d of watch %d response %d went unnoticed", seed, mutation, w.ID, i)
		}
	}
	if tried < 20 {
		t.Errorf("only %d of 30 simulated histories had enough events to mutate", tried)
	}
}

func BenchmarkCheck(b *testing.B) {
	h := simulate(1, 20000)
	events := 0
	for i := range h.Watches {
		events += countEvents(&h.Watches[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		Check(h)
	}
	b.ReportMetric(float64(len(h.Operations)), "ops")
	b.ReportMetric(float64(events), "events")
}
