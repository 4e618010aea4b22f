// Package workload holds the traffic that gets recorded: concurrent etcd
// clients that put, get, delete, compare-and-set (on the mod revision or the
// value) and range over a small key pool, grant and revoke leases, watch,
// lock and register, and write every request with its real-time call/return
// interval, response and outcome into a history.Recorder for the checkers.
//
// The traffic follows the rules that keep a history checkable, as etcd's own
// tests/robustness/traffic does: every written value is unique to the run,
// non-unique writes (deletes, revokes) are rare and never concurrent with
// each other, each client issues one request at a time, and an error is only
// called a failure when etcd proves the request did not apply.
//
// The key layout (which prefix holds which traffic) is pkg/keyspace, which
// the checkers import too.
//
// Not every change to the store is a recorded operation, so checkers must not
// assume recorded writes account for every revision: lease expiries delete
// keys on the server's own schedule, the lock counter's sessions grant leases
// and write mutex keys under /lock/counter/, and a registration's lease is
// renewed by the client library's KeepAlive.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// KVLeaseTTL is the TTL of leases granted by KV traffic: long enough that
// they never expire during a run, so the only way their keys vanish is a
// recorded revoke.
const KVLeaseTTL = 600

// maxLeasesPerClient bounds the leases a KV client holds; past it, LeasePut
// reuses the oldest one instead of granting more.
const maxLeasesPerClient = 4

// Mix weighs the request types of KV traffic. Weights are relative; a zero
// Mix means the profile's.
type Mix struct {
	Put, Get, Range, Txn, Delete, LeasePut, Revoke int
	// Churn creates a key no one used before (a txn on mod revision 0)
	// and, once that is acknowledged, deletes it: two recorded operations.
	Churn int
	// ReadAt gets a key at a recent revision (WithRev): some below a
	// compaction, some not yet reached.
	ReadAt int
	// ValueTxn is a compare-and-set on the value (a txn with expect_value
	// and else_get), against the value the client last saw.
	ValueTxn int
}

// DefaultMix favours unique writes and reads. Deletes and revokes are
// non-unique writes: each one with an unknown outcome doubles the states the
// linearizability checker explores, so they are kept rare.
var DefaultMix = Mix{Put: 30, Get: 30, Range: 10, Txn: 20, Delete: 3, LeasePut: 4, Revoke: 3, ValueTxn: 5}

// DeleteHeavyMix deletes as often as it writes: deletes of the key pool,
// and churn keys created and deleted at once. A delete still waits for the
// one in flight (see kvShared.deletes), so the checker's search stays
// bounded; a drawn delete that cannot go is a get.
var DeleteHeavyMix = Mix{Put: 20, Get: 15, Range: 10, Txn: 10, Delete: 25, Churn: 15, ReadAt: 5}

func (m Mix) total() int {
	return m.Put + m.Get + m.Range + m.Txn + m.Delete + m.LeasePut + m.Revoke + m.Churn + m.ReadAt + m.ValueTxn
}

// Traffic profiles (Config.Profile).
const (
	ProfileDefault     = "default"
	ProfileDeleteHeavy = "delete-heavy"
	ProfileKubernetes  = "kubernetes"
)

// Profiles lists every profile with its one-line meaning, for --help.
var Profiles = []struct{ Name, Meaning string }{
	{ProfileDefault, "puts, gets, ranges, txns on mod revision and on value, rare deletes and lease puts over the key pool"},
	{ProfileDeleteHeavy, "as many deletes as writes, plus keys created and at once deleted (churn), and gets at recent revisions"},
	{ProfileKubernetes, "apiserver-shaped: objects created, updated and deleted by txn on mod revision, listed in pages at one revision, watched from the list's revision"},
}

// Config configures KV traffic. Zero fields take the documented defaults.
type Config struct {
	// Clients is how many concurrent clients issue requests (default 6).
	Clients int
	// PinnedClients is how many of Clients talk to one member only, assigned
	// round robin; the rest use every endpoint (default 4, at most Clients).
	// Pinned clients see a single member's view, which is where stale reads
	// and watch bugs show up.
	PinnedClients int
	// Rate is the total requests per second across clients; 0 is as fast as
	// possible.
	Rate float64
	// Keys is the size of the key pool /kv/k000.. (default 10).
	Keys int
	// Seed drives every random choice.
	Seed int64
	// Profile shapes the traffic (see Profiles; default ProfileDefault).
	Profile string
	// Mix weighs the request types (default DefaultMix, or DeleteHeavyMix
	// for ProfileDeleteHeavy). The kubernetes profile has a shape of its
	// own and ignores it.
	Mix Mix
	// OpTimeout bounds one request (default 2s). A request that times out is
	// recorded with outcome unknown.
	OpTimeout time.Duration
	// Serializable is the fraction (0..1) of gets sent serializable and
	// recorded with Serializable=true (default 0).
	Serializable float64
	// CompactInterval, when positive, compacts the store about this often
	// during traffic at CompactKeep revisions below the current one; each
	// compact is a recorded operation. Watches from older revisions then
	// meet ErrCompacted and resume at the compacted revision.
	CompactInterval time.Duration
	// CompactKeep is how many revisions a compaction keeps below the
	// current one (default DefaultCompactKeep).
	CompactKeep int64
	// DefragInterval, when positive, defragments one member about this
	// often during traffic, round robin; each defragmentation is recorded.
	DefragInterval time.Duration
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// bad field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Clients < 0 || cfg.PinnedClients < 0 || cfg.Keys < 0 || cfg.Rate < 0 || cfg.OpTimeout < 0 {
		return cfg, fmt.Errorf("workload: Clients, PinnedClients, Keys, Rate and OpTimeout must not be negative (got %d, %d, %d, %g, %s)",
			cfg.Clients, cfg.PinnedClients, cfg.Keys, cfg.Rate, cfg.OpTimeout)
	}
	m := cfg.Mix
	if m.Put < 0 || m.Get < 0 || m.Range < 0 || m.Txn < 0 || m.Delete < 0 || m.LeasePut < 0 || m.Revoke < 0 || m.Churn < 0 || m.ReadAt < 0 || m.ValueTxn < 0 {
		return cfg, fmt.Errorf("workload: Mix weights must not be negative (got %+v)", m)
	}
	if cfg.CompactInterval < 0 || cfg.CompactKeep < 0 || cfg.DefragInterval < 0 {
		return cfg, fmt.Errorf("workload: CompactInterval, CompactKeep and DefragInterval must not be negative (got %s, %d, %s)",
			cfg.CompactInterval, cfg.CompactKeep, cfg.DefragInterval)
	}
	if cfg.CompactKeep == 0 {
		cfg.CompactKeep = DefaultCompactKeep
	}
	if cfg.Serializable < 0 || cfg.Serializable > 1 {
		return cfg, fmt.Errorf("workload: Serializable is a fraction of gets, want 0..1, got %g", cfg.Serializable)
	}
	if cfg.Keys > keyspace.MaxKVKeys {
		return cfg, fmt.Errorf("workload: Keys=%d is more than the key pool's %d names; use at most %[2]d", cfg.Keys, keyspace.MaxKVKeys)
	}
	if cfg.Clients >= WatchClientBase {
		return cfg, fmt.Errorf("workload: Clients=%d is too many; use at most %d", cfg.Clients, WatchClientBase-1)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 6
	}
	if cfg.PinnedClients == 0 {
		cfg.PinnedClients = min(4, cfg.Clients)
	}
	if cfg.PinnedClients > cfg.Clients {
		return cfg, fmt.Errorf("workload: PinnedClients=%d exceeds Clients=%d; pin at most every client", cfg.PinnedClients, cfg.Clients)
	}
	if cfg.Keys == 0 {
		cfg.Keys = 10
	}
	switch cfg.Profile {
	case "":
		cfg.Profile = ProfileDefault
	case ProfileDefault, ProfileDeleteHeavy, ProfileKubernetes:
	default:
		return cfg, fmt.Errorf("workload: unknown traffic profile %q; want %s, %s or %s", cfg.Profile, ProfileDefault, ProfileDeleteHeavy, ProfileKubernetes)
	}
	if m.total() == 0 {
		cfg.Mix = DefaultMix
		if cfg.Profile == ProfileDeleteHeavy {
			cfg.Mix = DeleteHeavyMix
		}
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	return cfg, nil
}

// Stats counts what a run did.
type Stats struct {
	// Ops is every recorded operation.
	Ops int64
	// OK, Failed and Unknown split Ops by outcome.
	OK, Failed, Unknown int64
	// ByKind counts operations per kind.
	ByKind map[history.Kind]int64
}

func (s *Stats) add(op *history.Operation) {
	s.Ops++
	switch op.Outcome {
	case history.OK:
		s.OK++
	case history.Fail:
		s.Failed++
	default:
		s.Unknown++
	}
	if s.ByKind == nil {
		s.ByKind = map[history.Kind]int64{}
	}
	s.ByKind[op.Kind]++
}

func (s *Stats) merge(o Stats) {
	s.Ops += o.Ops
	s.OK += o.OK
	s.Failed += o.Failed
	s.Unknown += o.Unknown
	for k, n := range o.ByKind {
		if s.ByKind == nil {
			s.ByKind = map[history.Kind]int64{}
		}
		s.ByKind[k] += n
	}
}

func (s Stats) String() string {
	return fmt.Sprintf("%d ops (%d ok, %d failed, %d unknown)", s.Ops, s.OK, s.Failed, s.Unknown)
}

// endpointFor returns the endpoint client i is pinned to, or "" when it uses
// every endpoint.
func endpointFor(members []cluster.Member, i, pinned int) string {
	if i >= pinned || len(members) == 0 {
		return ""
	}
	return members[i%len(members)].ClientURL
}

// openRetry bounds how long opening a client retries a member that is
// restarting.
const openRetry = 30 * time.Second

// openClient opens a client pinned to endpoint, or on every endpoint when it
// is "".
//
// The client is opened on a context detached from ctx: a backend may make ctx
// the client's base context, and then the end of the run would cancel
// requests still in flight (recording them unknown) and the clean-up
// requests made after it (revokes, final reads). The backend's dial timeout
// still bounds the dial.
func openClient(ctx context.Context, c cluster.Cluster, endpoint string) (*clientv3.Client, error) {
	live := ctx
	ctx = context.WithoutCancel(ctx)
	var (
		cli *clientv3.Client
		err error
	)
	// With credentials, opening a client authenticates, which is a request:
	// a member that restarts just then (a pod whose entrypoint stops its
	// bootstrap etcd and execs the real one, a member the previous spec's
	// fault left restarting) refuses it as Unavailable. That is a moment,
	// not a cluster that is down, so it is retried for a while.
	deadline := time.Now().Add(openRetry)
	for {
		if endpoint != "" {
			cli, err = c.Client(ctx, endpoint)
		} else {
			cli, err = c.Client(ctx)
		}
		if err == nil || status.Code(err) != codes.Unavailable || time.Now().After(deadline) || live.Err() != nil {
			break
		}
		select {
		case <-live.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		where := endpoint
		if where == "" {
			where = "all endpoints"
		}
		return nil, fmt.Errorf("workload: open etcd client on %s: %w (is the cluster up?)", where, err)
	}
	return cli, nil
}

// probe checks that some member answers, so that a cluster that is not there
// at all is an error rather than a run of nothing but unknown operations. It
// is a serializable count-only read: it needs no leader and writes nothing.
func probe(ctx context.Context, c cluster.Cluster) error {
	cli, err := openClient(ctx, c, "")
	if err != nil {
		return err
	}
	defer cli.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Get(pctx, keyspace.KVPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable()); err != nil {
		return fmt.Errorf("workload: no etcd member answers on %v: %w (is the cluster up?)", c.Endpoints(), err)
	}
	return nil
}

// runAll calls f for every element of xs, each in its own goroutine, and
// waits for all of them: every actor of a workload is one sequential client.
func runAll[T any](xs []T, f func(i int, x T)) {
	var wg sync.WaitGroup
	for i, x := range xs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i, x)
		}()
	}
	wg.Wait()
}

// Run drives KV traffic against c until ctx is done, recording every request
// into rec, and returns what it did. A cluster that fails mid-run produces
// unknown or failed operations, not an error; Run returns an error only for a
// bad config, or when no member answers at the start or its clients cannot
// be opened.
func Run(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg Config) (Stats, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Stats{}, err
	}
	if rec == nil {
		return Stats{}, errors.New("workload: Run needs a history.Recorder; create one with history.NewRecorder")
	}
	if err := probe(ctx, c); err != nil {
		return Stats{}, err
	}
	members := c.Members()
	clients := make([]*kvClient, cfg.Clients)
	defer func() {
		for _, kc := range clients {
			if kc != nil {
				kc.cli.Close()
			}
		}
	}()
	var limiter *rate.Limiter
	if cfg.Rate > 0 {
		// A burst of one spreads requests evenly instead of in clumps.
		limiter = rate.NewLimiter(rate.Limit(cfg.Rate), 1)
	}
	shared := &kvShared{cfg: cfg, limiter: limiter,
		deletes: make(chan struct{}, 1), revokes: make(chan struct{}, 1),
		keys: make([]string, cfg.Keys), keyIndex: make(map[string]int, cfg.Keys)}
	for i := range shared.keys {
		shared.keys[i] = keyspace.KVKey(i)
		shared.keyIndex[shared.keys[i]] = i
	}
	for i := range clients {
		ep := endpointFor(members, i, cfg.PinnedClients)
		cli, err := openClient(ctx, c, ep)
		if err != nil {
			return Stats{}, err
		}
		clients[i] = &kvClient{
			kvShared: shared,
			client:   &client{cli: cli, rec: rec, id: i, endpoint: ep, timeout: cfg.OpTimeout, detach: true},
			rnd:      rand.New(rand.NewSource(cfg.Seed*1000003 + int64(i))),
			seen:     make([]int64, cfg.Keys),
			seenVal:  make([]string, cfg.Keys),
		}
	}
	var maint sync.WaitGroup
	if cfg.CompactInterval > 0 {
		maint.Add(1)
		go func() { defer maint.Done(); compactor(ctx, c, rec, cfg) }()
	}
	if cfg.DefragInterval > 0 {
		maint.Add(1)
		go func() { defer maint.Done(); defragmenter(ctx, c, rec, cfg) }()
	}
	runAll(clients, func(_ int, kc *kvClient) { kc.run(ctx) })
	maint.Wait()
	var st Stats
	for _, kc := range clients {
		st.merge(kc.stats)
	}
	return st, nil
}

// kvShared is what KV clients share.
type kvShared struct {
	cfg     Config
	limiter *rate.Limiter
	// deletes and revokes are semaphores of one: at most one non-unique
	// write of each kind is in flight across all clients.
	deletes, revokes chan struct{}
	// keys and keyIndex name the key pool both ways, built once so the
	// request loop does not format strings.
	keys     []string
	keyIndex map[string]int
}

type kvClient struct {
	*kvShared
	*client
	rnd *rand.Rand
	// seen is the last mod revision this client observed per key (0: absent
	// or never seen); txn compares against it. seenVal is the value it
	// observed with it, which a value txn compares against.
	seen    []int64
	seenVal []string
	leases  []int64
	// churned counts the churn keys this client created.
	churned int
}

func (kc *kvClient) run(ctx context.Context) {
	var backoff time.Duration
	for ctx.Err() == nil {
		if kc.limiter != nil {
			if err := kc.limiter.Wait(ctx); err != nil {
				return
			}
		}
		before := kc.stats.OK
		if kc.cfg.Profile == ProfileKubernetes {
			kc.kubeStep(ctx)
		} else {
			kc.step(ctx)
		}
		if kc.stats.OK > before {
			backoff = 0
			continue
		}
		// The request did not succeed. If its member refuses connections,
		// the next one would fail at once too, and a client spinning on a
		// dead member fills the history with unknown writes, each of which
		// multiplies the linearizability checker's work. Back off until a
		// request succeeds again.
		backoff = min(max(2*backoff, 20*time.Millisecond), time.Second)
		if !sleep(ctx, backoff) {
			return
		}
	}
}

// step issues one request chosen by the mix.
func (kc *kvClient) step(ctx context.Context) {
	m := kc.cfg.Mix
	n := kc.rnd.Intn(m.total())
	k := kc.rnd.Intn(kc.cfg.Keys)
	// draw reports whether n falls in the next weight's share.
	draw := func(w int) bool {
		if n < w {
			return true
		}
		n -= w
		return false
	}
	switch {
	case draw(m.Put):
		kc.put(ctx, k, 0)
		return
	case draw(m.Get):
		kc.get(ctx, k)
		return
	case draw(m.Range):
		kc.rangeAll(ctx)
		return
	case draw(m.Txn):
		kc.txn(ctx, k)
		return
	case draw(m.Delete):
		select {
		case kc.deletes <- struct{}{}:
			kc.delete(ctx, k)
			<-kc.deletes
			return
		default:
		}
	case draw(m.LeasePut):
		kc.leasePut(ctx, k)
		return
	case draw(m.Churn):
		kc.churn(ctx)
		return
	case draw(m.ReadAt):
		// A recent revision: a few not reached yet, some compacted away
		// when compaction runs.
		rev := max(1, kc.lastRev+2-int64(kc.rnd.Intn(2*int(kc.cfg.CompactKeep)+2)))
		kc.GetAt(ctx, kc.keys[k], rev)
		return
	case draw(m.ValueTxn):
		kc.valueTxn(ctx, k)
		return
	default:
		if len(kc.leases) > 0 {
			select {
			case kc.revokes <- struct{}{}:
				kc.revoke(ctx)
				<-kc.revokes
				return
			default:
			}
		}
	}
	// The non-unique write we drew is not allowed now; read instead so the
	// client keeps its pace.
	kc.get(ctx, k)
}

// churn creates a key no one used before and, once the create is
// acknowledged, deletes it, waiting for its turn among deletes: a delete
// is a non-unique write, kept one at a time.
func (kc *kvClient) churn(ctx context.Context) {
	kc.churned++
	key := keyspace.ChurnKey(kc.id, kc.churned)
	op := kc.CompareAndPut(ctx, CAS{Key: key})
	if op.Outcome != history.OK || !op.Resp.Succeeded {
		return
	}
	select {
	case kc.deletes <- struct{}{}:
	case <-ctx.Done():
		return
	}
	kc.Delete(ctx, key)
	<-kc.deletes
}

func (kc *kvClient) get(ctx context.Context, k int) {
	serializable := kc.cfg.Serializable > 0 && kc.rnd.Float64() < kc.cfg.Serializable
	op := kc.Get(ctx, kc.keys[k], serializable)
	// A serializable read may be stale; do not let it steer txns.
	if op.Outcome == history.OK && !serializable {
		kc.saw(k, op.Resp.KVs)
	}
}

func (kc *kvClient) rangeAll(ctx context.Context) {
	op := kc.Range(ctx, keyspace.KVPrefix, keyspace.PrefixEnd(keyspace.KVPrefix), 0)
	if op.Outcome == history.OK {
		clear(kc.seen)
		clear(kc.seenVal)
		for _, kv := range op.Resp.KVs {
			if i, ok := kc.keyIndex[kv.Key]; ok {
				kc.seen[i], kc.seenVal[i] = kv.ModRevision, kv.Value
			}
		}
	}
}

func (kc *kvClient) put(ctx context.Context, k int, lease int64) {
	if op := kc.Put(ctx, kc.keys[k], lease); op.Outcome == history.OK {
		kc.seen[k], kc.seenVal[k] = op.Resp.Revision, op.Value
	}
}

func (kc *kvClient) txn(ctx context.Context, k int) {
	op := kc.CompareAndPut(ctx, CAS{Key: kc.keys[k], ExpectModRev: kc.seen[k]})
	if op.Outcome != history.OK {
		return
	}
	kc.sawTxn(k, &op)
}

// valueTxn compares the key's value with the one this client last saw ("",
// which fails, when it saw the key absent or never read it).
func (kc *kvClient) valueTxn(ctx context.Context, k int) {
	op := kc.CompareValueAndPut(ctx, kc.keys[k], kc.seenVal[k])
	if op.Outcome == history.OK {
		kc.sawTxn(k, &op)
	}
}

// sawTxn learns key k's state from an answered txn: its own write, or what
// its else branch read.
func (kc *kvClient) sawTxn(k int, op *history.Operation) {
	if op.Resp.Succeeded {
		kc.seen[k], kc.seenVal[k] = op.Resp.Revision, op.Value
		return
	}
	kc.saw(k, op.Resp.KVs)
}

// saw learns key k's state from a read of it (no kvs: absent).
func (kc *kvClient) saw(k int, kvs []history.KV) {
	kc.seen[k], kc.seenVal[k] = firstModRev(kvs), ""
	if len(kvs) > 0 {
		kc.seenVal[k] = kvs[0].Value
	}
}

func (kc *kvClient) delete(ctx context.Context, k int) {
	if op := kc.Delete(ctx, kc.keys[k]); op.Outcome == history.OK {
		kc.seen[k], kc.seenVal[k] = 0, ""
	}
}

// leasePut grants a long lease (or reuses one once the client holds enough)
// and puts the key with it: two recorded operations.
func (kc *kvClient) leasePut(ctx context.Context, k int) {
	if len(kc.leases) >= maxLeasesPerClient {
		kc.put(ctx, k, kc.leases[kc.rnd.Intn(len(kc.leases))])
		return
	}
	op := kc.Grant(ctx, KVLeaseTTL)
	if op.Outcome != history.OK {
		return
	}
	kc.leases = append(kc.leases, op.Resp.LeaseID)
	kc.put(ctx, k, op.Resp.LeaseID)
}

// revoke revokes one of this client's leases. The lease is forgotten whatever
// the outcome: after an unknown revoke, putting with it again could fail for
// reasons the checker cannot see. Keys on the lease are gone; the next txn
// will learn their state.
func (kc *kvClient) revoke(ctx context.Context) {
	i := kc.rnd.Intn(len(kc.leases))
	lease := kc.leases[i]
	kc.leases = append(kc.leases[:i], kc.leases[i+1:]...)
	kc.Revoke(ctx, lease)
}
