package checker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/linearizable"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// porcupineModule is where the Jepsen corpus ships: real Jepsen runs of etcd
// as a compare-and-set register, with porcupine's verdicts in its tests.
const porcupineModule = "github.com/anishathalye/porcupine"

// jepsenCorpus is one log of the corpus and porcupine's verdict on it.
type jepsenCorpus struct {
	log          string
	linearizable bool
}

// loadJepsenCorpus finds porcupine's module source in the module cache
// (downloading it once if the cache lacks it: builds need only the
// compiled package) and reads its expectations from porcupine_test.go,
// so that the verdicts come from the reference, not from us.
func loadJepsenCorpus(tb testing.TB) []jepsenCorpus {
	tb.Helper()
	// go test puts its own go first on PATH.
	out, err := exec.Command("go", "mod", "download", "-json", porcupineModule).Output()
	if err != nil {
		tb.Fatalf("locate %s in the module cache (go mod download -json %s): %v", porcupineModule, porcupineModule, err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		tb.Fatalf("go mod download -json %s: no module directory in %q (%v)", porcupineModule, out, err)
	}
	src, err := os.ReadFile(filepath.Join(mod.Dir, "porcupine_test.go"))
	if err != nil {
		tb.Fatal(err)
	}
	// func checkJepsen(t *testing.T, logNum int, correct bool) opens
	// test_data/jepsen/etcd_%03d.log; each test calls it with its log's
	// number and whether porcupine must find it linearizable.
	if !strings.Contains(string(src), `"test_data/jepsen/etcd_%03d.log"`) {
		tb.Fatalf("%s@%s: porcupine_test.go no longer names test_data/jepsen/etcd_%%03d.log; update this test", porcupineModule, mod.Version)
	}
	var corpus []jepsenCorpus
	seen := map[int]bool{}
	for _, m := range regexp.MustCompile(`checkJepsen\(t, (\d+), (true|false)\)`).FindAllStringSubmatch(string(src), -1) {
		n, _ := strconv.Atoi(m[1])
		if seen[n] {
			tb.Fatalf("porcupine_test.go expects log %d twice", n)
		}
		seen[n] = true
		corpus = append(corpus, jepsenCorpus{
			log:          filepath.Join(mod.Dir, "test_data", "jepsen", fmt.Sprintf("etcd_%03d.log", n)),
			linearizable: m[2] == "true",
		})
	}
	if len(corpus) == 0 {
		tb.Fatalf("%s@%s: found no checkJepsen expectations in porcupine_test.go", porcupineModule, mod.Version)
	}
	sort.Slice(corpus, func(i, j int) bool { return corpus[i].log < corpus[j].log })
	return corpus
}

// TestJepsenCorpus checks every Jepsen etcd log porcupine's tests judge,
// through the same path as `etcd-chaos check --format jepsen`, and wants
// porcupine's verdict on each. A log found not linearizable must come with
// a violation a person can read and with the visualisation.
func TestJepsenCorpus(t *testing.T) {
	corpus := loadJepsenCorpus(t)
	agree, nLinearizable := 0, 0
	start := time.Now()
	for _, c := range corpus {
		name := filepath.Base(c.log)
		h, err := history.LoadJepsen(c.log)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		dir := t.TempDir()
		checks := Check(context.Background(), h, Options{ArtifactDir: dir, Timeout: time.Minute})
		lin := find(checks, linearizable.Name)
		want := verdict.Fail
		if c.linearizable {
			want = verdict.Pass
			nLinearizable++
		}
		if lin.Status != want {
			t.Errorf("%s: linearizable is %s, porcupine says %s: %s", name, lin.Status, want, lin.Summary)
			continue
		}
		if got := verdict.Overall(checks); got != want {
			t.Errorf("%s: overall verdict %s, want %s", name, got, want)
			continue
		}
		for _, ch := range checks {
			if ch.Name != linearizable.Name && ch.Name != Interrupted && (ch.Status != verdict.Skipped || ch.Summary != NoRevisionsReason) {
				t.Errorf("%s: %s is %s (%s), want skipped because the log has no revisions", name, ch.Name, ch.Status, ch.Summary)
			}
		}
		if want == verdict.Fail {
			if len(lin.Violations) == 0 || !strings.Contains(lin.Violations[0], "cannot be linearized") {
				t.Errorf("%s: no readable violation: %q", name, lin.Violations)
			}
			if lin.Artifacts["visualization"] != linearizable.VisualizationFile {
				t.Errorf("%s: no visualisation artifact (warnings %q)", name, lin.Warnings)
			} else if fi, err := os.Stat(filepath.Join(dir, linearizable.VisualizationFile)); err != nil || fi.Size() == 0 {
				t.Errorf("%s: visualisation not written: %v", name, err)
			}
		}
		agree++
	}
	t.Logf("%d of %d Jepsen logs agree with porcupine (%d linearizable, %d not) in %s",
		agree, len(corpus), nLinearizable, len(corpus)-nLinearizable, time.Since(start).Round(time.Millisecond))
}

func find(checks []verdict.Check, name string) verdict.Check {
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	return verdict.Check{Name: name, Status: "missing"}
}

// BenchmarkJepsenCorpus times checking every Jepsen etcd log porcupine's
// tests judge (one op is the whole corpus: read, convert, check), as
// `etcd-chaos check --format jepsen` does without writing a report.
func BenchmarkJepsenCorpus(b *testing.B) {
	corpus := loadJepsenCorpus(b)
	b.ResetTimer()
	for range b.N {
		agree := 0
		for _, c := range corpus {
			h, err := history.LoadJepsen(c.log)
			if err != nil {
				b.Fatal(err)
			}
			lin := find(Check(context.Background(), h, Options{Timeout: time.Minute}), linearizable.Name)
			if (lin.Status == verdict.Pass) == c.linearizable && (lin.Status == verdict.Pass || lin.Status == verdict.Fail) {
				agree++
			}
		}
		b.ReportMetric(float64(agree), "agree")
		b.ReportMetric(float64(len(corpus)), "logs")
	}
}
