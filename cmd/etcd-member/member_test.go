package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func baseEnv() []string {
	return []string{
		"ETCD_NAME=etcd-1",
		"ETCD_DATA_DIR=/bitnami/etcd/data",
		"ETCD_INITIAL_CLUSTER=etcd-0=http://etcd-0.etcd-headless.ns.svc.cluster.local:2380,etcd-1=http://etcd-1.etcd-headless.ns.svc.cluster.local:2380",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://etcd-1.etcd-headless.ns.svc.cluster.local:2380",
		"ETCD_ADVERTISE_CLIENT_URLS=http://etcd-1.etcd-headless.ns.svc.cluster.local:2379,http://etcd.ns.svc.cluster.local:2379",
		"ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379",
		"ETCD_ROOT_PASSWORD=s3cret",
		"ETCD_INITIAL_CLUSTER_STATE=new",
	}
}

func TestConfigFromEnv(t *testing.T) {
	c, err := configFromEnv(baseEnv())
	if err != nil {
		t.Fatal(err)
	}
	if c.name != "etcd-1" || len(c.peers) != 2 || c.localClient != "http://127.0.0.1:2379" || c.password != "s3cret" || c.tls != nil {
		t.Fatalf("config = %+v", c)
	}
	if got := c.clientURL(c.peers[0].peerURL); got != "http://etcd-0.etcd-headless.ns.svc.cluster.local:2379" {
		t.Errorf("client URL of etcd-0 = %s", got)
	}

	tlsEnv := append(baseEnv(), "ETCD_ADVERTISE_CLIENT_URLS=https://etcd-1.etcd-headless.ns.svc.cluster.local:2379", "ETCD_LISTEN_CLIENT_URLS=https://0.0.0.0:2379")
	c, err = configFromEnv(tlsEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.tls == nil || c.localClient != "https://127.0.0.1:2379" || !strings.HasPrefix(c.clientURL(c.peers[0].peerURL), "https://") {
		t.Errorf("https client URLs did not switch to TLS: %+v", c)
	}

	bad := map[string][]string{
		"missing name":       {"ETCD_NAME="},
		"not listed":         {"ETCD_NAME=etcd-7"},
		"malformed cluster":  {"ETCD_INITIAL_CLUSTER=etcd-0,etcd-1=http://x:2380"},
		"peer URL disagrees": {"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://elsewhere:2380"},
		"client URL no port": {"ETCD_ADVERTISE_CLIENT_URLS=http://etcd-1"},
	}
	for name, override := range bad {
		if _, err := configFromEnv(append(baseEnv(), override...)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEnvForEtcd(t *testing.T) {
	c, err := configFromEnv(baseEnv())
	if err != nil {
		t.Fatal(err)
	}
	m := &member{cfg: c}
	plain := m.env("", "")
	if envValue(plain, "ETCD_ROOT_PASSWORD") != "" {
		t.Error("the root password is passed on to etcd")
	}
	if envValue(plain, "ETCD_INITIAL_CLUSTER_STATE") != "new" || envValue(plain, "ETCD_NAME") != "etcd-1" {
		t.Errorf("env without overrides lost variables: %v", plain)
	}
	joined := m.env("etcd-0=http://a:2380,etcd-1=http://b:2380", "existing")
	if envValue(joined, "ETCD_INITIAL_CLUSTER_STATE") != "existing" || envValue(joined, "ETCD_INITIAL_CLUSTER") != "etcd-0=http://a:2380,etcd-1=http://b:2380" {
		t.Errorf("join env = %v", joined)
	}
	n := 0
	for _, kv := range joined {
		if strings.HasPrefix(kv, "ETCD_INITIAL_CLUSTER=") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("ETCD_INITIAL_CLUSTER set %d times", n)
	}
}

func TestInitialClusterNamesUnstartedMembers(t *testing.T) {
	c, err := configFromEnv(baseEnv())
	if err != nil {
		t.Fatal(err)
	}
	m := &member{cfg: c}
	members := []*etcdserverpb.Member{
		{ID: 1, Name: "etcd-0", PeerURLs: []string{c.peers[0].peerURL}},
		{ID: 2, PeerURLs: []string{c.peers[1].peerURL}}, // the one just added
		{ID: 3, PeerURLs: []string{"http://stranger:2380"}},
	}
	got := m.initialCluster(members, 2)
	want := "etcd-0=" + c.peers[0].peerURL + ",etcd-1=" + c.peers[1].peerURL + ",=http://stranger:2380"
	if got != want {
		t.Fatalf("initial cluster = %s, want %s", got, want)
	}
}

// pods simulates a StatefulSet's pods on loopback: each member has its own
// 127.0.x.y address (as each pod has its own IP) and the same ports, and
// runs prepare() then etcd, as the container's entrypoint would.
type pods struct {
	t        *testing.T
	etcd     string
	dir      string
	ips      []string
	cport    string
	pport    string
	password string

	mu    sync.Mutex
	procs map[int]*exec.Cmd
	logs  map[int]*bytes.Buffer
}

func newPods(t *testing.T, n int) *pods {
	etcd, err := etcdbin.Ensure(context.Background(), "", "", os.Stderr)
	if err != nil {
		t.Skipf("no etcd binary: %v", err)
	}
	// A /24 of loopback per test process; one free port pair used on each
	// address.
	subnet := fmt.Sprintf("127.0.%d", 10+os.Getpid()%200)
	p := &pods{t: t, etcd: etcd, dir: t.TempDir(), password: "s3cret", procs: map[int]*exec.Cmd{}, logs: map[int]*bytes.Buffer{}}
	for i := 0; i < n; i++ {
		p.ips = append(p.ips, fmt.Sprintf("%s.%d", subnet, i+1))
	}
	p.cport, p.pport = freePort(t, p.ips[0]), freePort(t, p.ips[0])
	t.Cleanup(func() {
		for i := range p.ips {
			p.kill(i)
		}
		if t.Failed() || testing.Verbose() {
			for i, l := range p.logs {
				t.Logf("member %d log:\n%s", i, l.String())
			}
		}
	})
	return p
}

func freePort(t *testing.T, ip string) string {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (loopback addresses beyond 127.0.0.1 needed): %v", ip, err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func (p *pods) name(i int) string { return fmt.Sprintf("etcd-%d", i) }
func (p *pods) peerURL(i int) string {
	return "http://" + net.JoinHostPort(p.ips[i], p.pport)
}
func (p *pods) clientURL(i int) string {
	return "http://" + net.JoinHostPort(p.ips[i], p.cport)
}
func (p *pods) dataDir(i int) string { return filepath.Join(p.dir, p.name(i), "data") }

func (p *pods) environ(i int) []string {
	var cluster []string
	for j := range p.ips {
		cluster = append(cluster, p.name(j)+"="+p.peerURL(j))
	}
	return []string{
		"ETCD_NAME=" + p.name(i),
		"ETCD_DATA_DIR=" + p.dataDir(i),
		"ETCD_INITIAL_CLUSTER=" + strings.Join(cluster, ","),
		"ETCD_INITIAL_CLUSTER_STATE=new",
		"ETCD_INITIAL_CLUSTER_TOKEN=etcd-chaos-test",
		"ETCD_INITIAL_ADVERTISE_PEER_URLS=" + p.peerURL(i),
		"ETCD_LISTEN_PEER_URLS=" + p.peerURL(i),
		"ETCD_ADVERTISE_CLIENT_URLS=" + p.clientURL(i),
		"ETCD_LISTEN_CLIENT_URLS=" + p.clientURL(i),
		"ETCD_ROOT_PASSWORD=" + p.password,
	}
}

// start runs member i's entrypoint logic and then etcd, like a container
// start; it returns once etcd is running (not necessarily joined).
func (p *pods) start(ctx context.Context, i int) error {
	cfg, err := configFromEnv(p.environ(i))
	if err != nil {
		return err
	}
	p.mu.Lock()
	log := p.logs[i]
	if log == nil {
		log = &bytes.Buffer{}
		p.logs[i] = log
	}
	p.mu.Unlock()
	w := &lockedWriter{mu: &p.mu, w: log}
	m := &member{
		cfg: cfg, etcdBin: p.etcd, bootstrapTimeout: time.Minute, settle: 30 * time.Second,
		logf: func(f string, a ...any) { fmt.Fprintf(w, "etcd-member: "+f+"\n", a...) },
	}
	m.start = func(env []string) (*exec.Cmd, error) { return p.spawn(i, env, w) }
	env, err := m.prepare(ctx)
	if err != nil {
		return fmt.Errorf("%s: prepare: %w", p.name(i), err)
	}
	_, err = p.spawn(i, env, w)
	return err
}

func (p *pods) spawn(i int, env []string, w *lockedWriter) (*exec.Cmd, error) {
	cmd := exec.Command(p.etcd)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.procs[i] = cmd
	p.mu.Unlock()
	return cmd, nil
}

// kill is a container kill: SIGKILL, data dir kept.
func (p *pods) kill(i int) {
	p.mu.Lock()
	cmd := p.procs[i]
	delete(p.procs, i)
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// delete is a pod delete without persistence: the data dir goes too.
func (p *pods) delete(i int) {
	p.kill(i)
	if err := os.RemoveAll(p.dataDir(i)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pods) startAll(ctx context.Context, which ...int) {
	p.t.Helper()
	errs := make(chan error, len(which))
	for _, i := range which {
		go func() { errs <- p.start(ctx, i) }()
	}
	for range which {
		if err := <-errs; err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *pods) client(t *testing.T, user bool, i ...int) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, j := range i {
		eps = append(eps, p.clientURL(j))
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if user {
		cfg.Username, cfg.Password = "root", p.password
	}
	var cli *clientv3.Client
	var err error
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cli, err = clientv3.New(cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("client for %v: %v", eps, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually retries f until it succeeds or two minutes pass.
func eventually(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func (p *pods) memberIDs(t *testing.T) map[string]uint64 {
	t.Helper()
	cli := p.client(t, true, 0, 1, 2)
	var ids map[string]uint64
	eventually(t, "three started members", func(ctx context.Context) error {
		ml, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		ids = map[string]uint64{}
		for _, m := range ml.Members {
			if m.Name == "" {
				return fmt.Errorf("member %x has not started", m.ID)
			}
			ids[m.Name] = m.ID
		}
		if len(ids) != len(p.ips) {
			return fmt.Errorf("members %v", ids)
		}
		return nil
	})
	return ids
}

// readVia reads key through member i only, linearizably.
func (p *pods) readVia(t *testing.T, i int, key string) (string, bool) {
	t.Helper()
	cli := p.client(t, true, i)
	var val string
	var found bool
	eventually(t, "read through "+p.name(i), func(ctx context.Context) error {
		r, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		found = len(r.Kvs) == 1
		if found {
			val = string(r.Kvs[0].Value)
		}
		return nil
	})
	return val, found
}

// TestMemberLifecycle runs three members through what a StatefulSet does
// to them and checks the Bitnami behaviour the harness relies on.
func TestMemberLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real etcd members")
	}
	p := newPods(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Install: all pods at once bootstrap one cluster with RBAC on.
	p.startAll(ctx, 0, 1, 2)
	ids := p.memberIDs(t)
	root := p.client(t, true, 0, 1, 2)
	eventually(t, "put as root", func(ctx context.Context) error {
		_, err := root.Put(ctx, "k", "v1")
		return err
	})
	anon := p.client(t, false, 0)
	if _, err := anon.Put(ctx, "k", "anon"); err == nil {
		t.Fatal("a client without credentials could write: authentication is not enabled")
	} else if !errors.Is(err, rpctypes.ErrUserEmpty) && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("unauthenticated put failed for another reason: %v", err)
	}

	t.Run("pod delete without persistence re-adds the member with a new ID", func(t *testing.T) {
		p.delete(2)
		if err := p.start(ctx, 2); err != nil {
			t.Fatal(err)
		}
		now := p.memberIDs(t)
		if now["etcd-2"] == ids["etcd-2"] || now["etcd-0"] != ids["etcd-0"] || now["etcd-1"] != ids["etcd-1"] {
			t.Fatalf("member IDs before %v, after %v: want only etcd-2's changed", ids, now)
		}
		if v, ok := p.readVia(t, 2, "k"); !ok || v != "v1" {
			t.Fatalf("re-added member reads k = %q, %v; want v1", v, ok)
		}
		ids = now
	})

	t.Run("container restart keeps the data and the ID", func(t *testing.T) {
		p.kill(1)
		if err := p.start(ctx, 1); err != nil {
			t.Fatal(err)
		}
		now := p.memberIDs(t)
		if now["etcd-1"] != ids["etcd-1"] {
			t.Fatalf("etcd-1's ID changed from %x to %x across a restart with data", ids["etcd-1"], now["etcd-1"])
		}
		if v, ok := p.readVia(t, 1, "k"); !ok || v != "v1" {
			t.Fatalf("restarted member reads k = %q, %v", v, ok)
		}
	})

	t.Run("a removed member with data wipes it and is added again", func(t *testing.T) {
		p.kill(1)
		eventually(t, "remove etcd-1", func(ctx context.Context) error {
			_, err := p.client(t, true, 0).MemberRemove(ctx, ids["etcd-1"])
			if errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil
			}
			return err
		})
		if err := p.start(ctx, 1); err != nil {
			t.Fatal(err)
		}
		now := p.memberIDs(t)
		if now["etcd-1"] == ids["etcd-1"] {
			t.Fatalf("etcd-1 came back with its removed ID %x", now["etcd-1"])
		}
		if v, ok := p.readVia(t, 1, "k"); !ok || v != "v1" {
			t.Fatalf("re-added member reads k = %q, %v", v, ok)
		}
		ids = now
	})

	t.Run("deleting every pod without persistence bootstraps a new empty cluster", func(t *testing.T) {
		for i := range p.ips {
			p.delete(i)
		}
		p.startAll(ctx, 0, 1, 2)
		p.memberIDs(t)
		if v, ok := p.readVia(t, 0, "k"); ok {
			t.Fatalf("k = %q survived deleting every pod of an ephemeral cluster", v)
		}
		anon := p.client(t, false, 1)
		if _, err := anon.Put(ctx, "k", "anon"); err == nil {
			t.Fatal("the new cluster has no authentication")
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestBootstrapReturnsWhenEtcdExits: a bootstrap etcd that dies before
// electing a leader must make prepare fail (so the container restarts),
// not leave the entrypoint waiting for an exit status it already consumed.
func TestBootstrapReturnsWhenEtcdExits(t *testing.T) {
	c, err := configFromEnv(baseEnv())
	if err != nil {
		t.Fatal(err)
	}
	c.dataDir = filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(c.dataDir, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	c.localClient = "http://127.0.0.1:1" // nothing answers, as before a leader
	m := &member{
		cfg: c, bootstrapTimeout: time.Minute,
		logf: t.Logf,
		start: func([]string) (*exec.Cmd, error) {
			cmd := exec.Command("/bin/sh", "-c", "exit 3")
			return cmd, cmd.Start()
		},
	}
	done := make(chan error, 1)
	go func() { _, err := m.bootstrap(context.Background()); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "etcd exited") {
			t.Fatalf("bootstrap = %v, want an error saying etcd exited", err)
		}
		if exists(filepath.Join(c.dataDir, "member")) {
			t.Error("the failed bootstrap left its data behind")
		}
	case <-time.After(time.Minute):
		t.Fatal("bootstrap still waiting a minute after its etcd exited")
	}
}

// TestSilentPeerDelaysBootstrap: a member without data must not bootstrap
// a new cluster while another member's port accepts connections but its
// answers are late (a loaded node): that would start a second cluster
// beside the real one. Only after the settle time does it give up waiting.
func TestSilentPeerDelaysBootstrap(t *testing.T) {
	// The silent peer: accepts and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	// A peer nothing listens on.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	for _, tc := range []struct {
		name     string
		peer     string
		wantWait bool
	}{
		{"silent peer", l.Addr().String(), true},
		{"no peer listening", goneAddr, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := configFromEnv(baseEnv())
			if err != nil {
				t.Fatal(err)
			}
			c.dataDir = filepath.Join(t.TempDir(), "data")
			host, port, _ := net.SplitHostPort(tc.peer)
			for i := range c.peers {
				if c.peers[i].name != c.name {
					// clientURL maps a peer URL to its client URL by port;
					// point the peer's client port at the test listener.
					c.peers[i].peerURL = "http://" + net.JoinHostPort(host, "1")
				}
			}
			c.clientPort = port
			var logs []string
			var mu sync.Mutex
			bootstrapped := make(chan time.Time, 1)
			m := &member{
				cfg: c, bootstrapTimeout: time.Second, settle: 4 * time.Second,
				logf: func(f string, a ...any) {
					mu.Lock()
					logs = append(logs, fmt.Sprintf(f, a...))
					mu.Unlock()
				},
				start: func([]string) (*exec.Cmd, error) {
					bootstrapped <- time.Now()
					return nil, errors.New("test: no etcd")
				},
			}
			begin := time.Now()
			if _, err := m.prepare(context.Background()); err == nil {
				t.Fatal("prepare succeeded without an etcd to run")
			}
			var at time.Time
			select {
			case at = <-bootstrapped:
			default:
				t.Fatalf("prepare never bootstrapped; log: %q", logs)
			}
			waited := at.Sub(begin)
			if tc.wantWait && waited < m.settle {
				t.Fatalf("bootstrapped after %v beside a peer that listens (settle %v); log: %q", waited, m.settle, logs)
			}
			if !tc.wantWait && waited >= m.settle {
				t.Fatalf("waited %v although no peer listens; log: %q", waited, logs)
			}
		})
	}
}
