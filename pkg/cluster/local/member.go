package local

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/mod/semver"

	"github.com/etcd-chaos/etcd-chaos/pkg/faultproxy"
)

// member is one etcd process slot: fixed name, data dir and advertised
// (proxy) URLs; the real listen ports and the process change on restart.
type member struct {
	name        string
	peerScheme  string // "http", or "https" with peer TLS
	dataDir     string
	logPath     string
	peerProxy   *faultproxy.Proxy
	clientProxy *faultproxy.Proxy
	id          uint64

	// Guarded by Cluster.mu.
	realPeer   string // host:port etcd listens on for peers
	realClient string // host:port etcd listens on for clients
	gofail     string // host:port of gofail's HTTP endpoint (failpoint builds)
	proc       *process
	paused     bool
	clashes    int // port clashes met while starting
	// joinExisting starts the member with --initial-cluster-state=existing:
	// it was added to a running cluster (ReplaceMember).
	joinExisting bool
}

func (m *member) peerURL() string   { return m.peerScheme + "://" + m.peerProxy.Addr() }
func (m *member) clientURL() string { return "http://" + m.clientProxy.Addr() }

// process is one run of a member's etcd.
type process struct {
	cmd     *exec.Cmd
	logFrom int64         // log size when it started: its own lines follow
	exited  chan struct{} // closed once Wait returns
	err     error         // Wait's result, valid after exited
}

func (p *process) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (c *Cluster) addMembers(n int) error {
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("member-%d", i)
		m := &member{
			name:       name,
			peerScheme: "http",
			dataDir:    filepath.Join(c.tmpDir, name+".etcd"),
			logPath:    filepath.Join(c.logDir, name+".log"),
		}
		if c.peerTLS != nil {
			m.peerScheme = "https"
		}
		var err error
		// The proxies keep their ports for the cluster's life, so members
		// keep their advertised URLs, and thus their IDs, across restarts.
		if m.peerProxy, err = c.net.ListenPeer(name, "127.0.0.1:0", ""); err != nil {
			return err
		}
		if m.clientProxy, err = c.net.ListenClient(name, "127.0.0.1:0", ""); err != nil {
			return err
		}
		c.members = append(c.members, m)
	}
	return nil
}

func (c *Cluster) initialCluster() string {
	var parts []string
	for _, m := range c.members {
		parts = append(parts, m.name+"="+m.peerURL())
	}
	return strings.Join(parts, ",")
}

func (c *Cluster) specs() []MemberSpec {
	var out []MemberSpec
	ic := c.initialCluster()
	for _, m := range c.members {
		out = append(out, MemberSpec{
			Name:           m.name,
			DataDir:        m.dataDir,
			PeerURL:        m.peerURL(),
			ClientURL:      m.clientURL(),
			InitialCluster: ic,
			ClusterToken:   c.token,
		})
	}
	return out
}

// pickPort returns a port that was free a moment ago. Another process may
// take it before etcd binds it; startMember's callers retry on that clash.
var pickPort = func() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("cannot find a free port on 127.0.0.1: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// args is the member's command line. Flags exist in etcd 3.4 through 3.7
// unless noted; the settings' flags (snapshot count among them, see
// Settings) come last, translated for the binary's version.
func (c *Cluster) args(m *member) []string {
	a := []string{
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-peer-urls", m.peerScheme + "://" + m.realPeer,
		"--listen-client-urls", "http://" + m.realClient,
		"--initial-advertise-peer-urls", m.peerURL(),
		"--advertise-client-urls", m.clientURL(),
		"--initial-cluster", c.initialCluster(),
		// Ignored by a member whose data dir already holds a cluster, so
		// restarts and seeded starts use the same flags.
		"--initial-cluster-state", c.clusterState(m),
		"--initial-cluster-token", c.token,
		// Elections in about a second, so faults show within a test's time.
		"--heartbeat-interval", "100",
		"--election-timeout", "1000",
	}
	if c.peerTLS != nil {
		a = append(a, c.peerTLS.args()...)
	}
	if atLeast(c.version, "v3.4") {
		// zap to stderr, which goes to the member's log file: that also
		// catches Go panics, which bypass the logger.
		a = append(a, "--logger", "zap", "--log-outputs", "stderr")
	}
	return append(a, c.flags...)
}

func (c *Cluster) clusterState(m *member) string {
	if m.joinExisting {
		return "existing"
	}
	return "new"
}

// atLeast says whether version is at least want ("v3.4"). A version that is
// not one (a build from a branch) counts as new: flags old etcd lacks are
// the rare case.
func atLeast(version, want string) bool {
	v := "v" + strings.TrimPrefix(version, "v")
	return !semver.IsValid(v) || semver.Compare(v, want) >= 0
}

// startMember picks real ports and starts the member's process; it does not
// wait for it to serve.
func (c *Cluster) startMember(m *member) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startMemberLocked(m, true)
}

func (c *Cluster) startMemberLocked(m *member, newPorts bool) error {
	if c.closed {
		return fmt.Errorf("cluster is closed")
	}
	if newPorts || m.realPeer == "" {
		var err error
		if m.realPeer, err = pickPort(); err != nil {
			return err
		}
		if m.realClient, err = pickPort(); err != nil {
			return err
		}
		if c.failpoints != nil {
			if m.gofail, err = pickPort(); err != nil {
				return err
			}
		}
	}
	m.peerProxy.SetTarget(m.realPeer)
	m.clientProxy.SetTarget(m.realClient)

	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cannot open %s log: %w", m.name, err)
	}
	defer logf.Close() // the child holds its own copy
	st, _ := logf.Stat()
	fmt.Fprintf(logf, "--- etcd-chaos: starting %s at %s: %s %s\n", m.name, time.Now().UTC().Format(time.RFC3339Nano), c.bin, strings.Join(c.args(m), " "))
	cmd := exec.Command(c.bin, c.args(m)...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if c.failpoints != nil {
		// Failpoints are armed per process over HTTP; a restart comes up
		// with every failpoint off again.
		cmd.Env = append(os.Environ(), "GOFAIL_HTTP="+m.gofail)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("cannot start %s (%s): %w", m.name, c.bin, err)
	}
	p := &process{cmd: cmd, logFrom: st.Size(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	m.proc = p
	m.paused = false
	return nil
}

// Pdeathsig fires when the *thread* that forked the child exits, not the
// process (golang/go#27505), and Go retires threads at will. So every member
// is forked from one goroutine locked to a thread that lives as long as the
// harness.
var (
	spawnOnce sync.Once
	spawnReqs = make(chan spawnReq)
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must not exit
			for r := range spawnReqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd, make(chan error, 1)}
	spawnReqs <- r
	return <-r.err
}

var (
	addrInUse = regexp.MustCompile(`address already in use`)
	errorLine = regexp.MustCompile(`(?i)"level":"(error|fatal|panic)"|^panic:|^fatal error:|flag provided but not defined|invalid|\berror\b`)
)

// exitReport checks a process that exited. A port clash is retried with
// fresh ports (up to 5 times per member), anything else is an error naming
// the member and quoting its log.
func (c *Cluster) exitReport(m *member) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := m.proc
	if p == nil || !p.done() || c.closed {
		return nil
	}
	tail := logTail(m.logPath, p.logFrom, 12)
	if addrInUse.MatchString(tail) {
		m.clashes++
		if m.clashes > 5 {
			return fmt.Errorf("%s could not bind its ports after %d attempts (another process keeps taking them): %s", m.name, m.clashes, lastLine(tail))
		}
		return c.startMemberLocked(m, true)
	}
	return fmt.Errorf("%s exited while starting (%v); its log says:\n%s", m.name, p.err, tail)
}

// logTail returns up to n last lines of the log written since offset.
func logTail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	b = bytes.TrimRight(b[offset:], "\n")
	lines := strings.Split(string(b), "\n")
	// etcd prints its usage after a flag error, burying the one line that
	// matters; prefer lines that read like errors.
	var errs []string
	for _, l := range lines {
		if errorLine.MatchString(l) {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		lines = errs
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// stop ends a member's process: SIGCONT first (a stopped process ignores
// SIGTERM until thawed), then sig, then SIGKILL after grace.
func (m *member) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) {
	p := m.proc
	if p == nil || p.done() {
		return
	}
	pgid := p.cmd.Process.Pid
	if m.paused {
		_ = syscall.Kill(-pgid, syscall.SIGCONT)
		m.paused = false
	}
	_ = syscall.Kill(-pgid, sig)
	if sig != syscall.SIGKILL {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.exited:
			return
		case <-t.C:
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	// SIGKILL cannot be ignored; the wait is bounded by the kernel.
	<-p.exited
}
