package workload

import (
	"context"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// TestCompactAndDefragDuringTraffic compacts and defragments a real cluster
// under KV and watch traffic, with replaying watchers that start from a
// revision compacted by then, and requires every check to pass: a correct
// etcd must never look broken because of compaction or defragmentation.
func TestCompactAndDefragDuringTraffic(t *testing.T) {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The replaying watchers start 3s late from the first revision; by then
	// compactions keeping 5 revisions have removed it.
	watchers, err := StartWatch(ctx, c, rec, WatchConfig{Watchers: 4, Pinned: 2, ReplayWatchers: 2, ReplayAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()
	tctx, tcancel := context.WithTimeout(ctx, 6*time.Second)
	st, err := Run(tctx, c, rec, Config{Seed: seed, Rate: 300,
		CompactInterval: 400 * time.Millisecond, CompactKeep: 5, DefragInterval: time.Second})
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("traffic: %s %v", st, st.ByKind)
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	if err := watchers.Drain(dctx, lastRange(rec.History()).Resp.Revision); err != nil {
		t.Error(err)
	}
	dcancel()
	h := rec.History()

	var compacts, defrags, refused int
	for _, op := range h.Operations {
		if op.Outcome != history.OK {
			continue
		}
		switch op.Kind {
		case history.Compact:
			compacts++
		case history.Defragment:
			defrags++
		}
	}
	for _, w := range h.Watches {
		for _, r := range w.Responses {
			if r.CompactRevision > 0 {
				refused++
			}
		}
	}
	t.Logf("%d compactions, %d defragmentations, %d watch streams refused as compacted", compacts, defrags, refused)
	if compacts == 0 || defrags == 0 || refused == 0 {
		t.Errorf("want at least one compaction, defragmentation and compacted watch; got %d, %d, %d (seed %d)", compacts, defrags, refused, seed)
	}
	for _, ck := range checker.Check(ctx, h, checker.Options{Timeout: time.Minute}) {
		if ck.Status == verdict.Fail || ck.Status == verdict.Unknown {
			t.Errorf("check %s: %s: %s %v (seed %d)", ck.Name, ck.Status, ck.Summary, ck.Violations, seed)
		}
	}
}
