package report

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// Progress shows a long run's elapsed time, operations and faults. On a
// terminal it redraws one line every second; in CI logs (CI=true, or output
// that is not a terminal) it prints at most one line every 30 s, because a
// line per second buries the failure a person scrolls the log for.
type Progress struct {
	w        io.Writer
	total    time.Duration
	tty      bool
	interval time.Duration
	start    time.Time

	mu        sync.Mutex
	ops       int
	faults    int
	lastPrint time.Time
	printed   bool // a line has been written (on a TTY, it needs a newline at Done)
	done      bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// Intervals between progress lines.
const (
	ttyInterval = time.Second
	ciInterval  = 30 * time.Second
)

// NewProgress starts reporting to w. total is the planned run length, shown
// as "elapsed/total"; zero means open-ended. Call Done when the run ends.
func NewProgress(w io.Writer, total time.Duration) *Progress {
	tty := isTerminal(w) && os.Getenv("CI") == ""
	p := newProgress(w, total, tty, time.Now())
	p.wg.Add(1)
	go p.loop()
	return p
}

func newProgress(w io.Writer, total time.Duration, tty bool, now time.Time) *Progress {
	p := &Progress{w: w, total: total, tty: tty, interval: ciInterval, start: now, lastPrint: now, stop: make(chan struct{})}
	if tty {
		p.interval = ttyInterval
	}
	return p
}

// isTerminal reports whether w is a terminal; anything that is not an
// *os.File (a buffer, a pipe to a log collector) is not.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *Progress) loop() {
	defer p.wg.Done()
	t := time.NewTicker(ttyInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.tick(now)
		}
	}
}

// Update records the current totals; they are printed at the next tick.
func (p *Progress) Update(ops, faults int) {
	p.mu.Lock()
	p.ops, p.faults = ops, faults
	p.mu.Unlock()
}

// tick prints a line if the interval has passed since the last one.
func (p *Progress) tick(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || now.Sub(p.lastPrint) < p.interval {
		return
	}
	p.lastPrint = now
	p.printLocked(now)
}

func (p *Progress) printLocked(now time.Time) {
	line := p.lineLocked(now)
	if p.tty {
		// \r returns to the start; \x1b[K clears what a longer line left.
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.printed = true
}

func (p *Progress) lineLocked(now time.Time) string {
	el := now.Sub(p.start).Truncate(time.Second)
	s := "elapsed " + el.String()
	if p.total > 0 {
		s += "/" + p.total.Truncate(time.Second).String()
	}
	return fmt.Sprintf("%s  ops %d  faults %d", s, p.ops, p.faults)
}

// Done prints the final totals and stops the ticker. It is safe to call more
// than once.
func (p *Progress) Done() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.wg.Wait()
	p.finish(time.Now())
}

func (p *Progress) finish(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.done = true
	p.printLocked(now)
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
