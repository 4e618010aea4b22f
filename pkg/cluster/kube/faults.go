package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"k8s.io/apimachinery/pkg/types"
)

// NodeRunner runs a command as root on a Kubernetes node, in the node's
// namespaces (for kind, `docker exec --privileged` into the node
// container). It returns the combined output, which callers search for
// causes when the command fails.
type NodeRunner interface {
	Run(ctx context.Context, node string, args ...string) ([]byte, error)
}

// Chain is the iptables chain the harness owns inside each pod's network
// namespace. Partitions are iptables rules in the pod netns, never
// NetworkPolicy: a policy is enforced only on new connections, so etcd's
// long-lived peer streams would survive it, and the chart's own policy
// (a union of allows) would override a deny anyway.
const Chain = "ETCD_CHAOS"

// podInterface is the pod's network interface that carries peer traffic.
// Client traffic from port-forwards enters through the loopback and is
// never delayed or dropped.
const podInterface = "eth0"

type pair struct{ a, b string }

func newPair(a, b string) pair {
	if b < a {
		a, b = b, a
	}
	return pair{a, b}
}

type applied struct {
	uid   types.UID
	peers string // sorted peer IPs dropped, comma-joined; "" when no chain
	chain bool
	netem string // netem arguments in place, "" when none
}

type paused struct{ node, pid string }

// faultState is the desired set of network faults, what was last applied
// to each pod incarnation, and the processes killed or paused. The desired
// set survives pod restarts: reconcile re-applies it when a pod's UID or a
// peer's IP changed, since a new pod comes with a new netns and IP.
type faultState struct {
	cuts    map[pair]bool
	degrade map[string]string
	applied map[string]applied
	killed  map[string]string // member -> container ID killed
	paused  map[string]paused
}

func newFaultState() *faultState {
	return &faultState{cuts: map[pair]bool{}, degrade: map[string]string{}, applied: map[string]applied{}, killed: map[string]string{}, paused: map[string]paused{}}
}

// fmu serializes every fault and the reconciler, so that commands on one
// pod never interleave.
func (c *Cluster) lockFaults() func() {
	c.fmu.Lock()
	return c.fmu.Unlock
}

func (c *Cluster) runner(what string) (NodeRunner, error) {
	if c.p.runner == nil {
		return nil, fmt.Errorf("%w: %s needs a shell on the node; the kind backend provides one, for other clusters pass kube.WithNodeRunner", cluster.ErrUnsupported, what)
	}
	return c.p.runner, nil
}

// container finds the running etcd container of a member's pod: the node it
// runs on, its container ID and its host pid.
func (c *Cluster) container(ctx context.Context, r NodeRunner, member string) (node, cid, pid string, err error) {
	pod, err := c.getPod(ctx, member)
	if err != nil {
		return "", "", "", err
	}
	node = pod.Spec.NodeName
	if node == "" {
		return "", "", "", fmt.Errorf("pod %s/%s is not scheduled on a node yet", c.ns, member)
	}
	out, err := r.Run(ctx, node, "crictl", "ps", "-q", "--name", "etcd",
		"--label", "io.kubernetes.pod.name="+member, "--label", "io.kubernetes.pod.namespace="+c.ns)
	if err != nil {
		return "", "", "", fmt.Errorf("crictl ps on node %s for %s: %v: %s", node, member, err, strings.TrimSpace(string(out)))
	}
	cid = firstField(out, isContainerID)
	if cid == "" {
		return node, "", "", fmt.Errorf("pod %s/%s has no running etcd container on node %s (killed and not restarted yet?)", c.ns, member, node)
	}
	out, err = r.Run(ctx, node, "crictl", "inspect", "-o", "go-template", "--template", "{{.info.pid}}", cid)
	if err != nil {
		return "", "", "", fmt.Errorf("crictl inspect %s on node %s: %v: %s", cid, node, err, strings.TrimSpace(string(out)))
	}
	pid = firstField(out, isPid)
	if pid == "" {
		return "", "", "", fmt.Errorf("crictl inspect %s on node %s gave no pid (%q): is the container running?", cid, node, strings.TrimSpace(string(out)))
	}
	return node, cid, pid, nil
}

// firstField returns the first line of a node command's output that is
// what the caller asked for. The output holds stderr too, where crictl
// logs warnings (a missing config file, a deprecated endpoint) ahead of
// the answer; taking the first line took a warning for a pid.
func firstField(b []byte, ok func(string) bool) string {
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); ok(line) {
			return line
		}
	}
	return ""
}

// isContainerID: crictl prints one ID per line, a single token; its log
// lines (time="…" level=warning msg="…") have spaces and '='.
func isContainerID(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t=\"")
}

// isPid: a running process's pid (crictl gives 0 for a stopped container).
func isPid(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0
}

// Kill sends SIGKILL to the member's etcd process on its node. The pod and
// its data dir (even an emptyDir) survive; the kubelet restarts the
// container by itself, with its crash-loop back-off.
func (c *Cluster) Kill(ctx context.Context, member string) error {
	if err := c.member(member); err != nil {
		return err
	}
	r, err := c.runner("kill")
	if err != nil {
		return err
	}
	defer c.lockFaults()()
	node, cid, pid, err := c.container(ctx, r, member)
	if err != nil {
		return err
	}
	if out, err := r.Run(ctx, node, "kill", "-9", pid); err != nil {
		return fmt.Errorf("kill -9 %s (etcd of %s) on node %s: %v: %s", pid, member, node, err, strings.TrimSpace(string(out)))
	}
	c.faults.killed[member] = cid
	delete(c.faults.paused, member)
	return nil
}

// Restart waits until the kubelet has started a new etcd container for a
// killed member and the member serves again.
func (c *Cluster) Restart(ctx context.Context, member string) error {
	if err := c.member(member); err != nil {
		return err
	}
	r, err := c.runner("restart")
	if err != nil {
		return err
	}
	unlock := c.lockFaults()
	old := c.faults.killed[member]
	unlock()
	var last error
	for {
		_, cid, _, err := c.container(ctx, r, member)
		if err == nil && cid != old {
			break
		}
		last = err
		if err == nil {
			last = fmt.Errorf("container %s is still the killed one", cid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restart %s: container not running again: %v (the kubelet's back-off can reach minutes after repeated kills)", member, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
	unlock = c.lockFaults()
	delete(c.faults.killed, member)
	unlock()
	if err := c.waitServes(ctx, member); err != nil {
		return err
	}
	return c.reconcile(ctx)
}

// Pause sends SIGSTOP to the member's etcd process. A pause longer than the
// liveness probe allows (see charts/etcd-values/base.yaml) makes the kubelet
// restart the container.
func (c *Cluster) Pause(ctx context.Context, member string) error {
	if err := c.member(member); err != nil {
		return err
	}
	r, err := c.runner("pause")
	if err != nil {
		return err
	}
	defer c.lockFaults()()
	// etcd is the container's only process (the image's run script execs
	// it), so its pid is the whole container.
	node, _, pid, err := c.container(ctx, r, member)
	if err != nil {
		return err
	}
	if out, err := r.Run(ctx, node, "kill", "-STOP", pid); err != nil {
		return fmt.Errorf("kill -STOP %s (etcd of %s) on node %s: %v: %s", pid, member, node, err, strings.TrimSpace(string(out)))
	}
	c.faults.paused[member] = paused{node, pid}
	return nil
}

// Resume sends SIGCONT to the process Pause stopped.
func (c *Cluster) Resume(ctx context.Context, member string) error {
	if err := c.member(member); err != nil {
		return err
	}
	r, err := c.runner("resume")
	if err != nil {
		return err
	}
	defer c.lockFaults()()
	p, ok := c.faults.paused[member]
	if !ok {
		return nil
	}
	out, err := r.Run(ctx, p.node, "kill", "-CONT", p.pid)
	if err != nil && !strings.Contains(string(out), "No such process") {
		return fmt.Errorf("kill -CONT %s (etcd of %s) on node %s: %v: %s", p.pid, member, p.node, err, strings.TrimSpace(string(out)))
	}
	delete(c.faults.paused, member)
	return nil
}

func (c *Cluster) resumeAll(ctx context.Context) {
	unlock := c.lockFaults()
	var names []string
	for m := range c.faults.paused {
		names = append(names, m)
	}
	unlock()
	for _, m := range names {
		if err := c.Resume(ctx, m); err != nil {
			c.p.logf("close: %v", err)
		}
	}
}

// Cut drops all traffic between the pods of a and b, both ways, with rules
// in each pod's network namespace.
func (c *Cluster) Cut(ctx context.Context, a, b string) error {
	if a == b {
		return fmt.Errorf("cut %s from itself: name two different members", a)
	}
	for _, m := range []string{a, b} {
		if err := c.member(m); err != nil {
			return err
		}
	}
	r, err := c.runner("cut")
	if err != nil {
		return err
	}
	defer c.lockFaults()()
	c.faults.cuts[newPair(a, b)] = true
	var errs []error
	for _, m := range []string{a, b} {
		if err := c.apply(ctx, r, m, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Degrade adds latency and loss to the member's outgoing peer traffic with
// tc netem in its pod's network namespace. A zero latency and loss removes
// the degradation.
func (c *Cluster) Degrade(ctx context.Context, member string, latency time.Duration, loss float64) error {
	if err := c.member(member); err != nil {
		return err
	}
	if loss < 0 || loss > 1 {
		return fmt.Errorf("degrade %s: loss %v is not a fraction between 0 and 1", member, loss)
	}
	r, err := c.runner("degrade")
	if err != nil {
		return err
	}
	defer c.lockFaults()()
	if args := netemArgs(latency, loss); args != "" {
		c.faults.degrade[member] = args
	} else {
		delete(c.faults.degrade, member)
	}
	return c.apply(ctx, r, member, true)
}

func netemArgs(latency time.Duration, loss float64) string {
	var parts []string
	if latency > 0 {
		if latency%time.Millisecond == 0 {
			parts = append(parts, "delay", strconv.FormatInt(latency.Milliseconds(), 10)+"ms")
		} else {
			parts = append(parts, "delay", strconv.FormatInt(latency.Microseconds(), 10)+"us")
		}
	}
	if loss > 0 {
		parts = append(parts, "loss", strconv.FormatFloat(loss*100, 'f', -1, 64)+"%")
	}
	return strings.Join(parts, " ")
}

// Heal forgets every cut and degradation and removes their rules from
// every pod that has some.
func (c *Cluster) Heal(ctx context.Context) error {
	defer c.lockFaults()()
	c.faults.cuts = map[pair]bool{}
	c.faults.degrade = map[string]string{}
	if len(c.faults.applied) == 0 {
		return nil
	}
	r, err := c.runner("heal")
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range sortedKeys(c.faults.applied) {
		if err := c.apply(ctx, r, m, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reconcile re-applies the desired faults to pods that changed (replaced
// pod: new netns; replaced peer: new IP).
func (c *Cluster) reconcile(ctx context.Context) error {
	defer c.lockFaults()()
	members := map[string]bool{}
	for p := range c.faults.cuts {
		members[p.a], members[p.b] = true, true
	}
	for m := range c.faults.degrade {
		members[m] = true
	}
	for m := range c.faults.applied {
		members[m] = true
	}
	if len(members) == 0 {
		return nil
	}
	r, err := c.runner("reconcile")
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range sortedKeys(members) {
		if err := c.apply(ctx, r, m, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Cluster) reconcileLoop(ctx context.Context) {
	defer close(c.bgDone)
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := c.reconcile(rctx); err != nil && ctx.Err() == nil && !errors.Is(err, cluster.ErrUnsupported) {
			c.p.logf("re-applying network faults: %v", err)
		}
		cancel()
	}
}

// apply brings one member's pod to the desired state: its ETCD_CHAOS chain
// holds exactly the DROP rules for its cut peers' current IPs, and its
// qdisc the desired netem. With force false it does nothing when neither
// the pod nor the peers' IPs changed since the last apply. Called with fmu
// held.
func (c *Cluster) apply(ctx context.Context, r NodeRunner, member string, force bool) error {
	pod, err := c.getPod(ctx, member)
	if err != nil {
		return err
	}
	var ips []string
	for p := range c.faults.cuts {
		peer := ""
		switch member {
		case p.a:
			peer = p.b
		case p.b:
			peer = p.a
		default:
			continue
		}
		pp, err := c.getPod(ctx, peer)
		if err != nil {
			return err
		}
		if pp.Status.PodIP == "" {
			return fmt.Errorf("cut %s from %s: %s has no IP yet; will retry", member, peer, peer)
		}
		ips = append(ips, pp.Status.PodIP)
	}
	sort.Strings(ips)
	want := applied{uid: pod.UID, peers: strings.Join(ips, ","), chain: len(ips) > 0, netem: c.faults.degrade[member]}
	have, had := c.faults.applied[member]
	if had && have.uid != pod.UID {
		// The old pod's netns died with it, and its rules with it.
		have, had = applied{uid: pod.UID}, false
	}
	if !force && have == want {
		return nil
	}
	if !had && !want.chain && want.netem == "" {
		delete(c.faults.applied, member)
		return nil
	}
	node, _, pid, err := c.container(ctx, r, member)
	if err != nil {
		return err
	}
	ns := func(args ...string) ([]byte, error) {
		return r.Run(ctx, node, append([]string{"nsenter", "-t", pid, "-n"}, args...)...)
	}
	ipt := func(args ...string) ([]byte, error) { return ns(append([]string{"iptables", "-w"}, args...)...) }

	if want.chain {
		if out, err := ipt("-N", Chain); err != nil && !strings.Contains(string(out), "exists") {
			return iptablesErr(member, node, out, err)
		}
		if out, err := ipt("-F", Chain); err != nil {
			return iptablesErr(member, node, out, err)
		}
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			if _, err := ipt("-C", hook, "-j", Chain); err != nil {
				if out, err := ipt("-I", hook, "-j", Chain); err != nil {
					return iptablesErr(member, node, out, err)
				}
			}
		}
		for _, ip := range ips {
			for _, dir := range []string{"-s", "-d"} {
				if out, err := ipt("-A", Chain, dir, ip, "-j", "DROP"); err != nil {
					return iptablesErr(member, node, out, err)
				}
			}
		}
	} else if had && have.chain {
		// Errors are ignored: a chain that is already gone is healed.
		_, _ = ipt("-D", "INPUT", "-j", Chain)
		_, _ = ipt("-D", "OUTPUT", "-j", Chain)
		_, _ = ipt("-F", Chain)
		_, _ = ipt("-X", Chain)
	}

	if want.netem != "" && (force || want.netem != have.netem) {
		args := append([]string{"tc", "qdisc", "replace", "dev", podInterface, "root", "netem"}, strings.Fields(want.netem)...)
		if out, err := ns(args...); err != nil {
			return tcErr(member, node, out, err)
		}
	} else if want.netem == "" && had && have.netem != "" {
		_, _ = ns("tc", "qdisc", "del", "dev", podInterface, "root")
	}

	if want.chain || want.netem != "" {
		c.faults.applied[member] = want
	} else {
		delete(c.faults.applied, member)
	}
	return nil
}

func iptablesErr(member, node string, out []byte, err error) error {
	s := strings.TrimSpace(string(out))
	if strings.Contains(s, "not found") && strings.Contains(s, "iptables") {
		return fmt.Errorf("%w: cut %s: iptables is missing on node %s: the node image needs iptables and nsenter (kindest/node has both)", cluster.ErrUnsupported, member, node)
	}
	return fmt.Errorf("iptables in the netns of %s on node %s: %v: %s", member, node, err, s)
}

func tcErr(member, node string, out []byte, err error) error {
	s := strings.TrimSpace(string(out))
	switch {
	case strings.Contains(s, "qdisc kind is unknown") || strings.Contains(s, "Specified qdisc not found"):
		return fmt.Errorf("%w: the kernel of node %s has no netem qdisc (tc says %q): load it with `modprobe sch_netem`, or use a kernel built with CONFIG_NET_SCH_NETEM", cluster.ErrUnsupported, node, s)
	case strings.Contains(s, "not found") || strings.Contains(s, "No such file"):
		return fmt.Errorf("%w: degrade %s: tc is missing on node %s (%s): the node image needs iproute2", cluster.ErrUnsupported, member, node, s)
	}
	return fmt.Errorf("tc netem in the netns of %s on node %s: %v: %s", member, node, err, s)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
