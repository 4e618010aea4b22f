package workload

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// TestTrafficSurvivesMemberKill kills the member some clients and watchers
// are pinned to, mid-run, and restarts it: Run must not fail, requests to the
// dead member must be recorded unknown (never failed: a timeout proves
// nothing), and every watcher must resume and catch up with the final
// revision without gaps or duplicates.
func TestTrafficSurvivesMemberKill(t *testing.T) {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watchers, err := StartWatch(ctx, c, rec, WatchConfig{ReplayWatchers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()

	victim := c.Members()[0].Name // clients 0 and 3, watcher 0 are pinned to it
	tctx, tcancel := context.WithTimeout(ctx, 8*time.Second)
	defer tcancel()
	var (
		wg     sync.WaitGroup
		st     Stats
		runErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		st, runErr = Run(tctx, c, rec, Config{Seed: seed, OpTimeout: time.Second})
	}()
	time.Sleep(2 * time.Second)
	killedAt := rec.Now()
	if err := c.Faults().Kill(ctx, victim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := c.Faults().Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	restartedAt := rec.Now()
	wg.Wait()
	if runErr != nil {
		t.Fatalf("Run failed because a member died: %v", runErr)
	}
	t.Logf("kv: %s %v", st, st.ByKind)

	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	h := rec.History()
	final := lastRange(h).Resp.Revision
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	if err := watchers.Drain(dctx, final); err != nil {
		t.Error(err)
	}
	dcancel()
	h = rec.History()

	var unknownOnVictim, okAfter int
	for _, op := range h.Operations {
		if op.Outcome == history.Fail && op.Kind.IsWrite() {
			t.Errorf("op %d (%s %s) recorded failed: %s; a dead member proves nothing about a write", op.ID, op.Kind, op.Key, op.Error)
		}
		if op.Outcome == history.Unknown && op.Endpoint == c.Members()[0].ClientURL && op.Call >= killedAt-int64(time.Second) {
			unknownOnVictim++
		}
		if op.Outcome == history.OK && op.Call > restartedAt && op.Endpoint == c.Members()[0].ClientURL {
			okAfter++
		}
	}
	if unknownOnVictim == 0 {
		t.Error("no request to the killed member was recorded unknown")
	}
	if okAfter == 0 {
		t.Error("clients pinned to the restarted member never succeeded again")
	}

	// Every watcher, including the one whose member died, must have
	// delivered the same events once resumed.
	perClient := map[int][]evKey{}
	for _, w := range h.Watches {
		for _, r := range w.Responses {
			for _, ev := range r.Events {
				perClient[w.ClientID] = append(perClient[w.ClientID], evKey{ev.ModRevision, ev.Key})
			}
		}
	}
	var ref []evKey
	for id := WatchClientBase; id < WatchClientBase+4; id++ {
		evs := perClient[id]
		for i := 1; i < len(evs); i++ {
			if evs[i].rev < evs[i-1].rev || evs[i] == evs[i-1] {
				t.Errorf("watcher %d: event %v after %v", id, evs[i], evs[i-1])
				break
			}
		}
		if ref == nil {
			ref = evs
		} else if len(evs) != len(ref) {
			t.Errorf("watcher %d saw %d events, watcher %d saw %d", id, len(evs), WatchClientBase, len(ref))
		}
	}
	t.Logf("%d watch streams recorded for 4 watchers; %d unknown requests to %s", len(h.Watches), unknownOnVictim, victim)
	checkRoundTrip(t, h)
}
