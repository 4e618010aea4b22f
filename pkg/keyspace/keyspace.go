// Package keyspace is the key layout the workload writes and the checkers
// read: which prefix holds which traffic, how an operation's range is
// matched, and which reads promise linearizability. The workload and the
// checkers both import it, so a change to the layout is made once.
package keyspace

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// Key prefixes of the traffic.
const (
	// KVPrefix holds key-value traffic: the key pool KVKey(0..).
	KVPrefix = "/kv/"
	// LeaseExpirePrefix holds keys on leases left to expire.
	LeaseExpirePrefix = "/lease-expire/"
	// LeaseKeepPrefix holds keys on leases kept alive.
	LeaseKeepPrefix = "/lease-keep/"
	// LockPrefix holds the lock counter: etcd's concurrency.Mutex writes
	// its own unrecorded keys under LockName.
	LockPrefix = "/lock/"
	// RegistryPrefix holds registrations, each on a lease the client
	// library keeps alive without recorded requests.
	RegistryPrefix = "/registry/"
)

// Keys of the lock counter.
const (
	LockName       = LockPrefix + "counter"
	LockCounterKey = LockPrefix + "value"
)

// ParseCounter reads the lock counter's value, "<count>:<unique>".
func ParseCounter(v string) (int64, error) {
	n, _, found := strings.Cut(v, ":")
	if !found {
		return 0, fmt.Errorf("lock counter value %q is not <count>:<id>; was %s written by something else?", v, LockCounterKey)
	}
	c, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("lock counter value %q does not start with a count: %w", v, err)
	}
	return c, nil
}

// MaxKVKeys is how many names the key pool has.
const MaxKVKeys = 1000

// KVKey returns the i-th key of the KV pool (0 <= i < MaxKVKeys).
func KVKey(i int) string { return fmt.Sprintf("%sk%03d", KVPrefix, i) }

// ChurnKey returns the n-th key KV client c creates and deletes at once
// (churn): under KVPrefix, so watches and ranges of the pool see it, and
// used once in a run.
func ChurnKey(c, n int) string { return fmt.Sprintf("%schurn/c%d-%d", KVPrefix, c, n) }

// KubePrefix holds the kubernetes profile's objects, under KVPrefix so the
// watchers and the final read cover them.
const KubePrefix = KVPrefix + "pods/"

// KubeKey returns the key of the kubernetes profile's i-th object.
func KubeKey(i int) string { return fmt.Sprintf("%sp%03d", KubePrefix, i) }

// KubeIndex is the inverse of KubeKey.
func KubeIndex(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, KubePrefix+"p")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// PrefixEnd is the range end that covers every key starting with prefix,
// as clientv3.GetPrefixRangeEnd computes it.
func PrefixEnd(prefix string) string {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return string(end[:i+1])
		}
	}
	// Every byte is 0xff: the range runs to the end of the key space.
	return "\x00"
}

// InRange reports whether k lies in the range an operation or watch names
// with key and end: end "" is the single key, end "\x00" every key >= key,
// else [key, end).
func InRange(k, key, end string) bool {
	switch end {
	case "":
		return k == key
	case "\x00":
		return k >= key
	}
	return k >= key && k < end
}

// HasForeignWriters reports whether key lies where etcd's client-side
// helpers (concurrency.Mutex, a library KeepAlive) write or delete keys the
// history does not record, so that recorded writes alone do not account
// for the key's revisions.
func HasForeignWriters(key string) bool {
	return strings.HasPrefix(key, LockPrefix) || strings.HasPrefix(key, RegistryPrefix)
}

// LinearizableRead reports whether op is an answered read that promises
// linearizability of the current state: a get or range not sent
// serializable nor at a revision, or a failed txn whose else branch read
// its key. A failed value-compare txn without an else branch is not one:
// it read nothing, and taking its empty answer for "the key is absent"
// would invent a missing key.
func LinearizableRead(op *history.Operation) bool {
	if op.Outcome != history.OK || op.Resp == nil || op.Serializable {
		return false
	}
	switch op.Kind {
	case history.Get, history.Range:
		// A read at a revision is linearizable too, but it shows the
		// store as it was then, not now.
		return op.Revision == 0
	case history.Txn:
		return !op.Resp.Succeeded && op.ElseReads()
	}
	return false
}
