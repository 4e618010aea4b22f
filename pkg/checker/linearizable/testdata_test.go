package linearizable

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

var (
	update   = flag.Bool("update", false, "regenerate the histgen histories in ../testdata")
	realSrc  = flag.String("real", "", "with -real-name, write prefixes of this recorded history.jsonl into ../testdata")
	realName = flag.String("real-name", "", "testdata name stem for -real, e.g. real-kill-leader")
	realOps  = flag.Int("real-ops", 0, "with -real: write one <real-name>-pass.jsonl.gz of the first this many operations, keeping only reads under -real-keep")
	realKeep = flag.String("real-keep", "/lease", "with -real-ops: key prefix of the reads to keep")
	realDrop = flag.String("real-drop", "", "with -real: write one <real-name>-foreign-pass.jsonl.gz without the operations on keys under these comma-separated prefixes (after -real-ops)")
)

// realSizes are the prefix sizes TestMakeRealTestdata writes.
var realSizes = map[string]int{"1k": 1000, "10k": 10000}

// TestMakeRealTestdata writes <real-name>-<size>-pass.jsonl.gz prefixes of a
// recorded history (see testdata/README.md). Watches are left out: only
// the operations matter to this checker, and they keep the files small.
func TestMakeRealTestdata(t *testing.T) {
	if *realSrc == "" || *realName == "" {
		t.Skip("set -real and -real-name to write recorded test data")
	}
	h, err := history.Load(*realSrc)
	if err != nil {
		t.Fatal(err)
	}
	if *realOps > 0 || *realDrop != "" {
		p, name := h, *realName
		if *realOps > 0 {
			p = histgen.Prefix(h, *realOps)
			first := p.Operations[0].ID // the baseline read, when there is one
			p = histgen.Thin(p, func(op *history.Operation) bool {
				covers := op.Kind == history.Range && op.Key <= *realKeep && *realKeep < op.End
				return strings.HasPrefix(op.Key, *realKeep) || covers || op.ID == first
			})
		}
		if *realDrop != "" {
			for _, prefix := range strings.Split(*realDrop, ",") {
				p = histgen.DropKeys(p, prefix)
			}
			name += "-foreign"
		}
		p.Watches = nil
		path := filepath.Join("..", "testdata", name+"-pass.jsonl.gz")
		if err := writeGzip(path, p); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d operations", path, len(p.Operations))
		return
	}
	for size, n := range realSizes {
		p := histgen.Prefix(h, n)
		p.Watches = nil
		path := filepath.Join("..", "testdata", fmt.Sprintf("%s-%s-pass.jsonl.gz", *realName, size))
		if err := writeGzip(path, p); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s: %d operations", path, len(p.Operations))
	}
}

// generated lists the testdata files made by histgen; see testdata/README.md.
var generated = map[string]histgen.Config{
	"histgen-faults-pass.jsonl.gz":         {Ops: 3000, Clients: 8, Seed: 11, UnknownRate: 0.25, Keys: 20},
	"histgen-stale-read-fail.jsonl.gz":     {Ops: 3000, Clients: 8, Seed: 12, UnknownRate: 0.25, Keys: 20, Bug: histgen.StaleRead},
	"histgen-lost-write-fail.jsonl.gz":     {Ops: 3000, Clients: 8, Seed: 17, UnknownRate: 0.25, Keys: 20, Bug: histgen.LostWrite},
	"histgen-rev-regression-fail.jsonl.gz": {Ops: 3000, Clients: 8, Seed: 14, UnknownRate: 0.25, Keys: 20, Bug: histgen.RevisionRegression},
}

func writeGzip(path string, h *history.History) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	if err := history.Write(zw, h); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestTestdata checks every history in ../testdata: names ending in
// -pass.jsonl.gz must pass, -fail.jsonl.gz must fail, any other must not
// fail (recorded runs of a correct cluster).
func TestTestdata(t *testing.T) {
	dir := filepath.Join("..", "testdata")
	if *update {
		for name, cfg := range generated {
			if err := writeGzip(filepath.Join(dir, name), histgen.Generate(cfg)); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			h, err := loadGzip(path)
			if err != nil {
				t.Fatal(err)
			}
			c := Check(context.Background(), h, Options{Timeout: time.Minute, ForeignWrites: strings.Contains(name, "-foreign")})
			switch {
			case strings.HasSuffix(name, "-pass.jsonl.gz") && c.Status != verdict.Pass,
				strings.HasSuffix(name, "-fail.jsonl.gz") && c.Status != verdict.Fail,
				c.Status == verdict.Fail && !strings.HasSuffix(name, "-fail.jsonl.gz"):
				t.Fatalf("%s: %s: %s %v", name, c.Status, c.Summary, c.Violations)
			}
			t.Logf("%s: %s", c.Status, c.Summary)
		})
	}
}

// TestRealTestdata: the fast path alone decides every recorded history in
// ../testdata (real-*), and porcupine agrees on those small enough for it.
func TestRealTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "real-*.jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			h, err := loadGzip(path)
			if err != nil {
				t.Fatal(err)
			}
			want := verdict.Pass
			if strings.HasSuffix(name, "-fail.jsonl.gz") {
				want = verdict.Fail
			}
			// -foreign files had operations cut out: their writes are
			// now unrecorded writes to keys no operation shows.
			foreign := strings.Contains(name, "-foreign")
			fast := Check(context.Background(), h, Options{mode: modeFastOnly, ForeignWrites: foreign})
			if fast.Status != want {
				t.Fatalf("fast path: got %s, want %s: %s %v", fast.Status, want, fast.Summary, first(fast.Violations, 3))
			}
			t.Logf("fast path: %s", fast.Summary)
			if len(h.Operations) > porcupineLimit+porcupineLimit/5 {
				return
			}
			exh := Check(context.Background(), h, Options{mode: modePorcupineOnly, Timeout: time.Minute, ForeignWrites: foreign})
			if exh.Status != want {
				t.Fatalf("porcupine: got %s, want %s: %s %v", exh.Status, want, exh.Summary, exh.Violations)
			}
		})
	}
}
