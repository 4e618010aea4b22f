// Package etcdbin provides etcd server binaries (and other Go tools such as
// etcdutl) for any released version, by building them from the Go module
// proxy once and caching the result.
//
// Building from the proxy, rather than downloading release tarballs, needs
// nothing but the Go toolchain and the module proxy, which is all a CI runner
// or a locked-down laptop is guaranteed to reach. `go install pkg@version`
// cannot be used because etcd's go.mod carries replace directives, so each
// build runs `go get` + `go build` in a throwaway module.
//
// The cache lives at $ETCD_CHAOS_CACHE, or os.UserCacheDir()/etcd-chaos, with
// the server at <cache>/etcd/<version>/etcd. Builds are serialised per
// version with a file lock so parallel test binaries build each version once.
package etcdbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// DefaultVersion is the etcd the Bitnami chart 12.0.18 ships (appVersion
// 3.6.4), so local runs exercise the same server as the Kubernetes ones.
const DefaultVersion = "v3.6.4"

// ServerModule is the module (and main package) of the etcd server.
const ServerModule = "go.etcd.io/etcd/server/v3"

// EtcdutlModule is the module (and main package) of etcdutl.
const EtcdutlModule = "go.etcd.io/etcd/etcdutl/v3"

// CacheEnv names the environment variable that overrides the cache root.
const CacheEnv = "ETCD_CHAOS_CACHE"

// DefaultCacheDir returns the cache root used when cacheDir is "".
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set %s (%w)", CacheEnv, err)
	}
	return filepath.Join(d, "etcd-chaos"), nil
}

// NormalizeVersion turns "3.6.4" into "v3.6.4"; other strings pass through.
func NormalizeVersion(v string) string {
	v = strings.TrimSpace(v)
	if v != "" && v[0] >= '0' && v[0] <= '9' {
		return "v" + v
	}
	return v
}

// Path returns where the etcd binary of version lives in the cache, whether
// or not it has been built yet.
func Path(version, cacheDir string) (string, error) {
	root, err := cacheRoot(cacheDir)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "etcd", NormalizeVersion(version), "etcd"), nil
}

// Ensure returns the path of an etcd server binary of the given version
// (DefaultVersion when ""), building it into the cache first if needed. The
// first build prints one line to progress (nil: silent); later calls reuse
// the cached binary. Cancelling ctx kills the build.
func Ensure(ctx context.Context, version, cacheDir string, progress io.Writer) (string, error) {
	if version == "" {
		version = DefaultVersion
	}
	version = NormalizeVersion(version)
	root, err := cacheRoot(cacheDir)
	if err != nil {
		return "", err
	}
	return ensure(ctx, spec{
		label:   "etcd",
		module:  ServerModule,
		pkg:     ServerModule,
		version: version,
		dir:     filepath.Join(root, "etcd", version),
		bin:     "etcd",
	}, progress)
}

// EnsureTool is Ensure for any main package pkg of module at version, for
// example EnsureTool(ctx, EtcdutlModule, EtcdutlModule, "v3.6.4", "", w).
// The binary is cached at <cache>/tools/<module>/<version>/<name>, where name
// is the last element of pkg without a major-version suffix ("etcdutl").
func EnsureTool(ctx context.Context, module, pkg, version, cacheDir string, progress io.Writer) (string, error) {
	if module == "" || version == "" {
		return "", errors.New("etcdbin: EnsureTool needs a module and a version")
	}
	if pkg == "" {
		pkg = module
	}
	version = NormalizeVersion(version)
	root, err := cacheRoot(cacheDir)
	if err != nil {
		return "", err
	}
	name := binName(pkg)
	return ensure(ctx, spec{
		label:   name,
		module:  module,
		pkg:     pkg,
		version: version,
		dir:     filepath.Join(root, "tools", filepath.FromSlash(module), version),
		bin:     name,
	}, progress)
}

// binName is what `go install` would call the binary of pkg.
func binName(pkg string) string {
	parts := strings.Split(strings.TrimSuffix(pkg, "/"), "/")
	last := parts[len(parts)-1]
	if len(parts) > 1 && regexp.MustCompile(`^v[0-9]+$`).MatchString(last) {
		last = parts[len(parts)-2]
	}
	return last
}

func cacheRoot(cacheDir string) (string, error) {
	if cacheDir != "" {
		return cacheDir, nil
	}
	return DefaultCacheDir()
}

type spec struct {
	label, module, pkg, version, dir, bin string
	// gofail, when set, builds from a copy of the module's source with its
	// failpoints enabled by this gofail binary (see failpoints.go).
	gofail string
}

func ensure(ctx context.Context, s spec, progress io.Writer) (path string, err error) {
	out := filepath.Join(s.dir, s.bin)
	if isExecutable(out) {
		return out, nil
	}
	unlock, err := LockDir(ctx, s.dir, s.bin)
	if err != nil {
		return "", err
	}
	defer func() {
		// A failed build (an unknown version, a cancelled build) leaves no
		// empty version dir behind: removed under the lock, with its lock
		// file, so a waiter retries on a fresh one (see LockDir).
		if err != nil && !isExecutable(out) {
			os.RemoveAll(s.dir)
		}
		unlock()
	}()
	// Another process may have built it while we waited for the lock.
	if isExecutable(out) {
		return out, nil
	}
	// Holding the lock, no build is running here: build dirs left by a
	// harness that was SIGKILLed mid-build are stale.
	if stale, _ := filepath.Glob(filepath.Join(s.dir, "build-*")); len(stale) > 0 {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	if progress != nil {
		fmt.Fprintf(progress, "building %s %s from the Go module proxy (once; cached in %s)...\n", s.label, s.version, s.dir)
	}
	if err := build(ctx, s, out); err != nil {
		return "", err
	}
	return out, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// LockDir creates dir and takes an exclusive flock on dir/.lock, polling so
// that ctx can interrupt the wait (a blocking flock cannot be cancelled). A
// failed build removes dir, lock file included, while holding the lock; a
// waiter that then gets the lock holds it on a deleted file, so it checks
// that the file it locked is still the one at the path, and retries if not.
// what names the build in the message a cancelled wait returns. Every
// cached build (etcd, tools, Kubernetes) takes its lock here.
func LockDir(ctx context.Context, dir, what string) (func(), error) {
	path := filepath.Join(dir, ".lock")
	for {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("cannot create cache dir %s: %w (set %s to a writable directory)", dir, err, CacheEnv)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, fmt.Errorf("cannot open build lock %s: %w", path, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if sameFile(f, path) {
				return func() {
					_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
					f.Close()
				}, nil
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cannot lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another process to build %s into %s: %w", what, dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func build(ctx context.Context, s spec, out string) error {
	gobin, err := goTool()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(s.dir, "build-")
	if err != nil {
		return fmt.Errorf("cannot create build dir in %s: %w", s.dir, err)
	}
	defer os.RemoveAll(work)

	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, gobin, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		// Own process group, so cancellation kills the compiler and linker
		// children too; Pdeathsig so they die with us.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var buf bytes.Buffer
		cmd.Stdout = &buf
		cmd.Stderr = &buf
		err := cmd.Run()
		if ctx.Err() != nil {
			return buf.String(), fmt.Errorf("building %s %s: %w", s.label, s.version, ctx.Err())
		}
		return buf.String(), err
	}

	if msg, err := run("mod", "init", "etcdchaos.local/build"); err != nil {
		return fmt.Errorf("building %s %s: go mod init failed: %s", s.label, s.version, shortGoError(msg, err))
	}
	if msg, err := run("get", s.module+"@"+s.version); err != nil {
		if ctx.Err() != nil {
			return err
		}
		if notExist(msg) {
			return fmt.Errorf("%s version %s does not exist on the Go module proxy (%s@%s): %s", s.label, s.version, s.module, s.version, shortGoError(msg, err))
		}
		return fmt.Errorf("cannot fetch %s@%s from the Go module proxy: %s (check GOPROXY and network)", s.module, s.version, shortGoError(msg, err))
	}
	if s.gofail != "" {
		if err := enableFailpoints(ctx, s, work, run); err != nil {
			return err
		}
	}
	tmp := filepath.Join(s.dir, "."+s.bin+".tmp")
	if msg, err := run("build", "-trimpath", "-o", tmp, s.pkg); err != nil {
		os.Remove(tmp)
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("building %s %s with %s failed: %s", s.label, s.version, runtime.Version(), shortGoError(msg, err))
	}
	// Rename is atomic, so a concurrent reader sees no binary or a whole one.
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cannot install %s into cache: %w", out, err)
	}
	return nil
}

func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	// Go's own install location, for a PATH that lacks it (CI shells).
	p := filepath.Join("/usr/local/go", "bin", "go")
	if isExecutable(p) {
		return p, nil
	}
	return "", errors.New("the go command is not in PATH; etcdbin builds etcd with it (install Go or pass an etcd binary)")
}

var notExistRE = regexp.MustCompile(`(?i)not available|404 not found|410 gone|unknown revision|invalid version|no matching versions|not found`)

func notExist(msg string) bool { return notExistRE.MatchString(msg) }

// shortGoError condenses go's multi-line output to one line.
func shortGoError(msg string, err error) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "go: downloading") || strings.HasPrefix(l, "go: finding") || strings.HasPrefix(l, "go: added") {
			continue
		}
		l = strings.TrimPrefix(l, "go: ")
		l = strings.TrimPrefix(l, "server response: ")
		parts = append(parts, l)
	}
	s := strings.Join(parts, "; ")
	if s == "" {
		s = err.Error()
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

var versionRE = regexp.MustCompile(`(?m)^etcd Version:\s*(\S+)`)

// Check runs `path --version` and returns the etcd version it reports, such
// as "3.6.4". Anything that does not report one is rejected.
func Check(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if m := versionRE.FindSubmatch(out); m != nil {
		return string(m[1]), nil
	}
	why := "`--version` printed no \"etcd Version:\" line"
	switch {
	case ctx.Err() != nil:
		why = "`--version` did not answer within 10s"
	case err != nil:
		why = err.Error()
	}
	return "", fmt.Errorf("%s is not an etcd server binary (%s)", path, why)
}
