package workload

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// procCluster is a minimal 3-member cluster of real etcd processes for this
// package's tests. It stands in until pkg/cluster/local lands; it has no
// fault injection.
type procCluster struct {
	members []cluster.Member
	procs   []*exec.Cmd
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startCluster starts n members in a temp dir and stops them on cleanup.
func startCluster(tb testing.TB, n int) *procCluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("needs a real etcd cluster; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := etcdbin.Ensure(ctx, "", "", os.Stderr)
	if err != nil {
		tb.Fatalf("get etcd binary: %v", err)
	}
	dir := tb.TempDir()
	pc := &procCluster{}
	var initial []string
	type ports struct{ client, peer int }
	ps := make([]ports, n)
	for i := range ps {
		ps[i] = ports{freePort(tb), freePort(tb)}
		initial = append(initial, fmt.Sprintf("member-%d=http://127.0.0.1:%d", i, ps[i].peer))
	}
	tb.Cleanup(func() {
		for _, p := range pc.procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			_ = p.Wait()
		}
	})
	for i, p := range ps {
		name := fmt.Sprintf("member-%d", i)
		curl := fmt.Sprintf("http://127.0.0.1:%d", p.client)
		purl := fmt.Sprintf("http://127.0.0.1:%d", p.peer)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin,
			"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", curl, "--advertise-client-urls", curl,
			"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "workload-test",
			"--initial-cluster-state", "new")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		logf.Close()
		pc.procs = append(pc.procs, cmd)
		pc.members = append(pc.members, cluster.Member{Name: name, ClientURL: curl})
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer hcancel()
	if err := cluster.WaitHealthy(hctx, pc); err != nil {
		tb.Fatalf("test cluster in %s: %v", dir, err)
	}
	return pc
}

func (pc *procCluster) Backend() string           { return "test" }
func (pc *procCluster) Version() string           { return etcdbin.DefaultVersion }
func (pc *procCluster) Members() []cluster.Member { return pc.members }
func (pc *procCluster) Endpoints() []string {
	var eps []string
	for _, m := range pc.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}
func (pc *procCluster) Credentials() cluster.Credentials { return cluster.Credentials{} }
func (pc *procCluster) Client(ctx context.Context, endpoints ...string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = pc.Endpoints()
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Context: ctx, Logger: zap.NewNop()})
}
func (pc *procCluster) Leader(ctx context.Context) (cluster.Member, error) {
	return cluster.FindLeader(ctx, pc)
}
func (pc *procCluster) WaitHealthy(ctx context.Context) error { return cluster.WaitHealthy(ctx, pc) }
func (pc *procCluster) Faults() cluster.Faults                { return nil }
func (pc *procCluster) CollectLogs(context.Context, string) error {
	return nil
}
func (pc *procCluster) Close(context.Context) error { return nil }
