package etcdbin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// GofailModule is the failpoint tool and runtime etcd's own tests use.
const GofailModule = "go.etcd.io/gofail"

// GofailVersion is the gofail that rewrites the source and whose runtime
// the binary links; one version for both, so the generated code and the
// runtime always agree.
const GofailVersion = "v0.2.0"

// FailpointsFile lists, one name a line, the failpoints a failpoint build
// has; it sits beside the binary.
const FailpointsFile = "failpoints.txt"

// EnsureFailpoints is Ensure for an etcd server built with its gofail
// failpoints enabled, cached apart from the plain build at
// <cache>/etcd-failpoints/<version>/etcd with FailpointsFile beside it. The
// failpoints are armed at run time through the HTTP endpoint the binary
// serves when started with GOFAIL_HTTP=host:port.
func EnsureFailpoints(ctx context.Context, version, cacheDir string, progress io.Writer) (string, error) {
	if version == "" {
		version = DefaultVersion
	}
	version = NormalizeVersion(version)
	out, err := FailpointsPath(version, cacheDir)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(out)
	if isExecutable(out) {
		return out, nil
	}
	gofail, err := EnsureTool(ctx, GofailModule, GofailModule, GofailVersion, cacheDir, progress)
	if err != nil {
		return "", fmt.Errorf("the failpoint build needs gofail: %w", err)
	}
	return ensure(ctx, spec{
		label:   "etcd (failpoints enabled)",
		module:  ServerModule,
		pkg:     ServerModule,
		version: version,
		dir:     dir,
		bin:     "etcd",
		gofail:  gofail,
	}, progress)
}

// FailpointsPath returns where the failpoint build of version lives in the
// cache, whether or not it has been built yet.
func FailpointsPath(version, cacheDir string) (string, error) {
	root, err := cacheRoot(cacheDir)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "etcd-failpoints", NormalizeVersion(version), "etcd"), nil
}

// Failpoints returns the failpoints of the failpoint build at bin, sorted,
// from the FailpointsFile written when it was built.
func Failpoints(bin string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(bin), FailpointsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not a failpoint build (no %s beside it): use the failpoint build (--failpoints)", bin, FailpointsFile)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the failpoint list of %s: %w", bin, err)
	}
	var names []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, l)
		}
	}
	return names, nil
}

// failpointRE matches a gofail failpoint declaration, "// gofail: var name
// type". Labels ("// gofail: labelX:") are jump targets, not failpoints.
var failpointRE = regexp.MustCompile(`^\s*//\s*gofail:\s*var\s+([A-Za-z_][A-Za-z0-9_]*)\b`)

// enableFailpoints turns the build module at work (which has already `go
// get` the server module) into one that builds a failpoint-enabled server:
// the server module's source is copied out of the read-only module cache,
// gofail rewrites its failpoint comments into code in every package that
// has them, and the build module is pointed at the copy with a replace.
func enableFailpoints(ctx context.Context, s spec, work string, run func(args ...string) (string, error)) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("building %s %s: %s: %w", s.label, s.version, what, err)
	}
	msg, err := run("list", "-m", "-f", "{{.Dir}}", s.module)
	if err != nil {
		return fail("cannot find the downloaded source", errors.New(shortGoError(msg, err)))
	}
	src := strings.TrimSpace(msg)
	copyDir := filepath.Join(work, "server")
	if err := copyTree(src, copyDir); err != nil {
		return fail("cannot copy the source", err)
	}
	names, dirs, err := scanFailpoints(copyDir)
	if err != nil {
		return fail("cannot scan for failpoints", err)
	}
	if len(names) == 0 {
		return fail("no failpoints", fmt.Errorf("the source of %s@%s has no // gofail: comments", s.module, s.version))
	}
	if err := runGofail(ctx, s.gofail, copyDir, dirs); err != nil {
		return fail("gofail enable failed", err)
	}
	if msg, err := run("mod", "edit", "-replace", s.module+"=./server"); err != nil {
		return fail("go mod edit failed", errors.New(shortGoError(msg, err)))
	}
	if msg, err := run("get", GofailModule+"@"+GofailVersion); err != nil {
		return fail("cannot fetch the gofail runtime", errors.New(shortGoError(msg, err)))
	}
	list := filepath.Join(s.dir, FailpointsFile)
	if err := os.WriteFile(list, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return fail("cannot write the failpoint list", err)
	}
	return nil
}

// copyTree copies the regular files under src to dst, writable (the module
// cache is read-only, and gofail rewrites files in place).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o644)
	})
}

// scanFailpoints returns the failpoint names declared in the non-test Go
// files under root, sorted, and the directories that declare them.
func scanFailpoints(root string) (names, dirs []string, err error) {
	seenName, seenDir := map[string]bool{}, map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			m := failpointRE.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			if !seenName[m[1]] {
				seenName[m[1]] = true
				names = append(names, m[1])
			}
			if dir := filepath.Dir(p); !seenDir[dir] {
				seenDir[dir] = true
				dirs = append(dirs, dir)
			}
		}
		return sc.Err()
	})
	sort.Strings(names)
	sort.Strings(dirs)
	return names, dirs, err
}

func runGofail(ctx context.Context, gofail, dir string, pkgDirs []string) error {
	cmd := exec.CommandContext(ctx, gofail, append([]string{"enable"}, pkgDirs...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.Join(strings.Fields(buf.String()), " "))
	}
	// gofail exits 0 on some errors; what it generates is the proof.
	gen, _ := filepath.Glob(filepath.Join(pkgDirs[0], "*.fail.go"))
	if len(gen) == 0 {
		return fmt.Errorf("gofail generated no bindings in %s: %s", pkgDirs[0], strings.Join(strings.Fields(buf.String()), " "))
	}
	return nil
}
