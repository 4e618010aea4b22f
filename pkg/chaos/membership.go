package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

func init() {
	register("member-replace", "remove a random member, wipe its data, add it back as a new member (local)", planMemberReplace)
	register("blackhole-until-snapshot", "cut a follower's peer traffic until the leader has compacted its log past it, so it must catch up from a snapshot; then heal", planBlackholeUntilSnapshot)
}

// replaceTimeout bounds a member replacement. It outlives the run's
// context: a replacement stopped between remove and add would leave the
// cluster a member short.
const replaceTimeout = 2 * time.Minute

func planMemberReplace(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	mf, ok := c.Faults().(cluster.MembershipFaults)
	if !ok {
		return Fault{}, fmt.Errorf("%w: member-replace needs a backend that changes membership (the local one; this is %s)", cluster.ErrUnsupported, c.Backend())
	}
	if len(c.Members()) < 3 {
		return Fault{}, errors.New("member-replace needs at least 3 members, so that the others keep quorum")
	}
	m, err := pick(ctx, c, rng, false)
	if err != nil {
		return Fault{}, err
	}
	return Fault{
		Action:  "replace member " + m + " (remove, wipe, add back)",
		Targets: []string{m},
		Instant: true,
		Apply: func(ctx context.Context) error {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), replaceTimeout)
			defer cancel()
			return mf.ReplaceMember(rctx, m)
		},
	}, nil
}

// snapshotPolicy is what a backend may tell about when its members
// snapshot and how far their leader's log reaches back.
type snapshotPolicy interface {
	SnapshotPolicy() (count, catchupEntries int)
}

// etcd's own defaults (3.6: 10000 and 5000), for a backend that does not say.
const defaultSnapshotCount, defaultCatchupEntries = 10000, 5000

// snapshotSettings is c's snapshot count and catch-up entries, or etcd's
// defaults when the backend does not say.
func snapshotSettings(c cluster.Cluster) (count, catchup int) {
	if p, ok := c.(snapshotPolicy); ok {
		return p.SnapshotPolicy()
	}
	return defaultSnapshotCount, defaultCatchupEntries
}

// snapshotWait bounds how long a member stays cut waiting for the leader to
// move on; past it the fault did not take effect and says so.
var snapshotWait = 3 * time.Minute

func planBlackholeUntilSnapshot(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	if len(c.Members()) < 3 {
		return Fault{}, errors.New("blackhole-until-snapshot needs at least 3 members")
	}
	leader, err := pick(ctx, c, rng, true)
	if err != nil {
		return Fault{}, err
	}
	followers := without(names(c), leader)
	m := followers[rng.IntN(len(followers))]
	count, catchup := snapshotSettings(c)
	f := c.Faults()
	return Fault{
		Action:  fmt.Sprintf("blackhole %s until the leader's log is compacted past it (snapshot count %d, catch-up entries %d)", m, count, catchup),
		Targets: []string{m},
		Apply: func(ctx context.Context) error {
			return blackholeUntilSnapshot(ctx, c, m, count, catchup)
		},
		Heal: f.Heal,
	}, nil
}

// blackholeUntilSnapshot cuts m from every other member and returns once
// the leader's applied index is more than count+catchup entries past m's,
// as etcd's robustness suite decides it. By then the leader has taken a
// snapshot (it snapshots every count applied entries) and dropped its log
// up to catchup entries before that snapshot, which is past m's index, so
// m, once healed, can only catch up from a snapshot. m's index is re-read
// on every poll: it keeps applying entries it had received before the cut.
// It errors, leaving the cut for Heal, when the leader does not get there
// within snapshotWait.
func blackholeUntilSnapshot(ctx context.Context, c cluster.Cluster, m string, count, catchup int) error {
	url := memberURL(c, m)
	for _, o := range without(names(c), m) {
		if err := c.Faults().Cut(ctx, m, o); err != nil {
			return err
		}
	}
	need := uint64(count + catchup)
	wctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()
	var eps []string
	for _, mm := range c.Members() {
		eps = append(eps, mm.ClientURL)
	}
	cli, err := c.Client(wctx, eps...)
	if err != nil {
		return err
	}
	defer cli.Close()
	var leaderAt, memberAt uint64
	for {
		// Only the peer links are cut: m still answers its clients. Its
		// log may hold entries it has not applied yet; those count.
		if st, err := status(wctx, cli, url); err == nil {
			memberAt = max(st.RaftAppliedIndex, st.RaftIndex)
		}
		if l, err := c.Leader(wctx); err == nil && l.Name != m {
			if st, err := status(wctx, cli, l.ClientURL); err == nil {
				// Snapshots follow the applied index; versions that do not
				// report it give the committed one.
				leaderAt = st.RaftAppliedIndex
				if leaderAt == 0 {
					leaderAt = st.RaftIndex
				}
				if memberAt > 0 && leaderAt > memberAt+need {
					return nil
				}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the leader's applied index got %d entries past the cut member's (%d), not the %d needed, within %v: traffic too slow for snapshot count %d and catch-up entries %d, lower them (--snapshot-count, --snapshot-catchup-entries)",
				int64(leaderAt)-int64(memberAt), memberAt, need+1, snapshotWait, count, catchup)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func status(ctx context.Context, cli *clientv3.Client, url string) (*clientv3.StatusResponse, error) {
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cli.Status(sctx, url)
}
