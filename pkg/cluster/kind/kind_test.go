package kind

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
)

// fakeDocker puts a fake docker CLI with that shell body first on PATH.
func fakeDocker(t *testing.T, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestDockerAvailableAsksTheCLI: whatever the CLI reaches (a docker context
// pointing at Colima or Docker Desktop, DOCKER_HOST, the default socket)
// counts; no socket is dialled behind its back.
func TestDockerAvailableAsksTheCLI(t *testing.T) {
	t.Setenv("DOCKER_HOST", "")
	fakeDocker(t, `[ "$1 $2" = "info --format" ] && echo 28.0.1`)
	if err := DockerAvailable(context.Background()); err != nil {
		t.Errorf("a daemon the CLI reaches must count: %v", err)
	}
}

func TestDockerAvailableFailures(t *testing.T) {
	old := dockerProbeTimeout
	dockerProbeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { dockerProbeTimeout = old })
	for _, tc := range []struct{ name, body, want string }{
		{"daemon down", `echo "Cannot connect to the Docker daemon at unix:///x.sock" >&2; exit 1`, "Cannot connect"},
		{"no server version", `exit 0`, "no server version"},
		{"daemon hangs", `exec sleep 60`, "did not answer"},
		// The shell's child keeps the output pipe open after the shell is
		// killed: the probe must still return.
		{"child holds the pipe", `sleep 60; echo 28.0.1`, "did not answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeDocker(t, tc.body)
			err := DockerAvailable(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
	t.Run("no CLI", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		if err := DockerAvailable(context.Background()); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("got %v", err)
		}
	})
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestKindChart creates a kind cluster, installs the chart and injects each
// fault once, with no traffic or checks around it: a quick way to see which
// fault primitive breaks on a new kindest/node image. It needs Docker and
// registry access, so it runs only when asked for:
// ETCD_CHAOS_BACKEND=kind go test -run TestKindChart ./pkg/cluster/kind/.
// CI does not run it; the nightly's suites inject the same faults under
// traffic (see docs/KUBERNETES.md).
func TestKindChart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := DockerAvailable(ctx); err != nil {
		t.Skip("kind: no Docker daemon answers (" + err.Error() + "); skipping")
	}
	if os.Getenv("ETCD_CHAOS_BACKEND") != "kind" {
		t.Skip("kind: set ETCD_CHAOS_BACKEND=kind to create a kind cluster and pull the chart; skipping")
	}
	keep := os.Getenv("KEEP_CLUSTER") == "1"
	kp := NewProvider(WithNodeImage(env("KIND_NODE_IMAGE", DefaultNodeImage)), WithKeepCluster(keep), WithLogf(t.Logf))
	kc, err := kp.Create(ctx, env("KIND_CLUSTER_NAME", "etcd-chaos-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := kc.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	values := strings.Split(env("CHART_VALUES", "base.yaml,3-replicas-ephemeral.yaml"), ",")
	c, err := kc.Install(ctx, kube.InstallOptions{
		Namespace: "etcd-chaos", Release: "chaos",
		ChartRef: os.Getenv("CHART_REF"), ChartVersion: env("CHART_VERSION", chart.DefaultVersion),
		ValuesFiles: values, Timeout: 10 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.CollectLogs(context.Background(), t.TempDir())
		if err := c.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	step := func(name string, f func(context.Context) error) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := f(sctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.WaitHealthy(sctx); err != nil {
			t.Fatalf("after %s: %v", name, err)
		}
	}
	step("install", func(context.Context) error { return nil })
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/kv/probe", "before"); err != nil {
		t.Fatal(err)
	}
	ms := c.Members()
	step("cut", func(ctx context.Context) error {
		if err := c.Cut(ctx, ms[0].Name, ms[1].Name); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		return c.Heal(ctx)
	})
	step("degrade", func(ctx context.Context) error {
		if err := c.Degrade(ctx, ms[2].Name, 50*time.Millisecond, 0.01); err != nil {
			return err
		}
		return c.Heal(ctx)
	})
	step("pause", func(ctx context.Context) error {
		if err := c.Pause(ctx, ms[1].Name); err != nil {
			return err
		}
		time.Sleep(2 * time.Second)
		return c.Resume(ctx, ms[1].Name)
	})
	step("kill", func(ctx context.Context) error {
		if err := c.Kill(ctx, ms[0].Name); err != nil {
			return err
		}
		return c.Restart(ctx, ms[0].Name)
	})
	step("delete pod", func(ctx context.Context) error { return c.DeletePod(ctx, ms[2].Name) })
	resp, err := cli.Get(ctx, "/kv/probe")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "before" {
		t.Errorf("value written before the faults is %v, want before", resp.Kvs)
	}
}
