package report

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The tests drive tick with made-up times, so they check what is printed
// when, without sleeping.

func TestProgressTerminalRedrawsEverySecond(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress(&buf, 5*time.Minute, true, t0)
	p.Update(10, 0)
	p.tick(t0.Add(500 * time.Millisecond)) // too soon
	if buf.Len() != 0 {
		t.Fatalf("printed before a second passed: %q", buf.String())
	}
	p.tick(t0.Add(time.Second))
	p.Update(250, 1)
	p.tick(t0.Add(2 * time.Second))
	p.finish(t0.Add(2500 * time.Millisecond))
	got := buf.String()
	want := "\relapsed 1s/5m0s  ops 10  faults 0\x1b[K" +
		"\relapsed 2s/5m0s  ops 250  faults 1\x1b[K" +
		"\relapsed 2s/5m0s  ops 250  faults 1\x1b[K\n"
	if got != want {
		t.Errorf("terminal output\n%q\nwant\n%q", got, want)
	}
}

func TestProgressQuietInCI(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProgress(&buf, 0, false, t0)
	for s := 1; s <= 75; s++ {
		p.Update(s*100, s/20)
		p.tick(t0.Add(time.Duration(s) * time.Second))
	}
	p.finish(t0.Add(80 * time.Second))
	p.finish(t0.Add(90 * time.Second)) // Done twice prints once
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		"elapsed 30s  ops 3000  faults 1",
		"elapsed 1m0s  ops 6000  faults 3",
		"elapsed 1m20s  ops 7500  faults 3",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("CI output:\n%s\nwant:\n%s", buf.String(), strings.Join(want, "\n"))
	}
	if strings.Contains(buf.String(), "\r") || strings.Contains(buf.String(), "\x1b") {
		t.Error("CI output contains terminal control characters")
	}
}

func TestProgressNotATerminal(t *testing.T) {
	t.Setenv("CI", "")
	var buf bytes.Buffer
	p := NewProgress(&buf, time.Minute)
	p.Update(3, 0)
	p.Done()
	p.Done()
	if p.tty {
		t.Error("a bytes.Buffer was taken for a terminal")
	}
	got := buf.String()
	if !strings.HasPrefix(got, "elapsed ") || !strings.HasSuffix(got, "/1m0s  ops 3  faults 0\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("output %q, want one final line", got)
	}
}
