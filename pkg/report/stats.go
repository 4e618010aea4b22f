package report

import (
	"slices"
	"sort"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// KindStats counts the operations of one kind by outcome.
type KindStats struct {
	Kind    history.Kind `json:"kind"`
	OK      int          `json:"ok"`
	Failed  int          `json:"failed"`
	Unknown int          `json:"unknown"`
	// P50 and P99 are the latencies of the kind's ok operations.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
}

// Total is the number of operations of this kind.
func (k KindStats) Total() int { return k.OK + k.Failed + k.Unknown }

// OpStats summarises a history's client operations.
type OpStats struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
	// PerKind is sorted by kind name so output is stable.
	PerKind []KindStats `json:"per_kind"`
	// Span runs from the run's start (time 0) to the last return.
	Span time.Duration `json:"span_ns"`
	// Throughput is ok operations per second over Span.
	Throughput float64 `json:"throughput_ops_per_sec"`
	// P50 and P99 are latencies of ok operations only: failed and unknown
	// operations end on client timeouts, which would measure the timeout, not
	// etcd.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	// Watches, WatchEvents and Faults count the other records.
	Watches     int `json:"watches"`
	WatchEvents int `json:"watch_events"`
	Faults      int `json:"faults"`
	// FaultThroughput is ok operations per second that returned inside a
	// fault window: what the cluster sustained while broken.
	FaultThroughput float64 `json:"fault_throughput_ops_per_sec"`
	// FaultsPerMinute is the rate faults were injected over Span.
	FaultsPerMinute float64 `json:"faults_per_minute"`
}

// Stats counts h's operations per kind and outcome and measures throughput
// and latency. A nil or empty history gives zero stats.
func Stats(h *history.History) OpStats {
	var s OpStats
	if h == nil {
		return s
	}
	perKind := map[history.Kind]*KindStats{}
	lat := map[history.Kind][]int64{}
	all := make([]int64, 0, len(h.Operations))
	var end int64
	for i := range h.Operations {
		op := &h.Operations[i]
		ks := perKind[op.Kind]
		if ks == nil {
			ks = &KindStats{Kind: op.Kind}
			perKind[op.Kind] = ks
		}
		end = max(end, op.Return)
		switch op.Outcome {
		case history.OK:
			ks.OK++
			s.OK++
			d := op.Return - op.Call
			all = append(all, d)
			lat[op.Kind] = append(lat[op.Kind], d)
		case history.Fail:
			ks.Failed++
			s.Failed++
		default:
			ks.Unknown++
			s.Unknown++
		}
	}
	s.Total = len(h.Operations)
	for k, ks := range perKind {
		l := lat[k]
		slices.Sort(l)
		ks.P50, ks.P99 = time.Duration(percentile(l, 50)), time.Duration(percentile(l, 99))
		s.PerKind = append(s.PerKind, *ks)
	}
	sort.Slice(s.PerKind, func(i, j int) bool { return s.PerKind[i].Kind < s.PerKind[j].Kind })
	slices.Sort(all)
	s.P50, s.P99 = time.Duration(percentile(all, 50)), time.Duration(percentile(all, 99))
	s.Span = time.Duration(end)
	if s.Span > 0 {
		s.Throughput = float64(s.OK) / s.Span.Seconds()
	}
	s.Watches = len(h.Watches)
	for _, w := range h.Watches {
		for _, r := range w.Responses {
			s.WatchEvents += len(r.Events)
		}
	}
	s.Faults = len(h.Faults)
	if s.Span > 0 {
		s.FaultsPerMinute = float64(s.Faults) / s.Span.Minutes()
	}
	s.FaultThroughput = faultThroughput(h)
	return s
}

// faultThroughput counts ok operations that returned inside a fault window,
// per second of fault time (overlapping windows counted once).
func faultThroughput(h *history.History) float64 {
	type window struct{ start, end int64 }
	var ws []window
	for _, f := range h.Faults {
		if f.End > f.Start {
			ws = append(ws, window{f.Start, f.End})
		}
	}
	if len(ws) == 0 {
		return 0
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].start < ws[j].start })
	merged := ws[:1]
	for _, w := range ws[1:] {
		last := &merged[len(merged)-1]
		if w.start <= last.end {
			last.end = max(last.end, w.end)
		} else {
			merged = append(merged, w)
		}
	}
	var total int64
	for _, w := range merged {
		total += w.end - w.start
	}
	ok := 0
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Outcome != history.OK {
			continue
		}
		j := sort.Search(len(merged), func(j int) bool { return merged[j].end >= op.Return })
		if j < len(merged) && merged[j].start <= op.Return {
			ok++
		}
	}
	return float64(ok) / time.Duration(total).Seconds()
}

// percentile returns the nearest-rank p-th percentile of sorted, or 0 when
// it is empty. Nearest rank never invents a latency nobody observed.
func percentile(sorted []int64, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

// Bucket is one slice of the run's time line.
type Bucket struct {
	// Start is the bucket's start relative to the run's start.
	Start time.Duration `json:"start_ns"`
	// OK, Failed and Unknown count operations that returned in the bucket.
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
	// P50 and P99 are latencies of the bucket's ok operations; zero when it
	// has none.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
}

// Series buckets h's operations by the time they returned, width wide, from
// the run's start to the end of the history. It allocates memory for the
// latencies of ok operations only, so it serves million-operation runs.
func Series(h *history.History, width time.Duration) []Bucket {
	if h == nil || width <= 0 {
		return nil
	}
	end := h.End()
	n := int(end/int64(width)) + 1
	if len(h.Operations) == 0 && len(h.Faults) == 0 {
		return nil
	}
	buckets := make([]Bucket, n)
	lat := make([][]int64, n)
	for i := range buckets {
		buckets[i].Start = time.Duration(i) * width
	}
	for i := range h.Operations {
		op := &h.Operations[i]
		b := int(max(op.Return, 0) / int64(width))
		switch op.Outcome {
		case history.OK:
			buckets[b].OK++
			lat[b] = append(lat[b], op.Return-op.Call)
		case history.Fail:
			buckets[b].Failed++
		default:
			buckets[b].Unknown++
		}
	}
	for i, l := range lat {
		slices.Sort(l)
		buckets[i].P50, buckets[i].P99 = time.Duration(percentile(l, 50)), time.Duration(percentile(l, 99))
	}
	return buckets
}
