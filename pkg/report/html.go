package report

import (
	_ "embed"
	"html/template"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"upper": strings.ToUpper,
	"dur":   fmtDuration,
	"rel":   relTime,
	"f1":    f1,
	// lat shows a dash where there is no latency to measure (no ok ops),
	// rather than a misleading 0s.
	"lat": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return fmtDuration(d)
	},
}).Parse(htmlSource))

// longFindings is how many violations or warnings are shown open; more fold
// into a <details> so one broken check does not bury the others.
const longFindings = 5

// maxFaultRows bounds the fault table; timeline.json has them all.
const maxFaultRows = 2000

type link struct {
	Label, Href string
}

type checkView struct {
	verdict.Check
	Fold      bool
	FoldWarn  bool
	Links     []link
	DurString string
}

type faultRow struct {
	history.Fault
	Label    string
	StartRel string
	EndRel   string
	Duration string
}

type kindRow struct {
	KindStats
	Total int
}

type fact struct{ Label, Value string }

type htmlView struct {
	Verdict        string
	VerdictLine    string
	Interrupted    string
	Title          string
	Heading        string
	Facts          []fact
	Seed           int64
	Rerun          string
	Notes          []string
	Checks         []checkView
	NoChecks       bool
	Throughput     *chart
	Latency        *chart
	Stats          OpStats
	Kinds          []kindRow
	Faults         []faultRow
	FaultsOmitted  int
	Logs           []link
	Artifacts      []link
	Generated      string
	CountsByStatus map[string]int
}

// renderHTML renders the report of run, whose artifact dir is dir.
func renderHTML(w io.Writer, run Run, dir string, st OpStats, arts []string) error {
	h := run.History
	m := h.Meta
	v := verdict.Overall(run.Checks)
	view := htmlView{
		Verdict:        string(v),
		Seed:           m.Seed,
		Rerun:          rerun(run),
		Notes:          notes(run),
		Stats:          st,
		NoChecks:       len(run.Checks) == 0,
		Generated:      time.Now().UTC().Format(time.RFC3339),
		CountsByStatus: map[string]int{},
	}
	view.Title = "etcd-chaos " + strings.ToUpper(string(v))
	view.Heading = "etcd-chaos run"
	if m.Scenario != "" {
		view.Title += ": " + m.Scenario
		view.Heading = m.Scenario
	}
	for _, c := range run.Checks {
		view.CountsByStatus[string(c.Status)]++
	}
	switch {
	case view.NoChecks:
		view.VerdictLine = "No checks ran on this history."
	case v == verdict.Pass:
		view.VerdictLine = "Every check passed or did not apply."
	case v == verdict.Fail:
		view.VerdictLine = "At least one promise was broken; see the failed checks below."
	default:
		view.VerdictLine = "Some checks could not decide. Unknown is not a pass."
	}
	if m.Interrupted != "" {
		view.Interrupted = m.Interrupted + "; the checks judged what was recorded until then."
		view.Title += " (INTERRUPTED)"
	}
	add := func(label, value string) {
		if value != "" {
			view.Facts = append(view.Facts, fact{label, value})
		}
	}
	add("Scenario", m.Scenario)
	add("Backend", m.Backend)
	add("etcd version", m.EtcdVersion)
	add("Members", nonZero(m.Members))
	add("Nemesis", m.Nemesis)
	if !m.Started.IsZero() {
		add("Started", m.Started.UTC().Format("2006-01-02 15:04:05 MST"))
	}
	add("Duration", fmtDuration(runDuration(run, st)))

	have := map[string]bool{}
	for _, a := range arts {
		have[a] = true
	}
	for _, c := range run.Checks {
		cv := checkView{
			Check:     c,
			Fold:      len(c.Violations) > longFindings,
			FoldWarn:  len(c.Warnings) > longFindings,
			DurString: "–",
		}
		if c.Duration > 0 {
			cv.DurString = fmtDuration(c.Duration)
		}
		labels := make([]string, 0, len(c.Artifacts))
		for l := range c.Artifacts {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			if href, ok := localHref(dir, c.Artifacts[l]); ok {
				cv.Links = append(cv.Links, link{Label: l, Href: href})
			}
		}
		view.Checks = append(view.Checks, cv)
	}

	view.Throughput, view.Latency = buildCharts(h)
	for _, k := range st.PerKind {
		view.Kinds = append(view.Kinds, kindRow{KindStats: k, Total: k.Total()})
	}
	for i, f := range h.Faults {
		if i == maxFaultRows {
			view.FaultsOmitted = len(h.Faults) - i
			break
		}
		r := faultRow{Fault: f, Label: faultLabel(f), StartRel: relTime(f.Start)}
		if f.End != 0 {
			r.EndRel, r.Duration = relTime(f.End), fmtDuration(time.Duration(f.End-f.Start))
		}
		view.Faults = append(view.Faults, r)
	}

	logPrefix := ""
	if run.LogDir != "" {
		logPrefix = strings.Trim(path.Clean(strings.ReplaceAll(run.LogDir, "\\", "/")), "/") + "/"
	}
	for _, a := range arts {
		l := link{Label: a, Href: a}
		if logPrefix != "" && strings.HasPrefix(a, logPrefix) {
			view.Logs = append(view.Logs, link{Label: strings.TrimPrefix(a, logPrefix), Href: a})
			continue
		}
		view.Artifacts = append(view.Artifacts, l)
	}
	return htmlTmpl.Execute(w, view)
}

// localHref turns a check's artifact into a link relative to the report, and
// refuses anything that would leave the artifact dir or the machine: the
// report must open offline, and a link to a remote URL would be a surprise.
func localHref(dir, name string) (string, bool) {
	if name == "" || strings.Contains(name, "://") || strings.HasPrefix(name, "//") {
		return "", false
	}
	if dir != "" && isAbs(name) {
		rel, ok := relInside(dir, name)
		if !ok {
			return "", false
		}
		name = rel
	}
	name = path.Clean(strings.ReplaceAll(name, "\\", "/"))
	if strings.HasPrefix(name, "../") || name == ".." || strings.HasPrefix(name, "/") {
		return "", false
	}
	return name, true
}

func isAbs(name string) bool { return filepath.IsAbs(name) }

// relInside returns name relative to dir when it lies inside dir.
func relInside(dir, name string) (string, bool) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(absDir, name)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}
