package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// peer is one entry of ETCD_INITIAL_CLUSTER.
type peer struct {
	name, peerURL string
}

// config is what the chart tells the member, through etcd's own variables.
type config struct {
	name    string
	dataDir string
	// peers are every StatefulSet ordinal's member, this one included.
	peers   []peer
	peerURL string
	// clientScheme and clientPort are those of this member's first
	// advertised client URL; the other members' client URLs are the host of
	// their peer URL with this scheme and port.
	clientScheme, clientPort string
	// localClient reaches this member's own etcd.
	localClient string
	password    string
	tls         *tls.Config
	environ     []string
}

func configFromEnv(environ []string) (config, error) {
	get := func(k string) string { return envValue(environ, k) }
	c := config{name: get("ETCD_NAME"), dataDir: get("ETCD_DATA_DIR"), password: get("ETCD_ROOT_PASSWORD"), environ: environ}
	var missing []string
	for _, k := range []string{"ETCD_NAME", "ETCD_DATA_DIR", "ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_ADVERTISE_CLIENT_URLS", "ETCD_LISTEN_CLIENT_URLS"} {
		if get(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("missing environment: %s (the chart sets them)", strings.Join(missing, ", "))
	}
	for _, kv := range strings.Split(get("ETCD_INITIAL_CLUSTER"), ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || name == "" || u == "" {
			return c, fmt.Errorf("ETCD_INITIAL_CLUSTER: %q is not name=peerURL", kv)
		}
		c.peers = append(c.peers, peer{name: name, peerURL: u})
	}
	c.peerURL = strings.TrimSpace(strings.Split(get("ETCD_INITIAL_ADVERTISE_PEER_URLS"), ",")[0])
	found := false
	for _, p := range c.peers {
		if p.name == c.name {
			found = true
			if p.peerURL != c.peerURL {
				return c, fmt.Errorf("ETCD_INITIAL_CLUSTER gives %s the peer URL %s, ETCD_INITIAL_ADVERTISE_PEER_URLS %s", c.name, p.peerURL, c.peerURL)
			}
		}
	}
	if !found {
		return c, fmt.Errorf("ETCD_INITIAL_CLUSTER does not list this member %q", c.name)
	}
	adv, err := url.Parse(strings.TrimSpace(strings.Split(get("ETCD_ADVERTISE_CLIENT_URLS"), ",")[0]))
	if err != nil || adv.Port() == "" {
		return c, fmt.Errorf("ETCD_ADVERTISE_CLIENT_URLS: want scheme://host:port, got %q", get("ETCD_ADVERTISE_CLIENT_URLS"))
	}
	c.clientScheme, c.clientPort = adv.Scheme, adv.Port()
	lis, err := url.Parse(strings.TrimSpace(strings.Split(get("ETCD_LISTEN_CLIENT_URLS"), ",")[0]))
	if err != nil || lis.Port() == "" {
		return c, fmt.Errorf("ETCD_LISTEN_CLIENT_URLS: want scheme://host:port, got %q", get("ETCD_LISTEN_CLIENT_URLS"))
	}
	host := lis.Hostname()
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c.localClient = lis.Scheme + "://" + net.JoinHostPort(host, lis.Port())
	if c.clientScheme == "https" || lis.Scheme == "https" {
		// Auto-TLS certificates are self-signed and name nothing we dial;
		// the member only needs the channel, not to authenticate peers.
		c.tls = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // see above
		if cert, key := get("ETCD_CERT_FILE"), get("ETCD_KEY_FILE"); cert != "" && key != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return c, fmt.Errorf("client certificate %s: %w", cert, err)
			}
			c.tls.Certificates = []tls.Certificate{pair}
		}
	}
	return c, nil
}

func envValue(environ []string, key string) string {
	for i := len(environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// clientURL is the client URL of the member whose peer URL is peerURL.
func (c config) clientURL(peerURL string) string {
	u, err := url.Parse(peerURL)
	if err != nil {
		return ""
	}
	return c.clientScheme + "://" + net.JoinHostPort(u.Hostname(), c.clientPort)
}

// member prepares this member's data dir and membership.
type member struct {
	cfg              config
	etcdBin          string
	bootstrapTimeout time.Duration
	// settle is how long an established cluster without a leader is
	// waited for before a new one is bootstrapped.
	settle time.Duration
	logf   func(format string, args ...any)
	// start runs etcd in the background during a bootstrap; tests may
	// replace it.
	start func(env []string) (*exec.Cmd, error)
}

// prepare returns the environment to exec etcd with.
func (m *member) prepare(ctx context.Context) ([]string, error) {
	if err := os.MkdirAll(m.cfg.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	hasData := exists(filepath.Join(m.cfg.dataDir, "member", "wal"))
	v, err := m.observe(ctx)
	if err != nil {
		return nil, err
	}
	if hasData {
		if v.healthy && v.find(m.cfg) == nil {
			m.logf("a healthy cluster (via %s) no longer lists %s: wiping its data and adding it again", v.via, m.cfg.name)
			if err := m.wipe(); err != nil {
				return nil, err
			}
			return m.join(ctx, v)
		}
		m.logf("data dir %s holds member data: starting on it", m.cfg.dataDir)
		return m.env("", ""), nil
	}
	settleUntil := time.Now().Add(m.settle)
	for {
		switch {
		case v.healthy:
			return m.join(ctx, v)
		case v.answered == 0 && v.silent() == 0:
			m.logf("no other member is listening: bootstrapping a new cluster")
			return m.bootstrap(ctx)
		case v.established == 0 && v.silent() == 0:
			m.logf("the members that answer (%d) are bootstrapping too: bootstrapping a new cluster", v.answered)
			return m.bootstrap(ctx)
		case time.Now().After(settleUntil):
			m.logf("no leader among the other members for %v (%d answer, %d established, %d listen without answering): bootstrapping a new cluster", m.settle, v.answered, v.established, v.silent())
			return m.bootstrap(ctx)
		}
		if v.silent() > 0 {
			// A member that accepts connections but does not answer in
			// time is slow (a loaded node, a paused process), not absent:
			// bootstrapping beside it would start a second cluster.
			m.logf("%d members listen but do not answer yet: waiting", v.silent())
		} else {
			m.logf("an established cluster answers (%d members) but has no leader: waiting", v.established)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return nil, err
		}
		if v, err = m.observe(ctx); err != nil {
			return nil, err
		}
	}
}

// view is what the other members say.
type view struct {
	// healthy: one of them served a linearizable read.
	healthy bool
	via     string
	members []*etcdserverpb.Member
	// listening counts members whose client port accepts a connection;
	// answered those of them that answered Status; established those of
	// them whose raft log is past the bootstrap entries.
	listening, answered, established int
}

// silent is how many members accept connections but did not answer.
func (v view) silent() int { return v.listening - v.answered }

// find returns this member's entry: by name once it has started, by peer
// URL before.
func (v view) find(c config) *etcdserverpb.Member {
	for _, mb := range v.members {
		if mb.Name == c.name {
			return mb
		}
		for _, u := range mb.PeerURLs {
			if u == c.peerURL {
				return mb
			}
		}
	}
	return nil
}

func (m *member) client(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 2 * time.Second,
		TLS:         m.cfg.tls,
		Logger:      zap.NewNop(),
		Context:     ctx,
	}
	if m.cfg.password != "" {
		cfg.Username, cfg.Password = "root", m.cfg.password
	}
	return clientv3.New(cfg)
}

// observe asks every other member, in parallel, for its status. A wrong
// root password is an error: the member could not manage membership.
func (m *member) observe(ctx context.Context) (view, error) {
	var (
		mu      sync.Mutex
		v       view
		authErr error
		wg      sync.WaitGroup
	)
	for _, p := range m.cfg.peers {
		if p.name == m.cfg.name {
			continue
		}
		ep := m.cfg.clientURL(p.peerURL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if !listens(ctx, ep) {
				return
			}
			mu.Lock()
			v.listening++
			mu.Unlock()
			cli, err := m.client(ctx, ep)
			if err != nil {
				if errors.Is(err, rpctypes.ErrAuthFailed) {
					mu.Lock()
					authErr = fmt.Errorf("%s rejects root with ETCD_ROOT_PASSWORD: %w", ep, err)
					mu.Unlock()
				}
				return
			}
			defer cli.Close()
			st, err := cli.Status(ctx, ep)
			if err != nil {
				return
			}
			mu.Lock()
			v.answered++
			if st.RaftIndex > uint64(len(m.cfg.peers)) {
				v.established++
			}
			mu.Unlock()
			if st.Leader == 0 {
				return
			}
			if _, err := cli.Get(ctx, "health"); err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
				return
			}
			ml, err := cli.MemberList(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			if !v.healthy {
				v.healthy, v.via, v.members = true, ep, ml.Members
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if authErr != nil && !v.healthy {
		return v, authErr
	}
	return v, ctx.Err()
}

// join makes this member part of the healthy cluster v: an entry that was
// added but never started is reused; one that ran before (its data is
// gone) is removed and the member added again with a new ID. etcd refuses
// either change while too few other members are started; it is retried
// until they are.
func (m *member) join(ctx context.Context, v view) ([]string, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return nil, err
			}
			var err error
			if v, err = m.observe(ctx); err != nil {
				return nil, err
			}
			if !v.healthy {
				m.logf("waiting for a healthy member to join through")
				continue
			}
		}
		env, err := m.joinVia(ctx, v)
		if err == nil {
			return env, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.logf("joining through %s: %v (retrying)", v.via, err)
	}
}

func (m *member) joinVia(ctx context.Context, v view) ([]string, error) {
	cli, err := m.client(ctx, v.via)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if me := v.find(m.cfg); me != nil {
		if me.Name == "" && len(me.ClientURLs) == 0 {
			m.logf("cluster lists %s (ID %x) as added but never started: starting as that member", m.cfg.name, me.ID)
			return m.env(m.initialCluster(v.members, me.ID), "existing"), nil
		}
		m.logf("removing the stale member %s (ID %x): its data is gone", m.cfg.name, me.ID)
		if _, err := cli.MemberRemove(rctx, me.ID); err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) {
			return nil, fmt.Errorf("member remove %x: %w", me.ID, err)
		}
	}
	resp, err := cli.MemberAdd(rctx, []string{m.cfg.peerURL})
	if err != nil {
		return nil, fmt.Errorf("member add %s: %w", m.cfg.peerURL, err)
	}
	m.logf("added %s as member %x", m.cfg.name, resp.Member.ID)
	return m.env(m.initialCluster(resp.Members, resp.Member.ID), "existing"), nil
}

// initialCluster is ETCD_INITIAL_CLUSTER for joining: every current member
// by peer URL, named by the chart's list where the member has not
// published a name yet.
func (m *member) initialCluster(members []*etcdserverpb.Member, self uint64) string {
	var parts []string
	for _, mb := range members {
		for _, u := range mb.PeerURLs {
			name := mb.Name
			if mb.ID == self {
				name = m.cfg.name
			}
			if name == "" {
				for _, p := range m.cfg.peers {
					if p.peerURL == u {
						name = p.name
					}
				}
			}
			parts = append(parts, name+"="+u)
		}
	}
	return strings.Join(parts, ",")
}

// bootstrap starts a new cluster: etcd runs in the background until the
// cluster has a leader, authentication is enabled, and etcd is stopped
// again so that the caller can exec it. A failed attempt wipes the data
// dir, so that a restart does not take a half-made cluster for real data.
func (m *member) bootstrap(ctx context.Context) (env []string, err error) {
	env = m.env(m.envOr("ETCD_INITIAL_CLUSTER"), "new")
	start := m.start
	if start == nil {
		start = m.startBackground
	}
	cmd, err := start(env)
	if err != nil {
		return nil, err
	}
	// exited is closed when the background etcd is gone, and waitErr then
	// holds its status: a closed channel can be read by waitLeader and by
	// the cleanup below, where a single sent value left the second reader
	// blocked for ever once waitLeader had seen etcd exit.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	// reap collects the background etcd's exit; it was stopped on purpose,
	// so its status is only worth a log line.
	reap := func() {
		<-exited
		if waitErr != nil {
			m.logf("bootstrap etcd exited: %v", waitErr)
		}
	}
	defer func() {
		if err == nil {
			return
		}
		// The process may already be gone; the wipe below is what matters.
		_ = cmd.Process.Kill()
		reap()
		if werr := m.wipe(); werr != nil {
			m.logf("%v", werr)
		}
	}()
	bctx, cancel := context.WithTimeout(ctx, m.bootstrapTimeout)
	defer cancel()
	if err := m.waitLeader(bctx, exited, &waitErr); err != nil {
		return nil, fmt.Errorf("bootstrapping a new cluster: %w", err)
	}
	if m.cfg.password != "" {
		if err := m.enableAuth(bctx); err != nil {
			return nil, fmt.Errorf("enabling authentication: %w", err)
		}
	}
	// etcd exits non-zero on SIGTERM on some versions; its exit status says
	// nothing about the bootstrap, which already succeeded.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			m.logf("bootstrap etcd exited: %v", waitErr)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		reap()
	}
	m.logf("new cluster bootstrapped; restarting etcd in the foreground")
	return env, nil
}

func (m *member) envOr(key string) string { return envValue(m.cfg.environ, key) }

func (m *member) startBackground(env []string) (*exec.Cmd, error) {
	cmd := exec.Command(m.etcdBin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", m.etcdBin, err)
	}
	return cmd, nil
}

// waitLeader waits until the local etcd reports a leader.
func (m *member) waitLeader(ctx context.Context, exited <-chan struct{}, waitErr *error) error {
	for {
		err := func() error {
			cli, err := m.client(ctx, m.cfg.localClient)
			if err != nil {
				return err
			}
			defer cli.Close()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			st, err := cli.Status(sctx, m.cfg.localClient)
			if err != nil {
				return err
			}
			if st.Leader == 0 {
				return errors.New("no leader yet")
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd exited: %w", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("no leader within %v (last: %w)", m.bootstrapTimeout, err)
		case <-time.After(time.Second):
		}
	}
}

// enableAuth creates user root with the Secret's password and the root
// role, and turns authentication on. Every bootstrapping member tries, so
// each step accepts that another member did it first.
func (m *member) enableAuth(ctx context.Context) error {
	var last error
	for {
		done, err := m.tryEnableAuth(ctx)
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

func (m *member) tryEnableAuth(ctx context.Context) (bool, error) {
	cli, err := m.client(ctx, m.cfg.localClient)
	if err != nil {
		return false, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cli.AuthStatus(rctx)
	if err != nil {
		return false, err
	}
	if st.Enabled {
		return true, nil
	}
	if _, err := cli.UserAdd(rctx, "root", m.cfg.password); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return false, fmt.Errorf("user add root: %w", err)
	}
	if _, err := cli.UserGrantRole(rctx, "root", "root"); err != nil {
		return false, fmt.Errorf("grant role root: %w", err)
	}
	if _, err := cli.AuthEnable(rctx); err != nil {
		return false, fmt.Errorf("auth enable: %w", err)
	}
	m.logf("authentication enabled (user root)")
	return true, nil
}

// env is the environment for etcd: the container's, with the initial
// cluster settings replaced when given, and without the root password,
// which etcd does not need.
func (m *member) env(initialCluster, state string) []string {
	var out []string
	for _, kv := range m.cfg.environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "ETCD_ROOT_PASSWORD":
		case initialCluster != "" && (k == "ETCD_INITIAL_CLUSTER" || k == "ETCD_INITIAL_CLUSTER_STATE"):
		default:
			out = append(out, kv)
		}
	}
	if initialCluster != "" {
		out = append(out, "ETCD_INITIAL_CLUSTER="+initialCluster, "ETCD_INITIAL_CLUSTER_STATE="+state)
	}
	return out
}

// wipe empties the data dir (it may be a mount point, so it stays).
func (m *member) wipe() error {
	entries, err := os.ReadDir(m.cfg.dataDir)
	if err != nil {
		return fmt.Errorf("wipe data dir: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(m.cfg.dataDir, e.Name())); err != nil {
			return fmt.Errorf("wipe data dir: %w", err)
		}
	}
	return nil
}

// probe is a linearizable read through the local client URL, as root.
// Permission denied still proves the member serves, as with etcdctl.
func probe(ctx context.Context, cfg config) error {
	m := &member{cfg: cfg}
	cli, err := m.client(ctx, cfg.localClient)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "health"); err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return err
	}
	return nil
}

// listens reports whether endpoint's port accepts a TCP connection: a
// member process is there, whether or not it answers requests in time.
func listens(ctx context.Context, endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", u.Host)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
