package workload

import (
	"context"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// benchDuration is how long each measured phase of BenchmarkTraffic runs;
// WORKLOAD_BENCH_DURATION overrides it.
func benchDuration(b *testing.B) time.Duration {
	if s := os.Getenv("WORKLOAD_BENCH_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("WORKLOAD_BENCH_DURATION=%q: %v", s, err)
		}
		return d
	}
	return 5 * time.Second
}

// BenchmarkTraffic compares the throughput of workload.Run (8 clients, no
// rate limit, every request recorded) with a plain clientv3 loop issuing the
// same mix from the same 8 clients without recording, on a real 3-member
// cluster. Phases alternate (plain, recorded, plain, recorded) so that drift
// in the machine's load hits both alike. Run with -benchtime=1x.
//
//	go test ./pkg/workload -run '^$' -bench Traffic -benchtime 1x
func BenchmarkTraffic(b *testing.B) {
	c := localtest.Start(b, "", 3)
	d := benchDuration(b)
	cfg := Config{Clients: 8, Seed: 1}
	var recOps, plainOps int64
	var recTime, plainTime time.Duration
	for b.Loop() {
		for range 2 {
			n, el := plainTraffic(b, c, cfg, d)
			plainOps, plainTime = plainOps+n, plainTime+el
			rec := history.NewRecorder(history.Meta{})
			ctx, cancel := context.WithTimeout(context.Background(), d)
			start := time.Now()
			st, err := Run(ctx, c, rec, cfg)
			el = time.Since(start)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			if st.Ops != int64(len(rec.History().Operations)) {
				b.Fatalf("stats say %d ops, history holds %d", st.Ops, len(rec.History().Operations))
			}
			recOps, recTime = recOps+st.Ops, recTime+el
		}
	}
	recRate := float64(recOps) / recTime.Seconds()
	plainRate := float64(plainOps) / plainTime.Seconds()
	b.ReportMetric(recRate, "recorded-ops/s")
	b.ReportMetric(plainRate, "plain-ops/s")
	b.ReportMetric(100*(plainRate-recRate)/plainRate, "overhead-%")
}

// plainTraffic drives the KV mix of cfg with bare clientv3 calls for d and
// returns how many requests completed.
func plainTraffic(b *testing.B, c cluster.Cluster, cfg Config, d time.Duration) (int64, time.Duration) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	members := c.Members()
	clis := make([]*clientv3.Client, cfg.Clients)
	for i := range clis {
		if clis[i], err = openClient(context.Background(), c, endpointFor(members, i, cfg.PinnedClients)); err != nil {
			b.Fatal(err)
		}
		defer clis[i].Close()
	}
	var (
		total            atomic.Int64
		wg               sync.WaitGroup
		deletes, revokes = make(chan struct{}, 1), make(chan struct{}, 1)
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	for i, cli := range clis {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(cfg.Seed*1000003 + int64(i)))
			seen := make([]int64, cfg.Keys)
			var leases []clientv3.LeaseID
			m := cfg.Mix
			var n int64
			plainRec := history.NewRecorder(history.Meta{})
			val := func() string { return uniqueValue("", plainRec, i, time.Now().UnixNano()) }
			for ctx.Err() == nil {
				octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.OpTimeout)
				op := func() context.Context { return octx }
				r, k := rnd.Intn(m.total()), rnd.Intn(cfg.Keys)
				key := keyspace.KVKey(k)
				switch {
				case r < m.Put:
					if resp, err := cli.Put(op(), key, val()); err == nil {
						seen[k] = resp.Header.Revision
					}
				case r < m.Put+m.Get:
					if resp, err := cli.Get(op(), key); err == nil && len(resp.Kvs) > 0 {
						seen[k] = resp.Kvs[0].ModRevision
					}
				case r < m.Put+m.Get+m.Range:
					_, _ = cli.Get(op(), keyspace.KVPrefix, clientv3.WithPrefix())
				case r < m.Put+m.Get+m.Range+m.Txn:
					resp, err := cli.Txn(op()).If(clientv3.Compare(clientv3.ModRevision(key), "=", seen[k])).
						Then(clientv3.OpPut(key, val())).Else(clientv3.OpGet(key)).Commit()
					if err == nil && resp.Succeeded {
						seen[k] = resp.Header.Revision
					}
				case r < m.Put+m.Get+m.Range+m.Txn+m.Delete:
					select {
					case deletes <- struct{}{}:
						_, _ = cli.Delete(op(), key)
						<-deletes
					default:
						_, _ = cli.Get(op(), key)
					}
				case r < m.Put+m.Get+m.Range+m.Txn+m.Delete+m.LeasePut:
					if len(leases) >= maxLeasesPerClient {
						_, _ = cli.Put(op(), key, val(), clientv3.WithLease(leases[rnd.Intn(len(leases))]))
						break
					}
					g, err := cli.Grant(op(), KVLeaseTTL)
					n++
					if err == nil {
						leases = append(leases, g.ID)
						_, _ = cli.Put(op(), key, val(), clientv3.WithLease(g.ID))
					}
				default:
					if len(leases) == 0 {
						_, _ = cli.Get(op(), key)
						break
					}
					select {
					case revokes <- struct{}{}:
						j := rnd.Intn(len(leases))
						_, _ = cli.Revoke(op(), leases[j])
						leases = append(leases[:j], leases[j+1:]...)
						<-revokes
					default:
						_, _ = cli.Get(op(), key)
					}
				}
				cancel()
				n++
			}
			total.Add(n)
		}()
	}
	wg.Wait()
	return total.Load(), time.Since(start)
}

// BenchmarkRecord measures what recording one operation costs: an ID, a
// unique value, a request context, two clock reads and an append under the
// recorder's lock, from 8 goroutines.
func BenchmarkRecord(b *testing.B) {
	rec := history.NewRecorder(history.Meta{})
	b.SetParallelism(8)
	resp := &history.Response{Revision: 1, MemberID: 1}
	answer := func(context.Context, *history.Operation) (*history.Response, error) { return resp, nil }
	b.RunParallel(func(pb *testing.PB) {
		c := &client{rec: rec, id: 1, timeout: time.Second, detach: true}
		for pb.Next() {
			c.do(context.Background(), c.newWrite(history.Put, "/kv/k001", ""), answer)
		}
	})
}
