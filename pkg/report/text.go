package report

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// textViolations is how many violations per failed check the text summary
// shows; the rest are in report.html.
const textViolations = 3

// Text writes a one-screen plain-text summary of run: the verdict, failed
// checks with their first violations, operation counts, throughput, the seed,
// the re-run command, and where report.html is (html, when not "").
func Text(w io.Writer, run Run, html string) {
	writeText(w, run, Stats(run.History), html)
}

// writeText is Text with the stats already computed; on a million
// operations Stats is the expensive part and Write needs them anyway.
func writeText(w io.Writer, run Run, st OpStats, html string) {
	h := run.History
	v := verdict.Overall(run.Checks)
	var hdr []string
	if h != nil {
		meta := h.Meta
		for _, kv := range [][2]string{
			{"scenario", meta.Scenario}, {"backend", meta.Backend}, {"etcd", meta.EtcdVersion},
			{"members", nonZero(meta.Members)}, {"nemesis", meta.Nemesis},
		} {
			if kv[1] != "" {
				hdr = append(hdr, kv[0]+"="+kv[1])
			}
		}
	}
	fmt.Fprintf(w, "etcd-chaos verdict: %s", strings.ToUpper(string(v)))
	if len(hdr) > 0 {
		fmt.Fprintf(w, "  (%s)", strings.Join(hdr, " "))
	}
	fmt.Fprintln(w)
	if h != nil && h.Meta.Interrupted != "" {
		fmt.Fprintf(w, "INTERRUPTED %s; the checks judged what was recorded until then\n", oneLine(h.Meta.Interrupted))
	}

	var pass, fail, unk, skip int
	for _, c := range run.Checks {
		switch c.Status {
		case verdict.Pass:
			pass++
		case verdict.Fail:
			fail++
		case verdict.Skipped:
			skip++
		default:
			unk++
		}
	}
	if len(run.Checks) == 0 {
		fmt.Fprintln(w, "checks:     none ran")
	} else {
		fmt.Fprintf(w, "checks:     %d passed, %d failed, %d unknown, %d skipped\n", pass, fail, unk, skip)
	}
	if h != nil && h.Meta.NoRevisions {
		fmt.Fprintln(w, "no revisions: the history carries none, so linearizability is decided on values alone (revision fast path skipped)")
		writeSkipped(w, run.Checks)
	}
	for _, c := range verdict.Failed(run.Checks) {
		fmt.Fprintf(w, "  %-7s %s: %s\n", strings.ToUpper(string(c.Status)), c.Name, oneLine(c.Summary))
		for i, viol := range c.Violations {
			if i == textViolations {
				break
			}
			fmt.Fprintf(w, "          - %s\n", clip(oneLine(viol), 160))
		}
		if more := len(c.Violations) - textViolations + c.Omitted; more > 0 {
			fmt.Fprintf(w, "          (+%d more violations in the report)\n", more)
		}
	}

	if n := leftOutReads(h); n > 0 {
		fmt.Fprintf(w, "note:       %d serializable %s left out of the linearizability check (they promise no linearizability; the serializable check judges them)\n", n, plural(n, "read"))
	}
	fmt.Fprintf(w, "operations: %d (ok %d, failed %d, unknown %d)", st.Total, st.OK, st.Failed, st.Unknown)
	if st.Total > 0 {
		fmt.Fprintf(w, " in %s: %.0f ok ops/s, latency p50 %s p99 %s", fmtDuration(st.Span), st.Throughput, fmtDuration(st.P50), fmtDuration(st.P99))
	}
	fmt.Fprintln(w)
	if st.Watches > 0 {
		fmt.Fprintf(w, "watches:    %d streams, %d events\n", st.Watches, st.WatchEvents)
	}
	if h != nil && len(h.Faults) > 0 {
		fmt.Fprintf(w, "faults:     %d %s (%s); %.1f per minute, %.0f ok ops/s during faults\n", len(h.Faults), plural(len(h.Faults), "window"), faultMix(h.Faults), st.FaultsPerMinute, st.FaultThroughput)
	}
	if h != nil {
		fmt.Fprintf(w, "seed:       %d\n", h.Meta.Seed)
	}
	if r := rerun(run); r != "" {
		fmt.Fprintf(w, "rerun:      %s\n", r)
	}
	for _, n := range notes(run) {
		fmt.Fprintf(w, "note:       %s\n", oneLine(n))
	}
	if html != "" {
		if abs, err := filepath.Abs(html); err == nil {
			html = abs
		}
		fmt.Fprintf(w, "report:     %s\n", html)
	}
}

// writeSkipped lists skipped checks with their reason, one line per
// reason: on a history without revisions most checks are skipped, and a
// reader must see what was not checked, not only what passed.
func writeSkipped(w io.Writer, checks []verdict.Check) {
	var reasons []string
	names := map[string][]string{}
	for _, c := range checks {
		if c.Status != verdict.Skipped {
			continue
		}
		if names[c.Summary] == nil {
			reasons = append(reasons, c.Summary)
		}
		names[c.Summary] = append(names[c.Summary], c.Name)
	}
	for _, r := range reasons {
		fmt.Fprintf(w, "  SKIPPED %s: %s\n", strings.Join(names[r], ", "), oneLine(r))
	}
}

// leftOutReads counts the acknowledged serializable reads, which the
// linearizability check leaves out: they promise no linearizability.
func leftOutReads(h *history.History) int {
	if h == nil {
		return 0
	}
	n := 0
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Serializable && op.Outcome == history.OK && (op.Kind == history.Get || op.Kind == history.Range) {
			n++
		}
	}
	return n
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func nonZero(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// faultMix describes the faults by kind, most frequent first: "kill x3, partition x2".
func faultMix(faults []history.Fault) string {
	counts := map[string]int{}
	var order []string
	for _, f := range faults {
		label := faultLabel(f)
		if counts[label] == 0 {
			order = append(order, label)
		}
		counts[label]++
	}
	sort.SliceStable(order, func(i, j int) bool { return counts[order[i]] > counts[order[j]] })
	parts := make([]string, len(order))
	for i, l := range order {
		parts[i] = fmt.Sprintf("%s x%d", l, counts[l])
	}
	return strings.Join(parts, ", ")
}

// faultLabel names a fault as "nemesis/action", or whichever half is set.
func faultLabel(f history.Fault) string {
	switch {
	case f.Nemesis != "" && f.Action != "" && f.Nemesis != f.Action:
		return f.Nemesis + "/" + f.Action
	case f.Action != "":
		return f.Action
	case f.Nemesis != "":
		return f.Nemesis
	}
	return "fault"
}

// oneLine folds a multi-line message so each finding stays one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
