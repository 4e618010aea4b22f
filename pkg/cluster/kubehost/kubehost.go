// Package kubehost stands up a single-node Kubernetes on this host, with
// no Docker and no registry, and hands back a kube.Provider whose faults
// run directly on the host: the node is the host itself.
//
// Everything lives under one temp dir and is started by the Provider:
// containerd (own root, state and socket, CRI plugin, runc, CNI bridge), a
// PKI generated in Go, an etcd from pkg/etcdbin, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet and kube-proxy built by
// pkg/k8sbin, and CoreDNS on the bridge address so that headless-Service
// names resolve in pods. Images are imported from pkg/image tarballs; the
// chart is charts/etcd (pkg/etcdchart). It is pkg/cluster/kind's analogue
// for a machine that has containerd from Debian instead of Docker.
//
// Close leaves nothing behind: processes, pod sandboxes, mounts, network
// namespaces, the bridge, iptables chains, cgroups and the temp dir all go.
// It needs root.
package kubehost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdchart"
	"github.com/etcd-chaos/etcd-chaos/pkg/image"
	"github.com/etcd-chaos/etcd-chaos/pkg/k8sbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Provider boots kube-host clusters.
type Provider struct {
	version    string
	cacheDir   string
	logDir     string
	keep       bool
	chartVers  []string
	progress   io.Writer
	logf       func(string, ...any)
	bootWait   time.Duration
	cniBinDirs []string
}

// Option configures a Provider.
type Option func(*Provider)

// WithLogDir receives one log file per process (default: inside the temp
// dir, deleted on Close).
func WithLogDir(d string) Option { return func(p *Provider) { p.logDir = d } }

// WithChartVersions builds the etcd images of these charts/etcd versions
// (default: every version, so that upgrades find their image).
func WithChartVersions(v ...string) Option { return func(p *Provider) { p.chartVers = v } }

// WithKeep leaves releases in place on Close (the cluster itself always
// goes: it cannot outlive the process that owns its children).
func WithKeep(keep bool) Option { return func(p *Provider) { p.keep = keep } }

// WithProgress receives the one-line "building once" messages.
func WithProgress(w io.Writer) Option { return func(p *Provider) { p.progress = w } }

// WithLogf receives progress lines.
func WithLogf(f func(string, ...any)) Option { return func(p *Provider) { p.logf = f } }

// NewProvider returns a Provider.
func NewProvider(opts ...Option) *Provider {
	p := &Provider{
		version:    k8sbin.DefaultVersion,
		logf:       func(string, ...any) {},
		bootWait:   4 * time.Minute,
		cniBinDirs: []string{"/usr/lib/cni", "/opt/cni/bin"},
	}
	for _, o := range opts {
		o(p)
	}
	if p.progress == nil {
		p.progress = io.Discard
	}
	return p
}

// Cluster is a running kube-host cluster. Its embedded kube.Provider
// installs charts into it with faults run on the host.
type Cluster struct {
	*kube.Provider
	// Kubeconfig is an admin kubeconfig for the cluster.
	Kubeconfig string
	// Chart is what charts/etcd needs here: its packaged repository and
	// the --set values that select the imported images.
	Chart etcdchart.Prepared

	dir       string
	logDir    string
	sock      string
	cniBinDir string
	bins      k8sbin.Binaries
	version   string // Kubernetes version, for settings that depend on it
	pki       *pki.CA
	logf      func(string, ...any)
	unlock    func()
	before    hostState

	mu    sync.Mutex
	procs []*proc

	// stopVolumes stops the volume provisioner loop; volumesDone closes
	// when it has.
	stopVolumes context.CancelFunc
	volumesDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Create boots the cluster and waits until its node is Ready and DNS
// answers. Binaries and images are built first if needed (minutes the
// first time, printed to progress). A failure is one line naming what is
// missing; whatever was started is torn down before Create returns, also
// when ctx ends.
func (p *Provider) Create(ctx context.Context) (c *Cluster, err error) {
	if err := Preflight(p.cniBinDirs); err != nil {
		return nil, err
	}
	bins, err := k8sbin.EnsureAll(ctx, p.version, p.cacheDir, p.progress)
	if err != nil {
		return nil, err
	}
	etcd, err := etcdbin.Ensure(ctx, "", p.cacheDir, p.progress)
	if err != nil {
		return nil, err
	}
	pause, err := image.BuildPause(ctx, p.cacheDir)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	prep, err := etcdchart.Prepare(ctx, p.cacheDir, p.progress, p.chartVers...)
	if err != nil {
		return nil, err
	}
	unlock, err := hostLock(ctx, p.logf)
	if err != nil {
		return nil, err
	}
	before, err := snapshotHost(ctx)
	if err != nil {
		unlock()
		return nil, err
	}
	if err := checkFree(); err != nil {
		unlock()
		return nil, err
	}
	// A short path: unix socket paths must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "kh-")
	if err != nil {
		unlock()
		return nil, err
	}
	c = &Cluster{dir: dir, sock: filepath.Join(dir, "c.sock"), bins: bins, version: p.version, logf: p.logf, unlock: unlock, before: before, Chart: prep}
	c.cniBinDir = cniBinDir(p.cniBinDirs)
	c.logDir = p.logDir
	if c.logDir == "" {
		c.logDir = filepath.Join(dir, "logs")
	}
	defer func() {
		if err != nil {
			if cerr := c.Close(context.WithoutCancel(ctx)); cerr != nil {
				p.logf("kube-host: teardown after a failed start: %v", cerr)
			}
			c = nil
		}
	}()
	bootCtx, cancel := context.WithTimeout(ctx, p.bootWait)
	defer cancel()
	start := time.Now()
	if err := c.boot(bootCtx, etcd, append([]string{pause.Path}, prep.Images...)); err != nil {
		if ctx.Err() != nil {
			return c, fmt.Errorf("kube-host start interrupted: %w", ctx.Err())
		}
		return c, fmt.Errorf("kube-host: %w (process logs in %s)", err, c.logDir)
	}
	p.logf("kube-host: node %s Ready in %s (Kubernetes %s; logs in %s)", NodeName, time.Since(start).Round(100*time.Millisecond), p.version, c.logDir)
	crictlConfig := filepath.Join(c.dir, "crictl.yaml")
	if err := writeCrictlConfig(crictlConfig, c.sock); err != nil {
		return c, fmt.Errorf("kube-host: crictl config: %w", err)
	}
	c.Provider = kube.NewProvider(
		kube.WithKubeconfig(c.Kubeconfig),
		kube.WithNodeRunner(&NodeRunner{sock: c.sock, crictl: bins.Crictl, config: crictlConfig}),
		kube.WithBackendName("kube-host"),
		kube.WithKeep(p.keep),
		kube.WithLogf(p.logf),
	)
	return c, nil
}

// Preflight says, in one line, what the host lacks to run kube-host.
func Preflight(cniBinDirs []string) error {
	if os.Geteuid() != 0 {
		return errors.New("kube-host needs root (containerd, kubelet and iptables do): run as root")
	}
	for _, t := range []struct{ bin, pkg string }{
		{"containerd", "containerd"}, {"containerd-shim-runc-v2", "containerd"}, {"ctr", "containerd"},
		{"runc", "runc"}, {"iptables", "iptables"}, {"ip", "iproute2"}, {"nsenter", "util-linux"},
		{"conntrack", "conntrack"}, {"mount", "mount"},
	} {
		if _, err := exec.LookPath(t.bin); err != nil {
			return fmt.Errorf("kube-host needs %s, which is not installed: run `make kube-host-deps` (or apt-get install %s)", t.bin, t.pkg)
		}
	}
	if cniBinDir(cniBinDirs) == "" {
		return fmt.Errorf("kube-host needs the CNI bridge and host-local plugins in %s: run `make kube-host-deps` (or apt-get install containernetworking-plugins)", strings.Join(cniBinDirs, " or "))
	}
	if _, err := os.Stat("/proc/sys/net/ipv4/ip_forward"); err != nil {
		return errors.New("kube-host needs an IPv4 network stack (/proc/sys/net/ipv4 is missing)")
	}
	return nil
}

func cniBinDir(dirs []string) string {
	for _, d := range dirs {
		if st, err := os.Stat(filepath.Join(d, "bridge")); err == nil && !st.IsDir() {
			if _, err := os.Stat(filepath.Join(d, "host-local")); err == nil {
				return d
			}
		}
	}
	return ""
}

// checkFree reports a port or the bridge already in use, before anything
// starts, as one line.
func checkFree() error {
	if _, err := net.InterfaceByName(Bridge); err == nil {
		return fmt.Errorf("network interface %s already exists (left by a kube-host run that was killed?): delete it with `ip link del %s`", Bridge, Bridge)
	}
	for _, a := range []string{"127.0.0.1:10248", "127.0.0.1:10249", "127.0.0.1:10256", "127.0.0.1:10257", "127.0.0.1:10259"} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("port %s is in use (another Kubernetes on this host?): stop what listens there (ss -ltnp | grep %s)", a, a[strings.LastIndex(a, ":")+1:])
		}
		l.Close()
	}
	return nil
}

func (c *Cluster) boot(ctx context.Context, etcd string, images []string) error {
	if err := c.startRuntime(ctx); err != nil {
		return err
	}

	ca, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}
	c.pki = ca
	if err := ca.Issue("apiserver", "kube-apiserver", nil, []string{HostIP, "127.0.0.1", kubernetesSvc, "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + clusterDomain}); err != nil {
		return err
	}
	if err := ca.Issue("kubelet", "system:node:"+NodeName, []string{"system:nodes"}, []string{HostIP, "127.0.0.1", NodeName}); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", HostIP, apiserverPort)
	kubeconfigs := map[string]string{}
	for _, u := range []string{"admin", "controller-manager", "scheduler", "kubelet-client", "kube-proxy", "coredns"} {
		if err := ca.Issue(u, "etcd-chaos:"+u, []string{"system:masters"}, nil); err != nil {
			return err
		}
		if kubeconfigs[u], err = writeKubeconfig(ca, u, server); err != nil {
			return err
		}
	}
	c.Kubeconfig = kubeconfigs["admin"]

	etcdPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if _, err := c.start("etcd", etcd, "--name", "kube-host", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peerPort),
		"--initial-cluster", fmt.Sprintf("kube-host=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync", "--quota-backend-bytes", strconv.Itoa(2<<30)); err != nil {
		return err
	}
	if _, err := c.start("kube-apiserver", c.bins.Path("kube-apiserver"),
		"--etcd-servers", etcdURL,
		"--bind-address", HostIP, "--advertise-address", HostIP, "--secure-port", strconv.Itoa(apiserverPort),
		"--tls-cert-file", ca.Path("apiserver.crt"), "--tls-private-key-file", ca.Path("apiserver.key"),
		"--client-ca-file", ca.Path("ca.crt"),
		"--kubelet-client-certificate", ca.Path("kubelet-client.crt"), "--kubelet-client-key", ca.Path("kubelet-client.key"),
		// The node's name resolves nowhere (no DNS for it on the host), so
		// port-forward, exec and logs must reach the kubelet at its IP.
		"--kubelet-preferred-address-types", "InternalIP",
		"--service-cluster-ip-range", serviceSubnet,
		"--service-account-issuer", "https://kubernetes.default.svc."+clusterDomain,
		"--service-account-key-file", ca.Path("sa.pub"), "--service-account-signing-key-file", ca.Path("sa.key"),
		"--authorization-mode", "RBAC", "--allow-privileged=true", "--profiling=false",
		"--enable-priority-and-fairness=false",
	); err != nil {
		return err
	}
	cs, err := c.clientset()
	if err != nil {
		return err
	}
	if err := c.waitFor(ctx, "kube-apiserver to answer /readyz", func() bool {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok"
	}); err != nil {
		return err
	}
	if _, err := c.start("kube-controller-manager", c.bins.Path("kube-controller-manager"),
		"--kubeconfig", kubeconfigs["controller-manager"],
		"--authentication-kubeconfig", kubeconfigs["controller-manager"], "--authorization-kubeconfig", kubeconfigs["controller-manager"],
		"--bind-address", "127.0.0.1", "--leader-elect=false",
		"--service-account-private-key-file", ca.Path("sa.key"), "--root-ca-file", ca.Path("ca.crt"),
		"--use-service-account-credentials=false", "--service-cluster-ip-range", serviceSubnet,
	); err != nil {
		return err
	}
	if _, err := c.start("kube-scheduler", c.bins.Path("kube-scheduler"),
		"--kubeconfig", kubeconfigs["scheduler"],
		"--authentication-kubeconfig", kubeconfigs["scheduler"], "--authorization-kubeconfig", kubeconfigs["scheduler"],
		"--bind-address", "127.0.0.1", "--leader-elect=false",
	); err != nil {
		return err
	}
	corefile, err := c.writeCorefile(kubeconfigs["coredns"])
	if err != nil {
		return err
	}
	if _, err := c.start("coredns", c.bins.CoreDNS, "-conf", corefile); err != nil {
		return err
	}
	pcfg, err := c.writeKubeProxyConfig(kubeconfigs["kube-proxy"])
	if err != nil {
		return err
	}
	if _, err := c.start("kube-proxy", c.bins.Path("kube-proxy"), "--config", pcfg); err != nil {
		return err
	}

	if err := c.importImages(ctx, images); err != nil {
		return err
	}
	kcfg, err := c.writeKubeletConfig()
	if err != nil {
		return err
	}
	if _, err := c.start("kubelet", c.bins.Path("kubelet"),
		"--config", kcfg, "--kubeconfig", kubeconfigs["admin"],
		"--hostname-override", NodeName, "--node-ip", HostIP,
		"--root-dir", filepath.Join(c.dir, "kubelet"), "--cert-dir", filepath.Join(c.dir, "kubelet-pki"),
	); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "node "+NodeName+" to be Ready", func() bool {
		n, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}); err != nil {
		return err
	}
	// Pods are admitted only once their namespace's default
	// ServiceAccount exists; the controller-manager makes it.
	if err := c.waitFor(ctx, "the controller-manager to create ServiceAccount default/default", func() bool {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return err
	}
	return c.startVolumes(ctx, cs)
}

// startVolumes creates the default StorageClass and starts the loop that
// provisions its claims with hostPath volumes under dir/volumes.
func (c *Cluster) startVolumes(ctx context.Context, cs kubernetes.Interface) error {
	dir := filepath.Join(c.dir, "volumes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := createStorageClass(ctx, cs); err != nil {
		return err
	}
	vctx, cancel := context.WithCancel(context.Background())
	c.stopVolumes, c.volumesDone = cancel, make(chan struct{})
	go func() {
		defer close(c.volumesDone)
		(&provisioner{cs: cs, dir: dir, logf: c.logf}).run(vctx)
	}()
	return nil
}

// startRuntime makes the bridge, the cgroup root and the CNI config, and
// starts containerd. The bridge comes first so that the apiserver, kubelet
// and CoreDNS can bind to its address before any pod exists.
func (c *Cluster) startRuntime(ctx context.Context) error {
	for _, d := range []string{c.logDir, filepath.Join(c.dir, "cni", "ipam")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if out, err := run(ctx, "ip", "link", "add", Bridge, "type", "bridge"); err != nil {
		return fmt.Errorf("create bridge %s: %v: %s", Bridge, err, out)
	}
	if out, err := run(ctx, "ip", "addr", "add", HostIP+"/24", "dev", Bridge); err != nil {
		return fmt.Errorf("address bridge %s: %v: %s", Bridge, err, out)
	}
	if out, err := run(ctx, "ip", "link", "set", Bridge, "up"); err != nil {
		return fmt.Errorf("bring up bridge %s: %v: %s", Bridge, err, out)
	}
	if err := makeCgroupRoot(); err != nil {
		return err
	}
	if err := c.writeCNIConfig(); err != nil {
		return err
	}
	ccfg, err := c.writeContainerdConfig()
	if err != nil {
		return err
	}
	_, err = c.start("containerd", "containerd", "--config", ccfg)
	return err
}

// importImages waits for containerd and imports the image tarballs into
// the namespace the CRI plugin uses.
func (c *Cluster) importImages(ctx context.Context, images []string) error {
	if err := c.waitFor(ctx, "containerd to answer on "+c.sock, func() bool {
		_, err := run(ctx, "ctr", "--address", c.sock, "version")
		return err == nil
	}); err != nil {
		return err
	}
	for _, img := range images {
		if out, err := run(ctx, "ctr", "--address", c.sock, "-n", "k8s.io", "images", "import", img); err != nil {
			return fmt.Errorf("import image %s into containerd: %v: %s", img, err, oneLine(out))
		}
	}
	return nil
}

func (c *Cluster) clientset() (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(rc)
}

// waitFor polls ok until it holds, a process exits or ctx ends; the error
// names what did not happen and, for an exit, the process and its last
// log line.
func (c *Cluster) waitFor(ctx context.Context, what string, ok func() bool) error {
	for {
		if ok() {
			return nil
		}
		if p := c.exited(); p != nil {
			return fmt.Errorf("%s exited while waiting for %s: %s", p.name, what, p.lastLine())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run runs a short host command, bounded by ctx and a minute.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.Bytes(), err
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// proc is one long-running process of the cluster, in its own process
// group, logging to <logDir>/<name>.log.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func (c *Cluster) start(name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = c.dir
	// Own process group so Close can signal a process and its children;
	// Pdeathsig so nothing outlives a harness that is SIGKILLed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

func (c *Cluster) exited() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// lastLine is the last non-empty line of the process's log.
func (p *proc) lastLine() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 300 {
		l = l[:300] + "..."
	}
	if l == "" {
		return "(empty log " + p.logPath + ")"
	}
	return l + " (" + p.logPath + ")"
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}
