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
	cfg      RegConfig
	rec      *history.Recorder
	key      string
	lease    int64
	owner    *clientv3.Client
	observer *clientv3.Client
	ownerID  int

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
	r := &Registration{cfg: cfg, rec: rec, key: RegistryPrefix + cfg.Name, ownerID: RegistryClientBase + int(n%50)}
	var err error
	if r.owner, err = openClient(ctx, c, ""); err != nil {
		return nil, err
	}
	if r.observer, err = openClient(ctx, c, ""); err != nil {
		r.owner.Close()
		return nil, err
	}
	if err := r.register(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Registration) register(ctx context.Context) error {
	grant := history.Operation{ID: r.rec.NextID(), ClientID: r.ownerID, Kind: history.LeaseGrant, TTL: r.cfg.TTL}
	octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	grant.Call = r.rec.Now()
	gresp, err := r.owner.Grant(octx, r.cfg.TTL)
	cancel()
	var gr *history.Response
	if err == nil {
		gr = &history.Response{LeaseID: int64(gresp.ID), TTL: gresp.TTL}
		gr.Revision, gr.MemberID = header(gresp.ResponseHeader)
	}
	finish(r.rec, &grant, err, gr)
	if err != nil {
		return fmt.Errorf("workload: register %s: grant lease: %w (is the cluster healthy?)", r.key, err)
	}
	r.lease = int64(gresp.ID)

	put := history.Operation{ID: r.rec.NextID(), ClientID: r.ownerID, Kind: history.Put, Key: r.key, Lease: r.lease}
	put.Value = uniqueValue(r.rec, r.ownerID, put.ID)
	octx, cancel = context.WithTimeout(ctx, r.cfg.OpTimeout)
	put.Call = r.rec.Now()
	presp, err := r.owner.Put(octx, r.key, put.Value, clientv3.WithLease(gresp.ID))
	cancel()
	var pr *history.Response
	if err == nil {
		pr = &history.Response{}
		pr.Revision, pr.MemberID = header(presp.Header)
	}
	finish(r.rec, &put, err, pr)
	if err != nil {
		return fmt.Errorf("workload: register %s: put: %w (is the cluster healthy?)", r.key, err)
	}

	// The keep-alive lives as long as the owner's client: KillOwner ends it
	// by closing that client, as a crashed process would.
	ka, err := r.owner.KeepAlive(context.WithoutCancel(ctx), gresp.ID)
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

// Lease is the registration's lease.
func (r *Registration) Lease() int64 { return r.lease }

// KillOwner makes the owner die: its client closes at once, without revoking
// the lease, so keep-alives simply stop.
func (r *Registration) KillOwner() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.killedAt != 0 {
		return errors.New("workload: registration owner already killed")
	}
	r.killedAt = r.rec.Now()
	return r.owner.Close()
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
		op := history.Operation{ID: r.rec.NextID(), ClientID: r.ownerID + 50, Kind: history.Get, Key: r.key}
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		op.Call = r.rec.Now()
		resp, err := r.observer.Get(octx, r.key)
		cancel()
		var gr *history.Response
		if err == nil {
			gr = &history.Response{KVs: convKVs(resp.Kvs), Count: resp.Count}
			gr.Revision, gr.MemberID = header(resp.Header)
		}
		finish(r.rec, &op, err, gr)
		since := time.Duration(op.Return - killed)
		if err == nil && len(resp.Kvs) == 0 {
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
		r.owner.Close()
	}
	r.observer.Close()
}
