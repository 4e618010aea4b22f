package kind

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
)

func fakeDaemon(t *testing.T, status int) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_ping" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		fmt.Fprint(w, "OK")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ping(ctx, "unix", fakeDaemon(t, http.StatusOK)); err != nil {
		t.Errorf("answering daemon: %v", err)
	}
	if err := ping(ctx, "unix", fakeDaemon(t, http.StatusInternalServerError)); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("failing daemon: want an error with the status, got %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	if err := ping(ctx, "unix", missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("no daemon: want an error naming the socket, got %v", err)
	}
}

func TestPingSilentDaemonTimesOut(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		// Accept one connection and never answer.
		if c, err := ln.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ping(ctx, "unix", sock); err == nil {
		t.Error("a daemon that never answers must not count as available")
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestKindChart creates a kind cluster, installs the chart and injects each
// fault once. It needs Docker and registry access, so it runs only with
// ETCD_CHAOS_BACKEND=kind (nightly CI); see docs/KUBERNETES.md.
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
