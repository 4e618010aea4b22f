package linearizable

import (
	"compress/gzip"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// benchHistory is one history the benchmarks run on.
type benchHistory struct {
	name string
	load func(b *testing.B) *history.History
}

// benchHistories are histgen histories with faults and unknown outcomes at
// each size, the recorded history named by $ETCD_CHAOS_REAL_HISTORY when
// set, then every history in ../testdata/*.jsonl.gz (which include real
// recordings cut to 1k and 10k operations).
func benchHistories(b *testing.B) []benchHistory {
	var out []benchHistory
	for _, n := range []struct {
		name string
		ops  int
	}{{"1k", 1000}, {"10k", 10000}, {"100k", 100000}, {"1M", 1000000}} {
		ops := n.ops
		out = append(out, benchHistory{n.name, func(*testing.B) *history.History {
			return histgen.Generate(histgen.Config{Ops: ops, Clients: 16, Seed: 1, UnknownRate: 0.2, Keys: 100})
		}})
	}
	// Large recorded histories are too big for the repository; point
	// $ETCD_CHAOS_REAL_HISTORY at one or more (comma-separated history.jsonl
	// or .jsonl.gz files; `make bench-history` records them). See
	// ../testdata/README.md.
	env := os.Getenv("ETCD_CHAOS_REAL_HISTORY")
	if env == "" {
		out = append(out, benchHistory{"real-env", func(b *testing.B) *history.History {
			b.Skip("set ETCD_CHAOS_REAL_HISTORY to recorded histories to benchmark them")
			return nil
		}})
	}
	for i, path := range strings.Split(env, ",") {
		if path == "" {
			continue
		}
		out = append(out, benchHistory{fmt.Sprintf("real-env-%d", i+1), func(b *testing.B) *history.History {
			var h *history.History
			var err error
			if strings.HasSuffix(path, ".gz") {
				h, err = loadGzip(path)
			} else {
				h, err = history.Load(path)
			}
			if err != nil {
				b.Fatalf("ETCD_CHAOS_REAL_HISTORY: %v", err)
			}
			b.Logf("%s: %d operations", path, len(h.Operations))
			return h
		}})
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "*.jsonl.gz"))
	for _, f := range files {
		out = append(out, benchHistory{filepath.Base(f), func(b *testing.B) *history.History {
			h, err := loadGzip(f)
			if err != nil {
				b.Fatal(err)
			}
			return h
		}})
	}
	return out
}

func loadGzip(path string) (*history.History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h, err := history.Read(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// peakHeap samples HeapInuse while f runs and returns the peak in MB.
func peakHeap(f func()) float64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return float64(peak.Load()) / (1 << 20)
}

// cpuSeconds is the CPU time the process has used, all threads (the GC's
// too). On a shared, loaded machine it varies far less than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkCheck measures Check on histories with faults and unknown
// outcomes. ops/s counts operations in the history; peak-heap-MB includes
// the history itself.
func BenchmarkCheck(b *testing.B) {
	for _, bh := range benchHistories(b) {
		b.Run(bh.name, func(b *testing.B) {
			h := bh.load(b)
			runtime.GC()
			b.ResetTimer()
			var c verdict.Check
			var peak, cpu float64
			for i := 0; i < b.N; i++ {
				peak = max(peak, peakHeap(func() {
					start := cpuSeconds()
					c = Check(context.Background(), h, Options{Timeout: time.Minute, ForeignWrites: strings.Contains(bh.name, "-foreign")})
					cpu += cpuSeconds() - start
				}))
			}
			b.StopTimer()
			b.ReportMetric(cpu/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(len(h.Operations)), "history-ops")
			b.ReportMetric(float64(len(h.Operations))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(peak, "peak-heap-MB")
			b.Logf("%s: %s: %s", bh.name, c.Status, c.Summary)
		})
	}
}

// The textbook porcupine key-value model: one register per key, values
// only, no revisions, partitioned by key. It is what a linearizability
// check of etcd usually starts as, and the baseline the fast path is
// compared against. Leases and ranges are outside it and left out.
type kvInput struct {
	write bool
	key   string
	value string
}

func textbookModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range ops {
				k := op.Input.(kvInput).key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() interface{} { return "" },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			in := input.(kvInput)
			if in.write {
				return true, in.value
			}
			return output == nil || output.(string) == state.(string), state
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	}
}

func textbookOps(h *history.History) []porcupine.Operation {
	var out []porcupine.Operation
	for _, op := range h.Operations {
		if op.Outcome == history.Fail || op.Serializable || strings.HasPrefix(op.Key, "/lease") {
			continue // lease-attached keys vanish on revoke, which registers cannot say
		}
		ret := op.Return
		var output interface{}
		if op.Outcome == history.Unknown {
			ret = math.MaxInt64
		}
		var in kvInput
		switch op.Kind {
		case history.Put:
			in = kvInput{write: true, key: op.Key, value: op.Value}
		case history.Delete:
			in = kvInput{write: true, key: op.Key}
		case history.Txn:
			if op.Outcome == history.Unknown || op.Resp.Succeeded {
				// An unknown txn is treated as a put: the register
				// model has no compare.
				in = kvInput{write: true, key: op.Key, value: op.Value}
			} else {
				in = kvInput{key: op.Key}
				output = valueOf(op.Resp.KVs)
			}
		case history.Get:
			if op.Outcome != history.OK {
				continue
			}
			in = kvInput{key: op.Key}
			output = valueOf(op.Resp.KVs)
		default:
			continue
		}
		out = append(out, porcupine.Operation{ClientId: op.ClientID, Input: in, Call: op.Call, Output: output, Return: ret})
	}
	return out
}

func valueOf(kvs []history.KV) string {
	if len(kvs) == 0 {
		return ""
	}
	return kvs[0].Value
}

// BenchmarkPorcupineBaseline runs the textbook model on the same histories.
// decided is 1 when porcupine answered within its 60s budget.
func BenchmarkPorcupineBaseline(b *testing.B) {
	for _, bh := range benchHistories(b) {
		b.Run(bh.name, func(b *testing.B) {
			h := bh.load(b)
			ops := textbookOps(h)
			m := textbookModel()
			runtime.GC()
			b.ResetTimer()
			var res porcupine.CheckResult
			var peak float64
			for i := 0; i < b.N; i++ {
				peak = max(peak, peakHeap(func() {
					res = porcupine.CheckOperationsTimeout(m, ops, time.Minute)
				}))
			}
			b.StopTimer()
			decided := 0.0
			if res != porcupine.Unknown {
				decided = 1
			}
			b.ReportMetric(float64(len(h.Operations)), "history-ops")
			b.ReportMetric(float64(len(h.Operations))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(peak, "peak-heap-MB")
			b.ReportMetric(decided, "decided")
			b.Logf("%s: porcupine %s", bh.name, res)
		})
	}
}

// BenchmarkPorcupineModel runs porcupine alone with this package's model
// (revisions, leases) on the recorded histories: what Check would cost
// without the fast path. Searches are bounded by a 60s timeout and the
// default heap limit; decided is 0 when either stopped it.
func BenchmarkPorcupineModel(b *testing.B) {
	for _, bh := range benchHistories(b) {
		if !strings.HasPrefix(bh.name, "real-") {
			continue
		}
		b.Run(bh.name, func(b *testing.B) {
			h := bh.load(b)
			runtime.GC()
			b.ResetTimer()
			var c verdict.Check
			var peak float64
			for i := 0; i < b.N; i++ {
				peak = max(peak, peakHeap(func() {
					c = Check(context.Background(), h, Options{mode: modePorcupineOnly, Timeout: time.Minute, ForeignWrites: strings.Contains(bh.name, "-foreign")})
				}))
			}
			b.StopTimer()
			decided := 0.0
			if c.Status == verdict.Pass || c.Status == verdict.Fail {
				decided = 1
			}
			b.ReportMetric(float64(len(h.Operations)), "history-ops")
			b.ReportMetric(float64(len(h.Operations))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(peak, "peak-heap-MB")
			b.ReportMetric(decided, "decided")
			b.Logf("%s: %s: %s", bh.name, c.Status, c.Summary)
		})
	}
}

// BenchmarkCertificate measures the replay of the fast path's linearization
// through the model that every Pass ends with (it is part of
// BenchmarkCheck's time too); the fast path's own run is not timed.
func BenchmarkCertificate(b *testing.B) {
	for _, bh := range benchHistories(b) {
		b.Run(bh.name, func(b *testing.B) {
			h := bh.load(b)
			ops, _ := selectOps(h, false)
			cfg := config{foreign: strings.Contains(bh.name, "-foreign") || hasForeignWriters(h), init: baseline(h)}
			fr, _ := fastRun(context.Background(), ops, cfg, newHints(), passes(len(ops)), 0)
			if fr.lin == nil {
				b.Skipf("the fast path alone does not pass it (%s)", fr.undecided)
			}
			runtime.GC()
			b.ResetTimer()
			start := cpuSeconds()
			for i := 0; i < b.N; i++ {
				if err := verifyCertificate(ops, fr.lin, cfg, fr.keys); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric((cpuSeconds()-start)/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(len(fr.lin)), "lin-ops")
			b.ReportMetric(float64(len(fr.lin))*float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
