package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutlsnap "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

const (
	benchKeys      = 110_000
	benchValueSize = 1024
	benchTxnOps    = 100 // below etcd's default --max-txn-ops of 128
	benchWriters   = 8
)

// fill writes benchKeys keys of benchValueSize bytes with concurrent
// multi-put txns: one txn per 100 keys keeps the fill to seconds.
func fill(b *testing.B, cli *clientv3.Client) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	value := strings.Repeat("v", benchValueSize)
	batches := make(chan int)
	errs := make(chan error, benchWriters)
	var wg sync.WaitGroup
	for range benchWriters {
		wg.Go(func() {
			for start := range batches {
				ops := make([]clientv3.Op, 0, benchTxnOps)
				for i := start; i < min(start+benchTxnOps, benchKeys); i++ {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("/kv/k%07d", i), value))
				}
				if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
	for start := 0; start < benchKeys && ctx.Err() == nil; start += benchTxnOps {
		select {
		case batches <- start:
		case <-ctx.Done():
		}
	}
	close(batches)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("fill: %v", err)
	}
}

// etcdutlVersion is the etcdutl module version this build links, so the
// baseline binary runs the same restore code as our library call. Test
// binaries carry no dependency build info, but the module cache path of the
// linked code names the version (with or without -trimpath).
func etcdutlVersion(b *testing.B) string {
	file, _ := runtime.FuncForPC(reflect.ValueOf(etcdutlsnap.NewV3).Pointer()).FileLine(0)
	if m := regexp.MustCompile(`etcdutl/v3@(v[^/]+)/`).FindStringSubmatch(filepath.ToSlash(file)); m != nil {
		return m[1]
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", etcdbin.EtcdutlModule).Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	b.Fatalf("cannot tell which %s version this build links (source file %q)", etcdbin.EtcdutlModule, file)
	return ""
}

// BenchmarkSnapshot measures, on a database of more than 100 MB, how fast
// Save streams it (MB/s of file), how fast our restore is (Verify plus
// etcdutl's restore library, MB/s of file), and the baseline: the
// `etcdutl snapshot restore` command at the same etcdutl version restoring
// the same file.
func BenchmarkSnapshot(b *testing.B) {
	c := localtest.Start(b, "", 1, local.CreateWithFlags("--quota-backend-bytes=4294967296"))
	ctx := context.Background()
	cli, err := c.Client(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	fill(b, cli)
	etcdutl, err := etcdbin.EnsureTool(ctx, etcdbin.EtcdutlModule, etcdbin.EtcdutlModule, etcdutlVersion(b), "", os.Stderr)
	if err != nil {
		b.Fatalf("build the etcdutl baseline: %v", err)
	}
	dir := b.TempDir()
	ep := c.Endpoints()[0]

	var saveT, oursT, baseT time.Duration
	var bytes int64
	b.ResetTimer()
	for i := range b.N {
		path := filepath.Join(dir, fmt.Sprintf("snap-%d.db", i))
		start := time.Now()
		info, err := Save(ctx, cli, ep, path)
		if err != nil {
			b.Fatal(err)
		}
		saveT += time.Since(start)
		bytes += info.Size
		if info.TotalKeys != benchKeys {
			b.Fatalf("snapshot holds %d keys, want %d", info.TotalKeys, benchKeys)
		}

		start = time.Now()
		if _, err := Verify(path); err != nil {
			b.Fatal(err)
		}
		err = etcdutlsnap.NewV3(zap.NewNop()).Restore(etcdutlsnap.RestoreConfig{
			SnapshotPath: path, Name: "m0", OutputDataDir: filepath.Join(dir, fmt.Sprintf("ours-%d", i)),
			PeerURLs: []string{"http://127.0.0.1:2380"}, InitialCluster: "m0=http://127.0.0.1:2380", InitialClusterToken: "bench",
		})
		if err != nil {
			b.Fatal(err)
		}
		oursT += time.Since(start)

		start = time.Now()
		cmd := exec.CommandContext(ctx, etcdutl, "snapshot", "restore", path, "--name", "m0",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("base-%d", i)),
			"--initial-cluster", "m0=http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
			"--initial-cluster-token", "bench")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
		}
		baseT += time.Since(start)

		b.StopTimer()
		for _, p := range []string{path, filepath.Join(dir, fmt.Sprintf("ours-%d", i)), filepath.Join(dir, fmt.Sprintf("base-%d", i))} {
			os.RemoveAll(p)
		}
		b.StartTimer()
	}
	mb := float64(bytes) / 1e6
	b.ReportMetric(mb/float64(b.N), "MB/snapshot")
	b.ReportMetric(mb/saveT.Seconds(), "save-MB/s")
	b.ReportMetric(mb/oursT.Seconds(), "restore-MB/s")
	b.ReportMetric(mb/baseT.Seconds(), "etcdutl-restore-MB/s")
}
