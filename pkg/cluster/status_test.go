package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
)

// The status helpers every backend builds on, against a real local cluster.
func TestLeaderHealthAndHashKV(t *testing.T) {
	c := localtest.Start(t, "", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := cluster.WaitHealthy(ctx, c); err != nil {
		t.Fatal(err)
	}
	leader, err := cluster.FindLeader(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, s := range cluster.Statuses(ctx, c, cli) {
		if s.Err != nil {
			t.Fatalf("%s: %v", s.Member.Name, s.Err)
		}
		if s.Member.Name == leader.Name && s.ID != s.Leader {
			t.Fatalf("%s named leader but reports leader %x, itself %x", leader.Name, s.Leader, s.ID)
		}
	}
	for i := range 20 {
		if _, err := cli.Put(ctx, "/kv/k000", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	hashes, err := cluster.CompareHashKV(ctx, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hashes) != 3 || hashes[0].Hash != hashes[2].Hash || hashes[0].Revision < 21 {
		t.Fatalf("hashes %+v", hashes)
	}

	// With the leader killed, the survivors elect another leader.
	if err := c.Kill(ctx, leader.Name); err != nil {
		t.Fatal(err)
	}
	var next cluster.Member
	for next.Name == "" || next.Name == leader.Name {
		if ctx.Err() != nil {
			t.Fatal("no new leader after the old one was killed")
		}
		next, _ = cluster.FindLeader(ctx, c)
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := cluster.CompareHashKV(ctx, c, 0); err == nil {
		t.Fatal("HashKV over a cluster with a dead member must say who did not answer")
	}
}
