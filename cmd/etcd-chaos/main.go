// Command etcd-chaos runs chaos scenarios against etcd and checks recorded
// histories without Ginkgo. Each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands is filled by init functions in the subcommand files.
var commands = map[string]command{}

func usage(w io.Writer) {
	fmt.Fprintln(w, "etcd-chaos: prove an etcd cluster keeps its promises while things break.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: etcd-chaos <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'etcd-chaos <command> --help' for a command's flags.")
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "etcd-chaos: unknown command %q (run 'etcd-chaos --help' for the list)\n", args[0])
		return 2
	}
	ctx, stop := interrupts(stderr)
	defer stop()
	err := cmd.run(ctx, args[1:], stdout)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case ctx.Err() != nil:
		// Interrupted, whatever the command made of it.
		fmt.Fprintf(stderr, "etcd-chaos %s: %v\n", args[0], err)
		return 130
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "etcd-chaos %s: %v\n", args[0], err)
		return 2
	case errors.Is(err, errChecksFailed):
		fmt.Fprintf(stderr, "etcd-chaos %s: %v\n", args[0], err)
		return 1
	default:
		fmt.Fprintf(stderr, "etcd-chaos %s: %v\n", args[0], err)
		return 1
	}
}

// interrupts returns a context that the first Ctrl-C or SIGTERM cancels:
// every command then winds down and cleans up what it started before
// returning, so nothing is left running; `run` still saves, checks and
// reports what it recorded. The second closes the context's abort channel
// (see aborted): a command winding down stops at once, still cleaning up.
func interrupts(stderr io.Writer) (context.Context, func()) {
	abort := make(chan struct{})
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), abortKey{}, abort))
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "etcd-chaos: %s: winding down (interrupt again to stop at once; cleanup still runs)\n", signalName(s))
			cancel(fmt.Errorf("interrupted by %s", signalName(s)))
		case <-done:
			return
		}
		select {
		case <-sigs:
			close(abort)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

type abortKey struct{}

// aborted returns the channel a second interrupt closes; nil (never
// closed) for a context that interrupts did not make.
func aborted(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(abortKey{}).(chan struct{})
	return ch
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// errUsage marks a wrong flag or argument; the exit code is 2.
var errUsage = errors.New("usage error")

// errChecksFailed marks a run or check whose verdict is not pass.
var errChecksFailed = errors.New("checks failed")

// usageErr wraps a message as a usage error.
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// realMain decides the exit code and prints one line.
func newFlagSet(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: etcd-chaos %s\n\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args. --help prints the command's usage; a bad flag is a
// one-line usage error, without the usage text that would bury it.
func parseFlags(fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.Usage()
			return flag.ErrHelp
		}
	}
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	return nil
}
