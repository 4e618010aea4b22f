package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

const ms = int64(time.Millisecond)

// sampleRun is a small hand-made run whose numbers are worked out in the
// tests: 6 operations (4 ok, 1 failed, 1 unknown), one fault, three checks.
func sampleRun() Run {
	h := &history.History{
		Meta: history.Meta{
			Format: history.FormatVersion, Scenario: "kv-kill-leader", Backend: "local", Members: 3,
			EtcdVersion: "v3.6.4", Nemesis: "kill", Seed: 42,
			Started: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC),
			Rerun:   "etcd-chaos run --scenario kv-kill-leader --seed 42",
			Notes:   []string{"persistence enabled"},
		},
		Operations: []history.Operation{
			{ID: 1, Kind: history.Put, Key: "/kv/k000", Value: "v1", Call: 100 * ms, Return: 110 * ms, Outcome: history.OK, Resp: &history.Response{Revision: 2}},
			{ID: 2, Kind: history.Get, Key: "/kv/k000", Call: 200 * ms, Return: 202 * ms, Outcome: history.OK, Resp: &history.Response{Revision: 2}},
			{ID: 3, Kind: history.Put, Key: "/kv/k001", Value: "v3", Call: 1000 * ms, Return: 2000 * ms, Outcome: history.Unknown, Error: "context deadline exceeded"},
			{ID: 4, Kind: history.Put, Key: "/kv/k002", Value: "v4", Call: 1500 * ms, Return: 1530 * ms, Outcome: history.OK, Resp: &history.Response{Revision: 3}},
			{ID: 5, Kind: history.LeaseRevoke, Lease: 7, Call: 2100 * ms, Return: 2200 * ms, Outcome: history.Fail, Error: "lease not found"},
			{ID: 6, Kind: history.Get, Key: "/kv/k002", Call: 2500 * ms, Return: 2504 * ms, Outcome: history.OK, Resp: &history.Response{Revision: 3}},
		},
		Watches: []history.Watch{{ID: 7, Key: "/kv/", End: "/kv0", StartRevision: 1, Responses: []history.WatchResponse{
			{Time: 150 * ms, Revision: 2, Events: []history.Event{{Type: "put", Key: "/kv/k000", Value: "v1", ModRevision: 2}}},
		}}},
		Faults: []history.Fault{{ID: 1, Nemesis: "kill", Action: "kill-leader", Targets: []string{"member-1"}, Start: 1000 * ms, End: 2000 * ms}},
	}
	watchFail := verdict.Check{Name: "watch/ordered", Summary: "events went backwards on 7 watches", Duration: 3 * time.Millisecond}
	for i := range 7 {
		watchFail.Violate("watch %d: revision %d after %d", i+1, 5, 9)
	}
	watchFail.Violate("<script>alert(1)</script>")
	return Run{
		History: h,
		Checks: []verdict.Check{
			{Name: "linearizable", Status: verdict.Pass, Summary: "6 operations linearizable", Artifacts: map[string]string{"visualization": "linearizability.html"}, Duration: 20 * time.Millisecond},
			watchFail,
			{Name: "lease/expiry", Status: verdict.Unknown, Summary: "no lease expired", Warnings: []string{"lease 7 never observed"}},
			{Name: "snapshot/restore", Status: verdict.Skipped, Summary: "no snapshot taken"},
		},
		Duration: 5 * time.Second,
		Notes:    []string{"re-checked"},
		LogDir:   "logs",
	}
}

// prefill puts files into dir that Write must keep and link: member logs,
// the checker's visualisation and the history.
func prefill(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"logs/member-0.log":    "member 0 log\n",
		"logs/member-1.log":    "member 1 log\n",
		"linearizability.html": "<html>porcupine</html>",
		// The run saves its history before the checks; Write links it.
		HistoryFile: "{}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteProducesAllFilesAndKeepsExisting(t *testing.T) {
	dir := t.TempDir()
	prefill(t, dir)
	run := sampleRun()
	p, err := Write(dir, run)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, f := range []string{p.Timeline, p.Summary, p.HTML, p.Text} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("missing %s: %v", f, err)
		}
		if st.Size() == 0 {
			t.Errorf("%s is empty", f)
		}
	}
	for name, want := range map[string]string{"logs/member-0.log": "member 0 log\n", "linearizability.html": "<html>porcupine</html>"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s was not kept: %q, %v", name, got, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}

	var tl Timeline
	readJSON(t, p.Timeline, &tl)
	if len(tl.Faults) != 1 {
		t.Fatalf("timeline has %d faults, want 1", len(tl.Faults))
	}
	f := tl.Faults[0]
	if f.Start != "+1.0s" || f.End != "+2.0s" || f.Duration != "1s" || f.Action != "kill-leader" || f.StartNS != 1000*ms {
		t.Errorf("timeline fault = %+v", f)
	}
	if f.StartTime == nil || !f.StartTime.Equal(time.Date(2026, 11, 27, 3, 0, 1, 0, time.UTC)) {
		t.Errorf("timeline start_time = %v, want 03:00:01", f.StartTime)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestSummaryJSON(t *testing.T) {
	dir := t.TempDir()
	prefill(t, dir)
	p, err := Write(dir, sampleRun())
	if err != nil {
		t.Fatal(err)
	}
	var s RunSummary
	readJSON(t, p.Summary, &s)
	if s.Verdict != verdict.Fail {
		t.Errorf("verdict = %q, want fail", s.Verdict)
	}
	if s.Seed != 42 || s.Scenario != "kv-kill-leader" || s.Backend != "local" || s.EtcdVersion != "v3.6.4" || s.Members != 3 || s.Nemesis != "kill" {
		t.Errorf("meta fields wrong: %+v", s)
	}
	if s.Rerun != "etcd-chaos run --scenario kv-kill-leader --seed 42" {
		t.Errorf("rerun = %q", s.Rerun)
	}
	if !reflect.DeepEqual(s.Notes, []string{"persistence enabled", "re-checked"}) {
		t.Errorf("notes = %q", s.Notes)
	}
	if s.DurationNS != int64(5*time.Second) {
		t.Errorf("duration = %d", s.DurationNS)
	}
	if s.ChecksPassed != 1 || s.ChecksFailed != 1 || s.ChecksUnknown != 1 || s.ChecksSkipped != 1 || len(s.Checks) != 4 {
		t.Errorf("check counts = %d/%d/%d/%d of %d", s.ChecksPassed, s.ChecksFailed, s.ChecksUnknown, s.ChecksSkipped, len(s.Checks))
	}
	o := s.Operations
	if o.Total != 6 || o.OK != 4 || o.Failed != 1 || o.Unknown != 1 {
		t.Errorf("operation counts = %+v", o)
	}
	want := []KindStats{
		{Kind: history.Get, OK: 2, P50: 2 * time.Millisecond, P99: 4 * time.Millisecond},
		{Kind: history.LeaseRevoke, Failed: 1},
		{Kind: history.Put, OK: 2, Unknown: 1, P50: 10 * time.Millisecond, P99: 30 * time.Millisecond},
	}
	if !reflect.DeepEqual(o.PerKind, want) {
		t.Errorf("per kind =\n%+v\nwant\n%+v", o.PerKind, want)
	}
	// ok latencies 2, 4, 10, 30 ms: nearest-rank p50 is the 2nd, p99 the 4th.
	if s.LatencyP50MS != 4 || s.LatencyP99MS != 30 {
		t.Errorf("latency p50/p99 = %v/%v ms, want 4/30", s.LatencyP50MS, s.LatencyP99MS)
	}
	if wantThr := 4 / 2.504; abs(s.ThroughputOpsPerSec-wantThr) > 1e-9 {
		t.Errorf("throughput = %v, want %v", s.ThroughputOpsPerSec, wantThr)
	}
	if o.Watches != 1 || o.WatchEvents != 1 || o.Faults != 1 {
		t.Errorf("watches/events/faults = %d/%d/%d", o.Watches, o.WatchEvents, o.Faults)
	}
	for _, a := range []string{"history.jsonl", "timeline.json", "summary.json", "report.html", "summary.txt", "linearizability.html", "logs/member-0.log", "logs/member-1.log"} {
		if !containsString(s.Artifacts, a) {
			t.Errorf("artifacts %q lack %s", s.Artifacts, a)
		}
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// externalRef matches a src or href that leaves the machine.
var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:|//|data:text/html)`)

func TestHTMLSections(t *testing.T) {
	dir := t.TempDir()
	prefill(t, dir)
	p, err := Write(dir, sampleRun())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.HTML)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{
		`id="verdict"`, `id="checks"`, `id="throughput"`, `id="latency"`, `id="faults"`, `id="counts"`,
		`class="badge fail">FAIL<`, // verdict colour-coded by class
		"kv-kill-leader", "v3.6.4", ">42<", "etcd-chaos run --scenario kv-kill-leader --seed 42",
		`href="linearizability.html"`, `href="logs/member-0.log"`, `href="history.jsonl"`,
		"<details>", "all 8 violations", // long violation lists fold
		"lease 7 never observed", "kill-leader", "member-1",
		"<title>#1 kill/kill-leader on member-1: &#43;1.0s to &#43;2.0s (1s)</title>", // fault hover (html/template escapes +)
		"persistence enabled",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(html, "<script>alert(1)</script>") {
		t.Error("a violation's text reached the page unescaped")
	}
	if m := externalRef.FindString(html); m != "" {
		t.Errorf("report.html references the network: %s", m)
	}
	if strings.Contains(html, "<link") || strings.Contains(html, "@import") {
		t.Error("report.html loads external stylesheets")
	}
}

func TestEmptyHistory(t *testing.T) {
	for name, run := range map[string]Run{
		"nil history": {},
		"empty":       {History: &history.History{Meta: history.Meta{Format: history.FormatVersion, Seed: 7}}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p, err := Write(dir, run)
			if err != nil {
				t.Fatalf("Write: %v", err)
			}
			b, _ := os.ReadFile(p.HTML)
			for _, want := range []string{`id="verdict"`, `id="checks"`, `id="throughput"`, `id="latency"`, `id="faults"`, `id="counts"`, "No operations recorded.", "No checks ran", "No faults were injected."} {
				if !strings.Contains(string(b), want) {
					t.Errorf("report.html lacks %q", want)
				}
			}
			var s RunSummary
			readJSON(t, p.Summary, &s)
			if s.Operations.Total != 0 || s.Checks == nil || s.Operations.PerKind == nil {
				t.Errorf("summary of empty run = %+v", s)
			}
			txt, _ := os.ReadFile(p.Text)
			if !strings.Contains(string(txt), "checks:     none ran") || !strings.Contains(string(txt), "operations: 0 (ok 0, failed 0, unknown 0)") {
				t.Errorf("summary.txt:\n%s", txt)
			}
		})
	}
}

func TestText(t *testing.T) {
	run := sampleRun()
	var b strings.Builder
	Text(&b, run, "/tmp/artifacts/report.html")
	got := b.String()
	for _, want := range []string{
		"etcd-chaos verdict: FAIL  (scenario=kv-kill-leader backend=local etcd=v3.6.4 members=3 nemesis=kill)",
		"checks:     1 passed, 1 failed, 1 unknown, 1 skipped",
		"FAIL    watch/ordered: events went backwards on 7 watches",
		"- watch 1: revision 5 after 9",
		"- watch 3: revision 5 after 9",
		"(+5 more violations in the report)",
		"UNKNOWN lease/expiry: no lease expired",
		"operations: 6 (ok 4, failed 1, unknown 1) in 2.5s: 2 ok ops/s, latency p50 4ms p99 30ms",
		"faults:     1 window (kill/kill-leader x1)",
		"seed:       42",
		"rerun:      etcd-chaos run --scenario kv-kill-leader --seed 42",
		"report:     /tmp/artifacts/report.html",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("text summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "watch 4:") {
		t.Errorf("text summary shows more than %d violations per check:\n%s", textViolations, got)
	}
	if strings.Contains(got, "linearizable") {
		t.Errorf("text summary lists a passing check:\n%s", got)
	}
	if n := strings.Count(got, "\n"); n > 24 {
		t.Errorf("text summary is %d lines, want one screen", n)
	}
}

func TestTextAndSummaryMarkAnInterruptedRun(t *testing.T) {
	run := sampleRun()
	run.History.Meta.Interrupted = "after 18s of the 30s of traffic (interrupted by SIGINT)"
	var b strings.Builder
	Text(&b, run, "")
	if want := "INTERRUPTED after 18s of the 30s of traffic (interrupted by SIGINT); the checks judged what was recorded until then"; !strings.Contains(b.String(), want) {
		t.Errorf("text summary lacks %q:\n%s", want, b.String())
	}
	dir := t.TempDir()
	p, err := Write(dir, run)
	if err != nil {
		t.Fatal(err)
	}
	var s RunSummary
	readJSON(t, p.Summary, &s)
	if s.Interrupted != run.History.Meta.Interrupted {
		t.Errorf("summary.json interrupted = %q", s.Interrupted)
	}
	html, _ := os.ReadFile(p.HTML)
	if !strings.Contains(string(html), `<div id="interrupted"><strong>INTERRUPTED</strong> after 18s`) {
		t.Error("report.html does not mark the run interrupted")
	}
}

func TestSeries(t *testing.T) {
	h := sampleRun().History
	b := Series(h, time.Second)
	if len(b) != 3 {
		t.Fatalf("%d buckets, want 3 (0-1s, 1-2s, 2-3s)", len(b))
	}
	// Returns: 0.11 ok, 0.202 ok | 1.53 ok | 2.0 unknown, 2.2 fail, 2.504 ok.
	want := []Bucket{
		{Start: 0, OK: 2, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond},
		{Start: time.Second, OK: 1, P50: 30 * time.Millisecond, P99: 30 * time.Millisecond},
		{Start: 2 * time.Second, OK: 1, Failed: 1, Unknown: 1, P50: 4 * time.Millisecond, P99: 4 * time.Millisecond},
	}
	if !reflect.DeepEqual(b, want) {
		t.Errorf("Series =\n%+v\nwant\n%+v", b, want)
	}
	if got := Series(&history.History{}, time.Second); got != nil {
		t.Errorf("Series of empty history = %v, want nil", got)
	}
}

func TestPercentile(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for p, want := range map[int]int64{50: 5, 90: 9, 99: 10, 100: 10, 1: 1} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%d = %d, want %d", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestLocalHref(t *testing.T) {
	dir := t.TempDir()
	for name, want := range map[string]string{
		"linearizability.html":                "linearizability.html",
		"logs/member-0.log":                   "logs/member-0.log",
		filepath.Join(dir, "logs", "m.log"):   "logs/m.log",
		"https://example.com/x":               "",
		"//example.com/x":                     "",
		"../outside.html":                     "",
		filepath.Join(filepath.Dir(dir), "x"): "",
		"":                                    "",
	} {
		got, ok := localHref(dir, name)
		if got != want || ok != (want != "") {
			t.Errorf("localHref(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
}

// manyOps builds a history of n operations over span with a few faults.
func manyOps(seed uint64, n int, span time.Duration) *history.History {
	r := rand.New(rand.NewPCG(seed, seed))
	h := &history.History{Meta: history.Meta{Format: history.FormatVersion, Seed: int64(seed), Scenario: "bulk"}}
	h.Operations = make([]history.Operation, n)
	kinds := []history.Kind{history.Get, history.Put, history.Txn, history.Delete}
	for i := range h.Operations {
		call := r.Int64N(int64(span))
		lat := int64(time.Duration(r.ExpFloat64() * float64(2*time.Millisecond)))
		op := history.Operation{ID: int64(i + 1), Kind: kinds[r.IntN(len(kinds))], Key: fmt.Sprintf("/kv/k%03d", r.IntN(100)), Call: call, Return: call + lat, Outcome: history.OK, Resp: &history.Response{Revision: int64(i)}}
		switch x := r.IntN(100); {
		case x < 2:
			op.Outcome, op.Resp = history.Unknown, nil
		case x < 4:
			op.Outcome, op.Resp = history.Fail, nil
		}
		h.Operations[i] = op
	}
	for i := range 20 {
		start := r.Int64N(int64(span))
		h.Faults = append(h.Faults, history.Fault{ID: i + 1, Nemesis: []string{"kill", "partition", "pause"}[i%3], Action: "x", Targets: []string{"member-0"}, Start: start, End: start + int64(2*time.Second)})
	}
	h.SortOperations()
	return h
}

// TestHTMLSizeIndependentOfOps guards the "never one SVG element per
// operation" rule: 200k operations must render about as small as 2k.
func TestHTMLSizeIndependentOfOps(t *testing.T) {
	const seed = 20261127
	var sizes []int
	for _, n := range []int{2_000, 200_000} {
		var buf bytes.Buffer
		h := manyOps(seed, n, 60*time.Second)
		if err := renderHTML(&buf, Run{History: h}, "", Stats(h), nil); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		sizes = append(sizes, buf.Len())
		if c := strings.Count(buf.String(), "<path"); c > 10 {
			t.Errorf("seed %d, %d ops: %d <path> elements, want a handful", seed, n, c)
		}
	}
	if sizes[1] > sizes[0]*3/2 || sizes[1] > 300_000 {
		t.Errorf("seed %d: report.html grows with operations: %d bytes for 2k, %d for 200k", seed, sizes[0], sizes[1])
	}
}

func TestBucketWidthBoundsChart(t *testing.T) {
	for _, tc := range []struct {
		end  time.Duration
		want time.Duration
	}{
		{0, time.Second},
		{30 * time.Minute, 2 * time.Second}, // 1801 one-second buckets would exceed the cap
		{29 * time.Minute, time.Second},
		{10*time.Hour - time.Second, 20 * time.Second},
	} {
		if got := bucketWidth(int64(tc.end)); got != tc.want {
			t.Errorf("bucketWidth(%s) = %s, want %s", tc.end, got, tc.want)
		}
	}
}

// BenchmarkWrite1M measures the whole artifact dir for a million
// operations, history.jsonl included.
func BenchmarkWrite1M(b *testing.B) {
	h := manyOps(1, 1_000_000, 10*time.Minute)
	dir := b.TempDir()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Write(dir, Run{History: h}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStats1M(b *testing.B) {
	h := manyOps(1, 1_000_000, 10*time.Minute)
	b.ResetTimer()
	for b.Loop() {
		Stats(h)
	}
}

func BenchmarkRenderHTML1M(b *testing.B) {
	h := manyOps(1, 1_000_000, 10*time.Minute)
	st := Stats(h)
	b.ResetTimer()
	for b.Loop() {
		var buf bytes.Buffer
		if err := renderHTML(&buf, Run{History: h}, "", st, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(buf.Len()), "html-bytes")
	}
}

func TestFaultThroughputCountsOnlyOpsInsideWindows(t *testing.T) {
	sec := int64(time.Second)
	h := &history.History{Faults: []history.Fault{{ID: 1, Start: 2 * sec, End: 4 * sec}, {ID: 2, Start: 3 * sec, End: 5 * sec}}}
	for i := int64(0); i < 10; i++ { // one ok op returning each second 0..9
		h.Operations = append(h.Operations, history.Operation{ID: i + 1, Kind: history.Get, Call: i * sec, Return: i*sec + 1, Outcome: history.OK, Resp: &history.Response{}})
	}
	st := Stats(h)
	// Windows merge to [2s, 5s]: ops returning at 2, 3 and 4 s are inside.
	if got := st.FaultThroughput; got < 0.99 || got > 1.01 {
		t.Fatalf("fault throughput %.3f ok ops/s, want 1 (3 ops over 3s)", got)
	}
	if st.FaultsPerMinute <= 0 {
		t.Fatalf("faults per minute %.2f", st.FaultsPerMinute)
	}
}

func TestWriteLeavesTheHistoryToItsWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, HistoryFile)
	if err := os.WriteFile(path, []byte("saved before the checks\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, Run{History: &history.History{}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "saved before the checks\n" {
		t.Fatalf("history.jsonl was rewritten: %q", b)
	}
	var s RunSummary
	readJSON(t, filepath.Join(dir, SummaryFile), &s)
	if !slices.Contains(s.Artifacts, HistoryFile) {
		t.Errorf("summary.json artifacts %v do not list %s", s.Artifacts, HistoryFile)
	}
}
