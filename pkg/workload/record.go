package workload

import (
	"strconv"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// uniqueValue is the value of a write. It embeds the operation ID, which the
// recorder hands out once per run, so no two writes of a run share a value
// and a later read names exactly the write it observed; and the run's tag,
// so a value left in the store by an earlier run (a restored snapshot) is
// never mistaken for one of this run's writes.
func uniqueValue(rec *history.Recorder, client int, id int64) string {
	return "c" + strconv.Itoa(client) + "-" + strconv.FormatInt(id, 10) + "-" + rec.RunTag()
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

func header(h *etcdserverpb.ResponseHeader) (rev int64, member uint64) {
	if h == nil {
		return 0, 0
	}
	return h.Revision, h.MemberId
}

// finish fills the outcome of op from err and records it. resp is only kept
// for outcome OK, because checkers must not read meaning into a response the
// client did not get.
func finish(rec *history.Recorder, op *history.Operation, err error, resp *history.Response) {
	op.Return = rec.Now()
	op.Outcome = Classify(err)
	if err != nil {
		op.Error = err.Error()
		op.Resp = nil
	} else {
		op.Resp = resp
	}
	rec.AddOperation(*op)
}
