package workload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// RegConfig configures a registration.
type RegConfig struct {
	// TTL is the registration lease's TTL in seconds (default 5).
	TTL int64
	// Name is the registered service (default "svc-<n>", n unique in the
	// run); the key is /registry/<Name>.
	Name string
	// OpTimeout bounds one request (default 2s).
	OpTimeout time.Duration
}

// Registration is a service registered the way applications do it: a key on
// a lease the client library keeps alive. When the owner dies, etcd must
// remove the key within the lease TTL.
type Registration struct {
	cfg   RegConfig
	rec   *history.Recorder
	key   string
	lease int64
	// owner writes and keeps the registration alive; observer polls it
	// from a client of its own.
	owner    *client
	observer *client

	mu       sync.Mutex
	killedAt int64 // recorder time; 0 while the owner lives
	closed   bool
}

// RunRegistration registers /registry/<Name> from its own client, keeps the
// lease alive with the client library's KeepAlive, and returns once the key
// is written. The grant and the put are recorded. Close releases it.
func RunRegistration(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg RegConfig) (*Registration, error) {
	if cfg.TTL < 0 || cfg.OpTimeout < 0 {
		return nil, fmt.Errorf("workload: RegConfig TTL and OpTimeout must not be negative (got %d, %s)", cfg.TTL, cfg.OpTimeout)
	}
	if rec == nil {
		return nil, errors.New("workload: RunRegistration needs a history.Recorder; create one with history.NewRecorder")
	}
	if cfg.TTL == 0 {
		cfg.TTL = 5
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	n := rec.NextID()
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("svc-%d", n)
	}
	r := &Registration{cfg: cfg, rec: rec, key: keyspace.RegistryPrefix + cfg.Name}
	ownerID := RegistryClientBase + int(n%50)
	owner, err := openClient(ctx, c, "")
	if err != nil {
		return nil, err
	}
	observer, err := openClient(ctx, c, "")
	if err != nil {
		owner.Close()
		return nil, err
	}
	r.owner = &client{cli: owner, rec: rec, id: ownerID, timeout: cfg.OpTimeout}
	r.observer = &client{cli: observer, rec: rec, id: ownerID + 50, timeout: cfg.OpTimeout}
	if err := r.register(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Registration) register(ctx context.Context) error {
	grant := r.owner.Grant(ctx, r.cfg.TTL)
	if grant.Outcome != history.OK {
		return fmt.Errorf("workload: register %s: grant lease: %s (is the cluster healthy?)", r.key, grant.Error)
	}
	r.lease = grant.Resp.LeaseID
	if put := r.owner.Put(ctx, r.key, r.lease); put.Outcome != history.OK {
		return fmt.Errorf("workload: register %s: put: %s (is the cluster healthy?)", r.key, put.Error)
	}

	// The keep-alive lives as long as the owner's client: KillOwner ends it
	// by closing that client, as a crashed process would.
	ka, err := r.owner.cli.KeepAlive(context.WithoutCancel(ctx), clientv3.LeaseID(r.lease))
	if err != nil {
		return fmt.Errorf("workload: register %s: start keep-alive: %w", r.key, err)
	}
	go func() {
		for range ka {
		}
	}()
	return nil
}

// Key is the registered key.
func (r *Registration) Key() string { return r.key }

// KillOwner makes the owner die: its client closes at once, without revoking
// the lease, so keep-alives simply stop.
func (r *Registration) KillOwner() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killedAt != 0 {
		return errors.New("workload: registration owner already killed")
	}
	r.killedAt = r.rec.Now()
	return r.owner.cli.Close()
}

// WaitGone polls the key with recorded linearizable gets until it is gone
// and returns how long after KillOwner that was observed (an upper bound: the
// return time of the first get that found it absent). It fails if the key is
// still there TTL+tolerance after the kill.
func (r *Registration) WaitGone(ctx context.Context, tolerance time.Duration) (time.Duration, error) {
	r.mu.Lock()
	killed := r.killedAt
	r.mu.Unlock()
	if killed == 0 {
		return 0, errors.New("workload: WaitGone before KillOwner; kill the owner first")
	}
	limit := time.Duration(r.cfg.TTL)*time.Second + tolerance
	for {
		op := r.observer.Get(ctx, r.key, false)
		since := time.Duration(op.Return - killed)
		if op.Outcome == history.OK && len(op.Resp.KVs) == 0 {
			if since > limit {
				return since, fmt.Errorf("registration %s vanished %s after its owner died, later than TTL %ds + tolerance %s", r.key, since.Round(time.Millisecond), r.cfg.TTL, tolerance)
			}
			return since, nil
		}
		if since > limit {
			return since, fmt.Errorf("registration %s still present %s after its owner died (TTL %ds + tolerance %s): the lease did not expire", r.key, since.Round(time.Millisecond), r.cfg.TTL, tolerance)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return since, fmt.Errorf("registration %s: gave up waiting for it to vanish after %s: %v", r.key, since.Round(time.Millisecond), ctx.Err())
		}
	}
}

// Close releases the clients. If the owner is still alive its lease is left
// to expire.
func (r *Registration) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.killedAt == 0 {
		r.owner.cli.Close()
	}
	r.observer.cli.Close()
}
