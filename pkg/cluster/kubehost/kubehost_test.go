package kubehost

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdchart"
	"github.com/etcd-chaos/etcd-chaos/pkg/image"
	"github.com/etcd-chaos/etcd-chaos/pkg/k8sbin"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireHost skips unless this host can run kube-host and its Kubernetes
// binaries are already built (`make kube-host-deps`; `make test` builds
// them before any test starts): a test must not pay for a cold build.
func requireHost(t *testing.T) {
	t.Helper()
	requireOptIn(t)
	if err := Preflight(NewProvider().cniBinDirs); err != nil {
		t.Skip(err)
	}
	if !k8sbin.Built(k8sbin.DefaultVersion, "") {
		t.Skipf("Kubernetes %s is not built yet: run `make kube-host-deps`", k8sbin.DefaultVersion)
	}
}

// optInEnv gates the tests that run pod sandboxes: they need root, change
// the host's network and cgroups, and (the boot test) a Kubernetes build, so
// they stay out of `make test`. Set ETCD_CHAOS_KUBE_HOST_TESTS=1 to run them.
// The sandbox test passes on the project's machines (Debian bookworm,
// runc 1.1.5, containerd 1.6.20, cgroup v1) since the containerd config
// sets restrict_oom_score_adj (see writeContainerdConfig); a full boot has
// not been run there yet.
const optInEnv = "ETCD_CHAOS_KUBE_HOST_TESTS"

func requireOptIn(t *testing.T) {
	t.Helper()
	if os.Getenv(optInEnv) != "1" {
		t.Skipf("set %s=1 to run pod sandboxes on this host (see the comment on optInEnv)", optInEnv)
	}
}

// hostView is what the host looks like from outside: the things a
// teardown could leave behind.
type hostView struct {
	links, netns, chains, mounts, procs, cgroups []string
}

var ourChain = regexp.MustCompile(`^:((?:KUBE|CNI)-\S+)`)

func viewHost(t *testing.T, dir string) hostView {
	t.Helper()
	var v hostView
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			v.links = append(v.links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
		}
	}
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		v.netns = append(v.netns, e.Name())
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(tool).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", tool, err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if m := ourChain.FindStringSubmatch(l); m != nil {
				v.chains = append(v.chains, tool+":"+m[1])
			}
		}
	}
	if dir != "" {
		v.mounts, _ = mountsUnder(dir)
		pids, _ := pidsMentioning(dir)
		for _, p := range pids {
			v.procs = append(v.procs, strconv.Itoa(p))
		}
	}
	mps, _ := cgroupMounts()
	for _, mp := range mps {
		if _, err := os.Stat(filepath.Join(mp, cgroupRootName)); err == nil {
			v.cgroups = append(v.cgroups, filepath.Join(mp, cgroupRootName))
		}
	}
	return v
}

func added(before, after []string) []string {
	var out []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			out = append(out, a)
		}
	}
	return out
}

func assertClean(t *testing.T, before hostView, dir string) {
	t.Helper()
	after := viewHost(t, dir)
	for what, extra := range map[string][]string{
		"network interfaces":   added(before.links, after.links),
		"network namespaces":   added(before.netns, after.netns),
		"iptables chains":      added(before.chains, after.chains),
		"mounts under the dir": after.mounts,
		"processes":            after.procs,
		"cgroups":              after.cgroups,
	} {
		if len(extra) > 0 {
			t.Errorf("teardown left %s behind: %v", what, extra)
		}
	}
	if dir != "" {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("teardown left %s behind (%v)", dir, err)
		}
	}
}

// TestBootRunsAPodAndTeardownLeavesNothing boots the cluster, runs a pod
// (a sandbox with its netns, veth, mounts and cgroups), finds its
// container through the node runner as faults do, then tears down and
// checks the host is as it was. DNS is proven by the chart's members
// finding each other in the suites' smoke spec.
func TestBootRunsAPodAndTeardownLeavesNothing(t *testing.T) {
	requireHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	before := viewHost(t, "")
	p := NewProvider(WithLogDir(t.TempDir()), WithChartVersions(etcdchart.Latest().Version), WithLogf(t.Logf), WithProgress(os.Stderr))
	c, err := p.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := c.dir
	defer c.Close(context.Background())

	cs, err := c.clientset()
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: image.PauseRef, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.waitFor(ctx, "pod default/pause to run", func() bool {
		got, err := cs.CoreV1().Pods("default").Get(ctx, "pause", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning
	}); err != nil {
		t.Fatal(err)
	}
	during := viewHost(t, dir)
	if len(added(before.netns, during.netns)) == 0 || len(during.mounts) == 0 || !slices.Contains(during.links, Bridge) {
		t.Fatalf("a running pod shows no netns, mounts or bridge %s (%+v): the leftover checks below would prove nothing", Bridge, during)
	}
	// The node runner sees the pod's container the way faults look for it.
	out, err := (&NodeRunner{sock: c.sock, crictl: c.bins.Crictl}).Run(ctx, NodeName, "crictl", "ps", "-q", "--label", "io.kubernetes.pod.name=pause")
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Errorf("crictl ps through the node runner: %v: %q", err, out)
	}

	if err := c.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	assertClean(t, before, dir)
}

// TestInterruptedStartLeavesNothing cancels Create mid-boot, as Ctrl-C
// does, and checks it returns promptly having torn down what it started.
func TestInterruptedStartLeavesNothing(t *testing.T) {
	requireHost(t)
	before := viewHost(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	// Past the build checks and into the boot: the bridge and the first
	// processes exist by then (a warm boot takes 7-8 s here).
	go func() { time.Sleep(3 * time.Second); cancel() }()
	c, err := NewProvider(WithChartVersions(etcdchart.Latest().Version)).Create(ctx)
	if err == nil {
		defer c.Close(context.Background())
		t.Skip("the cluster booted within 3s, before the interrupt; nothing to check")
	}
	if !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("err = %v; want it to say the start was interrupted", err)
	}
	leftDirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "kh-*"))
	assertClean(t, before, "")
	if len(leftDirs) > 0 {
		t.Errorf("temp dirs left behind: %v", leftDirs)
	}
}

// TestContainerdConfigLoadsCRI starts containerd alone with the config
// Create writes and checks that the CRI plugin, which the kubelet talks to,
// loaded with it (a config error disables the plugin, and containerd
// itself keeps running). It needs root and containerd, not Kubernetes.
func TestContainerdConfigLoadsCRI(t *testing.T) {
	if err := Preflight(NewProvider().cniBinDirs); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "kh-")
	if err != nil {
		t.Fatal(err)
	}
	before, err := snapshotHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: dir, sock: filepath.Join(dir, "c.sock"), logDir: filepath.Join(dir, "logs"), cniBinDir: cniBinDir(NewProvider().cniBinDirs), logf: t.Logf, before: before}
	defer func() {
		if err := c.teardown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.writeCNIConfig(); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.writeContainerdConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.start("containerd", "containerd", "--config", cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var plugins string
	if err := c.waitFor(ctx, "containerd to list its plugins", func() bool {
		out, err := run(ctx, "ctr", "--address", c.sock, "plugins", "ls")
		plugins = string(out)
		return err == nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(plugins, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
			if f[len(f)-1] != "ok" {
				log, _ := os.ReadFile(filepath.Join(c.logDir, "containerd.log"))
				t.Fatalf("the CRI plugin did not load (%s); containerd's log:\n%s", l, log)
			}
			return
		}
	}
	t.Fatalf("ctr plugins ls does not list the CRI plugin:\n%s", plugins)
}

func TestSplitRuleKeepsQuotedComments(t *testing.T) {
	got := splitRule(`-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD`)
	want := []string{"-A", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"}
	if !slices.Equal(got, want) {
		t.Errorf("splitRule = %q, want %q", got, want)
	}
	if got := splitRule(`-A X --comment "" -j Y`); len(got) != 6 || got[3] != "" {
		t.Errorf("an empty comment must stay one (empty) argument: %q", got)
	}
}

// TestPodSandboxTeardownLeavesNothing runs the runtime half of the cluster
// (bridge, containerd with the CRI plugin, CNI) and one pod sandbox made
// with crictl, as the kubelet would, with its netns, veth, shm mount and
// cgroup; then tears down and checks the host is as it was. It needs root,
// containerd and crictl, not the Kubernetes build.
func TestPodSandboxTeardownLeavesNothing(t *testing.T) {
	requireOptIn(t)
	if err := Preflight(NewProvider().cniBinDirs); err != nil {
		t.Skip(err)
	}
	crictl, err := etcdbin.EnsureTool(context.Background(), k8sbin.CRIToolsModule, k8sbin.CrictlPackage, k8sbin.CRIToolsVersion, "", nil)
	if err != nil {
		t.Skipf("no crictl (make kube-host-deps builds it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pause, err := image.BuildPause(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	before := viewHost(t, "")
	snap, err := snapshotHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkFree(); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "kh-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: dir, sock: filepath.Join(dir, "c.sock"), logDir: filepath.Join(dir, "logs"),
		cniBinDir: cniBinDir(NewProvider().cniBinDirs), logf: t.Logf, before: snap}
	c.bins.Crictl = crictl
	closed := false
	defer func() {
		if !closed {
			c.teardown(context.Background())
		}
	}()
	if err := c.startRuntime(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.importImages(ctx, []string{pause.Path}); err != nil {
		t.Fatal(err)
	}
	podCfg := filepath.Join(dir, "pod.json")
	if err := os.WriteFile(podCfg, []byte(`{"metadata": {"name": "sandbox", "namespace": "default", "uid": "kh-test-1"},
 "linux": {"cgroup_parent": "/`+cgroupRootName+`/kh-test-1"}, "log_directory": "`+dir+`/pod-logs"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := (&NodeRunner{sock: c.sock, crictl: crictl}).Run(ctx, NodeName, "crictl", "--timeout", "60s", "runp", podCfg)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.logDir, "containerd.log"))
		t.Fatalf("crictl runp: %v: %s\ncontainerd log:\n%s", err, out, log)
	}
	during := viewHost(t, dir)
	if len(added(before.netns, during.netns)) == 0 || len(during.mounts) == 0 || len(added(before.links, during.links)) < 2 {
		t.Fatalf("a running sandbox shows no netns, mounts, bridge or veth (%+v): the leftover checks below would prove nothing", during)
	}
	closed = true
	if err := c.teardown(ctx); err != nil {
		t.Errorf("teardown: %v", err)
	}
	assertClean(t, before, dir)
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:9 master:2 - cgroup cgroup rw,memory
31 22 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
40 22 0:50 / /tmp/kh-1/with\040space rw - tmpfs shm rw
broken line
`
	got, err := parseMountinfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{{"/", "ext4"}, {"/sys/fs/cgroup/memory", "cgroup"}, {"/sys/fs/cgroup/unified", "cgroup2"}, {"/tmp/kh-1/with space", "tmpfs"}}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountinfo = %q, want %q", got, want)
	}
}

// The restart cap needs a feature gate that exists from Kubernetes 1.32;
// an older kubelet refuses an unknown gate, so it must get nothing.
func TestCrashLoopBackOffOnlyWhereSupported(t *testing.T) {
	for v, want := range map[string]bool{"v1.34.4": true, "v1.32.0": true, "v1.31.9": false, "v2.0.0": false, "dev": false} {
		got := crashLoopBackOff(v)
		if (got != "") != want {
			t.Errorf("crashLoopBackOff(%q) = %q, want set: %v", v, got, want)
		}
		if want && !strings.Contains(got, "maxContainerRestartPeriod: "+restartCap) {
			t.Errorf("crashLoopBackOff(%q) = %q, no cap", v, got)
		}
	}
}
