package kubehost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Close tears the cluster down and leaves nothing behind: the kubelet
// first (so it recreates nothing), then every pod sandbox through the CRI
// (which removes its netns, veth and CNI address), then the other
// processes, kube-proxy's iptables chains, every mount under the temp dir,
// network namespaces and cgroups the run created, the bridge, and the dir.
// Close the kube.Clusters installed in it first (they uninstall releases).
// It is safe to call more than once, and with a fresh context after
// Ctrl-C; each step is bounded, and a step that fails does not stop the
// ones after it.
func (c *Cluster) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.teardown(ctx) })
	return c.closeErr
}

func (c *Cluster) teardown(ctx context.Context) error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if c.stopVolumes != nil {
		// Volumes themselves are directories under the temp dir and go
		// with it.
		c.stopVolumes()
		<-c.volumesDone
	}
	c.stopProc("kubelet", 20*time.Second)
	if c.bins.Crictl != "" && c.running("containerd") {
		// rmp -f stops and removes every sandbox and its containers;
		// containerd's CRI runs the CNI DEL that removes veths and IPs.
		// If it fails (a slow CRI on a loaded machine), the steps below
		// still kill the containers, unmount their netns (which takes the
		// veths with it) and remove the dir holding the IP reservations,
		// and each reports what it could not remove: only what is left
		// behind fails the teardown.
		if out, err := run(ctx, c.bins.Crictl, "--runtime-endpoint", "unix://"+c.sock, "--timeout", "30s", "rmp", "--all", "--force"); err != nil {
			c.logf("kube-host: remove pod sandboxes: %v: %s (cleaning up without the CRI)", err, oneLine(out))
		}
	}
	for _, name := range []string{"kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		c.stopProc(name, 10*time.Second)
	}
	if c.bins.Dir != "" {
		// kube-proxy --cleanup removes the KUBE-* chains it made.
		if out, err := run(ctx, c.bins.Path("kube-proxy"), "--cleanup"); err != nil {
			c.logf("kube-host: kube-proxy --cleanup: %v: %s", err, oneLine(out))
		}
	}
	c.stopProc("containerd", 15*time.Second)
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		p.stop(5 * time.Second)
	}
	if c.dir != "" {
		// Shims are reparented away from containerd's process group;
		// find them (and any other straggler) by the dir in their args.
		note(killUnder(c.dir))
		note(unmountUnder(c.dir))
	}
	note(c.removeNewNetns())
	note(c.removeNewChains(ctx))
	if c.dir != "" {
		note(removeLinksInto(containerLogLinks, c.dir))
	}
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		if out, err := run(ctx, "ip", "link", "del", Bridge); err != nil {
			note(fmt.Errorf("delete bridge %s: %v: %s", Bridge, err, oneLine(out)))
		}
	}
	note(removeCgroupRoot())
	if c.dir != "" {
		if err := os.RemoveAll(c.dir); err != nil {
			note(fmt.Errorf("remove %s: %w", c.dir, err))
		}
	}
	if c.unlock != nil {
		c.unlock()
	}
	if len(errs) > 0 {
		return fmt.Errorf("kube-host teardown: %w", errors.Join(errs...))
	}
	return nil
}

func (c *Cluster) stopProc(name string, grace time.Duration) {
	c.mu.Lock()
	var ps []*proc
	for _, p := range c.procs {
		if p.name == name {
			ps = append(ps, p)
		}
	}
	c.mu.Unlock()
	for _, p := range ps {
		p.stop(grace)
	}
}

func (c *Cluster) running(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.name == name {
			select {
			case <-p.done:
			default:
				return true
			}
		}
	}
	return false
}

// killUnder SIGKILLs every process whose command line mentions dir.
func killUnder(dir string) error {
	pids, err := pidsMentioning(dir)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if left, _ := pidsMentioning(dir); len(left) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	left, _ := pidsMentioning(dir)
	return fmt.Errorf("processes %v under %s survived SIGKILL", left, dir)
}

// pidsMentioning lists processes (other than this one) with dir in their
// command line.
func pidsMentioning(dir string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if strings.Contains(string(b), dir) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// mount is one line of /proc/self/mountinfo: where, and which filesystem.
type mount struct{ point, fstype string }

// readMounts parses /proc/self/mountinfo, the one source for the mounts
// teardown removes and the cgroup hierarchies it creates and removes in.
func readMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		// "id parent major:minor root mountpoint options [tags] - fstype source superopts"
		line := sc.Text()
		i := strings.Index(line, " - ")
		if i < 0 {
			continue
		}
		fields, tail := strings.Fields(line[:i]), strings.Fields(line[i+3:])
		if len(fields) < 5 || len(tail) == 0 {
			continue
		}
		out = append(out, mount{point: unescapeMount(fields[4]), fstype: tail[0]})
	}
	return out, sc.Err()
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var mps []string
	for _, m := range ms {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			mps = append(mps, m.point)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// unmountUnder detaches every mount below dir (pod volumes, container
// rootfs, shm), deepest first, repeating for stacked mounts.
func unmountUnder(dir string) error {
	for i := 0; i < 5; i++ {
		mps, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			_ = syscall.Unmount(mp, syscall.MNT_DETACH)
		}
	}
	mps, _ := mountsUnder(dir)
	if len(mps) > 0 {
		return fmt.Errorf("mounts under %s survived unmount: %v", dir, mps)
	}
	return nil
}

// netnsDir is where containerd 1.6's CRI bind-mounts pod network namespaces.
const netnsDir = "/var/run/netns"

// hostState is what existed before Create, so teardown removes only what
// the run added where names are not the run's own.
type hostState struct {
	netns map[string]bool
	// chains are "<tool> <table> <chain>" of KUBE-* and CNI-* chains.
	chains map[string]bool
}

func snapshotHost(ctx context.Context) (hostState, error) {
	s := hostState{netns: map[string]bool{}, chains: map[string]bool{}}
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !os.IsNotExist(err) {
		return s, err
	}
	for _, e := range ents {
		s.netns[e.Name()] = true
	}
	for _, ch := range listChains(ctx) {
		s.chains[ch.key()] = true
	}
	return s, nil
}

// containerLogLinks is where the kubelet links every container's log
// (a fixed path, unlike podLogsDirectory).
const containerLogLinks = "/var/log/containers"

// removeLinksInto removes the symlinks in dir that point under target.
func removeLinksInto(dir, target string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if dest, err := os.Readlink(p); err == nil && strings.HasPrefix(dest, target+"/") {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

type chain struct{ tool, table, name string }

func (c chain) key() string { return c.tool + " " + c.table + " " + c.name }

// listChains lists the KUBE-* and CNI-* chains of iptables and ip6tables.
func listChains(ctx context.Context) []chain {
	var out []chain
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			b, err := run(ctx, tool, "-w", "5", "-t", table, "-S")
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				f := strings.Fields(l)
				if len(f) == 2 && f[0] == "-N" && (strings.HasPrefix(f[1], "KUBE-") || strings.HasPrefix(f[1], "CNI-")) {
					out = append(out, chain{tool, table, f[1]})
				}
			}
		}
	}
	return out
}

// removeNewChains deletes the KUBE-* and CNI-* chains that appeared during
// the run and survived kube-proxy --cleanup (the kubelet's own, for
// example): first the rules that jump to them, then the chains.
func (c *Cluster) removeNewChains(ctx context.Context) error {
	var errs []error
	byTable := map[[2]string][]string{}
	for _, ch := range listChains(ctx) {
		if !c.before.chains[ch.key()] {
			byTable[[2]string{ch.tool, ch.table}] = append(byTable[[2]string{ch.tool, ch.table}], ch.name)
		}
	}
	for tt, names := range byTable {
		tool, table := tt[0], tt[1]
		isNew := map[string]bool{}
		for _, n := range names {
			isNew[n] = true
		}
		b, err := run(ctx, tool, "-w", "5", "-t", table, "-S")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s -t %s -S: %w", tool, table, err))
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			args := splitRule(l)
			if len(args) < 2 || args[0] != "-A" || isNew[args[1]] {
				continue
			}
			for i := 2; i+1 < len(args); i++ {
				if (args[i] == "-j" || args[i] == "-g") && isNew[args[i+1]] {
					del := append([]string{"-w", "5", "-t", table, "-D"}, args[1:]...)
					if out, err := run(ctx, tool, del...); err != nil {
						errs = append(errs, fmt.Errorf("%s %s: %v: %s", tool, strings.Join(del, " "), err, oneLine(out)))
					}
					break
				}
			}
		}
		for _, n := range names {
			_, _ = run(ctx, tool, "-w", "5", "-t", table, "-F", n)
		}
		for _, n := range names {
			if out, err := run(ctx, tool, "-w", "5", "-t", table, "-X", n); err != nil {
				errs = append(errs, fmt.Errorf("%s -t %s -X %s: %v: %s", tool, table, n, err, oneLine(out)))
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an `iptables -S` line into arguments; comments are in
// double quotes.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == '\\' && inQuote && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case ch == '"':
			inQuote, have = !inQuote, true
		case (ch == ' ' || ch == '\t') && !inQuote:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// removeNewNetns unmounts and removes the CRI's netns files ("cni-*") that
// appeared during the run and outlived their sandboxes.
func (c *Cluster) removeNewNetns() error {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		if c.before.netns[e.Name()] || !strings.HasPrefix(e.Name(), "cni-") {
			continue
		}
		p := filepath.Join(netnsDir, e.Name())
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
		if err := os.Remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cgroupMounts lists the mount points of cgroup (v1 and v2) hierarchies.
func cgroupMounts() ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.fstype == "cgroup" || m.fstype == "cgroup2" {
			out = append(out, m.point)
		}
	}
	return out, nil
}

// makeCgroupRoot creates the kubelet's cgroupRoot in every hierarchy: the
// kubelet refuses a root that does not exist, and one subtree of its own
// is what lets teardown remove every cgroup the run made.
func makeCgroupRoot() error {
	mps, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := os.MkdirAll(filepath.Join(mp, cgroupRootName), 0o755); err != nil {
			return fmt.Errorf("create cgroup %s: %w", filepath.Join(mp, cgroupRootName), err)
		}
	}
	return nil
}

// removeCgroupRoot removes the cgroupRoot subtree in every hierarchy,
// deepest first (cgroup directories are removed with rmdir).
func removeCgroupRoot() error {
	mps, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	// Any process still in the subtree (a container whose shim was
	// killed before it) would keep its cgroup busy: kill it first.
	for i := 0; i < 20; i++ {
		pids := pidsInCgroups(mps)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, mp := range mps {
		root := filepath.Join(mp, cgroupRootName)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 20; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// pidsInCgroups lists the processes in the cgroupRoot subtree of any
// hierarchy.
func pidsInCgroups(mps []string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, mp := range mps {
		_ = filepath.WalkDir(filepath.Join(mp, cgroupRootName), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscanf(f, "%d", &pid); err == nil && pid > 0 && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// hostLockPath serialises kube-host clusters on a host: they share the
// bridge name, addresses and ports.
const hostLockPath = "/run/etcd-chaos-kube-host.lock"

func hostLock(ctx context.Context, logf func(string, ...any)) (func(), error) {
	f, err := os.OpenFile(hostLockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", hostLockPath, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", hostLockPath, err)
		}
		if !said {
			logf("kube-host: another kube-host cluster runs on this host; waiting for it to finish (%s)", hostLockPath)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for another kube-host cluster on this host to finish (%s): %w", hostLockPath, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
