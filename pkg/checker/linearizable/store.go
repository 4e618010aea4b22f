package linearizable

import (
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// keyState is one key as the replay holds it.
type keyState struct {
	present    bool
	value      string
	mod        int64
	lease      int64
	lastPinned int64      // revision of the last write to it that is certain
	events     []keyEvent // certain operations showing the key, by position
}

// kv returns key k as the model sees it.
func (s *keyState) kv(key string) (model.KeyValue, bool) {
	return model.KeyValue{Key: key, Value: s.value, ModRevision: s.mod, Lease: s.lease}, s.present
}

// kvStore is the store the replay rebuilds, one entry per key the history
// names, indexed for the replay's lookahead. It is a model.Store: the
// replay applies every write with model.Apply, never by its own rules.
type kvStore struct {
	keys     []string // sorted
	keyIdx   map[string]int32
	ks       []keyState
	leases   map[int64]bool
	leaseKey map[int64]int // live keys attached per lease
	rev      int64
	touched  []int32 // keys the writes since the last reset changed
}

func (st *kvStore) Rev() int64       { return st.rev }
func (st *kvStore) SetRev(rev int64) { st.rev = rev }

func (st *kvStore) Get(key string) (model.KeyValue, bool) {
	k, ok := st.keyIdx[key]
	if !ok {
		return model.KeyValue{}, false
	}
	return st.ks[k].kv(key)
}

func (st *kvStore) Range(key, end string, limit int64) []model.KeyValue {
	var out []model.KeyValue
	for k := sort.SearchStrings(st.keys, key); k < len(st.keys) && keyspace.InRange(st.keys[k], key, end) && (limit == 0 || int64(len(out)) < limit); k++ {
		if kv, ok := st.ks[k].kv(st.keys[k]); ok {
			out = append(out, kv)
		}
	}
	return out
}

// Put stores kv; every key a recorded operation writes is indexed by
// classify, so kv.Key is always known.
func (st *kvStore) Put(kv model.KeyValue) {
	k := st.keyIdx[kv.Key]
	s := &st.ks[k]
	if s.present && s.lease != 0 {
		st.leaseKey[s.lease]--
	}
	s.present, s.value, s.mod, s.lease = true, kv.Value, kv.ModRevision, kv.Lease
	if kv.Lease != 0 {
		st.leaseKey[kv.Lease]++
	}
	st.touched = append(st.touched, k)
}

func (st *kvStore) Delete(key string) {
	k, ok := st.keyIdx[key]
	if !ok || !st.ks[k].present {
		return
	}
	s := &st.ks[k]
	if s.lease != 0 {
		st.leaseKey[s.lease]--
	}
	s.present = false
	st.touched = append(st.touched, k)
}

func (st *kvStore) HasLease(id int64) bool { return st.leases[id] }
func (st *kvStore) Grant(id int64)         { st.leases[id] = true }

func (st *kvStore) Revoke(id int64) bool {
	deleted := false
	if st.leaseKey[id] > 0 {
		for k := range st.ks {
			s := &st.ks[k]
			if s.present && s.lease == id {
				s.present = false
				st.touched = append(st.touched, int32(k))
				deleted = true
			}
		}
	}
	st.leaseKey[id] = 0
	st.leases[id] = false
	return deleted
}
