package linearizable

import (
	"compress/gzip"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestOld(t *testing.T) {
	for _, p := range strings.Split(os.Getenv("OLDDIAG"), ",") {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var h *history.History
		if strings.HasSuffix(p, ".gz") {
			zr, _ := gzip.NewReader(f)
			h, err = history.Read(zr)
		} else {
			h, err = history.Read(f)
		}
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		c := Check(context.Background(), h, Options{mode: modeFastOnly, ForeignWrites: strings.Contains(p, "-foreign")})
		ops, _ := selectOps(h, false)
		cfg := config{foreign: hasForeignWriters(h) || strings.Contains(p, "-foreign"), init: baseline(h)}
		for _, np := range []int{1, 2, 3} {
			fr, _ := fastRun(context.Background(), ops, cfg, newHints(), np, 0)
			t.Logf("OLD passes=%d: %q", np, fr.undecided)
		}
		t.Logf("OLD %s: %d ops: %s: %s", p, len(h.Operations), c.Status, c.Summary)
	}
}
