package linearizable

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// TestRealFiles runs the fast path alone on the histories named in
// $ETCD_CHAOS_DIAG (comma-separated paths); a diagnostic, skipped otherwise.
func TestRealFiles(t *testing.T) {
	env := os.Getenv("ETCD_CHAOS_DIAG")
	if env == "" {
		t.Skip("set ETCD_CHAOS_DIAG to a comma-separated list of history files")
	}
	for _, p := range strings.Split(env, ",") {
		var h *history.History
		var err error
		if strings.HasSuffix(p, ".gz") {
			h, err = loadGzip(p)
		} else {
			h, err = history.Load(p)
		}
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c := Check(context.Background(), h, Options{mode: modeFastOnly})
		t.Logf("%s: %d ops: %s in %s: %s %v", p, len(h.Operations), c.Status, time.Since(start), c.Summary, first(c.Violations, 3))
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
