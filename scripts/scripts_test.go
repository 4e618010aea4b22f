// Package scripts holds no code: its tests run the repository's scripts,
// Makefile targets and workflows against fake tools, to keep them portable
// and consistent with each other.
package scripts

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// fakeBin makes a directory that holds only the tools e2e.sh may rely on
// everywhere (no `timeout`: macOS lacks it), a fake `go` that records its
// arguments and the backend it was given, and, when docker is not empty, a
// fake `docker` with that shell body.
func fakeBin(t *testing.T, docker string) (bin, record string) {
	t.Helper()
	bin = t.TempDir()
	for _, tool := range []string{"dirname", "mkdir", "sleep", "sort"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	record = filepath.Join(t.TempDir(), "go-args")
	script(t, bin, "go", `echo "backend=$ETCD_CHAOS_BACKEND" > `+record+`
for a in "$@"; do echo "$a" >> `+record+`; done`)
	if docker != "" {
		script(t, bin, "docker", docker)
	}
	return bin, record
}

func script(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// runE2E runs scripts/e2e.sh with PATH set to bin only and returns what the
// fake go recorded: the backend and go's arguments.
func runE2E(t *testing.T, bin, record string, env ...string) (string, []string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	cmd := exec.Command(bash, "e2e.sh")
	cmd.Env = append([]string{"PATH=" + bin, "HOME=" + t.TempDir(), "ARTIFACTS=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("e2e.sh: %v\n%s", err, out)
	}
	f, err := os.Open(record)
	if err != nil {
		t.Fatalf("e2e.sh did not run go: %v\n%s", err, out)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "backend=") {
		t.Fatalf("fake go recorded %q", lines)
	}
	return strings.TrimPrefix(lines[0], "backend="), lines[1:]
}

// TestE2EBackendDetection: the backend is chosen by asking the docker CLI,
// with nothing but POSIX tools, so docker contexts (Colima, Docker Desktop,
// Rancher Desktop) count and a hung daemon does not hang the run.
func TestE2EBackendDetection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		docker string
		env    []string
		want   string
	}{
		{name: "daemon answers through the CLI", docker: `[ "$1" = info ] && echo 28.0.1`, want: "kind"},
		{name: "CLI cannot reach a daemon", docker: `echo "Cannot connect to the Docker daemon" >&2; exit 1`, want: "local"},
		{name: "daemon hangs", docker: `exec sleep 60`, want: "local"},
		{name: "no docker CLI", want: "local"},
		{name: "explicit backend wins", docker: `exit 0`, env: []string{"ETCD_CHAOS_BACKEND=kube"}, want: "kube"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, record := fakeBin(t, tc.docker)
			got, _ := runE2E(t, bin, record, tc.env...)
			if got != tc.want {
				t.Errorf("backend = %q, want %q", got, tc.want)
			}
		})
	}
}

// flagValue returns the value of -name=value or -name value in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// checkTimeouts fails unless go test's timeout is off or longer than
// Ginkgo's, whose default is one hour.
func checkTimeouts(t *testing.T, where string, args []string) {
	t.Helper()
	gt, ok := flagValue(args, "-timeout")
	if !ok {
		gt = "10m" // go test's default
	}
	gk, ok := flagValue(args, "-ginkgo.timeout")
	if !ok {
		gk = "1h"
	}
	goTimeout, err := time.ParseDuration(gt)
	if gt == "0" {
		goTimeout, err = 0, nil
	}
	if err != nil {
		t.Fatalf("%s: -timeout %q: %v", where, gt, err)
	}
	ginkgoTimeout, err := time.ParseDuration(gk)
	if err != nil {
		t.Fatalf("%s: -ginkgo.timeout %q: %v", where, gk, err)
	}
	if goTimeout != 0 && goTimeout <= ginkgoTimeout {
		t.Errorf("%s: go test -timeout %s does not exceed -ginkgo.timeout %s: go test's timer would panic before Ginkgo runs cleanup and writes the JUnit report", where, gt, gk)
	}
}

func TestE2ETimeoutLeavesGinkgoTimeToCleanUp(t *testing.T) {
	for _, e2eTimeout := range []string{"", "90m", "2h", "45m30s"} {
		bin, record := fakeBin(t, "")
		var env []string
		if e2eTimeout != "" {
			env = append(env, "E2E_TIMEOUT="+e2eTimeout)
		}
		_, args := runE2E(t, bin, record, env...)
		checkTimeouts(t, "e2e.sh E2E_TIMEOUT="+e2eTimeout, args)
	}
}

func TestMakeSmokeTimeoutLeavesGinkgoTimeToCleanUp(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	out, err := exec.Command(mk, "-n", "-C", "..", "smoke", "GO=go").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n smoke: %v\n%s", err, out)
	}
	cmd := strings.ReplaceAll(string(out), "\\\n", " ")
	for _, line := range strings.Split(cmd, "\n") {
		if strings.Contains(line, "go test") {
			checkTimeouts(t, "make smoke", strings.Fields(line))
			return
		}
	}
	t.Fatalf("make -n smoke ran no go test:\n%s", out)
}

// TestWorkflowsMayPublishJUnit: the JUnit publishing action creates a check
// run, which needs checks: write; without it the always-run step fails.
func TestWorkflowsMayPublishJUnit(t *testing.T) {
	files, err := filepath.Glob("../.github/workflows/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no workflows found: %v", err)
	}
	type job struct {
		Permissions map[string]string `json:"permissions"`
		Steps       []struct {
			Uses string `json:"uses"`
		} `json:"steps"`
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Permissions map[string]string `json:"permissions"`
			Jobs        map[string]job    `json:"jobs"`
		}
		if err := yaml.Unmarshal(b, &wf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for name, j := range wf.Jobs {
			perms := wf.Permissions
			if j.Permissions != nil {
				perms = j.Permissions
			}
			for _, s := range j.Steps {
				if strings.HasPrefix(s.Uses, "mikepenz/action-junit-report") && perms["checks"] != "write" {
					t.Errorf("%s: job %s publishes JUnit but has no checks: write permission", filepath.Base(f), name)
				}
			}
		}
	}
}
