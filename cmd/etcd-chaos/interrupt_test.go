package main

import (
	"bufio"
	"bytes"
	"context"
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

// beMainEnv makes the test binary behave as etcd-chaos, so a test can run
// the real command as a subprocess and send it signals.
const beMainEnv = "ETCD_CHAOS_TEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beMainEnv) == "1" {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// runProcess is `etcd-chaos run` in a subprocess whose TMPDIR is private, so
// the test can tell whether it left etcd processes or temp dirs behind.
type runProcess struct {
	cmd    *exec.Cmd
	tmp    string
	out    string
	stdout bytes.Buffer
	mu     sync.Mutex
	stderr []string
	lines  chan string
	exited chan struct{}
}

func startRun(t *testing.T, args ...string) *runProcess {
	t.Helper()
	p := &runProcess{tmp: t.TempDir(), out: filepath.Join(t.TempDir(), "out"), lines: make(chan string, 1000), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"run", "--out", p.out}, args...)...)
	p.cmd.Env = append(os.Environ(), beMainEnv+"=1", "TMPDIR="+p.tmp)
	p.cmd.Stdout = &p.stdout
	errPipe, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr = append(p.stderr, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		// Only on a failed test is it still running; nothing may outlive it.
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

// waitFor reads stderr until a line contains want, failing the test if the
// process ends (or 10 minutes pass, a guard against a hang) first.
func (p *runProcess) waitFor(t *testing.T, want string) {
	t.Helper()
	guard := time.After(10 * time.Minute)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("etcd-chaos run ended before printing %q; stderr:\n%s", want, p.stderrText())
			}
			if strings.Contains(l, want) {
				return
			}
		case <-guard:
			t.Fatalf("no %q from etcd-chaos run; stderr:\n%s", want, p.stderrText())
		}
	}
}

func (p *runProcess) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait returns the exit code.
func (p *runProcess) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Minute):
		t.Fatalf("etcd-chaos run did not exit; stderr:\n%s", p.stderrText())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *runProcess) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// assertNothingLeft: no process mentions the private TMPDIR (every etcd's
// data dir is under it) and the TMPDIR is empty.
func (p *runProcess) assertNothingLeft(t *testing.T) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(p.tmp)) {
			t.Errorf("process %s outlived etcd-chaos run: %s", filepath.Base(filepath.Dir(f)), bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	ents, err := os.ReadDir(p.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("temp dir left behind: %s", filepath.Join(p.tmp, e.Name()))
	}
}

// TestRunInterruptedKeepsTheRun sends SIGINT to a real `etcd-chaos run` in
// the middle of its traffic: it must heal, save the history, check it, write
// a report marked interrupted, say so in one line, exit non-zero and leave
// nothing running.
func TestRunInterruptedKeepsTheRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd cluster")
	}
	p := startRun(t, "--duration", "5m", "--nemesis", "kill-random", "--seed", "3", "--clients", "3")
	p.waitFor(t, "traffic is running")
	time.Sleep(3 * time.Second) // some traffic, and likely a fault, to keep
	p.signal(t, os.Interrupt)
	code := p.wait(t)
	stderr := p.stderrText()
	if code != 130 {
		t.Errorf("exit %d, want 130; stderr:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"etcd-chaos run: run interrupted after ", "of the 5m0s of traffic (interrupted by SIGINT)", "saved, checked and reported", filepath.Join(p.out, report.HTMLFile)} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q lacks %q", last, want)
		}
	}
	if !strings.Contains(p.stdout.String(), "INTERRUPTED after ") {
		t.Errorf("stdout summary does not say INTERRUPTED:\n%s", p.stdout.String())
	}

	h, err := history.Load(filepath.Join(p.out, report.HistoryFile))
	if err != nil {
		t.Fatalf("no history: %v", err)
	}
	if len(h.Operations) < 10 || !strings.Contains(h.Meta.Interrupted, "SIGINT") {
		t.Errorf("history has %d operations, interrupted %q; want the traffic and the reason", len(h.Operations), h.Meta.Interrupted)
	}
	for _, f := range h.Faults {
		if f.End == 0 || f.End < f.Start {
			t.Errorf("fault %d was not healed: %+v", f.ID, f)
		}
	}
	var s report.RunSummary
	b, err := os.ReadFile(filepath.Join(p.out, report.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Verdict == verdict.Pass || s.Interrupted == "" {
		t.Errorf("summary.json verdict %s, interrupted %q: an interrupted run never passes", s.Verdict, s.Interrupted)
	}
	var sawLinearizable bool
	for _, c := range s.Checks {
		sawLinearizable = sawLinearizable || (c.Name == "linearizable" && c.Status != verdict.Skipped)
		if c.Status == verdict.Fail {
			t.Errorf("check %s failed on a correct etcd after an interrupt (seed 3): %s %v", c.Name, c.Summary, c.Violations)
		}
	}
	if !sawLinearizable {
		t.Error("the recorded history was not checked for linearizability")
	}
	if _, err := os.Stat(filepath.Join(p.out, report.HTMLFile)); err != nil {
		t.Error(err)
	}
	p.assertNothingLeft(t)
}

// TestRunSecondInterruptStopsAtOnce: a second SIGINT while the run winds
// down ends it at once, and the cleanup still leaves nothing behind.
func TestRunSecondInterruptStopsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd cluster")
	}
	p := startRun(t, "--duration", "5m", "--nemesis", "none", "--seed", "4", "--clients", "3")
	p.waitFor(t, "traffic is running")
	p.signal(t, os.Interrupt)
	p.waitFor(t, "winding down")
	p.signal(t, os.Interrupt)
	if code := p.wait(t); code == 0 {
		t.Errorf("exit 0 after two interrupts; stderr:\n%s", p.stderrText())
	}
	p.assertNothingLeft(t)
}

// The signal handling itself, without a cluster: the first interrupt
// cancels the context with its cause, the second closes abort.
func TestInterruptsCancelThenAbort(t *testing.T) {
	var errOut syncBuffer
	ctx, stop := interrupts(&errOut)
	defer stop()
	abort := aborted(ctx)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	if cause := context.Cause(ctx); cause == nil || cause.Error() != "interrupted by SIGINT" {
		t.Errorf("cause %v, want interrupted by SIGINT", cause)
	}
	select {
	case <-abort:
		t.Fatal("abort closed on the first interrupt")
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abort:
	case <-time.After(time.Minute):
		t.Fatal("the second interrupt did not close abort")
	}
	if !strings.Contains(errOut.String(), "SIGINT: winding down") {
		t.Errorf("stderr %q", errOut.String())
	}
	if aborted(context.Background()) != nil {
		t.Error("a plain context has an abort channel")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
