package workload

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
)

// WatchConfig configures watch traffic. Zero fields take the documented
// defaults.
type WatchConfig struct {
	// Watchers is how many concurrent watchers run (default 4).
	Watchers int
	// Pinned is how many of them talk to one member only, round robin
	// (default 2, at most Watchers).
	Pinned int
	// Prefix is the watched key prefix (default "/kv/").
	Prefix string
	// ProgressInterval is how often each watcher calls RequestProgress
	// (default 100ms). Progress notifications are what let a quiet watcher
	// prove it has seen everything up to a revision.
	ProgressInterval time.Duration
	// PrevKV asks for the previous key-value with each event. It is on by
	// default (the zero WatchConfig gets it) because the PrevKV and IsCreate
	// checks need it; set NoPrevKV to turn it off.
	PrevKV   bool
	NoPrevKV bool
	// ReplayWatchers is how many watchers (the last ones) open their first
	// watch ReplayAfter late, from the same start revision as the others, so
	// that they replay history from an older revision: this is what the
	// "resumable" check exercises. Default Watchers/2; negative means none.
	ReplayWatchers int
	// ReplayAfter is how late replaying watchers start (default 1s).
	ReplayAfter time.Duration
	// StallTimeout is how long a stream may answer none of its progress
	// requests (no event, no notification) before the watcher gives it up
	// and resumes on a new stream from the revision after the last one it
	// saw (default 3s). A member that is down, paused or cut off leaves the
	// client's stream silent; and etcd v3.5.8–v3.5.12 stop answering
	// progress requests on a stream for good once one arrived before a
	// resumed watch was synced, until an event in range comes
	// (etcd-io/etcd#17566), which after the last write in range never does.
	StallTimeout time.Duration
}

func (cfg WatchConfig) withDefaults() (WatchConfig, error) {
	if cfg.Watchers < 0 || cfg.Pinned < 0 || cfg.ProgressInterval < 0 || cfg.ReplayAfter < 0 || cfg.StallTimeout < 0 {
		return cfg, fmt.Errorf("workload: WatchConfig Watchers, Pinned, ProgressInterval, ReplayAfter and StallTimeout must not be negative (got %d, %d, %s, %s, %s)",
			cfg.Watchers, cfg.Pinned, cfg.ProgressInterval, cfg.ReplayAfter, cfg.StallTimeout)
	}
	if cfg.Watchers == 0 {
		cfg.Watchers = 4
	}
	if cfg.Watchers > 100 {
		return cfg, fmt.Errorf("workload: Watchers=%d is too many; use at most 100", cfg.Watchers)
	}
	if cfg.Pinned == 0 {
		cfg.Pinned = min(2, cfg.Watchers)
	}
	if cfg.Pinned > cfg.Watchers {
		return cfg, fmt.Errorf("workload: WatchConfig Pinned=%d exceeds Watchers=%d; pin at most every watcher", cfg.Pinned, cfg.Watchers)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = keyspace.KVPrefix
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 100 * time.Millisecond
	}
	cfg.PrevKV = !cfg.NoPrevKV
	switch {
	case cfg.ReplayWatchers == 0:
		cfg.ReplayWatchers = cfg.Watchers / 2
	case cfg.ReplayWatchers < 0:
		cfg.ReplayWatchers = 0
	case cfg.ReplayWatchers > cfg.Watchers:
		return cfg, fmt.Errorf("workload: ReplayWatchers=%d exceeds Watchers=%d", cfg.ReplayWatchers, cfg.Watchers)
	}
	if cfg.ReplayAfter == 0 {
		cfg.ReplayAfter = time.Second
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = 3 * time.Second
	}
	if cfg.StallTimeout <= cfg.ProgressInterval {
		return cfg, fmt.Errorf("workload: StallTimeout=%s must exceed ProgressInterval=%s, or every stream stalls", cfg.StallTimeout, cfg.ProgressInterval)
	}
	return cfg, nil
}

// Client ID ranges of the non-KV actors, so that every sequential actor in a
// history has its own ClientID. KV clients use 0..WatchClientBase-1.
const (
	WatchClientBase    = 100
	LeaseClientBase    = 200
	LockClientBase     = 300
	RegistryClientBase = 400
	FinalReadClient    = 500
)

// Watchers is running watch traffic. Stop or Drain it to record the streams
// that are still open.
type Watchers struct {
	rec      *history.Recorder
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ws       []*watcher
	startRev int64
	stopOnce sync.Once
}

type watcher struct {
	id       int
	cli      *clientv3.Client
	endpoint string
	cfg      WatchConfig
	rec      *history.Recorder
	delay    time.Duration
	// seen is the highest revision this watcher has proven it saw: the
	// largest event mod revision or progress-notify revision.
	seen atomic.Int64
	// compacted is the highest compact revision a stream of this watcher
	// was refused with: the next stream starts there, since no earlier
	// revision can be served any more.
	compacted atomic.Int64
	// streams counts the streams this watcher opened, resumed those after
	// its first; stalled, those it gave up after StallTimeout of silence;
	// ended, those the server or the client library ended (canceled, no
	// leader, compacted).
	streams, resumed, stalled, ended atomic.Int64
}

// StreamStats counts what happened to the watchers' streams. Every stream
// after a watcher's first resumes where the one before it ended.
type StreamStats struct {
	// Streams is how many watch streams were opened, resumed ones included.
	Streams int64
	// Resumed is how many of them resumed a watcher's earlier stream.
	Resumed int64
	// Stalled is how many were given up after StallTimeout of silence.
	Stalled int64
	// Ended is how many the server or the client library ended.
	Ended int64
}

// Stats counts the streams opened so far.
func (w *Watchers) Stats() StreamStats {
	var s StreamStats
	for _, wt := range w.ws {
		s.Streams += wt.streams.Load()
		s.Resumed += wt.resumed.Load()
		s.Stalled += wt.stalled.Load()
		s.Ended += wt.ended.Load()
	}
	return s
}

func (s StreamStats) String() string {
	return fmt.Sprintf("%d watch streams, %d of them resumed (%d after a silent stream was given up, %d after the server or client ended one)",
		s.Streams, s.Resumed, s.Stalled, s.Ended)
}

// StartWatch opens the watchers and returns at once; they run until ctx is
// done, Stop or Drain. Every watcher starts from the revision current when
// StartWatch was called, plus one; the replaying ones start later from that
// same revision.
func StartWatch(ctx context.Context, c cluster.Cluster, rec *history.Recorder, cfg WatchConfig) (*Watchers, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, errors.New("workload: StartWatch needs a history.Recorder; create one with history.NewRecorder")
	}
	members := c.Members()
	w := &Watchers{rec: rec}
	closeAll := func() {
		for _, wt := range w.ws {
			wt.cli.Close()
		}
	}
	for i := 0; i < cfg.Watchers; i++ {
		ep := endpointFor(members, i, cfg.Pinned)
		cli, err := openClient(ctx, c, ep)
		if err != nil {
			closeAll()
			return nil, err
		}
		wt := &watcher{id: WatchClientBase + i, cli: cli, endpoint: ep, cfg: cfg, rec: rec}
		if i >= cfg.Watchers-cfg.ReplayWatchers {
			wt.delay = cfg.ReplayAfter
		}
		w.ws = append(w.ws, wt)
	}
	// The start revision comes from a linearizable read so that it is not
	// behind anything the caller wrote before starting the watchers.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.ws[0].cli.Get(rctx, cfg.Prefix, clientv3.WithCountOnly())
	cancel()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("workload: read the start revision for watches: %w (is the cluster up?)", err)
	}
	w.startRev = resp.Header.Revision + 1
	wctx, wcancel := context.WithCancel(ctx)
	w.cancel = wcancel
	for _, wt := range w.ws {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer wt.cli.Close()
			wt.run(wctx, w.startRev)
		}()
	}
	return w, nil
}

// Stop ends every watcher and records the streams still open. It is safe to
// call more than once.
func (w *Watchers) Stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		w.wg.Wait()
	})
}

// Drain waits until every watcher has seen untilRev (through an event or a
// progress notification), then stops them. Call it after traffic ends with
// the final revision, so that every watch covers the whole history and the
// "reliable" check can compare complete ranges. The watchers keep requesting
// progress meanwhile, and one whose stream stays silent resumes on a new
// stream (StallTimeout), so a final revision outside the watched range is
// reached as soon as etcd says so. If ctx ends first, it stops the watchers
// anyway and returns an error naming the ones that lagged.
func (w *Watchers) Drain(ctx context.Context, untilRev int64) error {
	defer w.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var lagging []string
		for _, wt := range w.ws {
			if s := wt.seen.Load(); s < untilRev {
				lagging = append(lagging, fmt.Sprintf("watcher %d at revision %d after %d stream(s)", wt.id, s, wt.streams.Load()))
			}
		}
		if len(lagging) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(lagging)
			return fmt.Errorf("workload: watchers did not reach revision %d before the drain timeout, though they requested progress every %s and resumed every stream silent for %s: %s",
				untilRev, w.ws[0].cfg.ProgressInterval, w.ws[0].cfg.StallTimeout, strings.Join(lagging, ", "))
		case <-tick.C:
		}
	}
}

func (wt *watcher) run(ctx context.Context, start int64) {
	if wt.delay > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wt.delay):
		}
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		next := start
		if s := wt.seen.Load(); s > 0 {
			next = s + 1
		}
		next = max(next, wt.compacted.Load())
		if wt.watchOnce(ctx, next) {
			backoff = 50 * time.Millisecond
			continue
		}
		// The stream failed without progress (member down, no leader):
		// back off so a dead member does not turn into a busy loop.
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// watchOnce runs one watch stream from rev until it ends and records it. It
// reports whether the stream delivered anything.
func (wt *watcher) watchOnce(ctx context.Context, rev int64) (progressed bool) {
	id := wt.rec.NextID()
	// Each recorded watch gets a gRPC stream of its own (the client shares
	// one among contexts with equal metadata): a resumed watch must not
	// inherit a stream on which etcd no longer answers progress requests.
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx),
		"etcd-chaos-watch", strconv.FormatInt(id, 10)))
	defer cancel()
	if wt.streams.Add(1) > 1 {
		wt.resumed.Add(1)
	}
	end := clientv3.GetPrefixRangeEnd(wt.cfg.Prefix)
	rec := history.Watch{
		ID:            id,
		ClientID:      wt.id,
		Key:           wt.cfg.Prefix,
		End:           end,
		StartRevision: rev,
		PrevKV:        wt.cfg.PrevKV,
		Endpoint:      wt.endpoint,
		Call:          wt.rec.Now(),
	}
	defer func() { wt.rec.AddWatch(rec) }()
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithProgressNotify()}
	if wt.cfg.PrevKV {
		opts = append(opts, clientv3.WithPrevKV())
	}
	ch := wt.cli.Watch(sctx, wt.cfg.Prefix, opts...)

	// heard is when the stream last answered (or was opened), in the
	// recorder's clock.
	var heard atomic.Int64
	heard.Store(rec.Call)
	// RequestProgress must use the watch's own context: the client finds the
	// gRPC stream by the context's metadata. It blocks while the client
	// reconnects, hence the timeout; the stall check must still run.
	go func() {
		t := time.NewTicker(wt.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if time.Duration(wt.rec.Now()-heard.Load()) > wt.cfg.StallTimeout {
				// Give the stream up: the range loop below records it and
				// run resumes from the last revision seen.
				wt.stalled.Add(1)
				cancel()
				return
			}
			pctx, pcancel := context.WithTimeout(sctx, wt.cfg.ProgressInterval)
			_ = wt.cli.RequestProgress(pctx)
			pcancel()
		}
	}()

	for resp := range ch {
		r := history.WatchResponse{
			Time:            wt.rec.Now(),
			Revision:        resp.Header.Revision,
			Progress:        resp.IsProgressNotify(),
			Canceled:        resp.Canceled,
			CompactRevision: resp.CompactRevision,
		}
		if err := resp.Err(); err != nil {
			r.Error = err.Error()
		}
		if len(resp.Events) > 0 {
			r.Events = make([]history.Event, len(resp.Events))
		}
		seen := wt.seen.Load()
		for i, ev := range resp.Events {
			r.Events[i] = convEvent(ev)
			seen = max(seen, ev.Kv.ModRevision)
		}
		if r.Progress {
			seen = max(seen, resp.Header.Revision)
		}
		if seen > wt.seen.Load() {
			wt.seen.Store(seen)
			progressed = true
		}
		heard.Store(r.Time)
		if resp.CompactRevision > wt.compacted.Load() {
			wt.compacted.Store(resp.CompactRevision)
		}
		rec.Responses = append(rec.Responses, r)
		if resp.Canceled || resp.Err() != nil {
			if sctx.Err() == nil {
				wt.ended.Add(1)
			}
			// The stream is over (no leader, compacted, ...); the channel
			// closes right after. Resume with a new recorded watch.
			break
		}
	}
	return progressed
}

func convEvent(ev *clientv3.Event) history.Event {
	e := history.Event{
		Type:           "put",
		Key:            string(ev.Kv.Key),
		Value:          string(ev.Kv.Value),
		ModRevision:    ev.Kv.ModRevision,
		CreateRevision: ev.Kv.CreateRevision,
		Version:        ev.Kv.Version,
		Lease:          ev.Kv.Lease,
		IsCreate:       ev.IsCreate(),
	}
	if ev.Type == mvccpb.DELETE {
		e.Type = "delete"
	}
	if ev.PrevKv != nil {
		kv := convKV(ev.PrevKv)
		e.PrevKV = &kv
	}
	return e
}
