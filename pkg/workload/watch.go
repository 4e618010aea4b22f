package workload

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

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
	// FutureWatchers is how many more watchers (beyond Watchers) open
	// their watches at future revisions: each opens a watch FutureOffset
	// revisions above the newest revision it knows of, keeps it (resuming
	// it like any other) until it has seen FutureOffset revisions past its
	// start, then opens the next. Their first watches open at staggered
	// offsets (FutureOffset*n/FutureWatchers for the n-th), so that at any
	// moment some of them are waiting for their start. etcd must deliver every event from the
	// start revision on, once the store gets there. Each such watch is a
	// logical watch of its own, with its own ClientID from
	// FutureWatchClientBase. Default 0.
	FutureWatchers int
	// FutureOffset is how far above the current revision a future watch
	// starts (default 50).
	FutureOffset int64
	// SpreadWatchers is how many more watchers (beyond Watchers) spread
	// their streams over every member: each stream goes to the next member
	// in turn, and a stream is ended after RotateInterval so the watch
	// resumes on another member, whose view may lag or lead the last
	// one's. Default 0.
	SpreadWatchers int
	// RotateInterval is how long a spread watcher keeps one stream
	// (default 2s).
	RotateInterval time.Duration
}

func (cfg WatchConfig) withDefaults() (WatchConfig, error) {
	if cfg.Watchers < 0 || cfg.Pinned < 0 || cfg.ProgressInterval < 0 || cfg.ReplayAfter < 0 || cfg.StallTimeout < 0 {
		return cfg, fmt.Errorf("workload: WatchConfig Watchers, Pinned, ProgressInterval, ReplayAfter and StallTimeout must not be negative (got %d, %d, %s, %s, %s)",
			cfg.Watchers, cfg.Pinned, cfg.ProgressInterval, cfg.ReplayAfter, cfg.StallTimeout)
	}
	if cfg.FutureWatchers < 0 || cfg.FutureOffset < 0 || cfg.SpreadWatchers < 0 || cfg.RotateInterval < 0 {
		return cfg, fmt.Errorf("workload: WatchConfig FutureWatchers, FutureOffset, SpreadWatchers and RotateInterval must not be negative (got %d, %d, %d, %s)",
			cfg.FutureWatchers, cfg.FutureOffset, cfg.SpreadWatchers, cfg.RotateInterval)
	}
	if cfg.FutureOffset == 0 {
		cfg.FutureOffset = 50
	}
	if cfg.RotateInterval == 0 {
		cfg.RotateInterval = 2 * time.Second
	}
	if cfg.Watchers == 0 {
		cfg.Watchers = 4
	}
	if cfg.Watchers+cfg.SpreadWatchers+cfg.FutureWatchers > 100 {
		return cfg, fmt.Errorf("workload: Watchers+SpreadWatchers+FutureWatchers=%d is too many; use at most 100 in all", cfg.Watchers+cfg.SpreadWatchers+cfg.FutureWatchers)
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
	// FutureWatchClientBase + n is the ClientID of the n-th future watch
	// (see WatchConfig.FutureWatchers): each is a logical watch of its own.
	FutureWatchClientBase = 10000
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
	// clients record the watcher's streams, each on one endpoint (or on
	// all); stream n uses clients[n%len(clients)]. Their ID is the
	// watcher's.
	clients []*client
	id      int
	cfg     WatchConfig
	delay   time.Duration
	// rotate, when positive, ends each stream after this long so that the
	// watch resumes on the next client (a spread watcher).
	rotate time.Duration
	// future makes the watcher open one logical watch after another, each
	// at a future revision (a future watcher).
	future  bool
	futures *atomic.Int64 // shared counter of future watches, for ClientIDs
	// firstOffset is how far above the start a future watcher's first
	// watch opens: future watcher n of N uses FutureOffset*(n+1)/N, so
	// that their windows are staggered. Opened all at one revision, they
	// would all wait for their start, then all deliver, in step: a fault
	// in a delivering phase would meet no watch still waiting for its
	// start. Zero once used.
	firstOffset int64
	// seen is the highest revision this watcher has proven it saw: the
	// largest event mod revision or progress-notify revision.
	seen atomic.Int64
	// compacted is the highest compact revision a stream of this watcher
	// was refused with: the next stream starts there, since no earlier
	// revision can be served any more.
	compacted atomic.Int64
	// start is where the current logical watch began, and until, when
	// positive, the revision past which a future watch has done its job.
	// Only the watcher's goroutine uses them.
	start, until int64
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
			for _, cl := range wt.clients {
				cl.cli.Close()
			}
		}
	}
	var futures atomic.Int64
	total := cfg.Watchers + cfg.SpreadWatchers + cfg.FutureWatchers
	for i := 0; i < total; i++ {
		wt := &watcher{id: WatchClientBase + i, cfg: cfg, futures: &futures}
		eps := []string{endpointFor(members, i, cfg.Pinned)}
		switch {
		case i < cfg.Watchers:
			if i >= cfg.Watchers-cfg.ReplayWatchers {
				wt.delay = cfg.ReplayAfter
			}
		case i < cfg.Watchers+cfg.SpreadWatchers:
			wt.rotate = cfg.RotateInterval
			eps = eps[:0]
			// Start each spread watcher on a different member.
			for j := range members {
				eps = append(eps, members[(i+j)%len(members)].ClientURL)
			}
			if len(eps) == 0 {
				eps = []string{""}
			}
		default:
			wt.future = true
			n := int64(i - cfg.Watchers - cfg.SpreadWatchers)
			wt.firstOffset = max(1, cfg.FutureOffset*(n+1)/int64(cfg.FutureWatchers))
		}
		w.ws = append(w.ws, wt)
		for _, ep := range eps {
			cli, err := openClient(ctx, c, ep)
			if err != nil {
				closeAll()
				return nil, err
			}
			wt.clients = append(wt.clients, &client{cli: cli, rec: rec, id: wt.id, endpoint: ep})
		}
	}
	// The start revision comes from a linearizable read so that it is not
	// behind anything the caller wrote before starting the watchers.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.ws[0].clients[0].cli.Get(rctx, cfg.Prefix, clientv3.WithCountOnly())
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
			defer func() {
				for _, cl := range wt.clients {
					cl.cli.Close()
				}
			}()
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
			if wt.future {
				// Its current watch starts past the revisions it has
				// seen, likely past untilRev: it waits for revisions
				// that may never come, and etcd need not say anything
				// about the ones before its start.
				continue
			}
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
	wt.start = start
	if wt.future {
		wt.nextFuture()
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if wt.future && wt.seen.Load() >= wt.until {
			wt.nextFuture()
		}
		// Resume after the last revision seen, never before the logical
		// watch's start (a future watch's progress notifications report
		// revisions below it), nor below a compaction that refused it.
		next := max(wt.start, wt.seen.Load()+1, wt.compacted.Load())
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

// nextFuture starts the future watcher's next logical watch: a ClientID of
// its own (so the checker does not join it to the one before, whose
// revisions it skips) and a start FutureOffset revisions above the newest
// revision the watcher knows of (the first one firstOffset above).
func (wt *watcher) nextFuture() {
	id := FutureWatchClientBase + int(wt.futures.Add(1)) - 1
	for _, cl := range wt.clients {
		cl.id = id
	}
	offset := wt.cfg.FutureOffset
	if wt.firstOffset > 0 {
		offset, wt.firstOffset = wt.firstOffset, 0
	}
	wt.start = max(wt.start, wt.seen.Load()+1) + offset
	wt.until = wt.start + wt.cfg.FutureOffset
}

// watchOnce runs one watch stream from rev until it ends; the recording
// client records it. It reports whether the stream delivered anything.
func (wt *watcher) watchOnce(ctx context.Context, rev int64) (progressed bool) {
	if wt.streams.Add(1) > 1 {
		wt.resumed.Add(1)
	}
	n := wt.streams.Load() - 1
	cl := wt.clients[int(n)%len(wt.clients)]
	s := cl.Watch(ctx, WatchRequest{Key: wt.cfg.Prefix, End: clientv3.GetPrefixRangeEnd(wt.cfg.Prefix), Revision: rev, PrevKV: wt.cfg.PrevKV})
	defer s.Close()
	opened := s.Heard()
	// delivered: the stream has sent an event.
	var delivered atomic.Bool

	go func() {
		t := time.NewTicker(wt.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
			now := cl.rec.Now()
			if wt.rotate > 0 && time.Duration(now-opened) > wt.rotate {
				// A spread watcher moves on to the next member.
				s.Cancel()
				return
			}
			if time.Duration(now-s.Heard()) > wt.cfg.StallTimeout {
				// Give the stream up: Next returns false and run resumes
				// from the last revision seen.
				wt.stalled.Add(1)
				s.Cancel()
				return
			}
			if wt.future && !delivered.Load() {
				// Before the store reaches a future start, a progress
				// notification can only report a revision below it,
				// which ends the stream (see below).
				continue
			}
			_ = s.RequestProgress(wt.cfg.ProgressInterval)
		}
	}()

	for {
		r, ok := s.Next()
		if !ok {
			return progressed
		}
		seen := wt.seen.Load()
		for _, e := range r.Events {
			seen = max(seen, e.ModRevision)
		}
		if r.Progress {
			seen = max(seen, r.Revision)
		}
		if seen > wt.seen.Load() {
			wt.seen.Store(seen)
			progressed = true
		}
		if r.CompactRevision > wt.compacted.Load() {
			wt.compacted.Store(r.CompactRevision)
		}
		if wt.future && seen >= wt.until {
			// This future watch has delivered its window; the next one
			// starts from a new future revision.
			s.Cancel()
		}
		if len(r.Events) > 0 {
			delivered.Store(true)
		}
		if r.Progress && r.Revision+1 < rev {
			// The client library resumes a watch it reconnects from one
			// past the last progress notification it heard, so after
			// this one a reconnect would silently widen the watch to
			// revisions below the one asked for (a future start, or a
			// member that lags the one the last stream used). End the
			// stream; the next one asks again.
			s.Cancel()
		}
		if r.Canceled || r.Error != "" {
			// The stream is over (no leader, compacted, ...). Resume with
			// a new recorded watch.
			if !s.Canceled() {
				wt.ended.Add(1)
			}
		}
	}
}
