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
			c := Check(context.Background(), h, Options{Timeout: time.Minute})
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
