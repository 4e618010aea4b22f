// Package lock checks the lock counter (workload.RunLockCounter) from the
// history: clients increment a counter under one etcd mutex, so with
// mutual exclusion every acknowledged increment is in the final counter,
// and nothing else is except increments whose outcome is unknown. It reads
// no revision (which txns succeeded, call and return times, the counter's
// value), so it runs on histories without revisions too; there the
// increments compare the value, since a revision compare cannot be
// recorded.
package lock

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/keyspace"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// Name is the check's name.
const Name = "lock/counter"

// Check judges the lock counter's increments against its final read. It
// returns nothing when the history has no lock counter traffic.
func Check(h *history.History) []verdict.Check {
	var (
		acked, unknown, incs int64
		lastInc              int64 // the latest call of an increment
		final                *history.Operation
	)
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Key != keyspace.LockCounterKey {
			continue
		}
		switch op.Kind {
		case history.Txn:
			incs++
			lastInc = max(lastInc, op.Call)
			switch {
			case op.Outcome == history.Unknown:
				unknown++
			case op.Outcome == history.OK && op.Resp != nil && op.Resp.Succeeded:
				acked++
			}
		case history.Get:
			if op.Outcome == history.OK && op.Resp != nil && (final == nil || op.Call > final.Call) {
				final = op
			}
		}
	}
	if incs == 0 && final == nil {
		return nil
	}
	c := verdict.Check{Name: Name, Status: verdict.Pass}
	if final == nil || final.Call < lastInc {
		c.Status = verdict.Unknown
		c.Summary = fmt.Sprintf("no read of %s after the last of %d increments; the final count is unknown", keyspace.LockCounterKey, incs)
		return []verdict.Check{c}
	}
	// Only increments acknowledged before the final read was sent must be
	// in it; one that returned later may take effect after the read.
	var ackedBefore int64
	for i := range h.Operations {
		op := &h.Operations[i]
		if op.Key == keyspace.LockCounterKey && op.Kind == history.Txn && op.Outcome == history.OK && op.Resp != nil && op.Resp.Succeeded && op.Return < final.Call {
			ackedBefore++
		}
	}
	var count int64
	if len(final.Resp.KVs) > 0 {
		n, err := keyspace.ParseCounter(final.Resp.KVs[0].Value)
		if err != nil {
			c.Violate("final read (op %d): %v", final.ID, err)
			c.Summary = "the counter holds a value no increment wrote"
			return []verdict.Check{c}
		}
		count = n
	}
	switch {
	case count < ackedBefore:
		c.Violate("lost updates: final value %d but %d increments were acknowledged before the final read (op %d) was sent (%d unknown); the lock did not give mutual exclusion or an acknowledged write was lost", count, ackedBefore, final.ID, unknown)
	case count > acked+unknown:
		c.Violate("phantom updates: final value %d exceeds %d acknowledged + %d unknown increments; a rejected or failed write was applied", count, acked, unknown)
	}
	c.Summary = fmt.Sprintf("final value %d, %d increments acknowledged, %d unknown, %d rejected", count, acked, unknown, incs-acked-unknown)
	if late := acked - ackedBefore; late > 0 {
		c.Summary += fmt.Sprintf("; %d acknowledged after the final read was sent, so it may not show them", late)
	}
	return []verdict.Check{c}
}
