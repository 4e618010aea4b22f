package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func restore(tb testing.TB, path string, members int) *local.Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Restore(ctx, path, members, WithArtifactDir(tb.TempDir()))
	if err != nil {
		tb.Fatalf("restore into %d members: %v", members, err)
	}
	tb.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func clusterID(t *testing.T, c cluster.Cluster) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.ClusterId
}

// writer is a sequential put/delete loop that records every operation.
type writer struct {
	rec  *history.Recorder
	cli  *clientv3.Client
	keys int
}

func (w *writer) run(ctx context.Context, n int) {
	for i := 0; (n == 0 || i < n) && ctx.Err() == nil; i++ {
		id := w.rec.NextID()
		key := fmt.Sprintf("/kv/k%03d", int(id)%w.keys)
		op := history.Operation{ID: id, Key: key, Call: w.rec.Now()}
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if id%7 == 0 {
			op.Kind = history.Delete
			resp, err := w.cli.Delete(octx, key)
			if err == nil {
				op.Outcome, op.Resp = history.OK, &history.Response{Revision: resp.Header.Revision, Deleted: resp.Deleted}
			} else {
				op.Outcome, op.Error = history.Unknown, err.Error()
			}
		} else {
			op.Kind = history.Put
			op.Value = fmt.Sprintf("value-%d", id)
			resp, err := w.cli.Put(octx, key, op.Value)
			if err == nil {
				op.Outcome, op.Resp = history.OK, &history.Response{Revision: resp.Header.Revision}
			} else {
				op.Outcome, op.Error = history.Unknown, err.Error()
			}
		}
		cancel()
		op.Return = w.rec.Now()
		w.rec.AddOperation(op)
	}
}

// damaged writes copies of a real snapshot, damaged in each way Verify must
// catch, and returns name -> path.
func damaged(t *testing.T, snap string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := map[string]string{}
	write := func(name string, b []byte) {
		p := filepath.Join(dir, name+".db")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out[name] = p
	}
	write("empty", nil)
	write("random", []byte(strings.Repeat("this is not a bolt database; ", 400)))
	write("truncated", data[:len(data)/2])
	write("no-trailer", data[:len(data)-32])
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x10
	write("flipped", flipped)
	return out
}

// wantErrors maps each damage to the phrase its error must contain.
var wantErrors = map[string]string{
	"empty":      "is empty",
	"random":     "is not an etcd snapshot (not a bolt database)",
	"truncated":  "is truncated: file is",
	"no-trailer": "has no sha256 trailer",
	"flipped":    "is corrupt: sha256 mismatch (flipped or damaged bytes)",
}

func TestVerifyRejectsDamagedSnapshots(t *testing.T) {
	c := localtest.Start(t, "", 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := c.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/kv/k%03d", i), strings.Repeat("x", 100)+fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(t.TempDir(), "good.db")
	info, err := SaveFrom(ctx, c, "leader", snap)
	if err != nil {
		t.Fatal(err)
	}
	if info.TotalKeys != 200 || info.Revision != 201 || info.Role != "leader" || info.MemberName != "member-0" {
		t.Fatalf("info = %+v, want 200 keys at revision 201 from leader member-0", info)
	}
	if _, err := Verify(snap); err != nil {
		t.Fatalf("good snapshot fails verification: %v", err)
	}

	for name, path := range damaged(t, snap) {
		t.Run(name, func(t *testing.T) {
			_, err := Verify(path)
			if err == nil || !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), wantErrors[name]) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Verify(%s) = %v, want an ErrBadSnapshot naming the file and saying %q", name, err, wantErrors[name])
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			// The seeder must refuse before touching any data dir.
			dataDir := t.TempDir()
			err = Seeder(path)(ctx, []local.MemberSpec{{Name: "member-0", DataDir: dataDir, PeerURL: "http://127.0.0.1:1",
				InitialCluster: "member-0=http://127.0.0.1:1"}})
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("seeder accepted a %s snapshot: %v", name, err)
			}
			if ents, _ := os.ReadDir(dataDir); len(ents) != 0 {
				t.Fatalf("seeder wrote %d entries into the data dir of a refused restore", len(ents))
			}
		})
	}

	t.Run("member choice", func(t *testing.T) {
		for role, want := range map[string]string{"follower": "only one member", "member-9": `no member named "member-9"`} {
			_, err := SaveFrom(ctx, c, role, filepath.Join(t.TempDir(), "x.db"))
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("SaveFrom(%q) = %v, want an error saying %q", role, err, want)
			}
		}
		info, err := SaveFrom(ctx, c, "member-0", filepath.Join(t.TempDir(), "x.db"))
		if err != nil || info.MemberName != "member-0" || info.Role != "" || info.Member != c.Endpoints()[0] {
			t.Fatalf("SaveFrom(member-0) = %+v, %v", info, err)
		}
	})

	t.Run("cancelled save leaves no file", func(t *testing.T) {
		dir := t.TempDir()
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		if _, err := Save(cctx, cli, c.Endpoints()[0], filepath.Join(dir, "x.db")); err == nil {
			t.Fatal("save with a cancelled context succeeded")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("cancelled save left %v behind", ents[0].Name())
		}
	})
}

func TestRoundTripUnderLoad(t *testing.T) {
	orig := localtest.Start(t, "", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := orig.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	rec := history.NewRecorder(history.Meta{Scenario: "snapshot-roundtrip", Backend: "local", Members: 3})
	w := &writer{rec: rec, cli: cli, keys: 40}
	w.run(ctx, 100) // something to snapshot before the load starts

	// Save from the leader and from a follower while the writer runs.
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(lctx, 0) })
	dir := t.TempDir()
	var infos []Info
	for _, role := range []string{"leader", "follower"} {
		time.Sleep(300 * time.Millisecond)
		info, err := SaveFrom(ctx, orig, role, filepath.Join(dir, role+".db"))
		if err != nil {
			stop()
			wg.Wait()
			t.Fatalf("save from %s: %v", role, err)
		}
		infos = append(infos, info)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	h := rec.History()
	origID := clusterID(t, orig)

	for _, info := range infos {
		if info.Role == "" || info.Revision <= 100 {
			t.Fatalf("snapshot info %+v: want a role and a revision above the 100 writes made before the load", info)
		}
		t.Logf("snapshot from %s (%s): revision %d, %d keys, %d bytes; history has %d operations", info.Role, info.MemberName, info.Revision, info.TotalKeys, info.Size, len(h.Operations))
		for _, members := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s-into-%d", info.Role, members), func(t *testing.T) {
				rc := restore(t, info.Path, members)
				checks := CheckRestored(ctx, rc, h, info)
				for _, ch := range checks {
					t.Logf("%s: %s: %s", ch.Name, ch.Status, ch.Summary)
				}
				if !verdict.Passed(checks) {
					t.Fatalf("restored cluster fails: %+v", verdict.Failed(checks))
				}
				if id := clusterID(t, rc); id == origID {
					t.Fatalf("restored cluster kept the original cluster ID %x", id)
				}

				// A history that acknowledges a write at or below the
				// snapshot revision that the snapshot lacks must fail.
				bad := *h
				bad.Operations = append(append([]history.Operation(nil), h.Operations...), history.Operation{
					ID: 1 << 40, Kind: history.Put, Key: "/kv/ghost", Value: "ghost-value", Outcome: history.OK,
					Call: 0, Return: 1, Resp: &history.Response{Revision: info.Revision},
				})
				ch := CheckRestored(ctx, rc, &bad, info)[0]
				if ch.Status != verdict.Fail || !strings.Contains(strings.Join(ch.Violations, "\n"), `"/kv/ghost" is missing`) {
					t.Fatalf("a missing acknowledged write was not caught: %s %v", ch.Status, ch.Violations)
				}
				// So must a snapshot that claims a revision it does not hold.
				wrong := info
				wrong.Revision--
				if ch := CheckRestored(ctx, rc, h, wrong)[0]; ch.Status != verdict.Fail {
					t.Fatalf("a wrong snapshot revision was not caught: %s", ch.Summary)
				}
			})
		}
	}
}
