//go:build e2e

package suites

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/linearizable"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// The sensitivity check proves the partition and the checker both work: a
// member cut off in a minority still answers serializable reads from its own
// stale copy, and when those reads are recorded as if they were
// linearizable, the checker must call the history non-linearizable.
var _ = Describe("Checker sensitivity", Label("smoke", "sensitivity"), func() {
	It("flags stale serializable reads from a partitioned minority member", func(ctx SpecContext) {
		c := openCluster(ctx, "sensitivity", 3)
		members := c.Members()
		leader, err := c.Leader(ctx)
		Expect(err).NotTo(HaveOccurred())
		// Cut off a follower so the majority keeps its leader.
		var minority cluster.Member
		var majority []cluster.Member
		for _, m := range members {
			if m.Name != leader.Name && minority.Name == "" {
				minority = m
			} else {
				majority = append(majority, m)
			}
		}
		rec := history.NewRecorder(history.Meta{Scenario: "sensitivity", Backend: c.Backend(), Members: len(members), Seed: specSeed("sensitivity")})
		minCli := memberClient(ctx, c, minority)
		defer minCli.Close()
		majCli := memberClient(ctx, c, majority[0])
		defer majCli.Close()

		const key = "/kv/k000"
		put := func(cli *clientv3.Client, value string) {
			op := history.Operation{ID: rec.NextID(), ClientID: 1, Kind: history.Put, Key: key, Value: value, Call: rec.Now()}
			resp, err := cli.Put(ctx, key, value)
			Expect(err).NotTo(HaveOccurred())
			op.Return, op.Outcome = rec.Now(), history.OK
			op.Resp = &history.Response{Revision: resp.Header.Revision, MemberID: resp.Header.MemberId}
			rec.AddOperation(op)
		}
		// Reads are recorded WITHOUT the serializable flag on purpose: the
		// record claims a linearizable read, which is what the checker tests.
		get := func(cli *clientv3.Client) string {
			op := history.Operation{ID: rec.NextID(), ClientID: 2, Kind: history.Get, Key: key, Call: rec.Now()}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := cli.Get(rctx, key, clientv3.WithSerializable())
			cancel()
			Expect(err).NotTo(HaveOccurred(), "a serializable read from a cut-off member is served locally")
			op.Return, op.Outcome = rec.Now(), history.OK
			op.Resp = &history.Response{Revision: resp.Header.Revision, MemberID: resp.Header.MemberId}
			for _, kv := range resp.Kvs {
				op.Resp.KVs = append(op.Resp.KVs, history.KV{Key: string(kv.Key), Value: string(kv.Value), ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision, Version: kv.Version})
			}
			rec.AddOperation(op)
			if len(resp.Kvs) == 0 {
				return ""
			}
			return string(resp.Kvs[0].Value)
		}

		put(majCli, "before-partition")
		Eventually(func() string { return get(minCli) }).WithTimeout(10 * time.Second).Should(Equal("before-partition"))

		for _, m := range majority {
			Expect(c.Faults().Cut(ctx, minority.Name, m.Name)).To(Succeed())
		}
		DeferCleanup(func() { Expect(c.Faults().Heal(context.Background())).To(Succeed()) })

		for i := range 5 {
			put(majCli, fmt.Sprintf("during-partition-%d", i))
		}
		stale := get(minCli)
		Expect(stale).To(Equal("before-partition"), "the cut-off member must not see writes made after the cut: the partition does not work")

		h := rec.History()
		claimed := linearizable.Check(ctx, h, linearizable.Options{Timeout: time.Minute, IncludeSerializable: true, ArtifactDir: artifactDir("sensitivity")})
		Expect(claimed.Status).To(Equal(verdict.Fail), "stale reads recorded as linearizable must be flagged: %s", claimed.Summary)

		for i := range h.Operations {
			if h.Operations[i].Kind == history.Get {
				h.Operations[i].Serializable = true
			}
		}
		honest := linearizable.Check(ctx, h, linearizable.Options{Timeout: time.Minute})
		Expect(honest.Status).To(Equal(verdict.Pass), "the same reads recorded as serializable promise nothing and must pass: %s", honest.Summary)
	}, SpecTimeout(3*time.Minute))
})

// memberClient opens a client to one member. Through a Kubernetes
// port-forward on a loaded machine, the first dial right after install can
// outlast the client's dial timeout (seen on kube-host: the spec failed
// before any partition), so the open is retried for a while; a member that
// never answers still fails the spec.
func memberClient(ctx context.Context, c cluster.Cluster, m cluster.Member) *clientv3.Client {
	var cli *clientv3.Client
	Eventually(ctx, func() error {
		var err error
		cli, err = c.Client(ctx, m.ClientURL)
		return err
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed(), "open a client to %s", m.Name)
	return cli
}
