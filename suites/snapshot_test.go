//go:build e2e

package suites

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/scenario"
	"github.com/etcd-chaos/etcd-chaos/pkg/snapshot"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
	"github.com/etcd-chaos/etcd-chaos/pkg/workload"
)

// Backups are only real if they restore: save under load from the leader and
// from a follower, restore each into new 1- and 3-member clusters, compare
// their content with the state the history says the snapshot's revision
// held, and run traffic with faults on a restored cluster.
var _ = Describe("Snapshot round-trip", Label("snapshot"), func() {
	It("restores what was acknowledged, from the leader and from a follower", func(ctx SpecContext) {
		const name = "snapshot-round-trip"
		// On Kubernetes the snapshots are saved through the port-forwards
		// from the chart's members and restored into local clusters of the
		// same etcd version, as `etcd-chaos snapshot save` and
		// `restore-check` do for a user's cluster: the chart has no
		// restore-from-snapshot of its own.
		c := openCluster(ctx, name, 3)
		restoreVersion := env.EtcdVersion
		if env.Backend != "local" {
			restoreVersion = "v" + strings.TrimPrefix(c.Version(), "v")
		}
		dir := artifactDir(name)
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		var mu sync.Mutex
		infos := map[string]snapshot.Info{}
		res := runScenario(ctx, c, scenario.Config{
			Name:     name,
			Nemesis:  "none",
			Duration: 15 * time.Second,
			Traffic:  defaultTraffic(),
			DuringTraffic: func(ctx context.Context, _ *history.Recorder) error {
				for _, role := range []string{"leader", "follower"} {
					info, err := snapshot.SaveFrom(ctx, c, role, filepath.Join(dir, role+".db"))
					if err != nil {
						return fmt.Errorf("save from %s: %w", role, err)
					}
					mu.Lock()
					infos[role] = info
					mu.Unlock()
					GinkgoWriter.Printf("saved %s snapshot from %s: revision %d, %d keys, %d bytes, sha256 %s\n", role, info.MemberName, info.Revision, info.TotalKeys, info.Size, info.SHA256)
				}
				return nil
			},
		})
		expectPass(res, name)
		Expect(infos).To(HaveLen(2))

		origIDs := memberIDs(ctx, c)
		for _, role := range []string{"leader", "follower"} {
			for _, members := range []int{1, 3} {
				info := infos[role]
				By(fmt.Sprintf("restoring the %s snapshot (revision %d) into %d member(s)", role, info.Revision, members))
				restored, err := snapshot.Restore(ctx, info.Path, members,
					snapshot.WithEtcdVersion(restoreVersion), snapshot.WithEtcdBinary(localBinary()),
					snapshot.WithCredentials(c.Credentials().Username, c.Credentials().Password),
					snapshot.WithArtifactDir(filepath.Join(dir, fmt.Sprintf("restored-%s-%d", role, members))))
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(func() { restored.Close(context.Background()) })
				for _, id := range restored.MemberIDs() {
					for _, old := range origIDs {
						Expect(id).NotTo(Equal(old), "a restored cluster must get new member IDs")
					}
				}
				for _, ch := range snapshot.CheckRestored(ctx, restored, res.History, info) {
					Expect(ch.Status).To(Equal(verdict.Pass), "%s after restoring the %s snapshot into %d members: %s %v", ch.Name, role, members, ch.Summary, ch.Violations)
				}
				if members == 3 && role == "follower" {
					By("running traffic with faults on the restored cluster")
					after := runScenario(ctx, restored, scenario.Config{
						Name:     name + "-restored-kill-leader",
						Nemesis:  "kill-leader",
						Duration: 15 * time.Second,
						Traffic:  defaultTraffic(),
						Watch:    &workload.WatchConfig{},
					})
					expectPass(after, name+"-restored-kill-leader")
				}
				Expect(restored.Close(ctx)).To(Succeed())
			}
		}
	}, SpecTimeout(10*time.Minute))

	It("refuses damaged snapshots and never starts a cluster on them", func(ctx SpecContext) {
		const name = "snapshot-bad-input"
		if env.Backend != "local" {
			Skip("needs the local backend")
		}
		c := openCluster(ctx, name, 1)
		dir := artifactDir(name)
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		cli, err := c.Client(ctx)
		Expect(err).NotTo(HaveOccurred())
		defer cli.Close()
		for i := range 200 {
			_, err := cli.Put(ctx, fmt.Sprintf("/kv/k%03d", i%50), fmt.Sprintf("v%d", i))
			Expect(err).NotTo(HaveOccurred())
		}
		good := filepath.Join(dir, "good.db")
		_, err = snapshot.SaveFrom(ctx, c, "leader", good)
		Expect(err).NotTo(HaveOccurred())
		data, err := os.ReadFile(good)
		Expect(err).NotTo(HaveOccurred())

		flipped := append([]byte(nil), data...)
		flipped[len(flipped)/2] ^= 0xff
		bad := map[string][]byte{
			"truncated":    data[:len(data)/2],
			"flipped byte": flipped,
			"empty":        {},
			"not etcd":     []byte("this is a text file, not a bolt database\n"),
		}
		for label, content := range bad {
			path := filepath.Join(dir, safeName.ReplaceAllString(label, "_")+".db")
			Expect(os.WriteFile(path, content, 0o644)).To(Succeed())
			_, verr := snapshot.Verify(path)
			Expect(verr).To(HaveOccurred(), "%s snapshot must not verify", label)
			GinkgoWriter.Printf("%s: %v\n", label, verr)
			restored, rerr := snapshot.Restore(ctx, path, 1, snapshot.WithEtcdVersion(env.EtcdVersion), snapshot.WithEtcdBinary(env.EtcdBinary))
			if restored != nil {
				restored.Close(context.Background())
			}
			Expect(rerr).To(MatchError(snapshot.ErrBadSnapshot), "%s snapshot: restore must refuse it", label)
			Expect(restored).To(BeNil(), "no cluster may start on a %s snapshot", label)
		}
	}, SpecTimeout(5*time.Minute))
})

var _ cluster.Cluster = (*local.Cluster)(nil)

// memberIDs are the IDs of c's members, as the cluster reports them.
func memberIDs(ctx context.Context, c cluster.Cluster) []uint64 {
	cli, err := c.Client(ctx)
	Expect(err).NotTo(HaveOccurred())
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	Expect(err).NotTo(HaveOccurred())
	var ids []uint64
	for _, m := range resp.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// localBinary is the etcd binary a local restore runs: ETCD_BINARY on the
// local backend; on Kubernetes, the cached build of the cluster's version.
func localBinary() string {
	if env.Backend == "local" {
		return env.EtcdBinary
	}
	return ""
}
