package workload

import (
	"strconv"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// uniqueValue is the value of a write. It embeds the operation ID, which the
// recorder hands out once per run, so no two writes of a run share a value
// and a later read names exactly the write it observed; and the run's tag,
// so a value left in the store by an earlier run (a restored snapshot) is
// never mistaken for one of this run's writes. prefix starts it (the lock
// counter's next count, say). It is built in one buffer on the stack and
// copied to the heap once, because every write makes one.
func uniqueValue(prefix string, rec *history.Recorder, client int, id int64) string {
	var buf [64]byte
	b := append(buf[:0], prefix...)
	b = append(b, 'c')
	b = strconv.AppendInt(b, int64(client), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, id, 10)
	b = append(b, '-')
	b = append(b, rec.RunTag()...)
	return string(b)
}

func convKVs(kvs []*mvccpb.KeyValue) []history.KV {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]history.KV, len(kvs))
	for i, kv := range kvs {
		out[i] = convKV(kv)
	}
	return out
}

func convKV(kv *mvccpb.KeyValue) history.KV {
	return history.KV{
		Key:            string(kv.Key),
		Value:          string(kv.Value),
		ModRevision:    kv.ModRevision,
		CreateRevision: kv.CreateRevision,
		Version:        kv.Version,
		Lease:          kv.Lease,
	}
}

// headerOnly is the response of a request that returns nothing but its
// header.
func headerOnly(h *etcdserverpb.ResponseHeader) *history.Response {
	r := &history.Response{}
	if h != nil {
		r.Revision, r.MemberID = h.Revision, h.MemberId
	}
	return r
}

func rangeResponse(resp *clientv3.GetResponse) *history.Response {
	r := headerOnly(resp.Header)
	r.KVs, r.Count = convKVs(resp.Kvs), resp.Count
	return r
}

// firstModRev is the mod revision of the first of kvs, 0 when there is none
// (the key is absent).
func firstModRev(kvs []history.KV) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

func convEvent(ev *clientv3.Event) history.Event {
	e := history.Event{
		Type:           "put",
		Key:            string(ev.Kv.Key),
		Value:          string(ev.Kv.Value),
		ModRevision:    ev.Kv.ModRevision,
		CreateRevision: ev.Kv.CreateRevision,
		Version:        ev.Kv.Version,
		Lease:          ev.Kv.Lease,
		IsCreate:       ev.IsCreate(),
	}
	if ev.Type == mvccpb.DELETE {
		e.Type = "delete"
	}
	if ev.PrevKv != nil {
		kv := convKV(ev.PrevKv)
		e.PrevKV = &kv
	}
	return e
}
