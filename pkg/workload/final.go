package workload

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// FinalRead reads every key under prefix with one linearizable range,
// recorded as a Range operation, retrying until one succeeds or ctx ends.
// Call it after faults are healed and traffic has stopped: the durability
// check uses it to confirm every acknowledged write is still readable.
func FinalRead(ctx context.Context, c cluster.Cluster, rec *history.Recorder, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("workload: FinalRead needs a key prefix such as %q", KVPrefix)
	}
	cli, err := openClient(ctx, c, "")
	if err != nil {
		return err
	}
	defer cli.Close()
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		op := history.Operation{ID: rec.NextID(), ClientID: FinalReadClient, Kind: history.Range, Key: prefix, End: end}
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		op.Call = rec.Now()
		resp, err := cli.Get(octx, prefix, clientv3.WithRange(end))
		cancel()
		var r *history.Response
		if err == nil {
			r = &history.Response{KVs: convKVs(resp.Kvs), Count: resp.Count}
			r.Revision, r.MemberID = header(resp.Header)
		}
		finish(rec, &op, err, r)
		if err == nil {
			return nil
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("workload: final read of %s never succeeded: %v (is the cluster healthy?)", prefix, err)
		}
	}
}
