package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// LockConfig configures the lock counter. Zero fields take the defaults.
type LockConfig struct {
	// Clients is how many clients contend for the lock (default 3).
	Clients int
	// Seed drives the random pauses between increments.
	Seed int64
	// SessionTTL is the TTL in seconds of each client's session lease
	// (default 5). A client whose session expires loses the lock.
	SessionTTL int
	// OpTimeout bounds one request (default 2s); acquiring the lock may
	// take up to 5×OpTimeout.
	OpTimeout time.Duration
}

func (cfg LockConfig) withDefaults() (LockConfig, error) {
	if cfg.Clients < 0 || cfg.SessionTTL < 0 || cfg.OpTimeout < 0 {
		return cfg, fmt.Errorf("workload: LockConfig Clients, SessionTTL and OpTimeout must not be negative (got %d, %d, %s)", cfg.Clients, cfg.SessionTTL, cfg.OpTimeout)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 3
	}
	if cfg.Clients > 100 {
		return cfg, fmt.Errorf("workload: LockConfig Clients=%d is too many; use at most 100", cfg.Clients)
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 5
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	return cfg, nil
}

// LockResult is what the lock counter observed.
type LockResult struct {
	// Acked is how many increments etcd acknowledged.
	Acked int64
	// Unknown is how many increments got no answer; each may or may not
	// have applied.
	Unknown int64
	// Rejected is how many increments etcd refused because the client no
	// longer held the lock or the counter moved under it.
	Rejected int64
	// Final is the counter read after the run.
	Final int64
}

// RunLockCounter has Clients clients increment a counter under one etcd
// mutex (concurrency.Mutex on /lock/counter) until ctx is done, then reads
// the final counter. Each increment reads /lock/value and writes
// "<count+1>:<unique>" with a txn that only applies if the client still owns
// the lock and the counter did not move, so a lost lock can only reject
// increments, never lose them. The reads and txns are recorded, and the
// lock/counter check (pkg/checker/lock) judges them from the history.
func RunLockCounter(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg LockConfig) (LockResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return LockResult{}, err
	}
	if rec == nil {
		return LockResult{}, errors.New("workload: RunLockCounter needs a history.Recorder; create one with history.NewRecorder")
	}
	lockers := make([]*locker, cfg.Clients)
	defer func() {
		for _, l := range lockers {
			if l != nil {
				l.cli.Close()
			}
		}
	}()
	for i := range lockers {
		cli, err := openClient(ctx, c, "")
		if err != nil {
			return LockResult{}, err
		}
		lockers[i] = &locker{cfg: cfg,
			client: &client{cli: cli, rec: rec, id: LockClientBase + i, timeout: cfg.OpTimeout, detach: true},
			rnd:    rand.New(rand.NewSource(cfg.Seed*1000003 + int64(LockClientBase+i)))}
	}
	runAll(lockers, func(_ int, l *locker) { l.run(ctx) })

	var res LockResult
	for _, l := range lockers {
		res.Acked += l.acked
		res.Unknown += l.unknown
		res.Rejected += l.rejected
	}
	// The final read retries for a while: the run may end right after a
	// fault was healed, before a leader is back.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for {
		count, _, ok, err := lockers[0].read(fctx)
		if ok && err == nil {
			res.Final = count
			return res, nil
		}
		if !sleep(fctx, 200*time.Millisecond) {
			return res, fmt.Errorf("workload: read the final lock counter %s: %w (is the cluster healthy?)", keyspace.LockCounterKey, err)
		}
	}
}

type locker struct {
	*client
	cfg                      LockConfig
	rnd                      *rand.Rand
	acked, unknown, rejected int64
}

func (l *locker) run(ctx context.Context) {
	var sess *concurrency.Session
	defer func() {
		if sess != nil {
			// Orphan rather than Close: Close revokes with the run's ctx,
			// which is done; the session lease expires on its own.
			sess.Orphan()
		}
	}()
	for ctx.Err() == nil {
		if sess == nil {
			s, err := concurrency.NewSession(l.cli, concurrency.WithTTL(l.cfg.SessionTTL), concurrency.WithContext(ctx))
			if err != nil {
				sleep(ctx, 200*time.Millisecond)
				continue
			}
			sess = s
		}
		select {
		case <-sess.Done():
			// The session lease expired or its keep-alive stopped: every
			// lock taken with it is gone.
			sess = nil
			continue
		default:
		}
		l.incrementOnce(ctx, sess)
		// A short random pause lets other clients win the lock.
		sleep(ctx, time.Duration(l.rnd.Intn(20))*time.Millisecond)
	}
}

func (l *locker) incrementOnce(ctx context.Context, sess *concurrency.Session) {
	m := concurrency.NewMutex(sess, keyspace.LockName)
	lctx, cancel := context.WithTimeout(ctx, 5*l.cfg.OpTimeout)
	err := m.Lock(lctx)
	cancel()
	if err != nil {
		return
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.OpTimeout)
		_ = m.Unlock(uctx)
		cancel()
	}()
	count, modRev, ok, _ := l.read(ctx)
	if !ok {
		return
	}
	op := l.CompareAndPut(ctx, CAS{Key: keyspace.LockCounterKey, ExpectModRev: modRev,
		ValuePrefix: strconv.FormatInt(count+1, 10) + ":", Guards: []clientv3.Cmp{m.IsOwner()}})
	switch {
	case op.Outcome == history.Unknown:
		l.unknown++
	case op.Outcome == history.OK && op.Resp.Succeeded:
		l.acked++
	default:
		l.rejected++
	}
}

// read reads the counter, recorded as a get, and returns its count and mod
// revision (0, 0 when absent). ok is false when the read did not succeed or
// the value is not a counter.
func (l *locker) read(ctx context.Context) (count, modRev int64, ok bool, err error) {
	op := l.Get(ctx, keyspace.LockCounterKey, false)
	if op.Outcome != history.OK {
		return 0, 0, false, errors.New(op.Error)
	}
	if len(op.Resp.KVs) == 0 {
		return 0, 0, true, nil
	}
	count, perr := keyspace.ParseCounter(op.Resp.KVs[0].Value)
	if perr != nil {
		return 0, 0, false, perr
	}
	return count, op.Resp.KVs[0].ModRevision, true, nil
}
