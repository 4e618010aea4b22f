// Package k8sbin provides the Kubernetes binaries the kube-host backend
// runs (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy, plus CoreDNS and crictl), built once from the Go module proxy
// and cached beside pkg/etcdbin's etcd binaries.
//
// k8s.io/kubernetes cannot be built with `go install pkg@version`: its
// go.mod requires the k8s.io/* staging modules at v0.0.0 and replaces them
// with ./staging directories that a module download does not resolve. So the
// build runs in a throwaway wrapper module whose go.mod replaces every
// staging module with its published release (k8s.io/api v0.34.4 for
// Kubernetes v1.34.4), and compiles all components in one `go build`, which
// shares the compilation of the packages they have in common.
//
// The binaries live at <cache>/kubernetes/<version>/<component>, with
// <cache> as in pkg/etcdbin. Builds are serialised per version with a file
// lock, print one "building once" line, and a failed or cancelled build
// leaves no version directory behind.
package k8sbin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// DefaultVersion is the Kubernetes the kube-host backend runs. 1.34 is the
// newest release that supports both things Debian bookworm machines have:
// containerd 1.6 (1.36 requires containerd 2) and a cgroup v1 hierarchy
// without opting out of the kubelet's refusal to run on it.
const DefaultVersion = "v1.34.4"

// Module is the module the components are built from.
const Module = "k8s.io/kubernetes"

// Components are the Kubernetes commands built, in one go build.
var Components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// CoreDNS and crictl have ordinary go.mod files, so pkg/etcdbin builds them.
const (
	CoreDNSModule  = "github.com/coredns/coredns"
	CoreDNSVersion = "v1.12.4"
	CRIToolsModule = "sigs.k8s.io/cri-tools"
	CrictlPackage  = "sigs.k8s.io/cri-tools/cmd/crictl"
	// CRIToolsVersion matches DefaultVersion's minor, as cri-tools asks.
	CRIToolsVersion = "v1.34.0"
)

// Binaries are the paths of everything the kube-host backend runs.
type Binaries struct {
	// Dir holds the Components.
	Dir     string
	CoreDNS string
	Crictl  string
}

// Path is the path of a component ("kubelet").
func (b Binaries) Path(component string) string { return filepath.Join(b.Dir, component) }

// Dir is where the components of version live, built or not.
func Dir(version, cacheDir string) (string, error) {
	root := cacheDir
	if root == "" {
		var err error
		if root, err = etcdbin.DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(root, "kubernetes", etcdbin.NormalizeVersion(version)), nil
}

// EnsureAll returns every binary of Kubernetes version ("" means
// DefaultVersion), building what is missing. The first build takes minutes
// (about 7 on 2 idle cores) and prints one line per build to progress.
func EnsureAll(ctx context.Context, version, cacheDir string, progress io.Writer) (Binaries, error) {
	dir, err := Ensure(ctx, version, cacheDir, progress)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir}
	if b.CoreDNS, err = etcdbin.EnsureTool(ctx, CoreDNSModule, CoreDNSModule, CoreDNSVersion, cacheDir, progress); err != nil {
		return Binaries{}, fmt.Errorf("coredns: %w", err)
	}
	if b.Crictl, err = etcdbin.EnsureTool(ctx, CRIToolsModule, CrictlPackage, CRIToolsVersion, cacheDir, progress); err != nil {
		return Binaries{}, fmt.Errorf("crictl: %w", err)
	}
	return b, nil
}

// Ensure returns the directory holding every Component of version, building
// them first if any is missing.
func Ensure(ctx context.Context, version, cacheDir string, progress io.Writer) (string, error) {
	if version == "" {
		version = DefaultVersion
	}
	version = etcdbin.NormalizeVersion(version)
	if !versionRE.MatchString(version) {
		return "", fmt.Errorf("kubernetes version %q is not a release such as %s", version, DefaultVersion)
	}
	dir, err := Dir(version, cacheDir)
	if err != nil {
		return "", err
	}
	if complete(dir) {
		return dir, nil
	}
	unlock, err := etcdbin.LockDir(ctx, dir, "Kubernetes")
	if err != nil {
		return "", err
	}
	defer func() {
		// A failed build leaves no version dir behind (lock file
		// included, so a waiter retries on a fresh one; see lock).
		if err != nil && !complete(dir) {
			os.RemoveAll(dir)
		}
		unlock()
	}()
	if complete(dir) {
		return dir, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "building Kubernetes %s (%s) from the Go module proxy (once; several minutes; cached in %s)...\n", version, strings.Join(Components, ", "), dir)
	}
	if err = build(ctx, version, dir); err != nil {
		return "", err
	}
	return dir, nil
}

var versionRE = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+$`)

func complete(dir string) bool {
	for _, c := range Components {
		st, err := os.Stat(filepath.Join(dir, c))
		if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// goCommand is the go tool; a test replaces it with a fake.
var goCommand = "go"

func build(ctx context.Context, version, dir string) error {
	gobin, err := exec.LookPath(goCommand)
	if err != nil {
		if _, e := os.Stat("/usr/local/go/bin/go"); e != nil || goCommand != "go" {
			return errors.New("the go command is not in PATH; k8sbin builds Kubernetes with it (install Go)")
		}
		gobin = "/usr/local/go/bin/go"
	}
	// Stale build dirs are from a build that was SIGKILLed: we hold the lock.
	if stale, _ := filepath.Glob(filepath.Join(dir, "build-*")); len(stale) > 0 {
		for _, d := range stale {
			os.RemoveAll(d)
		}
	}
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return fmt.Errorf("cannot create build dir in %s: %w", dir, err)
	}
	defer os.RemoveAll(work)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, gobin, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GOWORK=off", "GO111MODULE=on", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		if ctx.Err() != nil {
			return buf.String(), fmt.Errorf("building Kubernetes %s: %w", version, ctx.Err())
		}
		return buf.String(), err
	}
	fail := func(what, msg string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("building Kubernetes %s: %w", version, ctx.Err())
		}
		return fmt.Errorf("building Kubernetes %s: %s failed: %s", version, what, oneLine(msg, err))
	}

	// The staging modules are listed in k8s.io/kubernetes's own go.mod.
	msg, err := run("mod", "download", "-json", Module+"@"+version)
	if err != nil {
		if strings.Contains(msg, "not found") || strings.Contains(msg, "unknown revision") || strings.Contains(msg, "invalid version") {
			return fmt.Errorf("kubernetes %s is not on the Go module proxy (%s): %s", version, Module, oneLine(msg, err))
		}
		return fail("go mod download", msg, err)
	}
	gomod, err := downloadedGoMod(msg)
	if err != nil {
		return fmt.Errorf("building Kubernetes %s: %w", version, err)
	}
	staging, err := stagingModules(gomod)
	if err != nil {
		return fmt.Errorf("building Kubernetes %s: %w", version, err)
	}
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(wrapperGoMod(version, staging)), 0o644); err != nil {
		return err
	}
	if msg, err := run("get", Module+"@"+version); err != nil {
		return fail("go get "+Module+"@"+version, msg, err)
	}
	out := filepath.Join(work, "bin")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-o", out + string(filepath.Separator)}
	for _, c := range Components {
		args = append(args, Module+"/cmd/"+c)
	}
	if msg, err := run(args...); err != nil {
		return fail("go build", msg, err)
	}
	// Each rename is atomic and complete() needs all of them, so a reader
	// never uses a partial set.
	for _, c := range Components {
		if err := os.Rename(filepath.Join(out, c), filepath.Join(dir, c)); err != nil {
			return fmt.Errorf("cannot install %s into the cache: %w", c, err)
		}
	}
	return nil
}

func downloadedGoMod(jsonOut string) (string, error) {
	m := regexp.MustCompile(`"GoMod":\s*"([^"]+)"`).FindStringSubmatch(jsonOut)
	if m == nil {
		return "", errors.New("go mod download printed no GoMod path")
	}
	return m[1], nil
}

var stagingRE = regexp.MustCompile(`^\s*(?:replace\s+)?(k8s\.io/[A-Za-z0-9._-]+)\s+=>\s+\./staging/`)

// stagingModules lists the modules k8s.io/kubernetes's go.mod (at path)
// replaces with ./staging directories.
func stagingModules(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mods []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := stagingRE.FindStringSubmatch(sc.Text()); m != nil {
			mods = append(mods, m[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s replaces no staging modules; is it k8s.io/kubernetes's go.mod?", path)
	}
	return mods, nil
}

// wrapperGoMod is the go.mod of the build module: staging module k8s.io/x
// is published as k8s.io/x v0.<minor>.<patch> for Kubernetes v1.<minor>.<patch>.
func wrapperGoMod(version string, staging []string) string {
	v0 := "v0." + strings.TrimPrefix(version, "v1.")
	var b strings.Builder
	b.WriteString("module etcdchaos.local/k8sbuild\n\ngo 1.24.0\n\nrequire " + Module + " " + version + "\n\nreplace (\n")
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, v0)
	}
	b.WriteString(")\n")
	return b.String()
}

// oneLine condenses go's output to one line, without download chatter.
func oneLine(msg string, err error) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "go: downloading") || strings.HasPrefix(l, "go: added") || strings.HasPrefix(l, "go: finding") {
			continue
		}
		parts = append(parts, strings.TrimPrefix(l, "go: "))
	}
	s := strings.Join(parts, "; ")
	if s == "" {
		s = err.Error()
	}
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// Built reports whether every Component of version is in the cache, for
// callers (tests) that must not start a cold build.
func Built(version, cacheDir string) bool {
	if version == "" {
		version = DefaultVersion
	}
	dir, err := Dir(version, cacheDir)
	return err == nil && complete(dir)
}
