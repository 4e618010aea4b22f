// Package chaos turns a backend's fault primitives (cluster.Faults) into
// nemeses, the named faults a scenario runs, and a seeded schedule that
// injects them while traffic runs and records every fault window in the
// history's timeline. Nemeses know nothing about processes or pods: the same
// nemesis kills a local process or a Kubernetes container.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// Fault is one planned fault: what it will do, to whom, and how to undo it.
// Planning has no side effects, so the timeline records the fault's start
// before Apply runs.
type Fault struct {
	Action  string
	Targets []string
	// Apply injects the fault.
	Apply func(ctx context.Context) error
	// Heal undoes it; nil when Apply leaves nothing to undo.
	Heal func(ctx context.Context) error
	// Instant faults (a rolling restart) are complete when Apply returns; the
	// schedule does not hold them for the fault duration.
	Instant bool
	// Compacts says Apply compacts the store without recording a compact
	// operation; the schedule marks the fault window so (history.Fault.
	// Compacts), and reads refused as compacted after it began are not
	// judged against the recorded compactions alone.
	Compacts bool
}

// Nemesis plans faults against a cluster.
type Nemesis interface {
	Name() string
	Plan(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error)
}

type nemesisFunc struct {
	name string
	plan func(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error)
}

func (n nemesisFunc) Name() string { return n.name }
func (n nemesisFunc) Plan(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	return n.plan(ctx, c, rng)
}

// registry holds every nemesis by name. "mix" is built from the others.
var registry = map[string]Nemesis{}

func register(name, doc string, plan func(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error)) {
	registry[name] = nemesisFunc{name: name, plan: plan}
	docs[name] = doc
}

var docs = map[string]string{}

func init() {
	register("none", "no faults: a control run", planNone)
	register("kill-random", "SIGKILL a random member, restart it at heal", planKill(false))
	register("kill-leader", "SIGKILL the leader, restart it at heal", planKill(true))
	register("pause-random", "SIGSTOP a random member, SIGCONT at heal", planPause(false))
	register("pause-leader", "SIGSTOP the leader, SIGCONT at heal", planPause(true))
	register("partition-leader", "cut the leader's peer links to every other member", planPartitionLeader)
	register("partition-random", "split the members into a random minority and majority", planPartitionRandom)
	register("bridge", "two halves that can only talk through one bridge member", planBridge)
	register("rolling-restart", "kill and restart every member in turn, waiting for health between", planRollingRestart)
	register("slow-network", "add latency and loss to a random member's peer traffic", planSlowNetwork)
	register("delete-pod", "delete a random member's pod with grace 0 (Kubernetes only)", planDeletePod)
	register("delete-all-pods", "delete every pod at once (Kubernetes only; loses data without persistence)", planDeleteAllPods)
	docs["mix"] = "each fault picks one at random of the nemeses above that work on every backend (not none, slow-network or the pod ones), plus member-replace, blackhole-until-snapshot and the failpoint ones where the cluster can take them; the faults check says which it left out and why"
}

// mixMembers are the nemeses "mix" always chooses from: every fault that
// works on every backend and leaves the data in place.
var mixMembers = []string{"kill-random", "kill-leader", "pause-random", "pause-leader", "partition-leader", "partition-random", "bridge", "rolling-restart"}

// mixBlackholeMax bounds snapshot count + catch-up entries for "mix" to
// choose blackhole-until-snapshot: each such fault waits for that many
// entries, and a mix fault should last seconds, not minutes.
const mixBlackholeMax = 1000

// mixOption is a nemesis "mix" adds when the cluster can take it; avail
// says why it cannot (nil: it can).
type mixOption struct {
	name  string
	avail func(c cluster.Cluster) error
}

var mixOptional = []mixOption{
	{"member-replace", func(c cluster.Cluster) error {
		if _, ok := c.Faults().(cluster.MembershipFaults); !ok {
			return fmt.Errorf("the %s backend cannot change membership", c.Backend())
		}
		if len(c.Members()) < 3 {
			return errors.New("it needs at least 3 members")
		}
		return nil
	}},
	{"blackhole-until-snapshot", func(c cluster.Cluster) error {
		if len(c.Members()) < 3 {
			return errors.New("it needs at least 3 members")
		}
		count, catchup := snapshotSettings(c)
		if count+catchup > mixBlackholeMax {
			return fmt.Errorf("each fault would wait for snapshot count %d + catch-up entries %d entries (mix takes it at %d or fewer: lower --snapshot-count, --snapshot-catchup-entries)", count, catchup, mixBlackholeMax)
		}
		return nil
	}},
}

func init() {
	for _, n := range failpointNemeses {
		mixOptional = append(mixOptional, mixOption{n.name, n.available})
	}
}

// mixChoices returns the nemeses "mix" chooses from on c, and one line for
// each reason it leaves some out (the failpoint ones share theirs).
func mixChoices(c cluster.Cluster) (choices, left []string) {
	choices = append(choices, mixMembers...)
	var reasons []string
	out := map[string][]string{}
	for _, o := range mixOptional {
		err := o.avail(c)
		if err == nil {
			choices = append(choices, o.name)
			continue
		}
		r := strings.TrimPrefix(err.Error(), cluster.ErrUnsupported.Error()+": ")
		if out[r] == nil {
			reasons = append(reasons, r)
		}
		out[r] = append(out[r], o.name)
	}
	for _, r := range reasons {
		left = append(left, fmt.Sprintf("mix leaves out %s: %s", strings.Join(out[r], ", "), r))
	}
	return choices, left
}

// MixNotes says which nemeses "mix" leaves out on c and why (a failpoint
// nemesis on a plain build, blackhole-until-snapshot with etcd's large
// snapshot settings); the schedule reports them with the run's faults.
func MixNotes(c cluster.Cluster) []string {
	_, left := mixChoices(c)
	return left
}

// ByName returns the named nemesis, or an error listing the valid names.
func ByName(name string) (Nemesis, error) {
	if name == "mix" {
		return mix{}, nil
	}
	if n, ok := registry[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("unknown nemesis %q (valid: %s)", name, strings.Join(Names(), ", "))
}

// Names lists every nemesis name, sorted.
func Names() []string {
	names := []string{"mix"}
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Describe returns a one-line description of a nemesis.
func Describe(name string) string { return docs[name] }

type mix struct{}

func (mix) Name() string { return "mix" }
func (mix) Plan(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	choices, _ := mixChoices(c)
	name := choices[rng.IntN(len(choices))]
	f, err := registry[name].Plan(ctx, c, rng)
	if err != nil {
		return f, err
	}
	f.Action = name + ": " + f.Action
	return f, nil
}

func planNone(context.Context, cluster.Cluster, *rand.Rand) (Fault, error) {
	return Fault{Action: "nothing", Apply: func(context.Context) error { return nil }, Instant: true}, nil
}

// pick returns the leader or a random member's name.
func pick(ctx context.Context, c cluster.Cluster, rng *rand.Rand, leader bool) (string, error) {
	if leader {
		l, err := c.Leader(ctx)
		if err != nil {
			return "", fmt.Errorf("find leader: %w", err)
		}
		return l.Name, nil
	}
	ms := c.Members()
	if len(ms) == 0 {
		return "", errors.New("cluster has no members")
	}
	return ms[rng.IntN(len(ms))].Name, nil
}

// onMember plans a fault on one member, the leader or a random one: apply
// injects it and heal undoes it, both given the member's name.
func onMember(verb string, leader bool, apply, heal func(cluster.Faults, context.Context, string) error) func(context.Context, cluster.Cluster, *rand.Rand) (Fault, error) {
	return func(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
		m, err := pick(ctx, c, rng, leader)
		if err != nil {
			return Fault{}, err
		}
		f := c.Faults()
		return Fault{
			Action:  verb + " " + m,
			Targets: []string{m},
			Apply:   func(ctx context.Context) error { return apply(f, ctx, m) },
			Heal:    func(ctx context.Context) error { return heal(f, ctx, m) },
		}, nil
	}
}

func planKill(leader bool) func(context.Context, cluster.Cluster, *rand.Rand) (Fault, error) {
	return onMember("kill", leader, cluster.Faults.Kill, cluster.Faults.Restart)
}

func planPause(leader bool) func(context.Context, cluster.Cluster, *rand.Rand) (Fault, error) {
	return onMember("pause", leader, cluster.Faults.Pause, cluster.Faults.Resume)
}

// cutGroups cuts every link between a member of a and a member of b.
func cutGroups(f cluster.Faults, a, b []string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, x := range a {
			for _, y := range b {
				if err := f.Cut(ctx, x, y); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

func names(c cluster.Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.Name)
	}
	return out
}

func without(all []string, drop ...string) []string {
	var out []string
	for _, n := range all {
		keep := true
		for _, d := range drop {
			keep = keep && n != d
		}
		if keep {
			out = append(out, n)
		}
	}
	return out
}

func planPartitionLeader(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	leader, err := pick(ctx, c, rng, true)
	if err != nil {
		return Fault{}, err
	}
	rest := without(names(c), leader)
	f := c.Faults()
	return Fault{
		Action:  fmt.Sprintf("partition leader %s from %s", leader, strings.Join(rest, ",")),
		Targets: []string{leader},
		Apply:   cutGroups(f, []string{leader}, rest),
		Heal:    f.Heal,
	}, nil
}

// Split returns a random minority and majority of the member names, with
// the minority of size (n-1)/2 so that the majority keeps quorum. It is
// exported for tests and for scenarios that build their own partitions.
func Split(all []string, rng *rand.Rand) (minority, majority []string) {
	shuffled := append([]string(nil), all...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	k := (len(shuffled) - 1) / 2
	if k == 0 && len(shuffled) > 1 {
		k = 1
	}
	minority, majority = shuffled[:k], shuffled[k:]
	sort.Strings(minority)
	sort.Strings(majority)
	return minority, majority
}

func planPartitionRandom(_ context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	all := names(c)
	if len(all) < 2 {
		return Fault{}, errors.New("partition-random needs at least 2 members")
	}
	minority, majority := Split(all, rng)
	f := c.Faults()
	return Fault{
		Action:  fmt.Sprintf("partition %s | %s", strings.Join(minority, ","), strings.Join(majority, ",")),
		Targets: minority,
		Apply:   cutGroups(f, minority, majority),
		Heal:    f.Heal,
	}, nil
}

// Bridge returns two halves and the bridge member, the partition Jepsen
// calls a bridge: the halves cannot reach each other, only the bridge sees
// both, so it can gather votes from either side while the halves disagree
// about who is alive.
func Bridge(all []string, rng *rand.Rand) (left, right []string, bridge string) {
	shuffled := append([]string(nil), all...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	bridge = shuffled[0]
	rest := shuffled[1:]
	left, right = rest[:len(rest)/2], rest[len(rest)/2:]
	sort.Strings(left)
	sort.Strings(right)
	return left, right, bridge
}

func planBridge(_ context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	all := names(c)
	if len(all) < 3 {
		return Fault{}, errors.New("bridge needs at least 3 members")
	}
	left, right, bridge := Bridge(all, rng)
	f := c.Faults()
	return Fault{
		Action:  fmt.Sprintf("bridge %s | %s | %s", strings.Join(left, ","), bridge, strings.Join(right, ",")),
		Targets: append(append([]string{}, left...), right...),
		Apply:   cutGroups(f, left, right),
		Heal:    f.Heal,
	}, nil
}

func planRollingRestart(_ context.Context, c cluster.Cluster, _ *rand.Rand) (Fault, error) {
	all := names(c)
	f := c.Faults()
	return Fault{
		Action:  "rolling restart " + strings.Join(all, ","),
		Targets: all,
		Instant: true,
		Apply: func(ctx context.Context) error {
			for _, m := range all {
				if err := f.Kill(ctx, m); err != nil {
					return err
				}
				if err := f.Restart(ctx, m); err != nil {
					return err
				}
				hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				err := c.WaitHealthy(hctx)
				cancel()
				if err != nil {
					return fmt.Errorf("after restarting %s: %w", m, err)
				}
			}
			return nil
		},
	}, nil
}

func planSlowNetwork(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	m, err := pick(ctx, c, rng, false)
	if err != nil {
		return Fault{}, err
	}
	f := c.Faults()
	const latency, loss = 200 * time.Millisecond, 0.1
	return Fault{
		Action:  fmt.Sprintf("degrade %s: +%v latency, %.0f%% loss", m, latency, loss*100),
		Targets: []string{m},
		Apply:   func(ctx context.Context) error { return f.Degrade(ctx, m, latency, loss) },
		Heal:    f.Heal,
	}, nil
}

func podFaults(c cluster.Cluster) (cluster.PodFaults, error) {
	pf, ok := c.Faults().(cluster.PodFaults)
	if !ok {
		return nil, fmt.Errorf("%w: pod faults need a Kubernetes backend (this is %s)", cluster.ErrUnsupported, c.Backend())
	}
	return pf, nil
}

func planDeletePod(ctx context.Context, c cluster.Cluster, rng *rand.Rand) (Fault, error) {
	pf, err := podFaults(c)
	if err != nil {
		return Fault{}, err
	}
	m, err := pick(ctx, c, rng, false)
	if err != nil {
		return Fault{}, err
	}
	return Fault{
		Action:  "delete pod " + m,
		Targets: []string{m},
		Instant: true,
		Apply:   func(ctx context.Context) error { return pf.DeletePod(ctx, m) },
	}, nil
}

func planDeleteAllPods(_ context.Context, c cluster.Cluster, _ *rand.Rand) (Fault, error) {
	pf, err := podFaults(c)
	if err != nil {
		return Fault{}, err
	}
	return Fault{
		Action:  "delete all pods",
		Targets: names(c),
		Instant: true,
		Apply:   pf.DeleteAllPods,
	}, nil
}

// NeedsFailpoints reports whether the named nemesis arms gofail failpoints,
// and so needs etcd's failpoint build.
func NeedsFailpoints(name string) bool { return strings.HasPrefix(name, "failpoint-") }
