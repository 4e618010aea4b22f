package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// failpointNemesis arms one of a few gofail failpoints that sit around the
// same step of etcd's write path, on a random member. A panic term crashes
// the member where the failpoint sits (half-way through a save, a commit, a
// defragmentation or a compaction); the member is restarted at heal and must
// come back with nothing acknowledged lost. A sleep term delays a step and
// is disarmed at heal.
type failpointNemesis struct {
	name, doc string
	// points are the failpoints it chooses from; those the version lacks
	// are skipped.
	points []string
	term   string
	// trigger makes the step run when traffic alone does not (a defrag, a
	// compaction); nil when traffic does.
	trigger func(ctx context.Context, c cluster.Cluster, member string) error
	// compacts: trigger compacts the store, which the history does not
	// record as an operation (Fault.Compacts).
	compacts bool
}

var failpointNemeses = []failpointNemesis{
	{name: "failpoint-raft-save", doc: "panic a random member just before or after it saves raft entries to its WAL",
		points: []string{"raftBeforeSave", "raftAfterSave"}, term: "panic"},
	{name: "failpoint-backend-commit", doc: "panic a random member just before or after a backend (bbolt) commit",
		points: []string{"beforeCommit", "afterCommit"}, term: "panic"},
	{name: "failpoint-defrag", doc: "defragment a random member and panic it half-way (before the copy or before the rename)",
		points: []string{"defragBeforeCopy", "defragBeforeRename"}, term: "panic", trigger: defragment},
	{name: "failpoint-compaction", doc: "compact the keyspace and panic a random member at one step of applying it",
		// Every compaction passes these four; the CommitBatch ones only
		// when it deletes more than the compaction batch limit.
		points: []string{"compactBeforeCommitScheduledCompact", "compactAfterCommitScheduledCompact", "compactBeforeSetFinishedCompact", "compactAfterSetFinishedCompact"},
		term:   "panic", trigger: compact, compacts: true},
	{name: "failpoint-watch-sleep", doc: "delay every watch response a random member sends by 100ms",
		points: []string{"beforeSendWatchResponse"}, term: "sleep(100)"},
}

func init() {
	for _, n := range failpointNemeses {
		register(n.name, n.doc+" (failpoint build: --failpoints)", n.plan)
	}
}

// failpointWait bounds how long an armed failpoint may take to fire; past
// it the fault did not take effect, is disarmed and says so.
var failpointWait = 30 * time.Second

func failpointFaults(c cluster.Cluster) (cluster.FailpointFaults, error) {
	ff, ok := c.Faults().(cluster.FailpointFaults)
	if !ok {
		return nil, fmt.Errorf("%w: failpoint nemeses need the local backend (this is %s)", cluster.ErrUnsupported, c.Backend())
	}
	if len(ff.Failpoints()) == 0 {
		return nil, fmt.Errorf("%w: etcd %s here is a plain build without failpoints; use the failpoint build (--failpoints)", cluster.ErrUnsupported, c.Version())
	}
	return ff, nil
}

// usable returns the failpoints of n that c's binary has, or why n cannot
// run on c.
func (n failpointNemesis) usable(c cluster.Cluster) (cluster.FailpointFaults, []string, error) {
	ff, err := failpointFaults(c)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, p := range ff.Failpoints() {
		have[p] = true
	}
	var points []string
	for _, p := range n.points {
		if have[p] {
			points = append(points, p)
		}
	}
	if len(points) == 0 {
		return nil, nil, fmt.Errorf("%w: etcd %s has none of the failpoints %s uses (%s); list its failpoints with `etcd-chaos failpoints --etcd-version v%s`",
			cluster.ErrUnsupported, c.Version(), n.name, strings.Join(n.points, ", "), c.Version())
	}
	return ff, points, nil
}

// available is nil when n can run on c.
func (n failpointNemesis) available(c cluster.Cluster) error {
	_, _, err := n.usable(c)
	return err
}

func (n failpointNemesis) plan(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	ff, points, err := n.usable(c)
	if err != nil {
		return Fault{}, err
	}
	point := points[rng.IntN(len(points))]
	m, err := pick(ctx, c, rng, false)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{
		Action:   fmt.Sprintf("failpoint %s=%s on %s", point, n.term, m),
		Targets:  []string{m},
		Compacts: n.compacts,
	}
	if n.term == "panic" {
		f.Apply = func(ctx context.Context) error { return n.panicAt(ctx, c, ff, m, point) }
		// The member crashed: bring it back (a no-op wait if it runs).
		f.Heal = func(ctx context.Context) error { return c.Faults().Restart(ctx, m) }
		return f, nil
	}
	f.Apply = func(ctx context.Context) error {
		if err := ff.SetFailpoint(ctx, m, point, n.term); err != nil {
			return err
		}
		return waitFired(ctx, ff, m, point)
	}
	f.Heal = func(ctx context.Context) error {
		err := ff.SetFailpoint(ctx, m, point, "off")
		if errors.Is(err, cluster.ErrMemberDown) {
			return c.Faults().Restart(ctx, m)
		}
		return err
	}
	return f, nil
}

// panicAt arms a panic failpoint, triggers the step it sits in if traffic
// does not, and waits for the member to crash on it.
func (n failpointNemesis) panicAt(ctx context.Context, c cluster.Cluster, ff cluster.FailpointFaults, m, point string) error {
	if err := ff.SetFailpoint(ctx, m, point, "panic"); err != nil {
		return err
	}
	if n.trigger != nil {
		// The member panics mid-request: the request's error is expected.
		_ = n.trigger(ctx, c, m)
	}
	return waitFired(ctx, ff, m, point)
}

// waitFired waits until the failpoint has fired on m, or m went down (a
// panic takes the counter with it). A failpoint that never fires is
// disarmed and reported: the fault did not take effect.
func waitFired(ctx context.Context, ff cluster.FailpointFaults, m, point string) error {
	wctx, cancel := context.WithTimeout(ctx, failpointWait)
	defer cancel()
	for {
		hits, err := ff.FailpointHits(wctx, m, point)
		if errors.Is(err, cluster.ErrMemberDown) || (err == nil && hits > 0) {
			return nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = ff.SetFailpoint(dctx, m, point, "off")
			dcancel()
			return fmt.Errorf("failpoint %s armed on %s did not fire within %v (disarmed)", point, m, failpointWait)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func memberURL(c cluster.Cluster, m string) string {
	for _, mm := range c.Members() {
		if mm.Name == m {
			return mm.ClientURL
		}
	}
	return ""
}

// defragment defragments member m.
func defragment(ctx context.Context, c cluster.Cluster, m string) error {
	url := memberURL(c, m)
	cli, err := c.Client(ctx, url)
	if err != nil {
		return err
	}
	defer cli.Close()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cli.Defragment(dctx, url)
	return err
}

// compact compacts the keyspace at the current revision through a member
// other than m (which may crash applying it). Watches and reads behind it
// get ErrCompacted, which the checkers accept.
func compact(ctx context.Context, c cluster.Cluster, m string) error {
	var eps []string
	for _, mm := range c.Members() {
		if mm.Name != m {
			eps = append(eps, mm.ClientURL)
		}
	}
	cli, err := c.Client(ctx, eps...)
	if err != nil {
		return err
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cli.Get(cctx, "compaction-probe")
	if err != nil {
		return err
	}
	_, err = cli.Compact(cctx, resp.Header.Revision)
	return err
}
