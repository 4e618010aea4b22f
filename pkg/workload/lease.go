package workload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// LeaseConfig configures lease traffic. Zero fields take the documented
// defaults.
type LeaseConfig struct {
	// Clients is how many lease clients run (default 2). Each runs one expiry
	// actor and one keep-alive actor.
	Clients int
	// ExpireTTL is the TTL in seconds of leases left to expire (default 2).
	ExpireTTL int64
	// KeepTTL is the TTL in seconds of leases kept alive (default 5).
	KeepTTL int64
	// KeepAliveEvery is how often a kept lease is renewed (default KeepTTL/3).
	KeepAliveEvery time.Duration
	// PollEvery is how often an actor reads its key (default 250ms).
	PollEvery time.Duration
	// OpTimeout bounds one request (default 2s).
	OpTimeout time.Duration
	// ExpireGrace is how long past its TTL an expiry actor keeps polling
	// for its key to vanish before it starts over (default 15s).
	ExpireGrace time.Duration
}

func (cfg LeaseConfig) withDefaults() (LeaseConfig, error) {
	if cfg.Clients < 0 || cfg.ExpireTTL < 0 || cfg.KeepTTL < 0 || cfg.KeepAliveEvery < 0 || cfg.PollEvery < 0 || cfg.OpTimeout < 0 || cfg.ExpireGrace < 0 {
		return cfg, fmt.Errorf("workload: LeaseConfig fields must not be negative (got %+v)", cfg)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 2
	}
	if cfg.Clients > 50 {
		return cfg, fmt.Errorf("workload: LeaseConfig Clients=%d is too many; use at most 50", cfg.Clients)
	}
	if cfg.ExpireTTL == 0 {
		cfg.ExpireTTL = 2
	}
	if cfg.KeepTTL == 0 {
		cfg.KeepTTL = 5
	}
	if cfg.KeepAliveEvery == 0 {
		cfg.KeepAliveEvery = time.Duration(cfg.KeepTTL) * time.Second / 3
	}
	if cfg.KeepAliveEvery >= time.Duration(cfg.KeepTTL)*time.Second {
		return cfg, fmt.Errorf("workload: KeepAliveEvery=%s is not shorter than KeepTTL=%ds; the kept lease would expire", cfg.KeepAliveEvery, cfg.KeepTTL)
	}
	if cfg.PollEvery == 0 {
		cfg.PollEvery = 250 * time.Millisecond
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	if cfg.ExpireGrace == 0 {
		cfg.ExpireGrace = 15 * time.Second
	}
	return cfg, nil
}

// RunLeases drives lease traffic until ctx is done and records every request.
//
// Expiry actors grant an ExpireTTL lease, put one /lease-expire/ key on it,
// never renew it, and poll the key with linearizable gets until it is gone
// (or ExpireTTL+ExpireGrace passed), then start over with a new key.
// Keep-alive actors grant a KeepTTL lease, put one /lease-keep/ key on it,
// renew it with KeepAliveOnce every KeepAliveEvery and poll the key; when the
// run ends they revoke it. If a renewal finds the lease gone (it expired while
// the cluster was unavailable), the actor starts over with a new lease.
func RunLeases(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg LeaseConfig) (Stats, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if rec == nil {
		return Stats{}, errors.New("workload: RunLeases needs a history.Recorder; create one with history.NewRecorder")
	}
	var actors []*leaseActor
	defer func() {
		for i, a := range actors {
			if i%2 == 0 {
				a.cli.Close()
			}
		}
	}()
	for i := 0; i < cfg.Clients; i++ {
		cli, err := openClient(ctx, c, "")
		if err != nil {
			return Stats{}, err
		}
		// Both actors of a client share its connection, like an application
		// that expires some leases and keeps others.
		for _, id := range []int{LeaseClientBase + 2*i, LeaseClientBase + 2*i + 1} {
			actors = append(actors, &leaseActor{cfg: cfg,
				client: &client{cli: cli, rec: rec, id: id, timeout: cfg.OpTimeout, detach: true}})
		}
	}
	runAll(actors, func(i int, a *leaseActor) {
		if i%2 == 0 {
			a.runExpire(ctx)
		} else {
			a.runKeep(ctx)
		}
	})
	var st Stats
	for _, a := range actors {
		st.merge(a.stats)
	}
	return st, nil
}

// leaseActor is one sequential lease client; the two actors of a lease
// client share its connection.
type leaseActor struct {
	*client
	cfg LeaseConfig
}

// grant grants a lease of ttl seconds; 0 means the grant did not succeed.
func (a *leaseActor) grant(ctx context.Context, ttl int64) int64 {
	if op := a.Grant(ctx, ttl); op.Outcome == history.OK {
		return op.Resp.LeaseID
	}
	return 0
}

// exists reads key linearizably and reports whether the read succeeded and
// whether the key exists.
func (a *leaseActor) exists(ctx context.Context, key string) (ok, exists bool) {
	op := a.Get(ctx, key, false)
	return op.Outcome == history.OK, op.Outcome == history.OK && len(op.Resp.KVs) > 0
}

// sleep waits d or until ctx is done, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (a *leaseActor) runExpire(ctx context.Context) {
	for ctx.Err() == nil {
		lease := a.grant(ctx, a.cfg.ExpireTTL)
		if lease == 0 {
			sleep(ctx, a.cfg.PollEvery)
			continue
		}
		key := fmt.Sprintf("%sc%d-%d", keyspace.LeaseExpirePrefix, a.id, lease)
		if a.Put(ctx, key, lease).Outcome == history.Fail {
			// The lease is already gone (for example, it expired while the
			// put waited out an election): nothing to watch expire.
			continue
		}
		deadline := time.Now().Add(time.Duration(a.cfg.ExpireTTL)*time.Second + a.cfg.ExpireGrace)
		for sleep(ctx, a.cfg.PollEvery) && time.Now().Before(deadline) {
			if ok, exists := a.exists(ctx, key); ok && !exists {
				break
			}
		}
	}
}

func (a *leaseActor) runKeep(ctx context.Context) {
	for ctx.Err() == nil {
		lease := a.grant(ctx, a.cfg.KeepTTL)
		if lease == 0 {
			sleep(ctx, a.cfg.PollEvery)
			continue
		}
		key := fmt.Sprintf("%sc%d-%d", keyspace.LeaseKeepPrefix, a.id, lease)
		if a.keep(ctx, key, lease) {
			// The run is over: revoke so no kept lease outlives it. A lease
			// that was lost needs no revoke; the next round grants anew.
			a.Revoke(ctx, lease)
		}
	}
}

// keep puts key on lease and renews the lease until ctx ends (it returns
// true) or a request proves the lease is gone (false).
func (a *leaseActor) keep(ctx context.Context, key string, lease int64) bool {
	if a.Put(ctx, key, lease).Outcome == history.Fail {
		return false
	}
	nextRenew := time.Now().Add(a.cfg.KeepAliveEvery)
	for sleep(ctx, min(a.cfg.PollEvery, time.Until(nextRenew))) {
		if !time.Now().Before(nextRenew) {
			if a.KeepAliveOnce(ctx, lease).Outcome == history.Fail {
				return false
			}
			nextRenew = time.Now().Add(a.cfg.KeepAliveEvery)
			continue
		}
		a.Get(ctx, key, false)
	}
	return true
}
