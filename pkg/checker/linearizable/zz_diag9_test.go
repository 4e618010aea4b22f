package linearizable

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

func TestDiag9(t *testing.T) {
	p := os.Getenv("DIAG9")
	if p == "" {
		t.Skip()
	}
	h, err := history.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ops, _ := selectOps(h, false)
	cfg := config{foreign: hasForeignWriters(h), init: baseline(h)}
	hs := newHints()
	for pass := 1; pass <= 5; pass++ {
		fr, f := fastRun(context.Background(), ops, cfg, hs, 1, 0)
		t.Logf("pass %d: %q", pass, fr.undecided)
		if f.hint != nil {
			t.Logf("hint %+v culprit=%v", *f.hint, f.hint.culprit >= 0)
			if f.hint.culprit >= 0 {
				t.Logf("culprit %s", f.desc(f.hint.culprit))
			}
		}
		if f.hint != nil {
			for i, op := range f.ops {
				if op.Kind == history.LeaseRevoke && op.Lease == f.hint.lease {
					t.Logf("  revoke cand %s call=%d role=%d rev=%d", f.desc(int32(i)), op.Call, f.role[i], f.rev[i])
				}
			}
		}
		if fr.undecided == "" || !f.learn() {
			break
		}
		for i := range f.ops {
			if f.role[i] == roleFiller && f.hint != nil && f.rev[i] > f.hint.lastPinned && f.rev[i] <= f.hint.rev {
				t.Logf("  filler at %d: %s call=%d ret=%d minRet=%d", f.rev[i], f.desc(int32(i)), f.ops[i].Call, f.ops[i].Return, f.minRet[f.rev[i]-f.base])
			}
		}
	}
	fr, f := fastRun(context.Background(), ops, cfg, hs, passes(len(ops)), 0)
	t.Logf("undecided=%q at %d definite=%d banned=%d forced=%v", fr.undecided, f.undecidedAt, len(fr.definite), len(hs.banned), hs.forced)
	const lease = 8302564161425385097
	for i, op := range f.ops {
		if op.Kind == history.LeaseRevoke && op.Lease == lease {
			t.Logf("revoke cand %d id=%d call=%d role=%d rev=%d banned=%v", i, op.ID, op.Call, f.role[i], f.rev[i], hs.banned[int32(i)])
		}
	}
	for r := int64(89150); r <= 89340; r++ {
		o := f.owner[r-f.base]
		if o < 0 {
			t.Logf("rev %d: no owner (foreign/ungapped) minRet=%d", r, f.minRet[r-f.base])
			continue
		}
		op := f.ops[o]
		if op.Outcome != history.OK || f.role[o] == roleFiller {
			t.Logf("rev %d: %s role=%d outcome=%s minRet=%d", r, f.desc(o), f.role[o], op.Outcome, f.minRet[r-f.base])
		}
	}
	for _, g := range f.gaps {
		if g > 89100 && g < 89400 {
			t.Logf("gap %d", g)
		}
	}
	for i := range f.ops {
		if f.role[i] == roleFiller && f.rev[i] > 89000 && f.rev[i] < 89400 {
			t.Logf("filler at %d: %s", f.rev[i], f.desc(int32(i)))
		}
	}
	for r, i := range hs.forced {
		t.Logf("forced %d: %s role=%d rev=%d", r, f.desc(i), f.role[i], f.rev[i])
	}
	if f.hint != nil {
		t.Logf("hint %+v", *f.hint)
	}
}

func TestMake9(t *testing.T) {
	p := os.Getenv("MAKE9")
	if p == "" {
		t.Skip()
	}
	h, err := history.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("MAKE9_N"))
	c := histgen.Prefix(h, n)
	if os.Getenv("MAKE9_THIN") != "" {
		first := c.Operations[0].ID
		c = histgen.Thin(c, func(op *history.Operation) bool {
			return strings.HasPrefix(op.Key, "/lease") || op.ID == first
		})
	}
	c.Watches = nil
	if err := writeGzip(os.Getenv("MAKE9_OUT"), c); err != nil {
		t.Fatal(err)
	}
	ops, _ := selectOps(c, false)
	cfg := config{foreign: hasForeignWriters(c), init: baseline(c)}
	for _, np := range []int{1, 2, 3, 8} {
		fr, _ := fastRun(context.Background(), ops, cfg, newHints(), np, 0)
		t.Logf("NEW passes=%d: %d ops %q definite=%d", np, len(c.Operations), fr.undecided, len(fr.definite))
	}
}
