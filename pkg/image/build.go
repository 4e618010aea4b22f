package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// Image names. They live under "localhost/", a registry that does not
// exist, so nothing ever tries to pull them: with imagePullPolicy
// IfNotPresent (or Never) the kubelet finds the imported copy.
const (
	// PauseRef is the sandbox image; containerd's CRI plugin must be
	// configured with sandbox_image = PauseRef.
	PauseRef = "localhost/etcd-chaos/pause:1.0"
	// EtcdRepository is the etcd image's name without tag; the tag is the
	// etcd version with its "v" ("v3.6.4"), see EtcdRef.
	EtcdRepository = "localhost/etcd-chaos/etcd"
)

// Paths inside the etcd image.
const (
	// EtcdBinDir holds etcd, etcdctl and etcd-member.
	EtcdBinDir = "/usr/local/bin"
	// MemberBin is the entrypoint: it prepares the member, then execs etcd.
	MemberBin = EtcdBinDir + "/etcd-member"
	// EtcdUID is the unprivileged user the image runs as by default, the
	// same uid as the Bitnami image's.
	EtcdUID = 1001
)

// EtcdRef is the etcd image reference for an etcd version ("3.6.4" or
// "v3.6.4" -> "localhost/etcd-chaos/etcd:v3.6.4").
func EtcdRef(version string) string {
	return EtcdRepository + ":" + etcdbin.NormalizeVersion(version)
}

// Built is an image tarball in the cache, ready for
// `ctr -n k8s.io images import <Path>`.
type Built struct {
	Written
	Path string
}

// Dir is where the builders keep tarballs: <cache>/images, with <cache>
// as in pkg/etcdbin ("" means its default).
func Dir(cacheDir string) (string, error) {
	root := cacheDir
	if root == "" {
		d, err := etcdbin.DefaultCacheDir()
		if err != nil {
			return "", err
		}
		root = d
	}
	return filepath.Join(root, "images"), nil
}

// tarName is the cache file name of a reference:
// "localhost/etcd-chaos/etcd:v3.6.4" -> "etcd_v3.6.4.tar".
func tarName(ref string) string {
	name, tag, _ := splitRef(ref)
	return filepath.Base(name) + "_" + tag + ".tar"
}

// BuildPause builds the pause image (cmd/pause, static) into the cache and
// returns its tarball. Rebuilding is cheap (the Go build cache keeps the
// binary) and gives the same bytes, so it is done on every call rather than
// trusting a tarball an older source produced.
func BuildPause(ctx context.Context, cacheDir string) (Built, error) {
	dir, err := Dir(cacheDir)
	if err != nil {
		return Built{}, err
	}
	work, err := workDir(dir)
	if err != nil {
		return Built{}, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "pause")
	if err := goBuild(ctx, "./cmd/pause", bin); err != nil {
		return Built{}, err
	}
	img := Image{
		Ref:   PauseRef,
		Files: []File{{Path: "/pause", Mode: 0o755, Source: bin}},
		Config: Config{
			Entrypoint: []string{"/pause"},
			User:       "65535:65535",
			Labels:     map[string]string{"io.etcd-chaos.image": "pause"},
		},
	}
	return writeCached(img, dir)
}

// BuildEtcd builds the etcd image for an etcd version ("" means
// etcdbin.DefaultVersion): the etcd server from pkg/etcdbin's cache (built
// from the Go module proxy the first time, which prints one line to
// progress and takes minutes) and the member entrypoint cmd/etcd-member,
// which behaves like the Bitnami image's scripts as far as a client can
// tell and then execs etcd. The image runs as uid EtcdUID, like Bitnami's.
func BuildEtcd(ctx context.Context, version, cacheDir string, progress io.Writer) (Built, error) {
	if version == "" {
		version = etcdbin.DefaultVersion
	}
	version = etcdbin.NormalizeVersion(version)
	etcd, err := etcdbin.Ensure(ctx, version, cacheDir, progress)
	if err != nil {
		return Built{}, err
	}
	dir, err := Dir(cacheDir)
	if err != nil {
		return Built{}, err
	}
	work, err := workDir(dir)
	if err != nil {
		return Built{}, err
	}
	defer os.RemoveAll(work)
	member := filepath.Join(work, "etcd-member")
	if err := goBuild(ctx, "./cmd/etcd-member", member); err != nil {
		return Built{}, err
	}
	owner := fmt.Sprintf("%d:%d", EtcdUID, EtcdUID)
	img := Image{
		Ref: EtcdRef(version),
		Files: []File{
			{Path: EtcdBinDir + "/etcd", Mode: 0o755, Source: etcd},
			{Path: MemberBin, Mode: 0o755, Source: member},
			// Go's resolver and user lookups read these; the kubelet
			// mounts its own /etc/hosts and /etc/resolv.conf over them.
			{Path: "/etc/passwd", Data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\netcd:x:%d:%d:etcd:/tmp:/sbin/nologin\n", EtcdUID, EtcdUID))},
			{Path: "/etc/group", Data: []byte(fmt.Sprintf("root:x:0:\netcd:x:%d:\n", EtcdUID))},
			{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n")},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			// The chart mounts the data volume here, as Bitnami's does.
			{Path: "/bitnami/etcd", Mode: fs.ModeDir | 0o775, UID: EtcdUID, GID: EtcdUID},
		},
		Config: Config{
			Entrypoint: []string{MemberBin},
			Cmd:        []string{"run"},
			Env:        []string{"PATH=" + EtcdBinDir + ":/usr/bin:/bin"},
			WorkingDir: "/tmp",
			User:       owner,
			Labels: map[string]string{
				"io.etcd-chaos.image": "etcd",
				"io.etcd-chaos.etcd":  version,
			},
		},
	}
	return writeCached(img, dir)
}

func writeCached(img Image, dir string) (Built, error) {
	path := filepath.Join(dir, tarName(img.Ref))
	w, err := img.WriteFile(path)
	if err != nil {
		return Built{}, err
	}
	return Built{Written: w, Path: path}, nil
}

func workDir(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image cache %s: %w (set %s to a writable directory)", dir, err, etcdbin.CacheEnv)
	}
	w, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("image cache %s: %w", dir, err)
	}
	return w, nil
}

// goBuild compiles one of this module's commands (pkg is "./cmd/...")
// statically: the images have no libc.
func goBuild(ctx context.Context, pkg, out string) error {
	src, err := sourceDir()
	if err != nil {
		return err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building %s for an image needs the go command in PATH: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("building %s: %w", pkg, ctx.Err())
		}
		return fmt.Errorf("building %s in %s: %v: %s", pkg, src, err, strings.TrimSpace(buf.String()))
	}
	return nil
}

// module is this repository's module path; the in-image programs are built
// from its source.
const module = "github.com/etcd-chaos/etcd-chaos"

// SourceDirEnv names the etcd-chaos source tree when the working directory
// is not inside it.
const SourceDirEnv = "ETCD_CHAOS_SOURCE"

// sourceDir finds the etcd-chaos source tree: $ETCD_CHAOS_SOURCE, else the
// first ancestor of the working directory whose go.mod declares the
// module, so that tests and the CLI work from anywhere in the repository.
func sourceDir() (string, error) {
	if d := os.Getenv(SourceDirEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declares(b, module) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("the images are built from the etcd-chaos source, which is not above %s: run from the repository or set %s", wd, SourceDirEnv)
}

func declares(gomod []byte, mod string) bool {
	for _, l := range strings.Split(string(gomod), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == mod {
			return true
		}
	}
	return false
}
