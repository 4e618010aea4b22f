package model

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// TestReplayMatchesState: a Replay and a State given the same random
// operations and responses agree on every step and every key. Responses
// are right about half the time, so both accepting and rejecting steps
// are covered; a rejected step is not applied.
func TestReplayMatchesState(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		for _, rule := range []Rule{Strict, ForeignWrites} {
			s := Init()
			r := NewReplay(s, []string{"a", "b"})
			for i := 0; i < 400; i++ {
				op, resp := randomOp(rng, s, i)
				okS, n, why := Explain(s, op, resp, rule)
				if okS {
					if w := Apply(r, op, resp, rule); w != "" {
						t.Fatalf("seed %d rule %d step %d: %s: state accepts, replay says %s", seed, rule, i, Describe(op, resp), w)
					}
					s = n
				} else {
					probe := NewReplay(s, nil)
					if Apply(probe, op, resp, rule) == "" {
						t.Fatalf("seed %d rule %d step %d: %s: state rejects (%s), replay accepts", seed, rule, i, Describe(op, resp), why)
					}
				}
				if got, want := fmt.Sprint(r.Rev(), r.Range("", "\x00", 0)), fmt.Sprint(s.Revision, s.Range("", "\x00", 0)); got != want {
					t.Fatalf("seed %d rule %d step %d: replay %s, state %s", seed, rule, i, got, want)
				}
			}
		}
	}
}

func randomOp(rng *rand.Rand, s State, i int) (*history.Operation, *history.Response) {
	keys := []string{"a", "b", "c", "d"}
	key := keys[rng.Intn(len(keys))]
	lease := int64(rng.Intn(3))
	rev := s.Revision + int64(rng.Intn(3)) - 1
	op := &history.Operation{Key: key}
	resp := &history.Response{Revision: rev}
	switch rng.Intn(7) {
	case 0:
		op.Kind, op.Value, op.Lease = history.Put, fmt.Sprint(i), lease
	case 1:
		op.Kind = history.Delete
		resp.Deleted = int64(rng.Intn(2))
	case 2:
		op.Kind, op.Value, op.ExpectModRev = history.Txn, fmt.Sprint(i), int64(rng.Intn(int(s.Revision)+1))
		resp.Succeeded = rng.Intn(2) == 0
		if kv, ok := s.Get(key); ok && !resp.Succeeded {
			resp.KVs = []history.KV{{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision}}
		}
	case 3:
		op.Kind = history.Get
		if kv, ok := s.Get(key); ok {
			resp.KVs = []history.KV{{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision}}
		}
	case 4:
		op.Kind, op.End = history.Range, "\x00"
		for _, kv := range s.Range(key, "\x00", 0) {
			resp.KVs = append(resp.KVs, history.KV{Key: kv.Key, Value: kv.Value, ModRevision: kv.ModRevision})
		}
	case 5:
		op.Kind = history.LeaseGrant
		resp.LeaseID = 1 + int64(rng.Intn(2))
	default:
		op.Kind, op.Lease = history.LeaseRevoke, 1+int64(rng.Intn(2))
	}
	if rng.Intn(5) == 0 && op.Kind.IsWrite() {
		return op, nil
	}
	return op, resp
}
