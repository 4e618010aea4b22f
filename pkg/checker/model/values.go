package model

import "github.com/etcd-chaos/etcd-chaos/pkg/history"

// ValuesInit returns the store a history without revisions (rule
// NoRevisions) starts from, holding kvs with their mod revisions left out
// (leases they name are granted), as a baseline read showed it.
func ValuesInit(kvs []history.KV) State {
	s := State{Revision: InitialRevision}
	for _, kv := range kvs {
		s = s.put(KeyValue{Key: kv.Key, Value: kv.Value, Lease: kv.Lease})
		if kv.Lease != 0 {
			s = s.grant(kv.Lease)
		}
	}
	return s
}
