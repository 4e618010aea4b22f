package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// clientPort is the chart's etcd client port.
const clientPort = 2379

// Cluster is a Bitnami etcd release seen through port-forwards. It
// implements cluster.Cluster, cluster.Faults and cluster.PodFaults.
type Cluster struct {
	p         *Provider
	cs        kubernetes.Interface
	ns        string
	release   string
	installed bool // Close uninstalls what Install created
	// ownNamespace: Install created the namespace, so Close deletes it.
	ownNamespace bool
	// keepRelease: Close leaves the installed release in place.
	keepRelease bool
	// installValues is the layering Install passed, which an upgrade that
	// names no values of its own passes again.
	installValues chart.Values
	// installChartRef is the chart Install used, which an upgrade that
	// names none upgrades from (a local chart repository, on kube-host).
	installChartRef string

	creds   cluster.Credentials
	tlsNote string
	scheme  string

	mu      sync.Mutex
	members []cluster.Member
	proxies map[string]*memberProxy
	version string

	fmu    sync.Mutex
	faults *faultState

	stopBG    context.CancelFunc
	bgDone    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

var (
	_ cluster.Cluster   = (*Cluster)(nil)
	_ cluster.Faults    = (*Cluster)(nil)
	_ cluster.PodFaults = (*Cluster)(nil)
)

// Attach uses a release that is already installed. Close leaves it
// installed (only Install's clusters are uninstalled).
func (p *Provider) Attach(ctx context.Context, namespace, release string) (*Cluster, error) {
	cs, err := p.Clientset()
	if err != nil {
		return nil, err
	}
	pods, err := DiscoverPods(ctx, cs, namespace, release)
	if err != nil {
		return nil, err
	}
	pw, err := chart.ReadRootPassword(ctx, cs, namespace, release)
	if err != nil {
		return nil, err
	}
	tlsCfg, note, err := clientTLS(ctx, cs, &pods[0])
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		p: p, cs: cs, ns: namespace, release: release,
		creds:   cluster.Credentials{Username: "root", Password: pw, TLS: tlsCfg},
		tlsNote: note,
		scheme:  "http",
		proxies: map[string]*memberProxy{},
		version: imageVersion(&pods[0]),
		faults:  newFaultState(),
	}
	if tlsCfg != nil {
		c.scheme = "https"
		p.logf("%s/%s: %s", namespace, release, note)
	}
	open := p.openForward
	if open == nil {
		open = p.clientGoForward
	}
	for _, pod := range pods {
		mp, err := newMemberProxy(namespace, pod.Name, clientPort, open, c.podUIDFunc(pod.Name), p.logf)
		if err != nil {
			c.closeProxies()
			return nil, err
		}
		c.proxies[pod.Name] = mp
		c.members = append(c.members, cluster.Member{Name: pod.Name, ClientURL: c.scheme + "://" + mp.Addr()})
	}
	bg, cancel := context.WithCancel(context.Background())
	c.stopBG, c.bgDone = cancel, make(chan struct{})
	go c.reconcileLoop(bg)
	return c, nil
}

// Namespace and Release name the chart release.
func (c *Cluster) Namespace() string { return c.ns }
func (c *Cluster) Release() string   { return c.release }

// TLSNote says how server certificates are verified ("" for plaintext).
func (c *Cluster) TLSNote() string { return c.tlsNote }

// Backend is "kube", or what WithBackendName set.
func (c *Cluster) Backend() string { return c.p.backend }

// Version is the etcd server version, from a member's Status once one
// answered, from the image tag before that.
func (c *Cluster) Version() string {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	return v
}

func (c *Cluster) refreshVersion(ctx context.Context) {
	cli, err := c.Client(ctx)
	if err != nil {
		return
	}
	defer cli.Close()
	for _, m := range c.Members() {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err == nil && st.Version != "" {
			c.mu.Lock()
			c.version = st.Version
			c.mu.Unlock()
			return
		}
	}
}

// Members are the pods, by ordinal.
func (c *Cluster) Members() []cluster.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]cluster.Member(nil), c.members...)
}

// Endpoints are the members' stable local URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.ClientURL)
	}
	return out
}

// Credentials are root and the password from Secret <fullname>.
func (c *Cluster) Credentials() cluster.Credentials { return c.creds }

// Client opens a client on endpoints (all members when none). Auto-sync
// stays off: members advertise cluster DNS names unreachable from here.
func (c *Cluster) Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return clientv3.New(cluster.ClientConfig(endpoints, c.creds))
}

// Leader is the member a majority names as leader.
func (c *Cluster) Leader(ctx context.Context) (cluster.Member, error) {
	return cluster.FindLeader(ctx, c)
}

// WaitHealthy waits until every member answers and they agree on a leader.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	if err := cluster.WaitHealthy(ctx, c); err != nil {
		if d := chart.NotReady(context.WithoutCancel(ctx), c.cs, c.ns, c.release); d != "" {
			return fmt.Errorf("%v; pods not ready: %s", err, d)
		}
		return err
	}
	c.refreshVersion(ctx)
	return nil
}

// Faults returns the cluster itself.
func (c *Cluster) Faults() cluster.Faults { return c }

func (c *Cluster) member(name string) error {
	for _, m := range c.Members() {
		if m.Name == name {
			return nil
		}
	}
	var names []string
	for _, m := range c.Members() {
		names = append(names, m.Name)
	}
	return fmt.Errorf("no member %q in %s/%s (members: %s)", name, c.ns, c.release, strings.Join(names, ", "))
}

func (c *Cluster) getPod(ctx context.Context, name string) (*corev1.Pod, error) {
	p, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s/%s: %w", c.ns, name, err)
	}
	return p, nil
}

// DeletePod deletes the member's pod with grace period 0 and waits until its
// replacement is Ready and serves.
func (c *Cluster) DeletePod(ctx context.Context, member string) error {
	if err := c.member(member); err != nil {
		return err
	}
	old, err := c.getPod(ctx, member)
	if err != nil {
		return err
	}
	if err := c.deletePod(ctx, member); err != nil {
		return err
	}
	if err := c.waitReplaced(ctx, member, old.UID); err != nil {
		return err
	}
	if err := c.waitServes(ctx, member); err != nil {
		return err
	}
	return c.reconcile(ctx)
}

// DeleteAllPods deletes every member's pod at once and waits until the
// StatefulSet has replaced them all and the cluster is healthy. With
// persistence disabled the replacements bootstrap a new, empty cluster.
func (c *Cluster) DeleteAllPods(ctx context.Context) error {
	old := map[string]types.UID{}
	for _, m := range c.Members() {
		p, err := c.getPod(ctx, m.Name)
		if err != nil {
			return err
		}
		old[m.Name] = p.UID
	}
	for name := range old {
		if err := c.deletePod(ctx, name); err != nil {
			return err
		}
	}
	for name, uid := range old {
		if err := c.waitReplaced(ctx, name, uid); err != nil {
			return err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return err
	}
	return c.reconcile(ctx)
}

func (c *Cluster) deletePod(ctx context.Context, name string) error {
	zero := int64(0)
	err := c.cs.CoreV1().Pods(c.ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", c.ns, name, err)
	}
	return nil
}

// waitReplaced waits for a pod of that name with another UID to be Ready.
func (c *Cluster) waitReplaced(ctx context.Context, name string, old types.UID) error {
	for {
		p, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.UID != old && podReady(p) {
			return nil
		}
		select {
		case <-ctx.Done():
			why := "not recreated"
			if err == nil && p.UID != old {
				why = chart.PodProblem(p)
			}
			return fmt.Errorf("pod %s/%s not replaced and Ready: %s (%v)", c.ns, name, why, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitServes waits until the member answers Status through its proxy.
func (c *Cluster) waitServes(ctx context.Context, member string) error {
	var url string
	for _, m := range c.Members() {
		if m.Name == member {
			url = m.ClientURL
		}
	}
	var last error
	for {
		last = func() error {
			cli, err := c.Client(ctx, url)
			if err != nil {
				return err
			}
			defer cli.Close()
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err = cli.Status(sctx, url)
			return err
		}()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("member %s does not serve: %v", member, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// CollectLogs writes every pod's etcd log into dir as <pod>.log, and the
// previous container's (the one before a kill or crash) as
// <pod>.previous.log when there is one.
func (c *Cluster) CollectLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pods, err := DiscoverPods(ctx, c.cs, c.ns, c.release)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pods {
		for _, prev := range []bool{false, true} {
			name := p.Name + ".log"
			if prev {
				if !hasPrevious(&p) {
					continue
				}
				name = p.Name + ".previous.log"
			}
			if err := c.copyLog(ctx, p.Name, prev, filepath.Join(dir, name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func hasPrevious(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "etcd" && s.RestartCount > 0 {
			return true
		}
	}
	return false
}

func (c *Cluster) copyLog(ctx context.Context, pod string, previous bool, path string) error {
	rc, err := c.cs.CoreV1().Pods(c.ns).GetLogs(pod, &corev1.PodLogOptions{Container: "etcd", Previous: previous}).Stream(ctx)
	if err != nil {
		return fmt.Errorf("logs of %s (previous=%v): %w", pod, previous, err)
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("logs of %s: %w", pod, err)
	}
	return f.Close()
}

// UpgradeOptions say what to upgrade the release to.
type UpgradeOptions struct {
	ChartRef     string
	ChartVersion string
	// ValuesFiles are layered after chart.BaseValues, exactly as Install
	// layers them (chart.Layered). With no ValuesFiles and no Set, a release
	// Install created is upgraded with the values it was installed with; an
	// attached one keeps its user values on top of the new chart's defaults
	// (helm --reset-then-reuse-values), since a bare helm upgrade would
	// reset them, replica count included.
	ValuesFiles []string
	// Set are --set overrides applied last; when empty, those Install
	// passed (such as replicaCount) are passed again.
	Set []string
	// ReuseValues keeps the installed values under the new ones.
	ReuseValues bool
	Timeout     time.Duration
}

// upgradeValues is the values layering of an upgrade: the install's
// layering (base.yaml first, then the files, then --set), so that helm never
// falls back to the chart's defaults, which name an image that no longer
// resolves and turn the PDB and NetworkPolicy back on. resetThenReuse is
// set only for an attached release upgraded without values: its install
// values are unknown, so the release's own are kept.
func (c *Cluster) upgradeValues(o UpgradeOptions) (v chart.Values, resetThenReuse bool) {
	files, set := o.ValuesFiles, o.Set
	if c.installed {
		if len(files) == 0 {
			files = c.installValues.Files
		}
		if len(set) == 0 {
			set = c.installValues.Set
		}
	} else if len(files) == 0 && len(set) == 0 && !o.ReuseValues {
		return chart.Values{}, true
	}
	return chart.Layered(files, set), false
}

// Upgrade runs helm upgrade on the release (root password carried over),
// then waits until the cluster is healthy again. Members whose pod was
// replaced are reached through fresh port-forwards automatically.
func (c *Cluster) Upgrade(ctx context.Context, o UpgradeOptions) error {
	values, resetThenReuse := c.upgradeValues(o)
	if o.ChartRef == "" {
		o.ChartRef = c.installChartRef
	}
	_, err := chart.Upgrade{
		Env:                  c.p.env(c.ns),
		Release:              c.release,
		ChartRef:             o.ChartRef,
		Version:              o.ChartVersion,
		Values:               values,
		ReuseValues:          o.ReuseValues,
		ResetThenReuseValues: resetThenReuse,
		Timeout:              o.Timeout,
	}.Run(ctx)
	if err != nil {
		return err
	}
	pods, err := DiscoverPods(ctx, c.cs, c.ns, c.release)
	if err != nil {
		return err
	}
	if len(pods) != len(c.Members()) {
		return fmt.Errorf("upgrade changed the member count from %d to %d: attach again to test the new topology", len(c.Members()), len(pods))
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return err
	}
	return c.reconcile(ctx)
}

// KeepRelease makes Close leave the release, its PVCs and its namespace in
// place (it still stops faults and port-forwards), for debugging: the suites
// call it for the release of a failed spec when KEEP_CLUSTER=1, so that a
// kept cluster does not fill up with the releases of every spec.
func (c *Cluster) KeepRelease() {
	c.mu.Lock()
	c.keepRelease = true
	c.mu.Unlock()
}

// Close heals network faults, stops the port-forwards and, for a release
// Install created, uninstalls it, deletes its PersistentVolumeClaims and
// the namespace Install created, unless the release is kept. It is safe to
// call more than once and with a fresh context after the run's context was
// cancelled (Ctrl-C).
func (c *Cluster) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		c.stopBG()
		<-c.bgDone
		var errs []error
		if err := c.Heal(ctx); err != nil && !errors.Is(err, cluster.ErrUnsupported) {
			errs = append(errs, err)
		}
		c.resumeAll(ctx)
		c.closeProxies()
		c.mu.Lock()
		keep := c.keepRelease
		c.mu.Unlock()
		switch {
		case c.installed && keep:
			c.p.logf("keeping release %s/%s (remove with: helm -n %s uninstall %s; kubectl delete namespace %s)", c.ns, c.release, c.ns, c.release, c.ns)
		case c.installed:
			if err := c.p.teardown(ctx, c.ns, c.release, c.ownNamespace); err != nil {
				errs = append(errs, err)
			}
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

func (c *Cluster) closeProxies() {
	c.mu.Lock()
	ps := c.proxies
	c.proxies = map[string]*memberProxy{}
	c.mu.Unlock()
	for _, mp := range ps {
		mp.Close()
	}
}
