package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

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
	count, catchup := defaultSnapshotCount, defaultCatchupEntries
	if p, ok := c.(snapshotPolicy); ok {
		count, catchup = p.SnapshotPolicy()
	}
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
// the leader has applied count+catchup entries past m's last index: by
// then it has taken a snapshot at least catchup entries past m and dropped
// the log before it, so m, once healed, can only catch up from a snapshot.
// It errors, leaving the cut for Heal, when the leader does not get there
// within snapshotWait.
func blackholeUntilSnapshot(ctx context.Context, c cluster.Cluster, m string, count, catchup int) error {
	var url string
	for _, mm := range c.Members() {
		if mm.Name == m {
			url = mm.ClientURL
		}
	}
	from, err := raftIndex(ctx, c, url)
	if err != nil {
		return fmt.Errorf("reading %s's raft index: %w", m, err)
	}
	for _, o := range without(names(c), m) {
		if err := c.Faults().Cut(ctx, m, o); err != nil {
			return err
		}
	}
	// The member may have appended a little after it was read; a margin
	// of a tenth of the catch-up window covers it.
	target := from + uint64(count+catchup) + uint64(catchup/10) + 1
	wctx, cancel := context.WithTimeout(ctx, snapshotWait)
	defer cancel()
	var reached uint64
	for {
		if l, err := c.Leader(wctx); err == nil && l.Name != m {
			if idx, err := raftIndex(wctx, c, l.ClientURL); err == nil {
				reached = idx
				if idx >= target {
					return nil
				}
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the leader reached raft index %d of the %d needed within %v (the cut member was at %d): traffic too slow for snapshot count %d and catch-up entries %d, lower them (--snapshot-count, --snapshot-catchup-entries)",
				reached, target, snapshotWait, from, count, catchup)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// raftIndex is the member's applied raft index (its committed one on
// versions that do not report applied).
func raftIndex(ctx context.Context, c cluster.Cluster, url string) (uint64, error) {
	cli, err := c.Client(ctx, url)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := cli.Status(sctx, url)
	if err != nil {
		return 0, err
	}
	return max(st.RaftAppliedIndex, st.RaftIndex), nil
}
