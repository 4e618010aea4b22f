package workload

import (
	"context"
	"math/rand"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// Client IDs of the maintenance actors.
const (
	CompactClient = 600
	// DefragClientBase + i defragments member i.
	DefragClientBase = 700
)

// DefaultCompactKeep is how many revisions below the current one a
// compaction keeps when Config.CompactKeep is 0: recent enough that reads and
// watches from older revisions meet ErrCompacted, old enough that most live
// watchers are past it.
const DefaultCompactKeep = 20

// compactor compacts the store every interval at a revision CompactKeep below
// the current one. The current revision comes from an unrecorded
// linearizable count-only read: it changes nothing, and the recorded compact
// carries the revision it asked for.
func compactor(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg Config) {
	cli, err := openClient(ctx, c, "")
	if err != nil {
		return
	}
	defer cli.Close()
	rc := &client{cli: cli, rec: rec, id: CompactClient, timeout: cfg.OpTimeout, detach: true}
	rnd := rand.New(rand.NewSource(cfg.Seed*7919 + CompactClient))
	var last int64
	for sleep(ctx, jitter(rnd, cfg.CompactInterval)) {
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.OpTimeout)
		resp, err := cli.Get(octx, keyspace.KVPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			continue
		}
		rev := resp.Header.Revision - cfg.CompactKeep
		if rev <= last || rev <= 1 {
			// Compacting at or below an earlier compaction fails with
			// ErrCompacted; wait for traffic to move on instead.
			continue
		}
		if op := rc.Compact(ctx, rev); op.Outcome == history.OK {
			last = rev
		}
	}
}

// defragmenter defragments one member every interval, round robin, so that
// at most one member at a time stalls on its backend rewrite.
func defragmenter(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg Config) {
	members := c.Members()
	if len(members) == 0 {
		return
	}
	cli, err := openClient(ctx, c, "")
	if err != nil {
		return
	}
	defer cli.Close()
	rnd := rand.New(rand.NewSource(cfg.Seed*104729 + DefragClientBase))
	for i := 0; sleep(ctx, jitter(rnd, cfg.DefragInterval)); i++ {
		m := i % len(members)
		// One client per member keeps each a sequential actor. A
		// defragmentation rewrites the whole backend; give it longer than
		// a key-value request.
		rc := &client{cli: cli, rec: rec, id: DefragClientBase + m, timeout: 5 * cfg.OpTimeout, detach: true}
		rc.Defragment(ctx, members[m].ClientURL)
	}
}

// jitter returns d spread by up to ±25%, so that periodic maintenance does
// not lock step with the fault schedule.
func jitter(rnd *rand.Rand, d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rnd.Int63n(int64(d)/2+1))
}
