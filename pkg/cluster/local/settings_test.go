package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeEtcd is a script that answers --version like etcd and rejects the
// flags named in missing as etcd's flag parser does.
func fakeEtcd(t *testing.T, version string, missing ...string) string {
	t.Helper()
	var cases strings.Builder
	for _, m := range missing {
		cases.WriteString("    --" + m + "=*) echo \"flag provided but not defined: -" + m + "\" >&2; exit 2;;\n")
	}
	script := "#!/bin/sh\nfor a in \"$@\"; do\n  case \"$a\" in\n" + cases.String() + "  esac\ndone\necho \"etcd Version: " + version + "\"\n"
	p := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSettingFlagsFollowTheVersion(t *testing.T) {
	ctx := context.Background()
	s := Settings{SnapshotCatchupEntries: 50, CompactionBatchLimit: 10, ProgressNotifyInterval: 300 * time.Millisecond, Flags: []string{"max-txn-ops=7", "--quota-backend-bytes=1000000"}}

	// 3.6 has the new names.
	got, err := settingFlags(ctx, fakeEtcd(t, "3.6.4"), "3.6.4", s)
	if err != nil {
		t.Fatal(err)
	}
	want := "--snapshot-count=2000 --snapshot-catchup-entries=50 --compaction-batch-limit=10 --watch-progress-notify-interval=300ms --max-txn-ops=7 --quota-backend-bytes=1000000"
	if strings.Join(got, " ") != want {
		t.Errorf("3.6 flags:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	// A late 3.5 has only the experimental names.
	old35 := fakeEtcd(t, "3.5.21", "snapshot-catchup-entries", "compaction-batch-limit", "watch-progress-notify-interval")
	got, err = settingFlags(ctx, old35, "3.5.21", s)
	if err != nil {
		t.Fatal(err)
	}
	want = "--snapshot-count=2000 --experimental-snapshot-catchup-entries=50 --experimental-compaction-batch-limit=10 --experimental-watch-progress-notify-interval=300ms --max-txn-ops=7 --quota-backend-bytes=1000000"
	if strings.Join(got, " ") != want {
		t.Errorf("3.5 flags:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	// An early 3.5 lacks catch-up entries under any name: one clear line.
	early := fakeEtcd(t, "3.5.2", "snapshot-catchup-entries", "experimental-snapshot-catchup-entries", "compaction-batch-limit", "watch-progress-notify-interval")
	_, err = settingFlags(ctx, early, "3.5.2", s)
	if err == nil || !strings.Contains(err.Error(), "etcd 3.5.2 has no snapshot catch-up entries setting") || strings.Contains(err.Error(), "\n") {
		t.Errorf("3.5.2 with catch-up entries: err = %v; want one line saying 3.5.2 lacks the setting", err)
	}
	// Without that setting 3.5.2 is fine.
	s.SnapshotCatchupEntries = 0
	if _, err := settingFlags(ctx, early, "3.5.2", s); err != nil {
		t.Errorf("3.5.2 without catch-up entries: %v", err)
	}
	if _, err := settingFlags(ctx, early, "3.5.2", Settings{Flags: []string{"=1"}}); err == nil {
		t.Error("a nameless --etcd-flag was accepted")
	}
}

// TestSettingsReachEtcd runs a cluster with every setting on and checks
// each one in etcd's behaviour, not only on its command line.
func TestSettingsReachEtcd(t *testing.T) {
	c := create(t, CreateWithSettings(Settings{
		SnapshotCount:          100,
		SnapshotCatchupEntries: 50,
		CompactionBatchLimit:   10,
		ProgressNotifyInterval: 200 * time.Millisecond,
		PeerTLS:                true,
		Flags:                  []string{"max-txn-ops=7"},
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("peer TLS", func(t *testing.T) {
		resp, err := client(t, c, "member-0").MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.Members {
			if len(m.PeerURLs) != 1 || !strings.HasPrefix(m.PeerURLs[0], "https://") {
				t.Errorf("%s peer URLs %v; want one https URL", m.Name, m.PeerURLs)
			}
		}
		// The proxies still tell senders apart through TLS: a cut leader
		// misses a write the others commit.
		old, err := c.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range others(c, old.Name) {
			if err := c.Cut(ctx, old.Name, o); err != nil {
				t.Fatal(err)
			}
		}
		put(t, client(t, c, others(c, old.Name)[0]), "/kv/tls", "after-cut")
		if got, _ := serializableGet(ctx, client(t, c, old.Name), "/kv/tls"); got != "" {
			t.Fatalf("cut-off old leader sees %q", got)
		}
		if err := c.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, "healed old leader catches up", func() error {
			got, err := serializableGet(ctx, client(t, c, old.Name), "/kv/tls")
			if err == nil && got != "after-cut" {
				return fmt.Errorf("sees %q", got)
			}
			return err
		})
	})

	t.Run("extra flag", func(t *testing.T) {
		var ops []clientv3.Op
		for i := 0; i < 8; i++ {
			ops = append(ops, clientv3.OpPut("/kv/txn", "v"))
		}
		_, err := client(t, c, "member-1").Txn(ctx).Then(ops...).Commit()
		if err == nil || !strings.Contains(err.Error(), "too many operations") {
			t.Fatalf("8-op txn with --max-txn-ops=7: err = %v; want too many operations", err)
		}
	})

	t.Run("progress notify interval", func(t *testing.T) {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		// etcd's default interval is 10 minutes: a notification within
		// the test's time shows the setting took.
		for resp := range client(t, c, "member-2").Watch(wctx, "/never-written", clientv3.WithProgressNotify()) {
			if resp.IsProgressNotify() {
				return
			}
		}
		t.Fatal("no progress notification within 10s")
	})

	t.Run("snapshot count", func(t *testing.T) {
		cli := client(t, c, "member-0")
		for i := 0; i < 250; i++ {
			put(t, cli, "/kv/snap", "v")
		}
		eventually(t, "a member snapshot file", func() error {
			snaps, _ := filepath.Glob(filepath.Join(c.TempDir(), "member-*.etcd", "member", "snap", "*.snap"))
			if len(snaps) == 0 {
				return fmt.Errorf("no snap files after 250 writes with snapshot count 100")
			}
			return nil
		})
	})

	t.Run("command line", func(t *testing.T) {
		log, err := os.ReadFile(filepath.Join(c.logDir, "member-0.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"--snapshot-catchup-entries=50", "--compaction-batch-limit=10"} {
			if !strings.Contains(string(log), f) {
				t.Errorf("member-0 started without %s", f)
			}
		}
	})
}

func TestParseSettingsRoundTripsArgs(t *testing.T) {
	s, err := ParseSettings("--snapshot-count 100 --snapshot-catchup-entries=50 --compaction-batch-limit 20 --progress-notify-interval 250ms --peer-tls --etcd-flag max-txn-ops=7 --etcd-flag quota-backend-bytes=1000000")
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{SnapshotCount: 100, SnapshotCatchupEntries: 50, CompactionBatchLimit: 20, ProgressNotifyInterval: 250 * time.Millisecond, PeerTLS: true, Flags: []string{"max-txn-ops=7", "quota-backend-bytes=1000000"}}
	if fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("parsed %+v, want %+v", s, want)
	}
	again, err := ParseSettings(s.Args())
	if err != nil || fmt.Sprint(again) != fmt.Sprint(s) {
		t.Fatalf("Args %q parsed back to %+v (%v), want %+v", s.Args(), again, err, s)
	}
	if empty, err := ParseSettings(""); err != nil || empty.Args() != "" || empty.Snapshots() != DefaultSnapshotCount {
		t.Fatalf("no settings: %+v %q %v; want the defaults and no args", empty, empty.Args(), err)
	}
	for _, bad := range []string{"--snapshot-count lots", "--no-such-setting 1", "snapshot-count=100"} {
		if _, err := ParseSettings(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSettings(%q) = %v; want one line of error", bad, err)
		}
	}
}

// Members compact on their own only with a non-zero auto-compaction
// retention, from an etcd flag or, when no flag sets it, from the
// environment they inherit; a config file may set one, so it counts too.
func TestAutoCompaction(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   []string
		environ []string
		want    string
	}{
		{"defaults", nil, []string{"HOME=/root"}, ""},
		{"retention flag", []string{"auto-compaction-mode=revision", "--auto-compaction-retention=1000"}, nil, "members run with --auto-compaction-retention=1000"},
		{"retention as a duration", []string{"auto-compaction-retention=5m"}, nil, "members run with --auto-compaction-retention=5m"},
		{"retention zero", []string{"auto-compaction-retention=0"}, nil, ""},
		{"retention zero duration", []string{"auto-compaction-retention=0s"}, nil, ""},
		{"mode without retention", []string{"auto-compaction-mode=periodic"}, nil, ""},
		{"environment", nil, []string{"ETCD_AUTO_COMPACTION_RETENTION=1"}, "members run with ETCD_AUTO_COMPACTION_RETENTION=1"},
		{"a flag overrides the environment", []string{"auto-compaction-retention=0"}, []string{"ETCD_AUTO_COMPACTION_RETENTION=1"}, ""},
		{"config file", []string{"config-file=/etc/etcd.yaml"}, nil, "members read the config file --config-file=/etc/etcd.yaml, which may set auto-compaction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (Settings{Flags: tc.flags}).AutoCompaction(tc.environ); got != tc.want {
				t.Fatalf("AutoCompaction = %q, want %q", got, tc.want)
			}
		})
	}
}
