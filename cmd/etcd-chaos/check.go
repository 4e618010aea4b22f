package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func init() {
	commands["check"] = command{
		summary: "check a recorded history.jsonl again and write a report",
		run:     runCheck,
	}
}

const checkSynopsis = "check [--out DIR] [--timeout 5m] [--format jsonl|jepsen] HISTORY.jsonl[.gz] | JEPSEN.log"

// checkFormats says what --format reads, for --help.
var checkFormats = `Formats:
  jsonl   (default) an etcd-chaos history.jsonl, or .jsonl.gz
          (docs/history-format.md)
  jepsen  ` + strings.ReplaceAll(history.JepsenFormat, "\n", "\n          ") + `
          It is checked as a history without revisions: linearizability on
          values alone, every check that needs revisions skipped.
`

// runCheck re-runs every checker on a saved history, so a failure found at
// night can be re-examined (or re-checked by a newer build) without touching
// a cluster.
func runCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("check", checkSynopsis, stdout)
	out := fs.String("out", "", "write the report into `DIR` (default: <history dir>/check-<timestamp>, or ./check-<timestamp> when that dir is read-only)")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the linearizability search; when it runs out the verdict is unknown, never pass")
	format := fs.String("format", "jsonl", "what the input is: `jsonl` (an etcd-chaos history) or jepsen (a Jepsen register log); see below")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(stdout, "\n"+checkFormats)
	}
	// Flags may come before or after the file, as people type them both ways.
	var files []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(files) == 0:
		return usageErr("missing HISTORY.jsonl (usage: etcd-chaos %s)", checkSynopsis)
	case len(files) > 1:
		return usageErr("want one history file, got %d: %s", len(files), strings.Join(files, " "))
	}
	if *timeout <= 0 {
		return usageErr("--timeout must be positive, got %s", *timeout)
	}
	load := history.Load
	switch *format {
	case "jsonl":
	case "jepsen":
		load = history.LoadJepsen
	default:
		return usageErr("--format %q is not jsonl or jepsen", *format)
	}
	in := files[0]

	start := time.Now()
	h, err := load(in)
	if err != nil {
		return fmt.Errorf("cannot read %s: %s", formatName(*format), oneLineErr(err))
	}
	dir := *out
	if dir == "" {
		dir = defaultCheckDir(in, start)
	}
	if err := refuseOverwrite(in, dir); err != nil {
		return err
	}

	// The report dir holds its own copy of the history it judged, so it
	// stands alone like a run's artifact dir.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report dir: %w", err)
	}
	if err := history.Save(filepath.Join(dir, report.HistoryFile), h); err != nil {
		return fmt.Errorf("copy the history into %s: %s", dir, oneLineErr(err))
	}
	checks := checker.Check(ctx, h, checker.Options{ArtifactDir: dir, Timeout: *timeout})
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted while checking %s: %w", in, err)
	}
	run := report.Run{
		History: h,
		Checks:  checks,
		Notes:   []string{"re-checked from " + in + " by 'etcd-chaos check'"},
		LogDir:  "logs",
	}
	paths, err := report.Write(dir, run)
	if err != nil {
		return fmt.Errorf("write report: %s", oneLineErr(err))
	}
	report.Text(stdout, run, paths.HTML)

	if v := verdict.Overall(checks); v != verdict.Pass {
		return fmt.Errorf("%w: verdict %s, see %s", errChecksFailed, strings.ToUpper(string(v)), paths.HTML)
	}
	return nil
}

func formatName(format string) string {
	if format == "jepsen" {
		return "Jepsen log"
	}
	return "history"
}

// defaultCheckDir puts the report next to the history, in a directory named
// for when the check ran, adding a suffix rather than reusing an old one.
// A history in a directory nobody may write (a read-only mount, an example
// in the Go module cache) gets its report in the working directory
// instead: root could write there anyway, and would change what it reads.
func defaultCheckDir(in string, now time.Time) string {
	parent := filepath.Dir(in)
	if !writable(parent) {
		parent = "."
	}
	base := filepath.Join(parent, "check-"+now.UTC().Format("20060102-150405"))
	dir := base
	for i := 2; ; i++ {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return dir
		}
		dir = fmt.Sprintf("%s-%d", base, i)
	}
}

// writable says whether dir may be written: its mode grants write to
// someone, and this process may write it.
func writable(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o222 == 0 {
		return false
	}
	return unix.Access(dir, unix.W_OK) == nil
}

// refuseOverwrite stops a report from replacing the history it was made
// from: check copies the history to DIR/history.jsonl, which may be the input.
func refuseOverwrite(in, dir string) error {
	target := filepath.Join(dir, report.HistoryFile)
	a, err := os.Stat(in)
	if err != nil {
		return nil // Load succeeded, so this is a race; let Save report it
	}
	if b, err := os.Stat(target); err == nil && os.SameFile(a, b) {
		return usageErr("--out %s would overwrite the input %s; choose another directory", dir, in)
	}
	return nil
}

// oneLineErr keeps an error on one line, so a bad input file produces one
// clear line in CI logs even if a decoder put a newline in its message.
func oneLineErr(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
