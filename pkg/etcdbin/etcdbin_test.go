package etcdbin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNormalizeVersion(t *testing.T) {
	for in, want := range map[string]string{"3.6.4": "v3.6.4", "v3.6.4": "v3.6.4", " 3.5.21 ": "v3.5.21", "main": "main"} {
		if got := NormalizeVersion(in); got != want {
			t.Errorf("NormalizeVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBinName(t *testing.T) {
	for in, want := range map[string]string{
		"go.etcd.io/etcd/etcdutl/v3": "etcdutl",
		"go.etcd.io/etcd/server/v3":  "server",
		"example.com/cmd/tool":       "tool",
	} {
		if got := binName(in); got != want {
			t.Errorf("binName(%q) = %q, want %q", in, got, want)
		}
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckAcceptsEtcdVersionOutput(t *testing.T) {
	p := writeScript(t, `echo "etcd Version: 3.5.21"; echo "Git SHA: x"`)
	v, err := Check(context.Background(), p)
	if err != nil || v != "3.5.21" {
		t.Fatalf("Check = %q, %v; want 3.5.21", v, err)
	}
}

func TestCheckRejectsNonEtcd(t *testing.T) {
	for _, p := range []string{"/bin/true", writeScript(t, "echo hello; exit 3"), "/nonexistent/etcd"} {
		_, err := Check(context.Background(), p)
		if err == nil || !strings.Contains(err.Error(), p+" is not an etcd server binary") {
			t.Errorf("Check(%s) error = %v; want 'is not an etcd server binary'", p, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}

func TestEnsureReusesCachedBinary(t *testing.T) {
	dir := t.TempDir()
	want := filepath.Join(dir, "etcd", "v3.6.4", "etcd")
	if err := os.MkdirAll(filepath.Dir(want), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, []byte("#!/bin/sh\necho 'etcd Version: 3.6.4'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	got, err := Ensure(context.Background(), "3.6.4", dir, &progress)
	if err != nil || got != want {
		t.Fatalf("Ensure = %q, %v; want %q", got, err, want)
	}
	if progress.Len() != 0 {
		t.Errorf("cached Ensure printed progress %q; want nothing", progress.String())
	}
	if p, _ := Path("v3.6.4", dir); p != want {
		t.Errorf("Path = %q, want %q", p, want)
	}
}

func TestEnsureHonoursEnvCache(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(CacheEnv, dir)
	d, err := DefaultCacheDir()
	if err != nil || d != dir {
		t.Fatalf("DefaultCacheDir = %q, %v; want %q", d, err, dir)
	}
}

func TestLockWaitIsCancellable(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockDir(context.Background(), dir, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := LockDir(ctx, dir, "etcd"); err == nil {
		t.Fatal("second lock succeeded while the first was held")
	}
}

// TestLockSurvivesRemovedDir: a failed build removes its version dir, lock
// file included, before it unlocks. A process that was waiting must then
// hold a lock on the file at the path, not on the deleted one, or a third
// process could lock the new file and build at the same time.
func TestLockSurvivesRemovedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v1.2.3")
	unlock, err := LockDir(context.Background(), dir, "etcd")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		u, err := LockDir(context.Background(), dir, "etcd")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	time.Sleep(300 * time.Millisecond) // let the waiter open the old lock file
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	unlock()
	u := <-got
	if u == nil {
		return
	}
	defer u()
	// The waiter's lock is on the file now at the path: a third locker
	// must not get it.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := LockDir(ctx, dir, "etcd"); err == nil {
		t.Fatal("a third process got the lock while the waiter held it")
	}
}

// TestEnsureUnknownVersion asks the module proxy for a version that does not
// exist; it needs the proxy, so it is skipped in -short mode.
func TestEnsureUnknownVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Go module proxy")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := Ensure(ctx, "9.9.9", dir, nil)
	if err == nil {
		t.Fatal("Ensure(v9.9.9) succeeded")
	}
	want := "etcd version v9.9.9 does not exist on the Go module proxy (go.etcd.io/etcd/server/v3@v9.9.9): "
	if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error = %q; want one line starting %q", err, want)
	}
	// Nothing left behind: no build dir, no lock, no empty version dir.
	if _, err := os.Stat(filepath.Join(dir, "etcd", "v9.9.9")); !os.IsNotExist(err) {
		t.Errorf("a failed lookup left %s behind (stat: %v)", filepath.Join(dir, "etcd", "v9.9.9"), err)
	}
}

// TestEnsureDefaultVersion builds (or reuses) the real default etcd and checks
// it; the first run on a machine takes about a minute.
func TestEnsureDefaultVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds etcd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := Ensure(ctx, "", "", os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Check(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if "v"+v != DefaultVersion {
		t.Fatalf("built etcd reports %s, want %s", v, DefaultVersion)
	}
}

// TestEnsureCancelled cancels a build part-way: it must stop with the
// context's error and leave no build directory or partial binary behind.
func TestEnsureCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the Go module proxy")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := Ensure(ctx, "v3.5.35", dir, nil)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err = %v; want the context's deadline", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd", "v3.5.35")); !os.IsNotExist(err) {
		t.Errorf("a cancelled build left %s behind (stat: %v)", filepath.Join(dir, "etcd", "v3.5.35"), err)
	}
}
