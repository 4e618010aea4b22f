package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/faultproxy"
)

// Cluster is a running local cluster. It implements cluster.Cluster and
// cluster.Faults.
type Cluster struct {
	bin      string
	version  string
	token    string
	flags    []string // settings' flags, then CreateWithFlags'
	settings Settings
	peerTLS  *peerTLS // nil: plaintext peers
	// creds are the user and password clients send: empty, except for a
	// cluster restored from a snapshot of a cluster with auth enabled.
	creds cluster.Credentials
	// failpoints lists the binary's gofail failpoints; nil for a plain build.
	failpoints []string
	tmpDir     string
	logDir     string
	keepData   bool
	owner      *os.File // flock held while the cluster lives; see makeTempDir
	net        *faultproxy.Network
	members    []*member

	mu       sync.Mutex
	closed   bool
	closeErr error
}

var (
	_ cluster.Cluster = (*Cluster)(nil)
	_ cluster.Faults  = (*Cluster)(nil)
)

// Backend returns "local".
func (c *Cluster) Backend() string { return "local" }

// Version is the version the etcd binary reports, such as "3.6.4".
func (c *Cluster) Version() string { return c.version }

// Binary is the etcd binary the members run.
func (c *Cluster) Binary() string { return c.bin }

// Members lists the members; ClientURL is the member's client proxy.
func (c *Cluster) Members() []cluster.Member {
	out := make([]cluster.Member, len(c.members))
	for i, m := range c.members {
		out[i] = cluster.Member{Name: m.name, ClientURL: m.clientURL()}
	}
	return out
}

// Endpoints returns every member's client URL (through its proxy).
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.members))
	for i, m := range c.members {
		out[i] = m.clientURL()
	}
	return out
}

// Credentials are empty (local members run without auth or TLS) unless
// CreateWithCredentials set them.
func (c *Cluster) Credentials() cluster.Credentials { return c.creds }

// Client opens a client on endpoints (all members when none). Dialing does
// not block; keepalives make a dead or partitioned connection fail within
// seconds rather than hang.
func (c *Cluster) Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	return clientv3.New(clientConfig(endpoints, c.creds))
}

// clientConfig is the client configuration Client uses: the shared one.
func clientConfig(endpoints []string, creds cluster.Credentials) clientv3.Config {
	return cluster.ClientConfig(endpoints, creds)
}

// Leader returns the member a majority names as leader.
func (c *Cluster) Leader(ctx context.Context) (cluster.Member, error) {
	return cluster.FindLeader(ctx, c)
}

// WaitHealthy waits until every member answers and they agree on a leader.
func (c *Cluster) WaitHealthy(ctx context.Context) error { return cluster.WaitHealthy(ctx, c) }

// Settings are the member settings the cluster was created with.
func (c *Cluster) Settings() Settings { return c.settings }

// AutoCompaction says why the members may compact their store without a
// client asking (Settings.AutoCompaction, in the environment they
// inherit), or "" when they never do.
func (c *Cluster) AutoCompaction(context.Context) string {
	return c.settings.AutoCompaction(os.Environ())
}

// Faults returns the cluster itself.
func (c *Cluster) Faults() cluster.Faults { return c }

// DataDir returns the member's --data-dir.
func (c *Cluster) DataDir(member string) (string, error) {
	m, err := c.member(member)
	if err != nil {
		return "", err
	}
	return m.dataDir, nil
}

// LogPath returns the member's log file.
func (c *Cluster) LogPath(member string) (string, error) {
	m, err := c.member(member)
	if err != nil {
		return "", err
	}
	return m.logPath, nil
}

// MemberIDs maps member names to raft member IDs; ReplaceMember changes a
// member's ID.
func (c *Cluster) MemberIDs() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]uint64{}
	for _, m := range c.members {
		out[m.name] = m.id
	}
	return out
}

// PIDs maps the names of running members to their process IDs.
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, m := range c.members {
		if m.proc != nil && !m.proc.done() {
			out[m.name] = m.proc.cmd.Process.Pid
		}
	}
	return out
}

func (c *Cluster) member(name string) (*member, error) {
	for _, m := range c.members {
		if m.name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no member %q in this cluster (members are member-0..member-%d)", name, len(c.members)-1)
}

// CollectLogs copies every member's log to <dir>/logs/<member>.log, which is
// a no-op when the cluster was created with that artifact dir.
func (c *Cluster) CollectLogs(ctx context.Context, dir string) error {
	dst := filepath.Join(dir, "logs")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dst, err)
	}
	for _, m := range c.members {
		if err := ctx.Err(); err != nil {
			return err
		}
		to := filepath.Join(dst, m.name+".log")
		if same(m.logPath, to) {
			continue
		}
		if err := copyFile(m.logPath, to); err != nil {
			return fmt.Errorf("collecting %s log: %w", m.name, err)
		}
	}
	return nil
}

func same(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitHealthyWatchingExits waits for a healthy cluster, checking between
// polls whether a member died so that a bad flag or port clash shows as an
// error at once, instead of as a timeout.
func (c *Cluster) waitHealthyWatchingExits(ctx context.Context) error {
	for {
		for _, m := range c.members {
			if err := c.exitReport(m); err != nil {
				return err
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c.mu.Lock()
		for _, m := range c.members {
			if p := m.proc; p != nil {
				// Stop polling as soon as a member dies.
				go func() {
					select {
					case <-p.exited:
						cancel()
					case <-wctx.Done():
					}
				}()
			}
		}
		c.mu.Unlock()
		err := cluster.WaitHealthy(wctx, c)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("local cluster did not become healthy: %v (member logs in %s)", err, c.logDir)
		}
	}
}

func (c *Cluster) learnMemberIDs(ctx context.Context) error {
	cli, err := c.Client(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.MemberList(lctx)
	if err != nil {
		return fmt.Errorf("listing members: %w", err)
	}
	ids := map[uint64]string{}
	for _, mm := range resp.Members {
		for _, m := range c.members {
			if mm.Name == m.name {
				m.id = mm.ID
				ids[mm.ID] = m.name
			}
		}
	}
	for _, m := range c.members {
		if m.id == 0 {
			return fmt.Errorf("member list lacks %s; a seeded data dir may hold another cluster's membership", m.name)
		}
	}
	c.net.SetMemberIDs(ids)
	return nil
}

// Close stops every member (SIGTERM, SIGKILL after 5s), closes the proxies
// and removes the temp dir unless CreateWithKeepData was given. It is safe
// to call more than once and after a partial start.
func (c *Cluster) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	c.mu.Unlock()
	// No other method starts processes once closed is set, so the members
	// can be stopped without the lock. A leader told to stop first tries to
	// hand leadership to a follower; if the followers are stopping too it
	// waits out a timeout (measured: 7s instead of 1s). So followers stop
	// first, in parallel, then whoever believes it leads.
	for _, m := range c.members {
		if p := m.proc; p != nil && m.paused && !p.done() {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
			m.paused = false
		}
	}
	leaders := c.selfDeclaredLeaders(ctx)
	for _, last := range []bool{false, true} {
		var wg sync.WaitGroup
		for _, m := range c.members {
			if leaders[m.name] != last {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.stop(ctx, syscall.SIGTERM, 5*time.Second)
			}()
		}
		wg.Wait()
	}
	var errs []error
	if err := c.net.Close(); err != nil {
		errs = append(errs, err)
	}
	if c.owner != nil {
		c.owner.Close()
	}
	if !c.keepData && c.tmpDir != "" {
		if err := os.RemoveAll(c.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("cannot remove %s: %w", c.tmpDir, err))
		}
	}
	c.mu.Lock()
	c.closeErr = errors.Join(errs...)
	c.mu.Unlock()
	return errors.Join(errs...)
}

// selfDeclaredLeaders asks every running member, on its own client port
// (faults do not apply), whether it is leader. Members that do not answer
// within a second count as followers.
func (c *Cluster) selfDeclaredLeaders(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m.proc == nil || m.proc.done() {
			continue
		}
		url := "http://" + m.realClient
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			cli, err := clientv3.New(clientConfig([]string{url}, c.creds))
			if err != nil {
				return
			}
			defer cli.Close()
			st, err := cli.Status(sctx, url)
			if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				mu.Lock()
				out[m.name] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// TempDir is the cluster's private directory holding data dirs (and logs
// when no artifact dir was given).
func (c *Cluster) TempDir() string { return c.tmpDir }
