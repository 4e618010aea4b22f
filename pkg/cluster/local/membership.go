package local

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// ReplaceMember removes the member from the cluster, wipes its data dir and
// adds it back as a new member (a new ID, same name and URLs), started with
// --initial-cluster-state=existing so that it joins the running cluster and
// catches up from the leader, by snapshot when the log has moved on. Its
// proxies keep their ports, so clients pinned to it reconnect to the new
// member. It returns once the new member serves; it need not have caught up.
func (c *Cluster) ReplaceMember(ctx context.Context, name string) error {
	m, err := c.member(name)
	if err != nil {
		return err
	}
	var rest []string
	for _, o := range c.members {
		if o != m {
			rest = append(rest, o.clientURL())
		}
	}
	if len(rest) == 0 {
		return fmt.Errorf("cannot replace %s: it is the only member", name)
	}
	cli, err := c.Client(ctx, rest...)
	if err != nil {
		return err
	}
	defer cli.Close()
	c.mu.Lock()
	oldID := m.id
	c.mu.Unlock()
	// Membership changes are refused while the cluster is unhealthy (etcd's
	// strict reconfiguration check) or has no leader: retry until ctx ends.
	if err := retry(ctx, func(ctx context.Context) error {
		_, err := cli.MemberRemove(ctx, oldID)
		if err != nil && isNotFound(err) {
			return nil // an earlier attempt went through
		}
		return err
	}); err != nil {
		return fmt.Errorf("removing %s (ID %x): %w", name, oldID, err)
	}
	if err := c.Kill(ctx, name); err != nil {
		return err
	}
	if err := os.RemoveAll(m.dataDir); err != nil {
		return fmt.Errorf("wiping %s data dir: %w", name, err)
	}
	var newID uint64
	if err := retry(ctx, func(ctx context.Context) error {
		resp, err := cli.MemberAdd(ctx, []string{m.peerURL()})
		if err != nil {
			return err
		}
		newID = resp.Member.ID
		return nil
	}); err != nil {
		return fmt.Errorf("adding %s back after removing it: %w (the cluster now runs without it)", name, err)
	}
	c.mu.Lock()
	m.id = newID
	m.joinExisting = true
	c.mu.Unlock()
	c.net.SetMemberIDs(map[uint64]string{newID: name})
	c.mu.Lock()
	m.clashes = 0
	err = c.startMemberLocked(m, true)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	return c.waitServing(ctx, m)
}

// retry calls f, with a 5s bound per call, until it succeeds or ctx ends.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isNotFound(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "member not found") || strings.Contains(err.Error(), "ID not found"))
}
