package workload

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// The kubernetes profile sends what a Kubernetes apiserver sends to its
// etcd: objects created only when absent (a txn on mod revision 0),
// updated by a txn on the mod revision last read (optimistic concurrency:
// a conflict answers the current object), lists read in pages at one
// revision (the first page at the latest revision, the next ones from
// after the last key at the first page's revision), and watches started
// from the revision after a list. Objects are deleted as the apiserver
// deletes them: a txn on the mod revision last read that deletes the
// object, or answers the current one on a conflict.

// KubeWatchClientBase + n is the ClientID of the n-th watch the kubernetes
// profile opens: each is a logical watch of its own.
const KubeWatchClientBase = 20000

const (
	// kubePageSize is a list page's limit: small, so lists take pages.
	kubePageSize = 4
	// kubeWatchFor is how long a watch from a list's revision stays open.
	kubeWatchFor = time.Second
)

// kubeWatches counts the profile's watches across clients, for ClientIDs.
var kubeWatches atomic.Int64

// kubeStep issues one apiserver-shaped request (or a list, or a watch).
func (kc *kvClient) kubeStep(ctx context.Context) {
	k := kc.rnd.Intn(kc.cfg.Keys)
	switch n := kc.rnd.Intn(100); {
	case n < 20: // create
		kc.kubeWrite(ctx, k, 0)
	case n < 55: // update from the last revision read (0: create)
		kc.kubeWrite(ctx, k, kc.seen[k])
	case n < 65:
		if kc.seen[k] == 0 {
			kc.kubeWrite(ctx, k, 0)
			return
		}
		select {
		case kc.deletes <- struct{}{}:
			kc.kubeDelete(ctx, k)
			<-kc.deletes
		default:
			kc.kubeList(ctx)
		}
	case n < 90:
		kc.kubeList(ctx)
	default:
		if rev := kc.kubeList(ctx); rev > 0 {
			kc.kubeWatch(ctx, rev+1)
		}
	}
}

// kubeWrite creates (expect 0) or updates object k, learning its mod
// revision either way.
func (kc *kvClient) kubeWrite(ctx context.Context, k int, expect int64) {
	op := kc.CompareAndPut(ctx, CAS{Key: keyspace.KubeKey(k), ExpectModRev: expect})
	if op.Outcome != history.OK {
		return
	}
	if op.Resp.Succeeded {
		kc.seen[k] = op.Resp.Revision
	} else {
		kc.seen[k] = firstModRev(op.Resp.KVs)
	}
}

// kubeDelete deletes object k if it is still at the mod revision last
// read; a conflict answers the current object, whose mod revision it
// learns.
func (kc *kvClient) kubeDelete(ctx context.Context, k int) {
	op := kc.CompareAndDelete(ctx, keyspace.KubeKey(k), kc.seen[k])
	if op.Outcome != history.OK {
		return
	}
	if op.Resp.Succeeded {
		kc.seen[k] = 0
	} else {
		kc.seen[k] = firstModRev(op.Resp.KVs)
	}
}

// kubeList lists every object in pages at one revision and returns that
// revision (0 when the list did not complete).
func (kc *kvClient) kubeList(ctx context.Context) int64 {
	prefix := keyspace.KubePrefix
	end := keyspace.PrefixEnd(prefix)
	op := kc.Range(ctx, prefix, end, kubePageSize)
	if op.Outcome != history.OK {
		return 0
	}
	rev := op.Resp.Revision
	seen := make([]int64, len(kc.seen))
	for {
		for _, kv := range op.Resp.KVs {
			if i, ok := keyspace.KubeIndex(kv.Key); ok && i < len(seen) {
				seen[i] = kv.ModRevision
			}
		}
		if int64(len(op.Resp.KVs)) < kubePageSize {
			break
		}
		from := op.Resp.KVs[len(op.Resp.KVs)-1].Key + "\x00"
		if op = kc.RangeAt(ctx, from, end, kubePageSize, rev); op.Outcome != history.OK {
			return 0
		}
	}
	copy(kc.seen, seen)
	return rev
}

// kubeWatch watches the objects from rev for kubeWatchFor, as an informer
// does after its list, learning mod revisions from the events.
func (kc *kvClient) kubeWatch(ctx context.Context, rev int64) {
	wc := *kc.client
	wc.id = KubeWatchClientBase + int(kubeWatches.Add(1)) - 1
	wctx, cancel := context.WithTimeout(ctx, kubeWatchFor)
	defer cancel()
	s := wc.Watch(wctx, WatchRequest{Key: keyspace.KubePrefix, End: keyspace.PrefixEnd(keyspace.KubePrefix), Revision: rev, PrevKV: true})
	defer s.Close()
	for {
		r, ok := s.Next()
		if !ok {
			return
		}
		for _, e := range r.Events {
			if i, ok := keyspace.KubeIndex(e.Key); ok && i < len(kc.seen) {
				kc.seen[i] = e.ModRevision
				if e.Type == "delete" {
					kc.seen[i] = 0
				}
			}
		}
	}
}
