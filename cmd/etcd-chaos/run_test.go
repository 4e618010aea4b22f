package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTopLevelUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := realMain([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, cmd := range []string{"run", "check", "snapshot", "etcd"} {
		if !strings.Contains(out.String(), cmd) {
			t.Errorf("--help does not list %q:\n%s", cmd, out.String())
		}
	}
	out.Reset()
	if code := realMain([]string{"explode"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "explode"`) {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errOut.String())
	}
}

func TestRunRejectsBadFlagsInOneLine(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--members", "4"}, "--members must be 1, 3 or 5"},
		{[]string{"--nemesis", "explode"}, `unknown nemesis "explode"`},
		{[]string{"--duration", "-1s"}, "--duration must be positive"},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--nemesis", "failpoint-raft-save"}, "add --failpoints"},
		{[]string{"--backend", "kube", "--snapshot-count", "100"}, "apply to the local backend only"},
		{[]string{"--backend", "kind", "--failpoints"}, "apply to the local backend only"},
		{[]string{"--backend", "kube-host", "--peer-tls", "--snapshot-count", "2000"}, "apply to the local backend only"},
		{[]string{"--profile", "bogus"}, `unknown --profile "bogus"`},
		{[]string{"--future-watchers", "-1"}, "must not be negative"},
		{[]string{"--future-offset", "0"}, "--future-offset must be positive"},
		{[]string{"--spread-watchers", "2", "--watch=false"}, "need --watch"},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := realMain(append([]string{"run"}, tc.args...), &out, &errOut)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		msg := errOut.String()
		if !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 {
			t.Errorf("%v: want one line containing %q, got %q", tc.args, tc.want, msg)
		}
	}
}

// TestRunLeavesTheLocalOnlyRuleToScenario: run refuses settings beyond the
// defaults on a non-local backend (a usage error, above), but naming a
// setting at its default value is no request, as scenario.LocalOnly has
// it: the run gets past the flag checks to opening the backend (here an
// unknown one, so nothing starts).
func TestRunLeavesTheLocalOnlyRuleToScenario(t *testing.T) {
	for _, args := range [][]string{
		{"--snapshot-count", "2000"},
		{"--snapshot-count", "2000", "--peer-tls=false", "--failpoints=false"},
	} {
		var out, errOut bytes.Buffer
		code := realMain(append([]string{"run", "--backend", "nowhere", "--out", t.TempDir()}, args...), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), `unknown backend "nowhere"`) {
			t.Errorf("%v: exit %d, stderr %q; want the defaults accepted and the backend refused by scenario.Open", args, code, errOut.String())
		}
	}
}

func TestRunRejectsANonEtcdBinary(t *testing.T) {
	// A binary that is not etcd must fail before anything starts, in one
	// line, and leave no artifacts claiming a run happened.
	dir := t.TempDir()
	fake := filepath.Join(dir, "etcd")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := realMain([]string{"run", "--etcd-binary", fake, "--duration", "1s", "--out", filepath.Join(dir, "out")}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "not an etcd") || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("want one line saying it is not etcd, got %q", errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "report.html")); err == nil {
		t.Fatal("a run that never started wrote a report")
	}
}

func TestRunUnknownEtcdVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("asks the Go module proxy")
	}
	var out, errOut bytes.Buffer
	code := realMain([]string{"run", "--etcd-version", "v9.9.9", "--duration", "1s", "--out", t.TempDir()}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "v9.9.9 does not exist") || strings.Count(errOut.String(), "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
