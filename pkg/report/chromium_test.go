package report

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// chromiumArgs keep headless Chromium off the network and away from the
// user's profile, so the test proves the page renders offline.
func chromiumArgs(userDir string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-crash-reporter", "--disable-breakpad", "--user-data-dir=" + userDir,
	}
}

// runChromium runs Chromium in its own process group and kills the whole
// group when it returns, because Chromium leaves helpers (crashpad, zygote)
// behind that outlive the browser process.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	// Only a hang must fail: with every package's tests running beside it
	// on 2 cores, rendering 50,000 operations took over 25 s in CI.
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Chromium keeps its singleton socket in a directory under TMPDIR and
	// removes it only when it exits cleanly; a killed run (a hang, Ctrl-C)
	// left /tmp/org.chromium.Chromium.* behind. The test's own temp dir is
	// removed whatever happens.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftover helpers; ESRCH when none
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("chromium did not finish in %v; stderr:\n%s", chromiumTimeout, tail(stderr.String(), 2000))
		}
		t.Fatalf("chromium %v: %v; stderr:\n%s", args[len(args)-1], err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// chromiumTimeout bounds one headless Chromium run.
const chromiumTimeout = 2 * time.Minute

func TestReportRendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not on PATH; install the Debian package 'chromium' to render report.html headless")
	}
	const seed = 7
	// A realistic run: tens of thousands of operations with faults, and the
	// sample's checks (one failed, with a long violation list).
	run := sampleRun()
	run.History = manyOps(seed, 50_000, 2*time.Minute)
	run.History.Meta = sampleRun().History.Meta
	run.History.Meta.Seed = seed
	run.Checks = append(run.Checks, verdict.Check{Name: "watch/reliable", Status: verdict.Pass, Summary: "no gaps on 12 watches"})

	dir := t.TempDir()
	prefill(t, dir)
	p, err := Write(dir, run)
	if err != nil {
		t.Fatalf("seed %d: Write: %v", seed, err)
	}
	url := "file://" + p.HTML

	dom := string(runChromium(t, bin, append(chromiumArgs(filepath.Join(t.TempDir(), "profile")), "--dump-dom", url)...))
	for _, id := range []string{"verdict", "checks", "throughput", "latency", "faults", "counts", "artifacts"} {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("seed %d: rendered DOM lacks #%s", seed, id)
		}
	}
	for _, want := range []string{"<svg", "<path", `class="band`, "watch/ordered", "FAIL"} {
		if !strings.Contains(dom, want) {
			t.Errorf("seed %d: rendered DOM lacks %q", seed, want)
		}
	}

	shotDir := t.TempDir()
	shot := filepath.Join(shotDir, "shot.png")
	runChromium(t, bin, append(chromiumArgs(filepath.Join(t.TempDir(), "profile")),
		"--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars", url)...)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot is not a PNG of a rendered page (%d bytes)", len(png))
	}
	if keep := os.Getenv("REPORT_SCREENSHOT"); keep != "" {
		// For eyeballing the page: REPORT_SCREENSHOT=/tmp/shot.png go test -run Chromium
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
