package local

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// etcdBinary builds (first run: about a minute) or reuses the default etcd.
func etcdBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real etcd binary (skipped in -short mode)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := etcdbin.Ensure(ctx, "", "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func create(t testing.TB, opts ...CreateOption) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := NewProvider(WithEtcdBinary(etcdBinary(t))).Create(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func endpoint(t testing.TB, c *Cluster, name string) string {
	t.Helper()
	for _, m := range c.Members() {
		if m.Name == name {
			return m.ClientURL
		}
	}
	t.Fatalf("no member %s", name)
	return ""
}

// client opens a client pinned to one member.
func client(t testing.TB, c *Cluster, name string) *clientv3.Client {
	t.Helper()
	cli, err := c.Client(context.Background(), endpoint(t, c, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func serializableGet(ctx context.Context, cli *clientv3.Client, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, clientv3.WithSerializable())
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// eventually polls f until it returns nil or 30s pass.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// put writes k=v, retrying through elections: right after a fault a
// request may time out even though the cluster recovers a moment later.
func put(t testing.TB, cli *clientv3.Client, k, v string) {
	t.Helper()
	eventually(t, "put "+k+"="+v, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, k, v)
		return err
	})
}

func others(c *Cluster, name string) []string {
	var out []string
	for _, m := range c.Members() {
		if m.Name != name {
			out = append(out, m.Name)
		}
	}
	return out
}

// TestCluster runs the fault primitives against one 3-member cluster, then
// checks Close leaves no process and no data dir behind.
func TestCluster(t *testing.T) {
	artifacts := t.TempDir()
	c := create(t, CreateWithArtifactDir(artifacts))
	// Bounded, so a failed step cannot leave a later wait hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if c.Backend() != "local" || "v"+c.Version() != etcdbin.DefaultVersion || len(c.Endpoints()) != 3 {
		t.Fatalf("backend %s version %s endpoints %v", c.Backend(), c.Version(), c.Endpoints())
	}
	ids := c.MemberIDs()
	if len(ids) != 3 || ids["member-0"] == 0 {
		t.Fatalf("member IDs %v", ids)
	}

	t.Run("PutGet", func(t *testing.T) {
		cli, err := c.Client(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		put(t, cli, "/kv/a", "1")
		resp, err := cli.Get(ctx, "/kv/a")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
			t.Fatalf("get = %v, %v", resp, err)
		}
	})

	t.Run("KillRestartKeepsData", func(t *testing.T) {
		victim := "member-1"
		put(t, client(t, c, "member-0"), "/kv/before-kill", "kept")
		if err := c.Kill(ctx, victim); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.PIDs()[victim]; ok {
			t.Fatal("killed member still has a process")
		}
		if err := c.Kill(ctx, victim); err != nil {
			t.Fatalf("second Kill: %v", err)
		}
		put(t, client(t, c, "member-0"), "/kv/while-down", "caught-up")
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := c.Restart(rctx, victim); err != nil {
			t.Fatal(err)
		}
		cli := client(t, c, victim)
		if v, err := serializableGet(ctx, cli, "/kv/before-kill"); err != nil || v != "kept" {
			t.Fatalf("after restart, %s has /kv/before-kill=%q (%v); want kept", victim, v, err)
		}
		eventually(t, "restarted member catches up", func() error {
			v, err := serializableGet(ctx, cli, "/kv/while-down")
			if err == nil && v != "caught-up" {
				err = errors.New("not yet replicated")
			}
			return err
		})
		if err := c.WaitHealthy(rctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("PauseResume", func(t *testing.T) {
		victim := "member-2"
		cli := client(t, c, victim)
		if err := c.Pause(ctx, victim); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Status(sctx, endpoint(t, c, victim))
		cancel()
		if err == nil {
			t.Fatal("paused member answered Status")
		}
		if err := c.Resume(ctx, victim); err != nil {
			t.Fatal(err)
		}
		eventually(t, "resumed member answers", func() error {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err := cli.Status(sctx, endpoint(t, c, victim))
			return err
		})
	})

	t.Run("CutLeader", func(t *testing.T) {
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		old, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rest := others(c, old.Name)
		oldCli := client(t, c, old.Name)
		put(t, oldCli, "/kv/cut", "before")
		// Make sure the old leader's open connections are in use.
		eventually(t, "value on old leader", func() error {
			v, err := serializableGet(ctx, oldCli, "/kv/cut")
			if err == nil && v != "before" {
				err = errors.New("not yet")
			}
			return err
		})
		for _, o := range rest {
			if err := c.Cut(ctx, old.Name, o); err != nil {
				t.Fatal(err)
			}
		}
		newCli := client(t, c, rest[0])
		eventually(t, "new leader among "+strings.Join(rest, ","), func() error {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := newCli.Status(sctx, endpoint(t, c, rest[0]))
			if err != nil {
				return err
			}
			if st.Leader == 0 || st.Leader == c.MemberIDs()[old.Name] {
				return errors.New("old leader still leads")
			}
			return nil
		})
		put(t, newCli, "/kv/cut", "after")
		// The old leader's peer streams were open before the cut; had the
		// cut spared them, it would have the new value.
		time.Sleep(500 * time.Millisecond)
		if v, err := serializableGet(ctx, oldCli, "/kv/cut"); err != nil || v != "before" {
			t.Fatalf("cut-off old leader reads %q (%v); want the stale %q", v, err, "before")
		}
		lctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err = oldCli.Get(lctx, "/kv/cut")
		cancel()
		if err == nil {
			t.Fatal("linearizable read on a minority member succeeded")
		}
		if err := c.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "old leader catches up after heal", func() error {
			v, err := serializableGet(ctx, oldCli, "/kv/cut")
			if err == nil && v != "after" {
				err = errors.New("still stale")
			}
			return err
		})
	})

	t.Run("IsolateClient", func(t *testing.T) {
		victim := "member-0"
		cli := client(t, c, victim)
		put(t, cli, "/kv/iso", "1")
		if err := c.IsolateClient(ctx, victim); err != nil {
			t.Fatal(err)
		}
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(gctx, "/kv/iso", clientv3.WithSerializable())
		cancel()
		if err == nil {
			t.Fatal("isolated member answered a client")
		}
		put(t, client(t, c, "member-1"), "/kv/iso", "2") // peers unaffected
		c.Heal(ctx)
		eventually(t, "client reaches member after heal", func() error {
			_, err := serializableGet(ctx, cli, "/kv/iso")
			return err
		})
	})

	t.Run("Degrade", func(t *testing.T) {
		if err := c.WaitHealthy(ctx); err != nil {
			t.Fatal(err)
		}
		leader, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const lat = 100 * time.Millisecond
		if err := c.Degrade(ctx, leader.Name, lat, 0); err != nil {
			t.Fatal(err)
		}
		cli := client(t, c, leader.Name)
		start := time.Now()
		put(t, cli, "/kv/slow", "1")
		// Lower bound only: a commit needs the leader's append to reach a
		// follower, which the degradation delays.
		if d := time.Since(start); d < lat {
			t.Errorf("put on a leader with %v peer latency took %v", lat, d)
		}
		c.Heal(ctx)
	})

	if err := c.CollectLogs(ctx, artifacts); err != nil {
		t.Fatalf("CollectLogs into the artifact dir: %v", err)
	}
	other := t.TempDir()
	if err := c.CollectLogs(ctx, other); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(other, "logs", "member-0.log")); err != nil || len(b) == 0 {
		t.Fatalf("collected log: %d bytes, %v", len(b), err)
	}

	pids := c.PIDs()
	if len(pids) != 3 {
		t.Fatalf("running members %v, want 3", pids)
	}
	if err := c.Pause(ctx, "member-1"); err != nil { // Close must thaw it
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Close: %v", name, pid, err)
		}
	}
	if _, err := os.Stat(c.TempDir()); !os.IsNotExist(err) {
		t.Errorf("temp dir %s left after Close: %v", c.TempDir(), err)
	}
	if _, err := os.Stat(filepath.Join(artifacts, "logs", "member-2.log")); err != nil {
		t.Errorf("member log not in the artifact dir: %v", err)
	}
}

func TestCreateRejectsMemberCount(t *testing.T) {
	_, err := NewProvider(WithEtcdBinary("/bin/true")).Create(context.Background(), CreateWithMembers(2))
	if err == nil || !strings.Contains(err.Error(), "members must be 1, 3 or 5") {
		t.Fatalf("err = %v", err)
	}
}

func TestCreateRejectsNonEtcdBinary(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	script := filepath.Join(tmp, "fake-etcd")
	os.WriteFile(script, []byte("#!/bin/sh\necho not etcd\n"), 0o755)
	for _, bin := range []string{"/bin/true", script} {
		_, err := NewProvider(WithEtcdBinary(bin)).Create(context.Background(), CreateWithMembers(1))
		if err == nil || !strings.Contains(err.Error(), bin+" is not an etcd server binary") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Create with %s: err = %v; want one line saying it is not etcd", bin, err)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(tmp, "etcd-chaos-local-*")); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
}

func TestCreateUnknownVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Go module proxy")
	}
	_, err := NewProvider(WithVersion("9.9.9"), WithCacheDir(t.TempDir())).Create(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "etcd version v9.9.9 does not exist on the Go module proxy") {
		t.Fatalf("err = %v", err)
	}
}

func TestMemberExitDuringStartIsReported(t *testing.T) {
	bin := etcdBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := NewProvider(WithEtcdBinary(bin)).Create(ctx, CreateWithMembers(1), CreateWithFlags("--no-such-flag"))
	if err == nil || !strings.Contains(err.Error(), "member-0 exited while starting") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("err = %v; want it to name member-0 and quote the log", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(tmp, "etcd-chaos-local-*")); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
}

func TestPortClashIsRetried(t *testing.T) {
	bin := etcdBinary(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	orig := pickPort
	calls := 0
	pickPort = func() (string, error) {
		calls++
		if calls == 1 { // the first member's peer port is already bound
			return taken.Addr().String(), nil
		}
		return orig()
	}
	defer func() { pickPort = orig }()
	c := create(t, CreateWithMembers(1))
	_ = bin
	log, _ := c.LogPath("member-0")
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), "address already in use") {
		t.Fatalf("expected the first start to clash; log:\n%s", b)
	}
}

func TestSeeder(t *testing.T) {
	bin := etcdBinary(t)
	var got []MemberSpec
	seed := func(ctx context.Context, ms []MemberSpec) error {
		got = ms
		return nil
	}
	c := create(t, CreateWithMembers(1), CreateWithSeeder(seed), CreateWithClusterToken("tok-1"))
	if len(got) != 1 {
		t.Fatalf("seeder got %d specs", len(got))
	}
	s := got[0]
	dd, _ := c.DataDir("member-0")
	if s.Name != "member-0" || s.DataDir != dd || s.ClientURL != c.Endpoints()[0] ||
		s.InitialCluster != "member-0="+s.PeerURL || s.ClusterToken != "tok-1" {
		t.Fatalf("spec %+v", s)
	}

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	_, err := NewProvider(WithEtcdBinary(bin)).Create(context.Background(), CreateWithMembers(1),
		CreateWithSeeder(func(context.Context, []MemberSpec) error { return errors.New("no snapshot") }))
	if err == nil || !strings.Contains(err.Error(), "no snapshot") {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(tmp, "etcd-chaos-local-*")); len(ents) != 0 {
		t.Errorf("left behind %v", ents)
	}
}

// BenchmarkStartup3 measures nothing-to-healthy for 3 members (binary cached).
func BenchmarkStartup3(b *testing.B) {
	bin := etcdBinary(b)
	p := NewProvider(WithEtcdBinary(bin))
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := p.Create(ctx, CreateWithMembers(3))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close(context.Background())
		b.StartTimer()
	}
}

func TestCreateRemovesStaleTempDirs(t *testing.T) {
	bin := etcdBinary(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	stale := filepath.Join(tmp, tempPrefix+"stale")
	kept := filepath.Join(tmp, tempPrefix+"kept")
	live := filepath.Join(tmp, tempPrefix+"live")
	for _, d := range []string{stale, kept, live} {
		os.MkdirAll(filepath.Join(d, "member-0.etcd"), 0o755)
		os.WriteFile(filepath.Join(d, ".owner"), nil, 0o644)
	}
	os.WriteFile(filepath.Join(kept, ".keep"), nil, 0o644)
	f, err := os.Open(filepath.Join(live, ".owner")) // a cluster still running
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_, err = NewProvider(WithEtcdBinary(bin)).Create(context.Background(), CreateWithMembers(1),
		CreateWithSeeder(func(context.Context, []MemberSpec) error { return errors.New("stop here") }))
	if err == nil {
		t.Fatal("Create succeeded")
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale dir survived: %v", err)
	}
	for _, d := range []string{kept, live} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}
