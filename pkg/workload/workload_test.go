package workload

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clients != 6 || cfg.PinnedClients != 4 || cfg.Keys != 10 || cfg.OpTimeout != 2*time.Second || cfg.Mix != DefaultMix {
		t.Errorf("defaults = %+v", cfg)
	}
	// Fewer clients than the default pinned count pins them all.
	cfg, err = Config{Clients: 2}.withDefaults()
	if err != nil || cfg.PinnedClients != 2 {
		t.Errorf("Clients=2: PinnedClients=%d err=%v, want 2 <nil>", cfg.PinnedClients, err)
	}
	// An explicit mix is kept.
	m := Mix{Put: 1}
	if cfg, _ := (Config{Mix: m}).withDefaults(); cfg.Mix != m {
		t.Errorf("Mix = %+v, want %+v", cfg.Mix, m)
	}
}

func TestProfileMix(t *testing.T) {
	cfg, err := Config{Profile: ProfileDeleteHeavy}.withDefaults()
	if err != nil || cfg.Mix != DeleteHeavyMix {
		t.Errorf("delete-heavy: Mix = %+v, err %v; want %+v", cfg.Mix, err, DeleteHeavyMix)
	}
	if DeleteHeavyMix.Delete+DeleteHeavyMix.Churn < DeleteHeavyMix.Put {
		t.Errorf("DeleteHeavyMix %+v deletes less than it puts", DeleteHeavyMix)
	}
	if cfg, _ := (Config{}).withDefaults(); cfg.Profile != ProfileDefault || cfg.Mix != DefaultMix {
		t.Errorf("default profile = %q, Mix %+v", cfg.Profile, cfg.Mix)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Clients: -1}, "must not be negative"},
		{Config{Rate: -5}, "must not be negative"},
		{Config{Mix: Mix{Put: 1, Delete: -1}}, "Mix weights"},
		{Config{Serializable: 1.5}, "Serializable"},
		{Config{Keys: 1001}, "at most 1000"},
		{Config{Clients: 2, PinnedClients: 3}, "exceeds Clients"},
		{Config{Clients: 100}, "too many"},
		{Config{Profile: "bogus"}, "unknown traffic profile"},
		{Config{Mix: Mix{Put: 1, Churn: -1}}, "Mix weights"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg  WatchConfig
		want string
	}{
		{WatchConfig{Watchers: -1}, "must not be negative"},
		{WatchConfig{Watchers: 1, Pinned: 2}, "exceeds Watchers"},
		{WatchConfig{Watchers: 2, ReplayWatchers: 3}, "exceeds Watchers"},
		{WatchConfig{FutureWatchers: -1}, "must not be negative"},
		{WatchConfig{Watchers: 50, SpreadWatchers: 30, FutureWatchers: 30}, "too many"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := (LeaseConfig{KeepTTL: 3, KeepAliveEvery: 3 * time.Second}).withDefaults(); err == nil {
		t.Error("KeepAliveEvery == KeepTTL accepted; the lease would expire between renewals")
	}
	if _, err := (LockConfig{Clients: -1}).withDefaults(); err == nil {
		t.Error("negative lock clients accepted")
	}
}

func TestWatchConfigDefaults(t *testing.T) {
	cfg, err := WatchConfig{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Watchers != 4 || cfg.Pinned != 2 || cfg.Prefix != keyspace.KVPrefix || cfg.ProgressInterval != 100*time.Millisecond ||
		!cfg.PrevKV || cfg.ReplayWatchers != 2 || cfg.ReplayAfter != time.Second {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, _ = WatchConfig{NoPrevKV: true, ReplayWatchers: -1}.withDefaults()
	if cfg.PrevKV || cfg.ReplayWatchers != 0 {
		t.Errorf("NoPrevKV/ReplayWatchers=-1 = %+v", cfg)
	}
}

func TestLeaseConfigDefaults(t *testing.T) {
	cfg, err := LeaseConfig{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clients != 2 || cfg.ExpireTTL != 2 || cfg.KeepTTL != 5 || cfg.KeepAliveEvery != 5*time.Second/3 || cfg.PollEvery != 250*time.Millisecond {
		t.Errorf("defaults = %+v", cfg)
	}
}

// TestUniqueValues: values written concurrently by many clients of one run
// never repeat and are never empty.
func TestUniqueValues(t *testing.T) {
	rec := history.NewRecorder(history.Meta{})
	const clients, perClient = 8, 2000
	vals := make([][]string, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				vals[c] = append(vals[c], uniqueValue("", rec, c, rec.NextID()))
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, vs := range vals {
		for _, v := range vs {
			if v == "" {
				t.Fatal("empty value")
			}
			if seen[v] {
				t.Fatalf("value %q written twice", v)
			}
			seen[v] = true
		}
	}
}

// A write's value is its prefix, "c", the client, "-", the operation ID,
// "-" and the run's tag, whatever the prefix's length.
func TestUniqueValueFormat(t *testing.T) {
	rec := history.NewRecorder(history.Meta{})
	if rec.RunTag() == "" {
		t.Fatal("empty run tag")
	}
	long := strings.Repeat("owner/", 20)
	for _, tc := range []struct {
		prefix string
		client int
		id     int64
		want   string
	}{
		{"", 3, 1234567, "c3-1234567-" + rec.RunTag()},
		{"lock/", 1007, 1, "lock/c1007-1-" + rec.RunTag()},
		{long, 0, 9, long + "c0-9-" + rec.RunTag()},
	} {
		if got := uniqueValue(tc.prefix, rec, tc.client, tc.id); got != tc.want {
			t.Errorf("uniqueValue(%q, %d, %d) = %q, want %q", tc.prefix, tc.client, tc.id, got, tc.want)
		}
	}
}

// do returns and records the operation as call left it (a relabelled CAS,
// a failed request), in the order the requests ran, and an operation it
// returned stays as it was when the client makes its next request.
func TestDoRecordsTheOperationCallLeftIt(t *testing.T) {
	rec := history.NewRecorder(history.Meta{})
	c := &client{rec: rec, id: 4, endpoint: "m1", timeout: time.Second, detach: true}
	resp := &history.Response{Revision: 7, MemberID: 1}

	cas := c.newWrite(history.Txn, "/kv/k001", "p/")
	cas.ExpectModRev = 3
	value := cas.Value
	first := c.do(context.Background(), cas, func(ctx context.Context, op *history.Operation) (*history.Response, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("request context has no deadline")
		}
		if op.Value != value || op.ClientID != 4 || op.Call == 0 {
			t.Errorf("call got %+v, want the write with its client and call time", op)
		}
		op.Kind, op.Value, op.ExpectModRev = history.Get, "", 0
		return resp, nil
	})
	kept := first
	second := c.do(context.Background(), history.Operation{Kind: history.Delete, Key: "/kv/k002"}, func(context.Context, *history.Operation) (*history.Response, error) {
		return resp, errors.New("etcdserver: request timed out")
	})

	if !reflect.DeepEqual(first, kept) {
		t.Fatalf("the first operation changed under the second request: %+v, was %+v", first, kept)
	}
	if first.Kind != history.Get || first.Value != "" || first.ExpectModRev != 0 || first.Resp != resp || first.Outcome != history.OK ||
		first.Endpoint != "m1" || first.Return < first.Call {
		t.Errorf("first = %+v, want the relabelled get, answered", first)
	}
	if second.Kind != history.Delete || second.Resp != nil || second.Error == "" || second.ID <= first.ID {
		t.Errorf("second = %+v, want the delete with its error and no response, after the first", second)
	}
	if got := rec.History().Operations; !reflect.DeepEqual(got, []history.Operation{first, second}) {
		t.Errorf("recorded %+v, want what do returned, in order", got)
	}
}
