package lease

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/history/historytest"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// builder assembles histories with explicit times, given in seconds since
// the run started; every operation takes 10ms.
type builder struct{ historytest.Builder }

const opLatency = 10 * time.Millisecond

func at(sec float64) int64 { return int64(sec * float64(time.Second)) }

func (b *builder) add(sec float64, op history.Operation) *history.Operation {
	op.Call = at(sec)
	op.Return = op.Call + int64(opLatency)
	return b.Add(op)
}

func (b *builder) grant(sec float64, lease, ttl int64) {
	b.add(sec, history.Operation{Kind: history.LeaseGrant, TTL: ttl, Resp: &history.Response{LeaseID: lease, TTL: ttl}})
}

func (b *builder) put(sec float64, key, value string, lease, rev int64) {
	b.add(sec, historytest.Put(key, value, lease, rev))
}

func (b *builder) revoke(sec float64, lease, rev int64) {
	b.add(sec, historytest.Revoke(lease, rev))
}

func (b *builder) keepalive(sec float64, lease, ttl int64, outcome history.Outcome, errMsg string) {
	op := history.Operation{Kind: history.LeaseKeepAlive, Lease: lease, Outcome: outcome, Error: errMsg}
	if outcome == history.OK {
		op.Resp = &history.Response{TTL: ttl}
	}
	b.add(sec, op)
}

// get records a linearizable get of key returning kvs.
func (b *builder) get(sec float64, key string, rev int64, kvs ...history.KV) {
	b.add(sec, historytest.Get(key, rev, kvs...))
}

func kv(key, value string, mod, lease int64) history.KV {
	return history.KV{Key: key, Value: value, ModRevision: mod, CreateRevision: mod, Version: 1, Lease: lease}
}

func find(t *testing.T, checks []verdict.Check, name string) verdict.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check named %s in %d checks", name, len(checks))
	return verdict.Check{}
}

// expect asserts one check's status and that its violations and warnings
// mention the given substrings.
func expect(t *testing.T, c verdict.Check, status verdict.Status, violations, warnings int, mentions ...string) {
	t.Helper()
	if c.Status != status || len(c.Violations) != violations || len(c.Warnings) != warnings {
		t.Errorf("%s: status %s with %d violations and %d warnings, want %s with %d and %d\nsummary: %s\nviolations: %q\nwarnings: %q",
			c.Name, c.Status, len(c.Violations), len(c.Warnings), status, violations, warnings, c.Summary, c.Violations, c.Warnings)
		return
	}
	all := c.Summary + "\n" + strings.Join(c.Violations, "\n") + "\n" + strings.Join(c.Warnings, "\n")
	for _, m := range mentions {
		if !strings.Contains(all, m) {
			t.Errorf("%s: %q not mentioned in:\n%s", c.Name, m, all)
		}
	}
}
