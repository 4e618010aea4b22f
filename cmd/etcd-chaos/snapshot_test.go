package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
)

func snapshotCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = realMain(args, &o, &e)
	return code, o.String(), e.String()
}

func TestSnapshotUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"snapshot"},
		{"snapshot", "frobnicate"},
		{"snapshot", "verify"},
		{"snapshot", "verify", "a.db", "b.db"},
		{"snapshot", "save", "out.db"},
		{"snapshot", "restore-check", "x.db", "--members", "0"},
	} {
		code, _, stderr := snapshotCLI(args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
	if code, _, stderr := snapshotCLI("snapshot", "verify", filepath.Join(t.TempDir(), "missing.db")); code != 1 || !strings.Contains(stderr, "no such file") {
		t.Errorf("verify of a missing file: exit %d, %q", code, stderr)
	}
}

// TestSnapshotCLI saves a real snapshot through the CLI, verifies and
// restore-checks it, and makes sure each kind of damage is refused with one
// clear line and a non-zero exit.
func TestSnapshotCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := localtest.Start(t, "", 1)
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := range 50 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/kv/k%03d", i), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	code, out, stderr := snapshotCLI("snapshot", "save", "--endpoints", strings.Join(c.Endpoints(), ","), good)
	if code != 0 || !strings.Contains(out, "revision:  51") || !strings.Contains(out, "keys:      50") {
		t.Fatalf("save: exit %d\nstdout:\n%s\nstderr: %s", code, out, stderr)
	}
	if code, out, stderr := snapshotCLI("snapshot", "verify", good); code != 0 || !strings.Contains(out, "verified:  ok") {
		t.Fatalf("verify good: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = snapshotCLI("snapshot", "restore-check", good, "--members", "1")
	if code != 0 || !strings.Contains(out, "snapshot/content  pass") || !strings.Contains(out, "snapshot/hashkv   pass") {
		t.Fatalf("restore-check good: exit %d\nstdout:\n%s\nstderr: %s", code, out, stderr)
	}

	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/3] ^= 0x04
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "is empty"},
		{"random", bytes.Repeat([]byte{0x5a, 0x17, 0x99, 0x03}, 3000), "is not an etcd snapshot (not a bolt database)"},
		{"truncated", data[:len(data)*2/3], "is truncated: file is"},
		{"flipped", flipped, "is corrupt: sha256 mismatch"},
	} {
		path := filepath.Join(dir, tc.name+".db")
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []string{"verify", "restore-check"} {
			code, _, stderr := snapshotCLI("snapshot", sub, path)
			line := strings.TrimSpace(stderr)
			if code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, tc.want) || !strings.Contains(line, path) {
				t.Errorf("%s %s: exit %d, stderr %q; want exit 1 and one line naming the file and saying %q", sub, tc.name, code, stderr, tc.want)
			}
		}
	}
}
