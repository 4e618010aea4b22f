package snapshot

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A snapshot keeps its cluster's auth state (as one from a Kubernetes
// release, RBAC on, does): restored without credentials its members answer
// no client, restored WithCredentials they serve its data.
func TestRestoreOfASnapshotWithAuthOn(t *testing.T) {
	src := localtest.Start(t, "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := src.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/kv/a", "1"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "pw"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	authed, err := clientv3.New(cluster.ClientConfig(src.Endpoints(), cluster.Credentials{Username: "root", Password: "pw"}))
	if err != nil {
		t.Fatal(err)
	}
	defer authed.Close()
	path := filepath.Join(t.TempDir(), "auth.db")
	if _, err := Save(ctx, authed, src.Endpoints()[0], path); err != nil {
		t.Fatal(err)
	}

	short, cancelShort := context.WithTimeout(ctx, 15*time.Second)
	defer cancelShort()
	if r, err := Restore(short, path, 1, WithArtifactDir(t.TempDir())); err == nil {
		r.Close(context.Background())
		t.Fatal("a cluster restored from an auth-enabled snapshot answered a client without credentials")
	}

	r, err := Restore(ctx, path, 1, WithArtifactDir(t.TempDir()), WithCredentials("root", "pw"))
	if err != nil {
		t.Fatalf("restore with the source's credentials: %v", err)
	}
	defer r.Close(context.Background())
	rc, err := r.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	resp, err := rc.Get(ctx, "/kv/a")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
		t.Fatalf("restored /kv/a = %v (%v), want 1", resp, err)
	}
}
