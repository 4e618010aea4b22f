package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestScratch(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.ExpandEnv("$HOME/.cache/etcd-chaos/etcd/v3.6.4/etcd"), "--data-dir", filepath.Join(dir, "d"),
		"--listen-client-urls", "http://127.0.0.1:23791", "--advertise-client-urls", "http://127.0.0.1:23791",
		"--listen-peer-urls", "http://127.0.0.1:23801", "--initial-advertise-peer-urls", "http://127.0.0.1:23801",
		"--initial-cluster", "default=http://127.0.0.1:23801")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:23791"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Put(pctx, fmt.Sprintf("/kv/k%03d", i), fmt.Sprintf("v%d", i))
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			i--
			continue
		}
	}
	p := filepath.Join(dir, "snap.db")
	info, err := Save(ctx, cli, "http://127.0.0.1:23791", p)
	t.Logf("%+v %v", info, err)
	data, _ := os.ReadFile(p)
	try := func(name string, b []byte) {
		q := filepath.Join(dir, name)
		os.WriteFile(q, b, 0o600)
		_, err := Verify(q)
		t.Logf("%s: %v", name, err)
	}
	try("empty", nil)
	try("trunc", data[:len(data)/2])
	try("trunc10", data[:10])
	try("trunc30", data[:30])
	try("notrailer", data[:len(data)-32])
	try("trailer-short", data[:len(data)-5])
	f := append([]byte(nil), data...)
	f[len(f)/2] ^= 0x01
	try("flip", f)
	f = append([]byte(nil), data...)
	f[16+40] ^= 0x01
	try("flipmeta", f)
	try("random", []byte("hello world this is not a snapshot at all, really not one, no no no no no no no no no no"))
	os.WriteFile("/tmp/snapscratch.db", data, 0o600)
}
