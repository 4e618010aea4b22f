//go:build !e2e

package suites

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/report"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// These mirror the names in interrupt_test.go, which only the e2e build
// compiles.
const (
	probeEnv     = "ETCD_CHAOS_INTERRUPT_PROBE"
	probeRunning = "interrupt-probe: traffic is running"
	probeDir     = "interrupt-probe"
)

// TestGinkgoInterrupt runs the e2e suite's interrupt probe in a child
// process, once stopped by its SpecTimeout and once by SIGINT, and checks
// that the spec, like `etcd-chaos run` on Ctrl-C, still saved its history,
// checked it and wrote its report marked INTERRUPTED (never a pass).
func TestGinkgoInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the e2e suite and runs a local etcd cluster; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "suites.test")
	build := exec.Command(goBin, "test", "-c", "-tags", "e2e", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the e2e suite: %v\n%s", err, out)
	}

	t.Run("timeout", func(t *testing.T) {
		p := startProbe(t, bin, "30s")
		p.wait(t, 4*time.Minute)
		checkInterrupted(t, p)
	})
	t.Run("sigint", func(t *testing.T) {
		p := startProbe(t, bin, "1h")
		select {
		case <-p.running:
		case <-p.exited:
			t.Fatalf("the probe exited before its traffic ran:\n%s", p.output())
		case <-time.After(4 * time.Minute):
			t.Fatalf("the probe's traffic never started:\n%s", p.output())
		}
		time.Sleep(3 * time.Second) // record some traffic first
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		p.wait(t, 2*time.Minute)
		checkInterrupted(t, p)
	})
}

type probe struct {
	cmd       *exec.Cmd
	artifacts string
	mu        sync.Mutex
	all       []string
	running   chan struct{}
	exited    chan struct{}
	exitErr   error
}

func startProbe(t *testing.T, bin, timeout string) *probe {
	t.Helper()
	p := &probe{artifacts: t.TempDir(), running: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "-test.v", "-test.timeout=10m", "-ginkgo.v", "-ginkgo.no-color",
		"-ginkgo.label-filter=interrupt-probe")
	p.cmd.Env = append(os.Environ(), probeEnv+"="+timeout, "ARTIFACTS="+p.artifacts, "ETCD_CHAOS_BACKEND=local")
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		seen := false
		for sc.Scan() {
			p.mu.Lock()
			p.all = append(p.all, sc.Text())
			p.mu.Unlock()
			if !seen && strings.Contains(sc.Text(), probeRunning) {
				seen = true
				close(p.running)
			}
		}
	}()
	go func() {
		<-scanned
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		// Only a failed test leaves it running; nothing may outlive it.
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

func (p *probe) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(limit):
		t.Fatalf("the interrupted spec did not finish within %s:\n%s", limit, p.output())
	}
}

func (p *probe) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.all, "\n")
}

func checkInterrupted(t *testing.T, p *probe) {
	t.Helper()
	if p.exitErr == nil {
		t.Errorf("an interrupted spec exited 0; it must fail")
	}
	dir := filepath.Join(p.artifacts, probeDir)
	h, err := history.Load(filepath.Join(dir, report.HistoryFile))
	if err != nil {
		t.Fatalf("no history saved: %v\n%s", err, p.output())
	}
	if h.Meta.Interrupted == "" {
		t.Errorf("history.jsonl is not marked interrupted")
	}
	if len(h.Operations) < 10 {
		t.Errorf("history.jsonl holds %d operations; the traffic before the interrupt is lost", len(h.Operations))
	}
	raw, err := os.ReadFile(filepath.Join(dir, report.SummaryFile))
	if err != nil {
		t.Fatalf("no report written: %v\n%s", err, p.output())
	}
	var sum struct {
		Verdict     verdict.Status `json:"verdict"`
		Interrupted string         `json:"interrupted"`
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Interrupted == "" || sum.Verdict == verdict.Pass {
		t.Errorf("summary.json: verdict %q, interrupted %q; want a verdict other than pass, marked interrupted", sum.Verdict, sum.Interrupted)
	}
	if _, err := os.Stat(filepath.Join(dir, report.HTMLFile)); err != nil {
		t.Errorf("no report.html: %v", err)
	}
	if !strings.Contains(p.output(), "INTERRUPTED "+probeDir) {
		t.Errorf("the spec did not say in one line that it was interrupted:\n%s", p.output())
	}
	t.Logf("interrupted after %d operations: %s", len(h.Operations), h.Meta.Interrupted)
}
