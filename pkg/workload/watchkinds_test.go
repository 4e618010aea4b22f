package workload

import (
	"context"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/watch"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// TestFutureAndSpreadWatchers runs KV traffic under future and spread
// watchers on a real cluster: future watches must start above the revision
// they were opened at and get events from their start on, spread watchers
// must have used more than one member, and the watch checks must pass.
func TestFutureAndSpreadWatchers(t *testing.T) {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watchers, err := StartWatch(ctx, c, rec, WatchConfig{Watchers: 1, ReplayWatchers: -1, FutureWatchers: 2, FutureOffset: 20,
		SpreadWatchers: 2, RotateInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()
	tctx, tcancel := context.WithTimeout(ctx, 4*time.Second)
	_, err = Run(tctx, c, rec, Config{Seed: seed})
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	final := lastRange(rec.History()).Resp.Revision
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	if err := watchers.Drain(dctx, final); err != nil {
		t.Error(err)
	}
	dcancel()
	h := rec.History()

	futures, futureEvents := map[int]bool{}, 0
	// The first watch of each future watcher (ClientIDs base and base+1)
	// opens at a staggered offset, so their starts differ.
	firstStart := map[int]int64{}
	spreadEndpoints := map[int]map[string]bool{}
	for _, w := range h.Watches {
		switch {
		case w.ClientID >= FutureWatchClientBase:
			futures[w.ClientID] = true
			if s, ok := firstStart[w.ClientID]; w.ClientID < FutureWatchClientBase+2 && (!ok || w.StartRevision < s) {
				firstStart[w.ClientID] = w.StartRevision
			}
			for _, r := range w.Responses {
				for _, e := range r.Events {
					futureEvents++
					if e.ModRevision < w.StartRevision {
						t.Errorf("future watch %d from revision %d got an event at %d", w.ID, w.StartRevision, e.ModRevision)
					}
				}
			}
		case w.ClientID == WatchClientBase+1 || w.ClientID == WatchClientBase+2:
			if spreadEndpoints[w.ClientID] == nil {
				spreadEndpoints[w.ClientID] = map[string]bool{}
			}
			spreadEndpoints[w.ClientID][w.Endpoint] = true
		}
	}
	if len(futures) < 2 || futureEvents == 0 {
		t.Errorf("%d future watches got %d events; want at least 2 watches with events", len(futures), futureEvents)
	}
	if a, b := firstStart[FutureWatchClientBase], firstStart[FutureWatchClientBase+1]; a == 0 || a == b {
		t.Errorf("the two future watchers' first watches start at revisions %d and %d; want two different starts", a, b)
	}
	for id, eps := range spreadEndpoints {
		if len(eps) < 2 {
			t.Errorf("spread watcher %d used only %v", id, eps)
		}
	}
	if len(spreadEndpoints) != 2 {
		t.Errorf("%d spread watchers recorded streams, want 2", len(spreadEndpoints))
	}
	for _, ck := range watch.Check(h) {
		if ck.Status != verdict.Pass {
			t.Errorf("%s: %s: %s %v", ck.Name, ck.Status, ck.Summary, ck.Violations)
		}
	}
}
