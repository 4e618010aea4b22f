// Package report turns one run (its history and check results) into an
// artifact directory a person can read the next morning without re-running
// anything: history.jsonl for the machines, summary.json for CI, timeline.json
// for the faults, a self-contained report.html, and a one-screen summary.txt.
//
// The report never references the network: nightly CI artifacts are opened
// from disk, often offline, and years later.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// File names Write produces inside the artifact dir.
const (
	HistoryFile  = "history.jsonl"
	TimelineFile = "timeline.json"
	SummaryFile  = "summary.json"
	HTMLFile     = "report.html"
	TextFile     = "summary.txt"
)

// Run is everything the report shows about one run. Seed, backend, scenario
// and versions come from History.Meta.
type Run struct {
	History *history.History
	Checks  []verdict.Check
	// Duration is the run's wall time, including setup; zero means unknown
	// and the history's span is shown instead.
	Duration time.Duration
	// Rerun is the command that re-runs the scenario; empty falls back to
	// History.Meta.Rerun.
	Rerun string
	// Notes are added to History.Meta.Notes.
	Notes []string
	// LogDir is the member logs' directory, relative to the artifact dir
	// (for example "logs"); its files are linked from the report.
	LogDir string
}

// Paths are the files Write produced.
type Paths struct {
	Dir      string
	Timeline string
	Summary  string
	HTML     string
	Text     string
}

// Write writes the report of a run into dir, creating it if needed. Files
// already there (history.jsonl, member logs, the checker's
// linearizability.html) are kept and linked; the history is its writer's to
// save, before the checks run. Only the report's own files (the constants
// above but HistoryFile) are replaced, each atomically.
func Write(dir string, run Run) (Paths, error) {
	if run.History == nil {
		run.History = &history.History{}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Paths{}, fmt.Errorf("create report dir: %w", err)
	}
	p := Paths{
		Dir:      dir,
		Timeline: filepath.Join(dir, TimelineFile),
		Summary:  filepath.Join(dir, SummaryFile),
		HTML:     filepath.Join(dir, HTMLFile),
		Text:     filepath.Join(dir, TextFile),
	}
	tl, err := json.MarshalIndent(buildTimeline(run.History), "", "  ")
	if err != nil {
		return p, fmt.Errorf("encode timeline: %w", err)
	}
	if err := writeFile(p.Timeline, append(tl, '\n')); err != nil {
		return p, err
	}

	// The artifact list is taken after every other file exists, so that it
	// names summary.json, report.html and summary.txt too.
	stats := Stats(run.History)
	arts, err := listArtifacts(dir, []string{SummaryFile, HTMLFile, TextFile})
	if err != nil {
		return p, err
	}
	sum, err := json.MarshalIndent(buildSummary(run, stats, arts), "", "  ")
	if err != nil {
		return p, fmt.Errorf("encode summary: %w", err)
	}
	if err := writeFile(p.Summary, append(sum, '\n')); err != nil {
		return p, err
	}
	var html bytes.Buffer
	if err := renderHTML(&html, run, dir, stats, arts); err != nil {
		return p, fmt.Errorf("render report.html: %w", err)
	}
	if err := writeFile(p.HTML, html.Bytes()); err != nil {
		return p, err
	}
	var txt bytes.Buffer
	writeText(&txt, run, stats, p.HTML)
	if err := writeFile(p.Text, txt.Bytes()); err != nil {
		return p, err
	}
	return p, nil
}

// writeFile replaces path atomically, so a reader (or a crash) never sees a
// half-written report.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// maxArtifacts bounds the listing so that a dir full of debris (core dumps,
// thousands of WAL files) cannot blow up the report.
const maxArtifacts = 500

// listArtifacts returns every regular file under dir as slash-separated
// relative paths, sorted, plus the names in extra that will exist once Write
// finishes. Hidden files (Write's own temp files) are left out.
func listArtifacts(dir string, extra []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		if len(out) >= maxArtifacts {
			return filepath.SkipAll
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list artifacts in %s: %w", dir, err)
	}
	for _, e := range extra {
		if !seen[e] {
			out = append(out, e)
		}
	}
	sort.Strings(out)
	return out, nil
}

// TimelineFault is one fault window in timeline.json.
type TimelineFault struct {
	ID      int      `json:"id"`
	Nemesis string   `json:"nemesis"`
	Action  string   `json:"action"`
	Targets []string `json:"targets,omitempty"`
	// StartNS and EndNS are nanoseconds since the run's start, as in the
	// history; EndNS is 0 when the fault was never healed.
	StartNS int64 `json:"start_ns"`
	EndNS   int64 `json:"end_ns,omitempty"`
	// Start, End and Duration are the same in human form ("+12.3s").
	Start    string `json:"start"`
	End      string `json:"end,omitempty"`
	Duration string `json:"duration,omitempty"`
	// StartTime and EndTime are wall-clock times, when the run's start is
	// known, to line the fault up with member logs.
	StartTime *time.Time `json:"start_time,omitempty"`
	EndTime   *time.Time `json:"end_time,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// Timeline is the content of timeline.json.
type Timeline struct {
	Started time.Time       `json:"started"`
	End     string          `json:"end"`
	Faults  []TimelineFault `json:"faults"`
}

func buildTimeline(h *history.History) Timeline {
	tl := Timeline{Started: h.Meta.Started, End: relTime(h.End()), Faults: []TimelineFault{}}
	for _, f := range h.Faults {
		tf := TimelineFault{
			ID: f.ID, Nemesis: f.Nemesis, Action: f.Action, Targets: f.Targets,
			StartNS: f.Start, EndNS: f.End, Start: relTime(f.Start), Error: f.Error,
		}
		if !h.Meta.Started.IsZero() {
			t := h.Meta.Started.Add(time.Duration(f.Start)).UTC()
			tf.StartTime = &t
		}
		if f.End != 0 {
			tf.End = relTime(f.End)
			tf.Duration = fmtDuration(time.Duration(f.End - f.Start))
			if !h.Meta.Started.IsZero() {
				t := h.Meta.Started.Add(time.Duration(f.End)).UTC()
				tf.EndTime = &t
			}
		}
		tl.Faults = append(tl.Faults, tf)
	}
	return tl
}

// relTime formats nanoseconds since the run's start as "+12.3s" or "+2m03.4s".
func relTime(ns int64) string {
	d := time.Duration(ns)
	if d < time.Minute {
		return fmt.Sprintf("+%.1fs", d.Seconds())
	}
	m := int(d / time.Minute)
	s := (d - time.Duration(m)*time.Minute).Seconds()
	return fmt.Sprintf("+%dm%04.1fs", m, s)
}

// fmtDuration rounds d to what a person wants to read: 3 significant digits.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(10 * time.Nanosecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// RunSummary is the content of summary.json: what CI dashboards and scripts read.
type RunSummary struct {
	Verdict verdict.Status `json:"verdict"`
	// Interrupted says why the run stopped early, when it did (history
	// meta): the checks judged what was recorded until then.
	Interrupted string    `json:"interrupted,omitempty"`
	Scenario    string    `json:"scenario,omitempty"`
	Backend     string    `json:"backend,omitempty"`
	EtcdVersion string    `json:"etcd_version,omitempty"`
	Members     int       `json:"members,omitempty"`
	Nemesis     string    `json:"nemesis,omitempty"`
	Seed        int64     `json:"seed"`
	Started     time.Time `json:"started"`
	Rerun       string    `json:"rerun,omitempty"`
	Notes       []string  `json:"notes,omitempty"`
	// DurationNS is the run's wall time, or the history's span when unknown.
	DurationNS int64  `json:"duration_ns"`
	Duration   string `json:"duration"`
	// ChecksPassed etc. count checks by status.
	ChecksPassed  int             `json:"checks_passed"`
	ChecksFailed  int             `json:"checks_failed"`
	ChecksUnknown int             `json:"checks_unknown"`
	ChecksSkipped int             `json:"checks_skipped"`
	Checks        []verdict.Check `json:"checks"`
	Operations    OpStats         `json:"operations"`
	// Throughput and latency repeated at the top level for dashboards.
	ThroughputOpsPerSec float64  `json:"throughput_ops_per_sec"`
	LatencyP50MS        float64  `json:"latency_p50_ms"`
	LatencyP99MS        float64  `json:"latency_p99_ms"`
	Artifacts           []string `json:"artifacts"`
}

func buildSummary(run Run, st OpStats, arts []string) RunSummary {
	m := run.History.Meta
	s := RunSummary{
		Verdict:     verdict.Overall(run.Checks),
		Interrupted: m.Interrupted,
		Scenario:    m.Scenario,
		Backend:     m.Backend,
		EtcdVersion: m.EtcdVersion,
		Members:     m.Members,
		Nemesis:     m.Nemesis,
		Seed:        m.Seed,
		Started:     m.Started,
		Rerun:       rerun(run),
		Notes:       notes(run),
		Checks:      run.Checks,
		Operations:  st,

		ThroughputOpsPerSec: st.Throughput,
		LatencyP50MS:        float64(st.P50) / float64(time.Millisecond),
		LatencyP99MS:        float64(st.P99) / float64(time.Millisecond),
		Artifacts:           arts,
	}
	if s.Checks == nil {
		s.Checks = []verdict.Check{}
	}
	if s.Operations.PerKind == nil {
		s.Operations.PerKind = []KindStats{}
	}
	d := runDuration(run, st)
	s.DurationNS, s.Duration = int64(d), fmtDuration(d)
	for _, c := range run.Checks {
		switch c.Status {
		case verdict.Pass:
			s.ChecksPassed++
		case verdict.Fail:
			s.ChecksFailed++
		case verdict.Skipped:
			s.ChecksSkipped++
		default:
			s.ChecksUnknown++
		}
	}
	return s
}

func rerun(run Run) string {
	if run.Rerun != "" {
		return run.Rerun
	}
	if run.History != nil {
		return run.History.Meta.Rerun
	}
	return ""
}

func notes(run Run) []string {
	var out []string
	if run.History != nil {
		out = append(out, run.History.Meta.Notes...)
	}
	for _, n := range run.Notes {
		if !containsString(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func runDuration(run Run, st OpStats) time.Duration {
	if run.Duration > 0 {
		return run.Duration
	}
	if run.History != nil {
		return time.Duration(run.History.End())
	}
	return st.Span
}
