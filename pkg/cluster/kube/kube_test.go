package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "chaos"

func labels(release string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": "etcd"}
}

func pod(name, release, node, ip string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels(release), UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "etcd", Image: "docker.io/bitnamilegacy/etcd:3.6.4-debian-12-r3",
			Env: []corev1.EnvVar{{Name: "ETCD_ADVERTISE_CLIENT_URLS", Value: "http://" + name + ".chaos-etcd-headless:2379"}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func secret(release, pw string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: release + "-etcd", Namespace: ns},
		Data: map[string][]byte{"etcd-root-password": []byte(pw)}}
}

// crictlWarning is what crictl logs, to the output the runner returns, on
// a node without /etc/crictl.yaml; answers must be found past it.
const crictlWarning = `time="2026-12-02T10:26:57Z" level=warning msg="Config \"/etc/crictl.yaml\" does not exist, trying next: \"/usr/bin/crictl.yaml\""` + "\n"

// fakeRunner records node commands and answers crictl like a node where
// every pod's etcd container is "cid-<pod>" with pid "<pids[pod]>", after
// the warning crictl prints without a config file.
type fakeRunner struct {
	mu   sync.Mutex
	cmds []string
	pids map[string]string
	// fail makes commands containing the key fail with the value as output.
	fail map[string]string
}

func (f *fakeRunner) Run(_ context.Context, node string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := node + ": " + strings.Join(args, " ")
	f.cmds = append(f.cmds, cmd)
	for k, out := range f.fail {
		if strings.Contains(cmd, k) {
			return []byte(out), errors.New("exit status 1")
		}
	}
	switch {
	case args[0] == "crictl" && args[1] == "ps":
		for _, a := range args {
			if p, ok := strings.CutPrefix(a, "io.kubernetes.pod.name="); ok {
				if _, ok := f.pids[p]; ok {
					return []byte(crictlWarning + "cid-" + p + "\n"), nil
				}
				return []byte(crictlWarning), nil
			}
		}
	case args[0] == "crictl" && args[1] == "inspect":
		p := strings.TrimPrefix(args[len(args)-1], "cid-")
		return []byte(crictlWarning + f.pids[p] + "\n"), nil
	case len(args) > 6 && args[4] == "iptables" && args[6] == "-C":
		return []byte("iptables: Bad rule"), errors.New("exit status 1")
	}
	return nil, nil
}

func (f *fakeRunner) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.cmds
	f.cmds = nil
	return out
}

func newTestCluster(t *testing.T, r NodeRunner, objs ...runtime.Object) (*Cluster, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	opts := []Option{WithClientset(cs, nil)}
	if r != nil {
		opts = append(opts, WithNodeRunner(r))
	}
	p := NewProvider(opts...)
	p.openForward = func(context.Context, string, string, int) (*forward, error) {
		return nil, errors.New("no port-forward in unit tests")
	}
	c, err := p.Attach(context.Background(), ns, "chaos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, cs
}

func threePods() []runtime.Object {
	return []runtime.Object{
		pod("chaos-etcd-10", "chaos", "node-b", "10.0.0.10"),
		pod("chaos-etcd-2", "chaos", "node-a", "10.0.0.2"),
		pod("chaos-etcd-1", "chaos", "node-a", "10.0.0.1"),
		pod("other-etcd-0", "other", "node-a", "10.0.1.1"),
		secret("chaos", "s3cret"),
	}
}

func TestDiscoveryOrderAndCredentials(t *testing.T) {
	c, _ := newTestCluster(t, nil, threePods()...)
	var names []string
	for _, m := range c.Members() {
		names = append(names, m.Name)
		if !strings.HasPrefix(m.ClientURL, "http://127.0.0.1:") {
			t.Errorf("%s ClientURL = %s, want a local proxy", m.Name, m.ClientURL)
		}
	}
	if got := strings.Join(names, ","); got != "chaos-etcd-1,chaos-etcd-2,chaos-etcd-10" {
		t.Errorf("members = %s, want the release's pods by ordinal", got)
	}
	if cr := c.Credentials(); cr.Username != "root" || cr.Password != "s3cret" || cr.TLS != nil {
		t.Errorf("credentials = %+v", cr)
	}
	if c.Backend() != "kube" || c.Version() != "3.6.4" {
		t.Errorf("backend %q version %q", c.Backend(), c.Version())
	}
}

func TestAttachErrors(t *testing.T) {
	p := NewProvider(WithClientset(fake.NewClientset(), nil))
	_, err := p.Attach(context.Background(), ns, "chaos")
	if err == nil || !strings.Contains(err.Error(), "helm -n chaos list") {
		t.Errorf("no pods: want an error saying how to check the release, got %v", err)
	}
	p = NewProvider(WithClientset(fake.NewClientset(pod("chaos-etcd-0", "chaos", "n", "1.1.1.1")), nil))
	_, err = p.Attach(context.Background(), ns, "chaos")
	if err == nil || !strings.Contains(err.Error(), "secret chaos/chaos-etcd not found") {
		t.Errorf("no secret: got %v", err)
	}
}

func TestTLSDetection(t *testing.T) {
	p := pod("chaos-etcd-0", "chaos", "n", "1.1.1.1")
	p.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "ETCD_ADVERTISE_CLIENT_URLS", Value: "https://chaos-etcd-0:2379"},
		{Name: "ETCD_AUTO_TLS", Value: "true"},
	}
	c, _ := newTestCluster(t, nil, p, secret("chaos", "x"))
	if c.Credentials().TLS == nil || !c.Credentials().TLS.InsecureSkipVerify || !strings.HasPrefix(c.Members()[0].ClientURL, "https://") {
		t.Errorf("auto-TLS should give an https URL and a skip-verify config")
	}
	if !strings.Contains(c.TLSNote(), "self-signed") {
		t.Errorf("TLS note should say why certificates are not verified: %q", c.TLSNote())
	}
}

func TestFaultsNeedNodeRunner(t *testing.T) {
	c, _ := newTestCluster(t, nil, threePods()...)
	err := c.Kill(context.Background(), "chaos-etcd-1")
	if !errors.Is(err, cluster.ErrUnsupported) || !strings.Contains(err.Error(), "WithNodeRunner") {
		t.Errorf("Kill without runner = %v, want ErrUnsupported naming the option", err)
	}
	if err := c.Kill(context.Background(), "nope"); err == nil || !strings.Contains(err.Error(), "chaos-etcd-1") {
		t.Errorf("unknown member should list the members, got %v", err)
	}
	if err := c.Heal(context.Background()); err != nil {
		t.Errorf("Heal with nothing applied: %v", err)
	}
}

func TestKillPauseResumeCommands(t *testing.T) {
	r := &fakeRunner{pids: map[string]string{"chaos-etcd-1": "4242", "chaos-etcd-2": "5151", "chaos-etcd-10": "6161"}}
	c, _ := newTestCluster(t, r, threePods()...)
	ctx := context.Background()
	if err := c.Kill(ctx, "chaos-etcd-1"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"node-a: crictl ps -q --name etcd --label io.kubernetes.pod.name=chaos-etcd-1 --label io.kubernetes.pod.namespace=chaos",
		"node-a: crictl inspect -o go-template --template {{.info.pid}} cid-chaos-etcd-1",
		"node-a: kill -9 4242",
	}
	assertCmds(t, r.take(), want)

	if err := c.Pause(ctx, "chaos-etcd-10"); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(ctx, "chaos-etcd-10"); err != nil {
		t.Fatal(err)
	}
	cmds := r.take()
	assertCmds(t, []string{cmds[2], cmds[3]}, []string{"node-b: kill -STOP 6161", "node-b: kill -CONT 6161"})

	// A member with no running container says so.
	delete(r.pids, "chaos-etcd-2")
	if err := c.Kill(ctx, "chaos-etcd-2"); err == nil || !strings.Contains(err.Error(), "no running etcd container") {
		t.Errorf("kill of a stopped container: %v", err)
	}
}

func TestCutHealCommands(t *testing.T) {
	r := &fakeRunner{pids: map[string]string{"chaos-etcd-1": "11", "chaos-etcd-2": "22", "chaos-etcd-10": "100"}}
	c, cs := newTestCluster(t, r, threePods()...)
	ctx := context.Background()
	if err := c.Cut(ctx, "chaos-etcd-1", "chaos-etcd-2"); err != nil {
		t.Fatal(err)
	}
	ipt := func(pid string, rest string) string { return "node-a: nsenter -t " + pid + " -n iptables -w " + rest }
	rules := func(pid, peer string) []string {
		return []string{
			ipt(pid, "-N ETCD_CHAOS"), ipt(pid, "-F ETCD_CHAOS"),
			ipt(pid, "-C INPUT -j ETCD_CHAOS"), ipt(pid, "-I INPUT -j ETCD_CHAOS"),
			ipt(pid, "-C OUTPUT -j ETCD_CHAOS"), ipt(pid, "-I OUTPUT -j ETCD_CHAOS"),
			ipt(pid, "-A ETCD_CHAOS -s "+peer+" -j DROP"), ipt(pid, "-A ETCD_CHAOS -d "+peer+" -j DROP"),
		}
	}
	assertCmds(t, withoutCrictl(r.take()), append(rules("11", "10.0.0.2"), rules("22", "10.0.0.1")...))

	// Nothing changed: reconcile is a no-op.
	if err := c.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("reconcile with no change ran %v", got)
	}

	// chaos-etcd-2 is replaced: new UID (new netns) and new IP. Both sides
	// are re-applied: the new pod gets the chain, the peer drops the new IP.
	p2, _ := cs.CoreV1().Pods(ns).Get(ctx, "chaos-etcd-2", metav1.GetOptions{})
	p2.UID, p2.Status.PodIP = "uid-new", "10.0.0.99"
	r.pids["chaos-etcd-2"] = "23"
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	assertCmds(t, withoutCrictl(r.take()), append(rules("11", "10.0.0.99"), rules("23", "10.0.0.1")...))

	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	heal := func(pid string) []string {
		return []string{ipt(pid, "-D INPUT -j ETCD_CHAOS"), ipt(pid, "-D OUTPUT -j ETCD_CHAOS"), ipt(pid, "-F ETCD_CHAOS"), ipt(pid, "-X ETCD_CHAOS")}
	}
	assertCmds(t, withoutCrictl(r.take()), append(heal("11"), heal("23")...))
	if err := c.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 0 {
		t.Errorf("after Heal, reconcile ran %v", got)
	}
	if err := c.Cut(ctx, "chaos-etcd-1", "chaos-etcd-1"); err == nil {
		t.Error("cutting a member from itself should fail")
	}
}

func TestDegradeCommands(t *testing.T) {
	r := &fakeRunner{pids: map[string]string{"chaos-etcd-1": "11", "chaos-etcd-2": "22", "chaos-etcd-10": "100"}}
	c, _ := newTestCluster(t, r, threePods()...)
	ctx := context.Background()
	if err := c.Degrade(ctx, "chaos-etcd-10", 150*time.Millisecond, 0.05); err != nil {
		t.Fatal(err)
	}
	assertCmds(t, withoutCrictl(r.take()), []string{"node-b: nsenter -t 100 -n tc qdisc replace dev eth0 root netem delay 150ms loss 5%"})
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	assertCmds(t, withoutCrictl(r.take()), []string{"node-b: nsenter -t 100 -n tc qdisc del dev eth0 root"})

	r.fail = map[string]string{"netem": "Error: Specified qdisc kind is unknown."}
	err := c.Degrade(ctx, "chaos-etcd-1", time.Millisecond, 0)
	if !errors.Is(err, cluster.ErrUnsupported) || !strings.Contains(err.Error(), "modprobe sch_netem") || !strings.Contains(err.Error(), "node-a") {
		t.Errorf("missing netem should be unsupported and say what to do, got %v", err)
	}
	if err := c.Degrade(ctx, "chaos-etcd-1", 0, 2); err == nil {
		t.Error("loss above 1 should be refused")
	}
}

func TestNetemArgs(t *testing.T) {
	for _, tc := range []struct {
		lat  time.Duration
		loss float64
		want string
	}{
		{100 * time.Millisecond, 0, "delay 100ms"},
		{1500 * time.Microsecond, 0.1, "delay 1500us loss 10%"},
		{0, 0.005, "loss 0.5%"},
		{0, 0, ""},
	} {
		if got := netemArgs(tc.lat, tc.loss); got != tc.want {
			t.Errorf("netemArgs(%v, %v) = %q, want %q", tc.lat, tc.loss, got, tc.want)
		}
	}
}

func TestDeletePodUsesGraceZero(t *testing.T) {
	c, cs := newTestCluster(t, nil, threePods()...)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.DeletePod(ctx, "chaos-etcd-1")
	if err == nil || !strings.Contains(err.Error(), "not replaced") {
		t.Errorf("without a StatefulSet controller the pod never returns; want a clear error, got %v", err)
	}
	var deleted bool
	for _, a := range cs.Actions() {
		if d, ok := a.(k8stesting.DeleteAction); ok && d.GetResource().Resource == "pods" {
			deleted = true
			if g := d.GetDeleteOptions().GracePeriodSeconds; g == nil || *g != 0 {
				t.Errorf("pod deleted with grace %v, want 0", g)
			}
		}
	}
	if !deleted {
		t.Error("DeletePod did not delete the pod")
	}
}

// TestProxyFollowsPodReplacement checks that a member's ClientURL keeps
// working when its pod is replaced: the proxy opens a new forward for the
// new UID, and also when the old forward died.
func TestProxyFollowsPodReplacement(t *testing.T) {
	echo := func(tag string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(c, tag)
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	backends := map[types.UID]string{"a": echo("first"), "b": echo("second")}
	var mu sync.Mutex
	uid := types.UID("a")
	opens := 0
	var last *forward
	open := func(_ context.Context, _, _ string, _ int) (*forward, error) {
		mu.Lock()
		defer mu.Unlock()
		opens++
		last = &forward{addr: backends[uid], done: make(chan struct{}), stop: func() {}}
		return last, nil
	}
	podUID := func(context.Context) (types.UID, error) { mu.Lock(); defer mu.Unlock(); return uid, nil }
	mp, err := newMemberProxy(ns, "p", 2379, open, podUID, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Close()
	read := func() string {
		c, err := net.Dial("tcp", mp.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		return string(b)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return opens }
	if got := read(); got != "first" {
		t.Fatalf("got %q", got)
	}
	if got := read(); got != "first" || count() != 1 {
		t.Fatalf("second connection: %q, %d forwards (want reuse)", got, count())
	}
	mu.Lock()
	uid = "b"
	mu.Unlock()
	if got := read(); got != "second" || count() != 2 {
		t.Fatalf("after replacement: %q, %d forwards", got, count())
	}
	mu.Lock()
	close(last.done) // the forward died (its pod went away)
	mu.Unlock()
	if got := read(); got != "second" || count() != 3 {
		t.Fatalf("after the forward died: %q, %d forwards", got, count())
	}
}

// TestProxyReplacesAWedgedForward: a forward that accepts connections but
// closes each without a byte (its SPDY connection wedged) is replaced after
// a few, and one that answers is kept.
func TestProxyReplacesAWedgedForward(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var mu sync.Mutex
	opens := 0
	open := func(_ context.Context, _, _ string, _ int) (*forward, error) {
		mu.Lock()
		defer mu.Unlock()
		opens++
		return &forward{addr: silent.Addr().String(), done: make(chan struct{}), stop: func() {}}, nil
	}
	podUID := func(context.Context) (types.UID, error) { return "a", nil }
	mp, err := newMemberProxy(ns, "p", 2379, open, podUID, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Close()
	for i := 0; i < wedgedAfter+1; i++ {
		c, err := net.Dial("tcp", mp.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(c)
		c.Close()
		waitIdle(t, mp)
	}
	mu.Lock()
	defer mu.Unlock()
	if opens != 2 {
		t.Fatalf("%d forwards opened for %d empty connections, want 2 (the first replaced after %d)", opens, wedgedAfter+1, wedgedAfter)
	}
}

// TestProxyKeepsAForwardItsClientsGaveUpOn: connections whose clients hang
// up before a slow pod answers (dial timeouts on a loaded machine) must not
// retire the forward, which would cut a live connection through it.
func TestProxyKeepsAForwardItsClientsGaveUpOn(t *testing.T) {
	slow, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var held sync.WaitGroup
	defer held.Wait()
	go func() {
		for {
			c, err := slow.Accept()
			if err != nil {
				return
			}
			// Answers nothing until the client has gone.
			held.Add(1)
			go func() {
				defer held.Done()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	var mu sync.Mutex
	opens, stops := 0, 0
	open := func(_ context.Context, _, _ string, _ int) (*forward, error) {
		mu.Lock()
		defer mu.Unlock()
		opens++
		return &forward{addr: slow.Addr().String(), done: make(chan struct{}), stop: func() { mu.Lock(); stops++; mu.Unlock() }}, nil
	}
	podUID := func(context.Context) (types.UID, error) { return "a", nil }
	mp, err := newMemberProxy(ns, "p", 2379, open, podUID, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2*wedgedAfter; i++ {
		c, err := net.Dial("tcp", mp.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("PRI * HTTP/2.0")); err != nil {
			t.Fatal(err)
		}
		c.Close()
		waitIdle(t, mp)
	}
	mu.Lock()
	gotOpens, gotStops := opens, stops
	mu.Unlock()
	mp.Close()
	if gotOpens != 1 || gotStops != 0 {
		t.Fatalf("%d forwards opened and %d stopped after %d connections their clients closed, want 1 and 0", gotOpens, gotStops, 2*wedgedAfter)
	}
}

// waitIdle waits until the proxy has noted the end of every connection.
func waitIdle(t *testing.T, mp *memberProxy) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mp.mu.Lock()
		n := len(mp.conns)
		mp.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open in the proxy", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func withoutCrictl(cmds []string) []string {
	var out []string
	for _, c := range cmds {
		if !strings.Contains(c, ": crictl ") {
			out = append(out, c)
		}
	}
	return out
}

func assertCmds(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n got:\n  %s\n want:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestInstallOptionsFromEnv(t *testing.T) {
	t.Setenv("CHART_VALUES", "base.yaml, tls-auth.yaml,")
	t.Setenv("CHART_VERSION", "")
	t.Setenv("CHART_REF", "/charts/etcd-12.0.18.tgz")
	o := InstallOptionsFromEnv("ns", "rel")
	if strings.Join(o.ValuesFiles, "|") != "base.yaml|tls-auth.yaml" || o.ChartVersion != "12.0.18" || o.ChartRef != "/charts/etcd-12.0.18.tgz" {
		t.Errorf("options = %+v", o)
	}
}
