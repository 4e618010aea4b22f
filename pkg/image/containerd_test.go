package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerd is a throwaway containerd with its own root, state and
// socket under a temp dir, so a test can import and run images without
// touching the machine's containerd (or needing one).
type containerd struct {
	t    *testing.T
	dir  string
	sock string
	cmd  *exec.Cmd
	log  bytes.Buffer
	// cgroup parents containers with Cgroup(id), removed on stop; by
	// default containerd would leave /<namespace> directories behind in
	// every hierarchy.
	cgroup string
}

// Cgroup is the cgroup path for a container of this containerd.
func (c *containerd) Cgroup(id string) string { return "/" + c.cgroup + "/" + id }

// startContainerd skips the test unless it runs as root on a machine with
// containerd, ctr and runc installed (Debian: apt-get install containerd
// runc).
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running images needs root (containerd and runc); run the test as root")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not in PATH (apt-get install containerd runc): %v", bin, err)
		}
	}
	// A short directory: the socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{t: t, dir: dir, sock: filepath.Join(dir, "c.sock"), cgroup: "etcd-chaos-test-" + filepath.Base(dir)}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	c.cmd.Stdout, c.cmd.Stderr = &c.log, &c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(c.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if _, err := c.ctrErr(ctx, "version"); err == nil {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("containerd did not answer on %s within a minute; its log:\n%s", c.sock, c.log.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *containerd) ctrErr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (c *containerd) ctr(ctx context.Context, args ...string) string {
	c.t.Helper()
	out, err := c.ctrErr(ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// stop kills every task, stops containerd and its shims, unmounts anything
// left under its root and removes the directory.
func (c *containerd) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := c.ctrErr(ctx, "task", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			c.ctrErr(ctx, "task", "kill", "-s", "SIGKILL", id)
			c.ctrErr(ctx, "task", "delete", "-f", id)
		}
	}
	if out, err := c.ctrErr(ctx, "containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			c.ctrErr(ctx, "containers", "delete", id)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	// Shims outlive containerd by design; ours are found by the socket
	// directory on their command line.
	killShims(c.dir)
	unmountUnder(c.dir)
	// runc removed the containers' cgroups; remove their parent. Children
	// first, in case a container's was left.
	for _, pattern := range []string{"/sys/fs/cgroup/*/" + c.cgroup + "/*", "/sys/fs/cgroup/*/" + c.cgroup} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				if err := syscall.Rmdir(d); err != nil {
					c.t.Errorf("removing cgroup %s: %v", d, err)
				}
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("removing containerd dir: %v", err)
	}
}

func killShims(dir string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, []byte(dir)) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/cmdline", &pid); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	f.Close()
	// Deepest first.
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

// TestPauseImageImportsAndRuns imports the pause image the way the
// kube-host backend does (`ctr -n k8s.io images import`), runs it with
// runc and checks it stops cleanly on SIGTERM, as the kubelet expects of a
// sandbox.
func TestPauseImageImportsAndRuns(t *testing.T) {
	cd := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b, err := BuildPause(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cd.ctr(ctx, "images", "import", b.Path)
	ls := cd.ctr(ctx, "images", "ls")
	if !strings.Contains(ls, PauseRef) {
		t.Fatalf("after import, ctr images ls does not list %s:\n%s", PauseRef, ls)
	}
	// `ctr images ls` shows the manifest digest; the config digest is the
	// image ID the CRI reports, which must be the one Write computed.
	cfg := cd.ctr(ctx, "content", "get", b.ID)
	if !strings.Contains(cfg, `"Entrypoint":["/pause"]`) {
		t.Fatalf("content %s is not the pause config: %s", b.ID, cfg)
	}

	const id = "pause-test"
	run := exec.CommandContext(ctx, "ctr", "--address", cd.sock, "--namespace", "k8s.io", "run", "--rm", "--cgroup", cd.Cgroup(id), PauseRef, id)
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	for {
		tasks, _ := cd.ctrErr(ctx, "task", "ls")
		if strings.Contains(tasks, id) && strings.Contains(tasks, "RUNNING") {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("pause exited before it was stopped: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("pause never started: %s", out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	cd.ctr(ctx, "task", "kill", "-s", "SIGTERM", id)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("pause did not exit 0 on SIGTERM: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("pause ignored SIGTERM")
	}
}

// TestEtcdImageRuns builds the etcd image, imports it and runs the etcd
// binary and the member entrypoint inside it as the image's user: both must
// be static (the image has no libc) and executable by uid EtcdUID.
func TestEtcdImageRuns(t *testing.T) {
	cd := startContainerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The default cache: the etcd binary is built once per version.
	b, err := BuildEtcd(ctx, "", "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cd.ctr(ctx, "images", "import", b.Path)
	run := func(id string, args ...string) string {
		all := append([]string{"run", "--rm", "--cgroup", cd.Cgroup(id), b.Ref, id}, args...)
		out, err := cd.ctrErr(ctx, all...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := run("etcd-version", EtcdBinDir+"/etcd", "--version"); !strings.Contains(out, "etcd Version: 3.6.4") {
		t.Errorf("etcd --version in the image: %s", out)
	}
	// Without the chart's environment the entrypoint must fail with one
	// line naming what is missing, not hang.
	out, err := cd.ctrErr(ctx, "run", "--rm", "--cgroup", cd.Cgroup("member"), b.Ref, "member")
	if err == nil || !strings.Contains(out, "missing environment: ETCD_NAME") {
		t.Errorf("entrypoint without environment: err %v, output %s", err, out)
	}
}
