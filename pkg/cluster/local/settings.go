package local

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// Settings are the etcd member settings a local cluster runs with. Zero
// values keep the harness's defaults. Settings whose flag was renamed or
// added in some release are translated to the flag the binary has, and one
// the binary lacks is an error naming the setting and the version, never a
// silently ignored knob.
type Settings struct {
	// SnapshotCount is --snapshot-count: applied entries between snapshots
	// (default here DefaultSnapshotCount, etcd's own is 10000 or 100000).
	SnapshotCount int
	// SnapshotCatchupEntries is how many entries the leader keeps after a
	// snapshot for slow followers to catch up from, before they need a
	// snapshot: --snapshot-catchup-entries (3.6), or
	// --experimental-snapshot-catchup-entries (3.5.14 and later 3.5).
	SnapshotCatchupEntries int
	// CompactionBatchLimit is the maximum revisions a compaction deletes
	// per batch: --compaction-batch-limit (3.6) or
	// --experimental-compaction-batch-limit (3.4, 3.5).
	CompactionBatchLimit int
	// ProgressNotifyInterval is how often the server sends progress
	// notifications on watches that asked for them:
	// --watch-progress-notify-interval (3.6) or
	// --experimental-watch-progress-notify-interval (3.4, 3.5).
	ProgressNotifyInterval time.Duration
	// PeerTLS runs the members' peer traffic over TLS with client
	// certificate authentication, using certificates generated per cluster.
	PeerTLS bool
	// Flags are further etcd flags as "name=value" (or "name" for a
	// boolean), appended last, so they override the settings above.
	Flags []string
}

// DefaultSnapshotCount makes snapshots, and snapshot transfers to lagging
// members, happen within a run, not only after 10k writes.
const DefaultSnapshotCount = 2000

// DefaultSnapshotCatchupEntries is etcd's built-in value (3.4 to 3.6), the
// one a version without the flag always uses.
const DefaultSnapshotCatchupEntries = 5000

// knob is a setting with the flag names it has had, newest first.
type knob struct {
	setting string
	flags   []string
}

var (
	knobCatchupEntries  = knob{"snapshot catch-up entries", []string{"snapshot-catchup-entries", "experimental-snapshot-catchup-entries"}}
	knobCompactionBatch = knob{"compaction batch limit", []string{"compaction-batch-limit", "experimental-compaction-batch-limit"}}
	knobProgressNotify  = knob{"watch progress-notify interval", []string{"watch-progress-notify-interval", "experimental-watch-progress-notify-interval"}}
)

// settingFlags turns s into etcd flags for the binary bin (which reports
// version), probing the binary for the flag names it accepts.
func settingFlags(ctx context.Context, bin, version string, s Settings) ([]string, error) {
	var out []string
	add := func(k knob, value string) error {
		name, err := flagFor(ctx, bin, k.flags, value)
		if err != nil {
			return err
		}
		if name == "" {
			return fmt.Errorf("etcd %s has no %s setting (no --%s flag); use a version that has it or drop the setting", version, k.setting, strings.Join(k.flags, " or --"))
		}
		out = append(out, "--"+name+"="+value)
		return nil
	}
	count := s.SnapshotCount
	if count == 0 {
		count = DefaultSnapshotCount
	}
	if count < 0 {
		return nil, fmt.Errorf("snapshot count must be positive, got %d", count)
	}
	out = append(out, "--snapshot-count="+strconv.Itoa(count))
	if s.SnapshotCatchupEntries < 0 || s.CompactionBatchLimit < 0 || s.ProgressNotifyInterval < 0 {
		return nil, fmt.Errorf("cluster settings must not be negative")
	}
	if s.SnapshotCatchupEntries > 0 {
		if err := add(knobCatchupEntries, strconv.Itoa(s.SnapshotCatchupEntries)); err != nil {
			return nil, err
		}
	}
	if s.CompactionBatchLimit > 0 {
		if err := add(knobCompactionBatch, strconv.Itoa(s.CompactionBatchLimit)); err != nil {
			return nil, err
		}
	}
	if s.ProgressNotifyInterval > 0 {
		if err := add(knobProgressNotify, s.ProgressNotifyInterval.String()); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Flags {
		f = strings.TrimLeft(strings.TrimSpace(f), "-")
		if f == "" || strings.HasPrefix(f, "=") {
			return nil, fmt.Errorf("etcd flag %q has no name: write name=value", f)
		}
		out = append(out, "--"+f)
	}
	return out, nil
}

// AutoCompaction says why members started with s in the environment
// environ (which they inherit) may compact their store without a client
// asking: an auto-compaction retention other than zero, from Flags or,
// when no flag sets it, from ETCD_AUTO_COMPACTION_RETENTION, or a config
// file, which may set one. It is "" when they never do (etcd's default
// retention is 0: off).
func (s Settings) AutoCompaction(environ []string) string {
	var retention, from string
	for _, e := range environ {
		if v, ok := strings.CutPrefix(e, "ETCD_AUTO_COMPACTION_RETENTION="); ok {
			retention, from = v, e
		}
		if strings.HasPrefix(e, "ETCD_CONFIG_FILE=") {
			return "members read the config file " + e + ", which may set auto-compaction"
		}
	}
	for _, f := range s.Flags {
		f = strings.TrimLeft(strings.TrimSpace(f), "-")
		if v, ok := strings.CutPrefix(f, "auto-compaction-retention="); ok {
			retention, from = v, "--"+f
		}
		if strings.HasPrefix(f, "config-file=") {
			return "members read the config file --" + f + ", which may set auto-compaction"
		}
	}
	if cluster.RetentionOff(retention) {
		return ""
	}
	return "members run with " + from
}

// CatchupEntries is the snapshot catch-up entries the members run with:
// the setting, or etcd's built-in value.
func (s Settings) CatchupEntries() int {
	if s.SnapshotCatchupEntries > 0 {
		return s.SnapshotCatchupEntries
	}
	return DefaultSnapshotCatchupEntries
}

// Snapshots is the snapshot count the members run with.
func (s Settings) Snapshots() int {
	if s.SnapshotCount > 0 {
		return s.SnapshotCount
	}
	return DefaultSnapshotCount
}

var probes sync.Map // "bin\x00flag" -> bool

// flagFor returns the first of names that bin accepts, or "" when it
// accepts none. etcd parses every flag before it acts on --version, so
// `etcd --name=value --version` exits 0 exactly when the flag exists; the
// --help text cannot tell, as it omits some flags (3.5's catch-up entries).
func flagFor(ctx context.Context, bin string, names []string, value string) (string, error) {
	for _, name := range names {
		key := bin + "\x00" + name
		if ok, seen := probes.Load(key); seen {
			if ok.(bool) {
				return name, nil
			}
			continue
		}
		ok, err := probeFlag(ctx, bin, name, value)
		if err != nil {
			return "", err
		}
		probes.Store(key, ok)
		if ok {
			return name, nil
		}
	}
	return "", nil
}

func probeFlag(ctx context.Context, bin, name, value string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--"+name+"="+value, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		return true, nil
	case strings.Contains(string(out), "flag provided but not defined"):
		return false, nil
	case ctx.Err() != nil:
		return false, fmt.Errorf("probing %s for --%s: no answer within 10s", bin, name)
	default:
		return false, fmt.Errorf("probing %s for --%s: %v: %s", bin, name, err, lastLine(string(out)))
	}
}

// SnapshotPolicy is the members' snapshot count and catch-up entries: a
// follower more than count+catchup entries behind the leader can only
// catch up from a snapshot.
func (c *Cluster) SnapshotPolicy() (count, catchupEntries int) {
	return c.settings.Snapshots(), c.settings.CatchupEntries()
}

// settingFlags are the names RegisterFlags defines.
var settingFlagNames = []string{"snapshot-count", "snapshot-catchup-entries", "compaction-batch-limit", "progress-notify-interval", "peer-tls", "etcd-flag"}

// RegisterFlags defines on fs one flag per setting, as `etcd-chaos run`
// and ETCD_SETTINGS in the suites spell them, writing into s.
func (s *Settings) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&s.SnapshotCount, "snapshot-count", DefaultSnapshotCount, "local: applied entries between member snapshots (etcd --snapshot-count)")
	fs.IntVar(&s.SnapshotCatchupEntries, "snapshot-catchup-entries", 0, "local: entries the leader keeps after a snapshot for slow followers (0: etcd's 5000; 3.5.14+ and 3.6 only)")
	fs.IntVar(&s.CompactionBatchLimit, "compaction-batch-limit", 0, "local: maximum revisions one compaction batch deletes (0: etcd's default)")
	fs.DurationVar(&s.ProgressNotifyInterval, "progress-notify-interval", 0, "local: how often watches that asked get progress notifications (0: etcd's 10m)")
	fs.BoolVar(&s.PeerTLS, "peer-tls", false, "local: peer traffic over TLS with client certificates (generated per run)")
	fs.Func("etcd-flag", "local: extra etcd flag as name=value, passed to every member (repeatable; overrides the settings above)", func(v string) error {
		s.Flags = append(s.Flags, v)
		return nil
	})
}

// ParseSettings reads settings written as `etcd-chaos run` flags, such as
// "--snapshot-count 100 --peer-tls" (the suites' ETCD_SETTINGS).
func ParseSettings(args string) (Settings, error) {
	var s Settings
	fs := flag.NewFlagSet("settings", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.RegisterFlags(fs)
	if err := fs.Parse(strings.Fields(args)); err != nil {
		return Settings{}, fmt.Errorf("cluster settings %q: %w (valid: --%s)", args, err, strings.Join(settingFlagNames, ", --"))
	}
	if fs.NArg() > 0 {
		return Settings{}, fmt.Errorf("cluster settings %q: unexpected %q: write them as flags, such as --snapshot-count 100", args, fs.Arg(0))
	}
	return s, nil
}

// IsDefault reports whether s asks for nothing beyond the defaults, as
// parsed from no flags at all.
func (s Settings) IsDefault() bool { return s.Args() == "" }

// Args are the flags that give s back through RegisterFlags, each with a
// leading space ("" for the defaults): the part of a re-run command that
// sets the cluster up the same way.
func (s Settings) Args() string {
	var b strings.Builder
	if s.SnapshotCount != DefaultSnapshotCount && s.SnapshotCount != 0 {
		fmt.Fprintf(&b, " --snapshot-count %d", s.SnapshotCount)
	}
	if s.SnapshotCatchupEntries != 0 {
		fmt.Fprintf(&b, " --snapshot-catchup-entries %d", s.SnapshotCatchupEntries)
	}
	if s.CompactionBatchLimit != 0 {
		fmt.Fprintf(&b, " --compaction-batch-limit %d", s.CompactionBatchLimit)
	}
	if s.ProgressNotifyInterval != 0 {
		fmt.Fprintf(&b, " --progress-notify-interval %v", s.ProgressNotifyInterval)
	}
	if s.PeerTLS {
		b.WriteString(" --peer-tls")
	}
	for _, f := range s.Flags {
		fmt.Fprintf(&b, " --etcd-flag %s", f)
	}
	return b.String()
}
