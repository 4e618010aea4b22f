package linearizable

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// certHistory: a put, then two reads of it, the second called after the
// first returned, and an unknown put nobody saw.
func certHistory() *history.History {
	var b builder
	b.put(1, 0, 10, "a", "1", 2)
	b.get(2, 20, 30, "a", 2, kv("a", "1", 2))
	b.get(3, 40, 50, "a", 2, kv("a", "1", 2))
	b.putUnknown(4, 60, "b", "x")
	return &b.h
}

func TestCertificateRejectsCorruption(t *testing.T) {
	h := certHistory()
	ops, _ := selectOps(h, false)
	var cfg config
	for _, tc := range []struct {
		name string
		lin  []int32
		want string // "" = accepted
	}{
		{"in order", []int32{0, 1, 2, 3}, ""},
		{"unknown left out", []int32{0, 1, 2}, ""},
		{"out of real-time order", []int32{0, 2, 1, 3}, "called after it returned"},
		{"read before the write it saw", []int32{1, 0, 2}, "store holds nothing"},
		{"an acknowledged operation missing", []int32{0, 1}, "is missing"},
		{"placed twice", []int32{0, 1, 1, 2}, "placed twice"},
		{"no such operation", []int32{0, 1, 2, 9}, "names operation"},
	} {
		err := verifyCertificate(ops, tc.lin, cfg, nil)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: rejected: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	// A wrong output: the second read says the key held another value.
	bad := certHistory()
	bad.Operations[2].Resp = &history.Response{Revision: 2, KVs: []history.KV{kv("a", "2", 2)}}
	ops, _ = selectOps(bad, false)
	if err := verifyCertificate(ops, []int32{0, 1, 2, 3}, cfg, nil); err == nil || !strings.Contains(err.Error(), "store holds") {
		t.Errorf("wrong output: got %v", err)
	}
}

// TestCertificateOfDeciders: both deciders' linearizations of recorded and
// generated histories pass the replay, and the same linearization with
// two operations swapped, or an operation moved before one that returned
// before it was called, does not.
func TestCertificateOfDeciders(t *testing.T) {
	real, err := loadGzip(filepath.Join("..", "testdata", "real-mix-1k-pass.jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*history.History{
		"real-mix-1k": real,
		"histgen":     histgen.Generate(histgen.Config{Ops: 600, Clients: 6, Seed: 5, UnknownRate: 0.1, Keys: 8}),
	} {
		ops, _ := selectOps(h, false)
		cfg := config{init: baseline(h)}
		fr, _ := fastRun(context.Background(), ops, cfg, newHints(), passes(len(ops)), 0)
		if fr.undecided != "" || len(fr.definite) > 0 {
			t.Fatalf("%s: fast path did not pass: %s %v", name, fr.undecided, fr.definite)
		}
		if err := verifyCertificate(ops, fr.lin, cfg, nil); err != nil {
			t.Fatalf("%s: fast path's certificate rejected: %v", name, err)
		}
		pr := runPorcupine(context.Background(), h, ops, cfg, time.Minute, DefaultMemoryLimit, "")
		if pr.lin == nil {
			t.Fatalf("%s: porcupine gave no linearization (%v %s)", name, pr.result, pr.abandoned)
		}
		if err := verifyCertificate(ops, pr.lin, cfg, nil); err != nil {
			t.Fatalf("%s: porcupine's certificate rejected: %v", name, err)
		}
		lin := fr.lin
		// Swap the first two writes that both changed the store.
		var w []int
		for p, i := range lin {
			if ops[i].Outcome == history.OK && (ops[i].Kind == history.Put || ops[i].Kind == history.Txn && ops[i].Resp.Succeeded) {
				w = append(w, p)
			}
		}
		swapped := append([]int32(nil), lin...)
		swapped[w[0]], swapped[w[1]] = swapped[w[1]], swapped[w[0]]
		if err := verifyCertificate(ops, swapped, cfg, nil); err == nil {
			t.Errorf("%s: two writes swapped: accepted", name)
		}
		// Move an operation in front of one that returned before it was
		// called.
		moved := false
		for p := 0; p < len(lin) && !moved; p++ {
			a := ops[lin[p]]
			if a.Outcome != history.OK {
				continue
			}
			for q := p + 1; q < len(lin); q++ {
				if ops[lin[q]].Call > a.Return {
					m := append([]int32(nil), lin[:p]...)
					m = append(m, lin[q])
					m = append(m, lin[p:q]...)
					m = append(m, lin[q+1:]...)
					if err := verifyCertificate(ops, m, cfg, nil); err == nil {
						t.Errorf("%s: op %d moved before op %d, which returned before it was called: accepted", name, ops[lin[q]].ID, a.ID)
					}
					moved = true
					break
				}
			}
		}
		if !moved {
			t.Fatalf("%s: no operation to move", name)
		}
	}
}

// TestCertificateFailureIsNotPass: when a decider's linearization fails
// the replay, Check says Unknown (a checker bug), never Pass or Fail.
func TestCertificateFailureIsNotPass(t *testing.T) {
	h := certHistory()
	reverse := func(lin []int32) []int32 {
		out := make([]int32, len(lin))
		for i, x := range lin {
			out[len(lin)-1-i] = x
		}
		return out
	}
	for _, m := range []mode{modeFastOnly, modePorcupineOnly} {
		c := Check(context.Background(), h, Options{mode: m})
		if c.Status != verdict.Pass || !strings.Contains(c.Summary, "replayed through the model") {
			t.Fatalf("mode %d: %s: %s", m, c.Status, c.Summary)
		}
		c = Check(context.Background(), h, Options{mode: m, tamper: reverse})
		if c.Status != verdict.Unknown || !strings.Contains(c.Summary, "failed the replay through the model") {
			t.Fatalf("mode %d, reversed linearization: %s: %s", m, c.Status, c.Summary)
		}
	}
}
