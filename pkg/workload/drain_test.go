package workload

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/watch"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// drainBugVersion is the release the drain first failed on: v3.5.8 to
// v3.5.12 leave a stream's progress requests unanswered for good once one
// arrived before a resumed watch was synced, until an event in range goes
// out (fixed in v3.5.13, etcd-io/etcd#17566). The client library sends its
// queued progress request right behind the watch it resumes after a lost
// connection, so writes outside the watched range while a watcher is cut
// off from its member reproduce it.
const drainBugVersion = "v3.5.8"

// TestDrainPastWritesOutsideTheWatchedRange is the run that raised a false
// watch/drain alarm (issue 15): watchers on /kv/ see the last write in
// range, then the last revisions are written outside /kv/ while one
// watcher's member is cut off from its clients; once the member is back,
// the watcher's client resumes below the store's revision. The drain must
// still reach the final revision, through a progress notification, and the
// streams, resumed ones included, must pass every watch check.
func TestDrainPastWritesOutsideTheWatchedRange(t *testing.T) {
	for _, v := range []string{etcdbin.DefaultVersion, drainBugVersion} {
		t.Run(v, func(t *testing.T) { testDrainOutsideRange(t, v) })
	}
}

func testDrainOutsideRange(t *testing.T, version string) {
	c := localtest.Start(t, version, 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3, EtcdVersion: version})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	// Watcher 100 is pinned to member 0, watcher 101 to member 1.
	watchers, err := StartWatch(ctx, c, rec, WatchConfig{Watchers: 2, ReplayWatchers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()

	tctx, tcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = Run(tctx, c, rec, Config{Seed: seed, Clients: 2, OpTimeout: time.Second})
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	lastInRange := lastRange(rec.History()).Resp.Revision
	if err := waitSeen(ctx, watchers, lastInRange); err != nil {
		t.Fatal(err)
	}

	ms := c.Members()
	if err := c.IsolateClient(ctx, ms[0].Name); err != nil {
		t.Fatal(err)
	}
	final, err := putOutside(ctx, ms[1].ClientURL, c, 3)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let member 0 apply them before its clients return
	if err := c.Faults().Heal(ctx); err != nil {
		t.Fatal(err)
	}

	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	err = watchers.Drain(dctx, final)
	dcancel()
	st := watchers.Stats()
	t.Logf("etcd %s, seed %d: drain to revision %d (last in range %d): %s", version, seed, final, lastInRange, st)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	h := rec.History()
	for _, ck := range watch.Check(h) {
		if ck.Status != verdict.Pass {
			t.Errorf("seed %d: %s %s: %s %v", seed, ck.Name, ck.Status, ck.Summary, ck.Violations)
		}
	}
}

// waitSeen waits until every watcher has seen rev.
func waitSeen(ctx context.Context, w *Watchers, rev int64) error {
	for {
		behind := 0
		for _, wt := range w.ws {
			if wt.seen.Load() < rev {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d watchers never saw revision %d", behind, rev)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// putOutside writes n keys outside the watched prefix through endpoint and
// returns the last write's revision.
func putOutside(ctx context.Context, endpoint string, c *local.Cluster, n int) (int64, error) {
	cli, err := openClient(ctx, c, endpoint)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	var rev int64
	for i := 0; i < n; i++ {
		resp, err := cli.Put(ctx, fmt.Sprintf("/outside/%d", i), "x")
		if err != nil {
			return 0, fmt.Errorf("write outside the watched range: %w", err)
		}
		rev = resp.Header.Revision
	}
	return rev, nil
}

// TestWatchesResumeAcrossLongFaults breaks the pinned watchers' streams the
// way a long fault does: the member watcher 100 uses is killed for 8s (its
// stream goes silent and is given up after StallTimeout), and the member
// watcher 101 uses is cut off from its peers for 8s (after about 4s without
// a leader etcd ends every stream that asked for one). Both must resume on
// new streams from the revision after the last one they saw, and the chain
// of streams must pass every watch check.
func TestWatchesResumeAcrossLongFaults(t *testing.T) {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	watchers, err := StartWatch(ctx, c, rec, WatchConfig{ReplayWatchers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()

	tctx, tcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := Run(tctx, c, rec, Config{Seed: seed, OpTimeout: time.Second})
		done <- err
	}()
	const hold = 8 * time.Second
	ms := c.Members()
	time.Sleep(2 * time.Second)
	if err := c.Faults().Kill(ctx, ms[0].Name); err != nil {
		t.Fatal(err)
	}
	time.Sleep(hold)
	if err := c.Faults().Restart(ctx, ms[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{ms[0].Name, ms[2].Name} {
		if err := c.Faults().Cut(ctx, ms[1].Name, other); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(hold)
	if err := c.Faults().Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	tcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	final := lastRange(rec.History()).Resp.Revision
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	err = watchers.Drain(dctx, final)
	dcancel()
	st := watchers.Stats()
	t.Logf("seed %d: %s", seed, st)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}

	h := rec.History()
	streams := map[int]int{}
	for _, w := range h.Watches {
		streams[w.ClientID]++
	}
	for _, id := range []int{WatchClientBase, WatchClientBase + 1} {
		if streams[id] < 2 {
			t.Errorf("seed %d: watcher %d, pinned to a member faulted for %s, recorded %d stream(s); its stream never broke and resumed", seed, id, hold, streams[id])
		}
	}
	for _, ck := range watch.Check(h) {
		if ck.Status != verdict.Pass {
			t.Errorf("seed %d: %s %s: %s %v", seed, ck.Name, ck.Status, ck.Summary, ck.Violations)
		}
	}
}
