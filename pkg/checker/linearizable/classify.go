package linearizable

import (
	"sort"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// keyEvent is one pinned operation touching a key, for lookahead.
type keyEvent struct {
	pos int64 // 2*rev for writes, 2*rev+1 for reads
	op  int32
}

// classify gives every operation its role and revision, pins unknown writes
// whose unique value was read back, indexes what the replay walks, and
// finds structural contradictions. false: the pass ends here (undecided or
// failed).
func (f *fast) classify() bool {
	byValue, keySet, initial, ok := f.assignRoles()
	if !ok || len(f.found.definite) > 0 {
		return false
	}
	n := len(f.ops)
	// Foreign writes may take most revisions; the replay's per-revision
	// arrays cost 16 bytes each, so a few million stay cheap.
	if limit := int64(4*n + 1024); f.place.maxRev-f.place.base > limit && !(f.cfg.foreign && f.place.maxRev-f.place.base <= max(16*limit, foreignRevisionLimit)) {
		f.undecide("the store reached revision %d, far beyond what %d operations can produce", f.place.maxRev, n)
		return false
	}
	f.indexKeys(keySet)
	f.pinWrites(byValue, initial)
	if len(f.found.definite) > 0 {
		return false
	}
	f.indexEvents()
	return true
}

// assignRoles gives every operation its role and revision from its
// outcome and response. It returns the writes by their unique value, every
// key the history names, and the values the store started with; false
// when values are not unique or a grant cannot be placed.
func (f *fast) assignRoles() (byValue map[string]int32, keySet map[string]struct{}, initial map[string]history.KV, ok bool) {
	n := len(f.ops)
	f.place.role = make([]role, n)
	f.place.rev = make([]int64, n)
	byValue = make(map[string]int32, n/2)
	keySet = map[string]struct{}{}
	// Values the store started with: a read may return them until they
	// are overwritten.
	initial = map[string]history.KV{}
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			initial[kv.Value] = kv
			keySet[kv.Key] = struct{}{}
		}
	}
	f.place.maxRev = f.place.base
	for i, op := range f.ops {
		if op.Kind != history.LeaseGrant && op.Kind != history.LeaseRevoke && op.Kind != history.LeaseKeepAlive {
			keySet[op.Key] = struct{}{}
		}
		if op.WritesValue() {
			if _, dup := byValue[op.Value]; dup || op.Value == "" {
				f.undecide("written values are not unique (%q), so reads cannot name their writes", op.Value)
				return nil, nil, nil, false
			}
			byValue[op.Value] = int32(i)
		}
		if op.Outcome != history.OK {
			switch op.Kind {
			case history.LeaseGrant:
				if op.Lease != 0 {
					f.undecide("a lease grant with a client-chosen ID has an unknown outcome")
					return nil, nil, nil, false
				}
			case history.Put, history.Txn, history.Delete, history.LeaseRevoke:
				f.place.role[i] = roleCand
			}
			continue
		}
		r := op.Resp
		f.place.rev[i] = r.Revision
		switch op.Kind {
		case history.Put:
			f.place.role[i] = roleWrite
		case history.Txn, history.Delete:
			// A txn whose compare failed, a delete or a txn's delete
			// that removed nothing: a read at its revision.
			f.place.role[i] = roleRead
			if op.Changed() {
				f.place.role[i] = roleWrite
			}
		case history.Get, history.Range:
			f.place.role[i] = roleRead
		case history.LeaseGrant:
			if r.Revision == 0 {
				f.undecide("a lease grant carries no header revision")
				return nil, nil, nil, false
			}
			f.place.role[i] = roleRead
		case history.LeaseRevoke:
			f.place.role[i] = rolePending
		case history.LeaseKeepAlive:
			f.place.role[i] = roleKeepAlive
			f.place.kaLast[op.Lease] = max(f.place.kaLast[op.Lease], op.Call)
			continue
		}
		if r.Revision < f.place.base {
			f.violate("%s returned header revision %d, below the initial revision %d", f.desc(int32(i)), r.Revision, f.place.base)
			f.place.role[i] = roleNone
			continue
		}
		f.place.maxRev = max(f.place.maxRev, r.Revision)
		for _, kv := range r.KVs {
			f.place.maxRev = max(f.place.maxRev, kv.ModRevision)
			keySet[kv.Key] = struct{}{}
		}
	}
	return byValue, keySet, initial, true
}

// indexKeys builds the replayed store over every key in keySet, holding
// what the store started with, and the per-revision indexes.
func (f *fast) indexKeys(keySet map[string]struct{}) {
	n := len(f.ops)
	for k := range keySet {
		f.st.keys = append(f.st.keys, k)
	}
	sort.Strings(f.st.keys)
	f.st.ks = make([]keyState, len(f.st.keys))
	for i, k := range f.st.keys {
		f.st.keyIdx[k] = int32(i)
	}
	if f.cfg.init != nil {
		for _, kv := range f.cfg.init.KVs {
			s := &f.st.ks[f.st.keyIdx[kv.Key]]
			s.present, s.value, s.mod, s.lease, s.lastPinned = true, kv.Value, kv.ModRevision, kv.Lease, f.place.base
			if kv.Lease != 0 {
				f.st.leases[kv.Lease] = true
				f.st.leaseKey[kv.Lease]++
			}
		}
	}
	size := f.place.maxRev - f.place.base + 1
	f.place.owner = make([]int32, size)
	f.place.readHead = make([]int32, size)
	for i := range f.place.owner {
		f.place.owner[i], f.place.readHead[i] = -1, -1
	}
	f.place.readNext = make([]int32, n)

}

// pinWrites places every write whose revision is certain: acknowledged
// writes at the revision they returned, unknown-outcome writes at the mod
// revision a read returned with their unique value.
func (f *fast) pinWrites(byValue map[string]int32, initial map[string]history.KV) {
	// Pin known writes at their revisions.
	for i := range f.ops {
		if f.place.role[i] == roleWrite {
			f.claim(int32(i), f.place.rev[i])
		}
	}
	// Pin unknown writes whose unique value was read back.
	for i, op := range f.ops {
		if op.Outcome != history.OK {
			continue
		}
		if op.Kind != history.Get && op.Kind != history.Range && !(op.Kind == history.Txn && !op.Resp.Succeeded) {
			continue
		}
		for _, kv := range op.Resp.KVs {
			w, ok := byValue[kv.Value]
			if iv, isInit := initial[kv.Value]; !ok && isInit {
				if iv.Key != kv.Key || iv.ModRevision != kv.ModRevision {
					f.violate("%s read %s=%q at mod revision %d, but the store started with it under %s at mod revision %d", f.desc(int32(i)), kv.Key, kv.Value, kv.ModRevision, iv.Key, iv.ModRevision)
				}
				continue
			}
			if !ok {
				f.violate("%s read %s=%q, a value no operation wrote (or whose write failed)", f.desc(int32(i)), kv.Key, kv.Value)
				continue
			}
			wop := f.ops[w]
			switch {
			case wop.Key != kv.Key:
				f.violate("%s read value %q under %s, but %s wrote it under %s", f.desc(int32(i)), kv.Value, kv.Key, f.desc(w), wop.Key)
			case kv.ModRevision > op.Resp.Revision:
				f.violate("%s returned %s at mod revision %d, after its own header revision %d", f.desc(int32(i)), kv.Key, kv.ModRevision, op.Resp.Revision)
			case f.place.role[w] == roleWrite || f.place.role[w] == roleFiller:
				if f.place.rev[w] != kv.ModRevision {
					f.violate("%s read %s=%q at mod revision %d, but %s wrote it at revision %d", f.desc(int32(i)), kv.Key, kv.Value, kv.ModRevision, f.desc(w), f.place.rev[w])
				}
			case f.place.role[w] == roleCand:
				f.place.rev[w] = kv.ModRevision
				f.claim(w, kv.ModRevision)
				f.place.role[w] = roleWrite
			default:
				// An OK txn whose compare failed wrote nothing.
				f.violate("%s read %s=%q, but %s that would have written it did not take effect", f.desc(int32(i)), kv.Key, kv.Value, f.desc(w))
			}
		}
	}
}

// indexEvents records which revisions name each lease, lists what is read
// at each revision, and gives each key its certain events in revision
// order for the fillers' lookahead.
func (f *fast) indexEvents() {
	for i, op := range f.ops {
		if op.Lease != 0 && (f.place.role[i] == roleWrite || f.place.role[i] == rolePending) {
			f.place.leaseUse[op.Lease] = max(f.place.leaseUse[op.Lease], f.place.rev[i])
		}
	}
	// Index reads by revision and key events for lookahead.
	for i := len(f.ops) - 1; i >= 0; i-- {
		if f.place.role[i] == roleRead || f.place.role[i] == rolePending {
			r := f.place.rev[i] - f.place.base
			f.place.readNext[i] = f.place.readHead[r]
			f.place.readHead[r] = int32(i)
		}
	}
	// Each key's events in position order, with no sort: walk the
	// revisions, each one's write (position 2*rev) before what was read at
	// it (2*rev+1, in op order).
	for r := range f.place.owner {
		rev := f.place.base + int64(r)
		if w := f.place.owner[r]; w >= 0 && f.place.role[w] == roleWrite {
			f.addEvents(w, 2*rev)
		}
		for p := f.place.readHead[r]; p >= 0; p = f.place.readNext[p] {
			if f.place.role[p] == roleRead {
				f.addEvents(p, 2*rev+1)
			}
		}
	}
}

// foreignRevisionLimit is how many revisions the fast path replays in
// foreign-writes mode however few operations claim them.
const foreignRevisionLimit = 1 << 22

func (f *fast) claim(i int32, rev int64) {
	if rev <= f.place.base || rev > f.place.maxRev {
		f.violate("%s took revision %d, outside the store's revisions (%d, %d]", f.desc(i), rev, f.place.base, f.place.maxRev)
		return
	}
	o := &f.place.owner[rev-f.place.base]
	if *o >= 0 && *o != i {
		f.violate("revision %d was created twice: by %s and by %s", rev, f.desc(*o), f.desc(i))
		return
	}
	*o = i
}

// addEvents records operation i at position pos on every key it shows.
func (f *fast) addEvents(i int32, pos int64) {
	op := f.ops[i]
	switch op.Kind {
	case history.Range:
		lo := sort.SearchStrings(f.st.keys, op.Key)
		for k := lo; k < len(f.st.keys) && keyspace.InRange(f.st.keys[k], op.Key, op.End); k++ {
			f.st.ks[k].events = append(f.st.ks[k].events, keyEvent{pos, i})
		}
	case history.LeaseGrant, history.LeaseRevoke:
	default:
		k := f.st.keyIdx[op.Key]
		f.st.ks[k].events = append(f.st.ks[k].events, keyEvent{pos, i})
	}
}
