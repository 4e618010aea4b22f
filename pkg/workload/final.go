package workload

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// FinalRead reads every key under prefix with one linearizable range,
// recorded as a Range operation, retrying until one succeeds or ctx ends.
// Call it after faults are healed and traffic has stopped: the durability
// check uses it to confirm every acknowledged write is still readable.
func FinalRead(ctx context.Context, c cluster.Cluster, rec *history.Recorder, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("workload: FinalRead needs a key prefix such as %q", keyspace.KVPrefix)
	}
	cli, err := openClient(ctx, c, "")
	if err != nil {
		return err
	}
	defer cli.Close()
	fc := &client{cli: cli, rec: rec, id: FinalReadClient, timeout: 5 * time.Second}
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		op := fc.Range(ctx, prefix, end, 0)
		if op.Outcome == history.OK {
			return nil
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("workload: final read of %s never succeeded: %s (is the cluster healthy?)", prefix, op.Error)
		}
	}
}
