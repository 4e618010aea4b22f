package local

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// TestSeederRestoresSnapshot is the Seeder contract end to end: a snapshot
// of one cluster, restored by a Seeder with the MemberSpecs it is given,
// starts a new 3-member cluster holding the same data under a new cluster ID.
func TestSeederRestoresSnapshot(t *testing.T) {
	src := create(t, CreateWithMembers(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli, err := src.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put(t, cli, "/kv/restored", "yes")
	db := filepath.Join(t.TempDir(), "snap.db")
	if _, err := snapshot.NewV3(zap.NewNop()).Save(ctx, clientConfig(src.Endpoints(), cluster.Credentials{}), db); err != nil {
		t.Fatal(err)
	}
	srcStatus, err := cli.Status(ctx, src.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}

	seeder := func(ctx context.Context, ms []MemberSpec) error {
		for _, m := range ms {
			err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
				SnapshotPath:        db,
				Name:                m.Name,
				OutputDataDir:       m.DataDir,
				PeerURLs:            []string{m.PeerURL},
				InitialCluster:      m.InitialCluster,
				InitialClusterToken: m.ClusterToken,
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	dst := create(t, CreateWithMembers(3), CreateWithSeeder(seeder))
	for _, m := range dst.Members() {
		c2 := client(t, dst, m.Name)
		eventually(t, "restored value on "+m.Name, func() error {
			v, err := serializableGet(ctx, c2, "/kv/restored")
			if err == nil && v != "yes" {
				err = errors.New("missing")
			}
			return err
		})
		st, err := c2.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.ClusterId == srcStatus.Header.ClusterId {
			t.Fatalf("restored cluster reuses the source cluster ID %x", st.Header.ClusterId)
		}
	}
}
