package workload

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker"
	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local/localtest"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// runProfile runs 3s of a profile's traffic (with compaction, so some
// reads at a revision meet it) and every check on what it recorded, which
// must pass on a correct etcd.
func runProfile(t *testing.T, profile string) *history.History {
	c := localtest.Start(t, "", 3)
	seed := testSeed(t)
	rec := history.NewRecorder(history.Meta{Seed: seed, Members: 3, Nemesis: "none"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tctx, tcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := Run(tctx, c, rec, Config{Seed: seed, Profile: profile, CompactInterval: 500 * time.Millisecond, CompactKeep: 5})
	tcancel()
	if err != nil {
		t.Fatal(err)
	}
	if err := FinalRead(ctx, c, rec, keyspace.KVPrefix); err != nil {
		t.Fatal(err)
	}
	h := rec.History()
	for _, ck := range checker.Check(ctx, h, checker.Options{}) {
		if ck.Status == verdict.Fail || ck.Status == verdict.Unknown {
			t.Errorf("%s: %s: %s %v", ck.Name, ck.Status, ck.Summary, ck.Violations)
		}
		if ck.Name == "serializable" {
			t.Log(ck.Summary)
		}
	}
	return h
}

func TestDeleteHeavyProfile(t *testing.T) {
	h := runProfile(t, ProfileDeleteHeavy)
	var deletes, churned, readsAt int
	for _, op := range h.Operations {
		switch {
		case op.Kind == history.Delete && op.Outcome == history.OK:
			deletes++
			if strings.HasPrefix(op.Key, keyspace.KVPrefix+"churn/") {
				churned++
			}
		case op.Kind == history.Get && op.Revision != 0:
			readsAt++
		}
	}
	if deletes == 0 || churned == 0 || readsAt == 0 {
		t.Errorf("%d deletes (%d of churn keys) and %d reads at a revision; want some of each", deletes, churned, readsAt)
	}
}

func TestKubernetesProfile(t *testing.T) {
	h := runProfile(t, ProfileKubernetes)
	var creates, pages, watches, deletes int
	for _, op := range h.Operations {
		switch {
		case op.Kind == history.Delete && strings.HasPrefix(op.Key, keyspace.KubePrefix):
			t.Errorf("op %d deletes %s without a compare; the apiserver deletes by txn on the mod revision", op.ID, op.Key)
		case op.Kind == history.Txn && op.Then == history.Delete && op.Outcome == history.OK && op.Resp.Succeeded && op.Resp.Deleted == 1:
			deletes++
		case op.Kind == history.Txn && op.ExpectModRev == 0 && op.Outcome == history.OK && op.Resp.Succeeded:
			creates++
		case op.Kind == history.Range && op.Revision != 0 && op.Outcome == history.OK:
			pages++
		}
	}
	for _, w := range h.Watches {
		if w.ClientID >= KubeWatchClientBase {
			watches++
		}
	}
	if creates == 0 || deletes == 0 || pages == 0 || watches == 0 {
		t.Errorf("%d creates, %d deletes on a mod revision, %d list pages at a revision, %d watches from a list's revision; want some of each", creates, deletes, pages, watches)
	}
	t.Logf("%d creates, %d deletes on a mod revision, %d list pages at a revision, %d watches", creates, deletes, pages, watches)
}
