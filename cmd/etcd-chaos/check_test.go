package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func checkCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = realMain(append([]string{"check"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// goodHistory writes a small valid history: a put and the get that reads it.
func goodHistory(t *testing.T, dir string) string {
	t.Helper()
	h := &history.History{
		Meta: history.Meta{Scenario: "kv", Backend: "local", Members: 3, Seed: 99, Rerun: "etcd-chaos run --seed 99"},
		Operations: []history.Operation{
			{ID: 1, Kind: history.Put, Key: "/kv/k000", Value: "v1", Call: 1e6, Return: 2e6, Outcome: history.OK, Resp: &history.Response{Revision: 2}},
			{ID: 2, Kind: history.Get, Key: "/kv/k000", Call: 3e6, Return: 4e6, Outcome: history.OK,
				Resp: &history.Response{Revision: 2, KVs: []history.KV{{Key: "/kv/k000", Value: "v1", ModRevision: 2}}}},
		},
		Faults: []history.Fault{{ID: 1, Nemesis: "kill", Action: "kill", Targets: []string{"member-0"}, Start: 1e6, End: 3e6}},
	}
	path := filepath.Join(dir, "history.jsonl")
	if err := history.Save(path, h); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckGoodHistory(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	before, _ := os.ReadFile(in)
	out := filepath.Join(dir, "report")
	code, stdout, stderr := checkCLI("--out", out, in)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr: %s", code, stderr)
	}
	for _, f := range []string{report.HistoryFile, report.SummaryFile, report.TimelineFile, report.HTMLFile, report.TextFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("report lacks %s: %v", f, err)
		}
	}
	for _, want := range []string{"etcd-chaos verdict: PASS", "seed:       99", "rerun:      etcd-chaos run --seed 99", filepath.Join(out, report.HTMLFile)} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	var s report.RunSummary
	b, err := os.ReadFile(filepath.Join(out, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Verdict != verdict.Pass || s.Operations.Total != 2 || s.Seed != 99 {
		t.Errorf("summary.json: verdict %s, %d ops, seed %d", s.Verdict, s.Operations.Total, s.Seed)
	}
	if after, _ := os.ReadFile(in); !bytes.Equal(before, after) {
		t.Error("the input history was modified")
	}
}

func TestCheckDefaultOutDir(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	// Flags after the file work too.
	code, _, stderr := checkCLI(in, "--timeout", "30s")
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	code, _, stderr = checkCLI(in) // a second check in the same second gets its own dir
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	dirs, _ := filepath.Glob(filepath.Join(dir, "check-*"))
	if len(dirs) != 2 {
		t.Fatalf("want two check-<timestamp> dirs next to the history, got %q", dirs)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, report.HTMLFile)); err != nil {
			t.Errorf("%s lacks report.html", d)
		}
	}
}

// A history where nobody may write (a read-only mount; Jepsen's examples in
// the Go module cache, which root could write anyway) is checked with its
// report in the working directory, and its own directory is left as it was.
func TestCheckDefaultOutDirOfAReadOnlyHistory(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	wd := t.TempDir()
	t.Chdir(wd)
	code, stdout, stderr := checkCLI(in)
	if code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	if got, _ := filepath.Glob(filepath.Join(dir, "check-*")); len(got) != 0 {
		t.Errorf("wrote %q beside a read-only history", got)
	}
	dirs, _ := filepath.Glob(filepath.Join(wd, "check-*"))
	if len(dirs) != 1 {
		t.Fatalf("want one check-<timestamp> dir in the working directory, got %q", dirs)
	}
	if !strings.Contains(stdout, filepath.Join(filepath.Base(dirs[0]), report.HTMLFile)) {
		t.Errorf("stdout does not say where the report is:\n%s", stdout)
	}
}

func TestCheckRefusesToOverwriteInput(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	before, _ := os.ReadFile(in)
	code, _, stderr := checkCLI("--out", dir, in)
	if code != 2 || !strings.Contains(stderr, "would overwrite the input") {
		t.Errorf("exit %d, stderr %q; want 2 and a refusal", code, stderr)
	}
	if after, _ := os.ReadFile(in); !bytes.Equal(before, after) {
		t.Error("the input history was modified")
	}
}

func TestCheckUsageErrors(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", nil, "missing HISTORY.jsonl"},
		{"two files", []string{in, in}, "want one history file, got 2"},
		{"bad flag", []string{"--bogus", in}, "flag provided but not defined: -bogus"},
		{"bad timeout", []string{"--timeout", "soon", in}, "invalid value"},
		{"zero timeout", []string{"--timeout", "0s", in}, "--timeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := checkCLI(tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
		})
	}
}

func TestCheckBadInput(t *testing.T) {
	meta := `{"type":"meta","format":1,"seed":1,"started":"2026-01-01T00:00:00Z"}` + "\n"
	op := `{"type":"op","id":1,"client":0,"kind":"put","key":"/kv/a","value":"v","call":1,"return":2,"outcome":"ok","resp":{"rev":2}}` + "\n"
	for _, tc := range []struct {
		name, content string
		want          string // in the one-line error
	}{
		{"empty file", "", "no meta line"},
		{"malformed line", meta + op + "{not json\n", "line 3: not valid JSON"},
		{"unknown op kind", meta + strings.Replace(op, `"put"`, `"frobnicate"`, 1), `line 2: unknown operation kind "frobnicate"`},
		{"unknown line type", meta + `{"type":"mystery"}` + "\n", `line 2: unknown line type "mystery"`},
		{"truncated", meta + op[:len(op)/2], "line 2: file is truncated"},
		{"no meta", op, "line 1: first line must be the meta line"},
		{"not json at all", "hello\nworld\n", "line 1: not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "history.jsonl")
			if err := os.WriteFile(in, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := checkCLI(in)
			if code == 0 {
				t.Fatalf("exit 0 for bad input; stdout: %s", stdout)
			}
			if !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line containing %q", stderr, tc.want)
			}
			if !strings.Contains(stderr, in) {
				t.Errorf("stderr %q does not name the file", stderr)
			}
			if dirs, _ := filepath.Glob(filepath.Join(dir, "check-*")); len(dirs) != 0 {
				t.Errorf("a report dir was created for bad input: %q", dirs)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		in := filepath.Join(t.TempDir(), "nope.jsonl")
		code, _, stderr := checkCLI(in)
		if code == 0 || !strings.Contains(stderr, "no such file") || !strings.Contains(stderr, in) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

// Histories are often kept compressed (CI artifacts, pkg/checker/testdata):
// check reads a .gz as it is, and a damaged one is one line naming gzip.
func TestCheckGzipHistory(t *testing.T) {
	dir := t.TempDir()
	plain, err := os.ReadFile(goodHistory(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "history.jsonl.gz")
	if err := os.WriteFile(in, zipped.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := checkCLI("--out", filepath.Join(dir, "report"), in); code != 0 || !strings.Contains(stdout, "verdict: PASS") {
		t.Fatalf("exit %d, want 0 and a pass; stdout %s stderr %s", code, stdout, stderr)
	}

	bad := filepath.Join(dir, "cut.jsonl.gz")
	if err := os.WriteFile(bad, zipped.Bytes()[:zipped.Len()/2], 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := checkCLI("--out", filepath.Join(dir, "report2"), bad)
	if code != 1 || !strings.Contains(stderr, "gzip") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("a truncated .gz: exit %d, want 1 and one line naming gzip; stderr %q", code, stderr)
	}
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// onlyDir returns the one check-* directory check made next to its input.
func onlyDir(t *testing.T, dir string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(dir, "check-*"))
	if len(dirs) != 1 {
		t.Fatalf("want one report dir, got %v", dirs)
	}
	return dirs[0]
}

// A violation found by check leaves porcupine's visualisation in the
// report dir, the default one too: the dir exists before the checks run.
func TestCheckWritesVisualisationIntoDefaultDir(t *testing.T) {
	dir := t.TempDir()
	h := &history.History{
		Meta: history.Meta{Scenario: "kv", Seed: 1},
		Operations: []history.Operation{
			{ID: 1, ClientID: 1, Kind: history.Put, Key: "/kv/k000", Value: "v1", Call: 1e6, Return: 2e6, Outcome: history.OK, Resp: &history.Response{Revision: 2}},
			{ID: 2, ClientID: 2, Kind: history.Get, Key: "/kv/k000", Call: 3e6, Return: 4e6, Outcome: history.OK, Resp: &history.Response{Revision: 2}},
		},
	}
	in := filepath.Join(dir, "history.jsonl")
	if err := history.Save(in, h); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := checkCLI(in)
	if code != 1 || !strings.Contains(stdout, "FAIL    linearizable") {
		t.Fatalf("exit %d, want 1 with a linearizability failure; stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(onlyDir(t, dir), "linearizability.html")); err != nil {
		t.Fatalf("no visualisation in the default report dir: %v", err)
	}
}

// The terminal says how many serializable reads the linearizability check
// left out, not only summary.json.
func TestCheckSaysSerializableReadsAreLeftOut(t *testing.T) {
	dir := t.TempDir()
	in := goodHistory(t, dir)
	h, err := history.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	h.Operations = append(h.Operations, history.Operation{ID: 3, ClientID: 3, Kind: history.Get, Key: "/kv/k000", Serializable: true,
		Call: 5e6, Return: 6e6, Outcome: history.OK, Resp: &history.Response{Revision: 2, KVs: []history.KV{{Key: "/kv/k000", Value: "v1", ModRevision: 2}}}})
	if err := history.Save(in, h); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := checkCLI("--out", filepath.Join(dir, "report"), in)
	if code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	if !strings.Contains(stdout, "1 serializable read left out of the linearizability check") {
		t.Fatalf("stdout does not mention the left-out read:\n%s", stdout)
	}
}

const jepsenBad = `INFO  jepsen.util - 0	:invoke	:write	1
INFO  jepsen.util - 0	:ok	:write	1
INFO  jepsen.util - 1	:invoke	:read	nil
INFO  jepsen.util - 2	:invoke	:cas	[1 2]
INFO  jepsen.util - 2	:info	:cas	:timed-out
INFO  jepsen.util - 1	:ok	:read	nil
`

func TestCheckJepsenLog(t *testing.T) {
	dir := t.TempDir()
	// A read of nothing after the write of 1 returned: not linearizable.
	in := writeFile(t, dir, "etcd.log", jepsenBad)
	code, stdout, stderr := checkCLI("--format", "jepsen", in)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{
		"FAIL    linearizable: not linearizable (decided by porcupine on values only",
		`op 3 (client 1, get(register) -> nothing) cannot be linearized`,
		"SKIPPED serializable, durability, kv/consistent",
		"no revisions: the history carries none",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	out := onlyDir(t, dir)
	if _, err := os.Stat(filepath.Join(out, "linearizability.html")); err != nil {
		t.Errorf("no visualisation: %v", err)
	}
	// The report's copy is a history.jsonl that says it has no revisions
	// and checks the same again.
	code2, stdout2, _ := checkCLI("--out", filepath.Join(dir, "again"), filepath.Join(out, report.HistoryFile))
	if code2 != 1 || !strings.Contains(stdout2, "not linearizable (decided by porcupine on values only") {
		t.Errorf("re-checking the converted history: exit %d\n%s", code2, stdout2)
	}

	// The same log where the read saw the write passes.
	ok := writeFile(t, dir, "ok.log", strings.Replace(jepsenBad, ":ok	:read	nil", ":ok	:read	1", 1))
	if code, stdout, stderr := checkCLI("--format", "jepsen", "--out", filepath.Join(dir, "ok"), ok); code != 0 {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr: %s", code, stdout, stderr)
	}

	// Anything else is refused with the line number, on one line.
	bad := writeFile(t, dir, "bad.log", strings.Replace(jepsenBad, ":cas	[1 2]", ":append	[1 2]", 1))
	code, _, stderr = checkCLI("--format", "jepsen", "--out", filepath.Join(dir, "bad"), bad)
	if code != 1 || !strings.Contains(stderr, "line 4: operation \":append\" is not supported") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = checkCLI("--format", "edn", in)
	if code != 2 || !strings.Contains(stderr, `--format "edn" is not jsonl or jepsen`) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}
