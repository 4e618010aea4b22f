package k8sbin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// fakeGo installs a shell script as the go command for one test. It answers
// `mod download -json` with a go.mod listing two staging modules, records
// the wrapper go.mod that `get` sees, and on `build -o dir/ pkgs...` writes
// one executable per package (or fails when failBuild).
func fakeGo(t *testing.T, failBuild bool) (log string) {
	t.Helper()
	dir := t.TempDir()
	gomod := filepath.Join(dir, "kubernetes.mod")
	if err := os.WriteFile(gomod, []byte("module k8s.io/kubernetes\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log = filepath.Join(dir, "log")
	fail := "false"
	if failBuild {
		fail = "true"
	}
	script := `#!/bin/sh
echo "$@" >> ` + log + `
case "$1" in
mod) echo '{"Path": "k8s.io/kubernetes", "GoMod": "` + gomod + `"}' ;;
get) cp go.mod ` + log + `.gomod ;;
build)
  if ` + fail + `; then echo "go: compile error: something broke" >&2; exit 1; fi
  out="$4"; shift 4
  for p in "$@"; do printf '#!/bin/sh\n' > "$out$(basename "$p")"; chmod +x "$out$(basename "$p")"; done ;;
esac
`
	p := filepath.Join(dir, "go")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := goCommand
	goCommand = p
	t.Cleanup(func() { goCommand = old })
	return log
}

func TestEnsureBuildsEveryComponentOnceWithStagingReplaces(t *testing.T) {
	log := fakeGo(t, false)
	cache := t.TempDir()
	var progress strings.Builder
	dir, err := Ensure(context.Background(), "1.34.4", cache, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "kubernetes", "v1.34.4"); dir != want {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	for _, c := range Components {
		if _, err := os.Stat(filepath.Join(dir, c)); err != nil {
			t.Errorf("%s not installed: %v", c, err)
		}
	}
	if !strings.Contains(progress.String(), "building Kubernetes v1.34.4") || strings.Count(progress.String(), "\n") != 1 {
		t.Errorf("progress = %q; want one 'building Kubernetes v1.34.4' line", progress.String())
	}
	gomod, err := os.ReadFile(log + ".gomod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"require k8s.io/kubernetes v1.34.4", "k8s.io/api => k8s.io/api v0.34.4", "k8s.io/client-go => k8s.io/client-go v0.34.4"} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("wrapper go.mod lacks %q:\n%s", want, gomod)
		}
	}
	if strings.Contains(string(gomod), "github.com/x/y") {
		t.Errorf("wrapper go.mod copies a non-staging replace:\n%s", gomod)
	}
	calls, _ := os.ReadFile(log)
	if n := strings.Count(string(calls), "build "); n != 1 {
		t.Errorf("go build ran %d times; want one build of all components:\n%s", n, calls)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "build-*")); len(left) > 0 {
		t.Errorf("build dirs left behind: %v", left)
	}

	// The second call reuses the cache: no go command, no progress.
	progress.Reset()
	os.Remove(log)
	if _, err := Ensure(context.Background(), "v1.34.4", cache, &progress); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(log); err == nil || progress.Len() != 0 {
		t.Errorf("cached Ensure ran go or printed %q", progress.String())
	}
}

func TestFailedBuildLeavesNoVersionDir(t *testing.T) {
	fakeGo(t, true)
	cache := t.TempDir()
	_, err := Ensure(context.Background(), "v1.34.4", cache, nil)
	if err == nil || !strings.Contains(err.Error(), "compile error: something broke") {
		t.Fatalf("err = %v; want the compiler's message", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "kubernetes", "v1.34.4")); !os.IsNotExist(err) {
		t.Errorf("failed build left its version dir: %v", err)
	}
}

func TestEnsureWaitsForAnotherBuilderAndHonoursCancel(t *testing.T) {
	fakeGo(t, false)
	cache := t.TempDir()
	dir, _ := Dir("v1.34.4", cache)
	unlock, err := etcdbin.LockDir(context.Background(), dir, "Kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err = Ensure(ctx, "v1.34.4", cache, nil)
	if err == nil || !strings.Contains(err.Error(), "waiting for another process to build Kubernetes") {
		t.Fatalf("err = %v; want a wait for the lock holder", err)
	}
	unlock()
	if _, err := Ensure(context.Background(), "v1.34.4", cache, nil); err != nil {
		t.Fatalf("after the holder let go: %v", err)
	}
}

func TestEnsureRejectsNonReleaseVersions(t *testing.T) {
	for _, v := range []string{"master", "v1.34", "../../etc"} {
		if _, err := Ensure(context.Background(), v, t.TempDir(), nil); err == nil {
			t.Errorf("Ensure(%q) succeeded", v)
		}
	}
}
