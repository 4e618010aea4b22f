package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberStatus is one member's view of the cluster.
type MemberStatus struct {
	Member   Member
	ID       uint64
	Leader   uint64
	Revision int64
	RaftTerm uint64
	Err      error
}

// Statuses asks every member for its status through c, one request each,
// in the order of c.Members().
func Statuses(ctx context.Context, c Cluster, cli *clientv3.Client) []MemberStatus {
	members := c.Members()
	out := make([]MemberStatus, len(members))
	for i, m := range members {
		out[i].Member = m
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.ClientURL)
		cancel()
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].ID = st.Header.MemberId
		out[i].Leader = st.Leader
		out[i].Revision = st.Header.Revision
		out[i].RaftTerm = st.RaftTerm
	}
	return out
}

// FindLeader returns the member a majority of members name as leader. Backends
// use it to implement Cluster.Leader.
func FindLeader(ctx context.Context, c Cluster) (Member, error) {
	cli, err := c.Client(ctx)
	if err != nil {
		return Member{}, err
	}
	defer cli.Close()
	sts := Statuses(ctx, c, cli)
	votes := map[uint64]int{}
	byID := map[uint64]Member{}
	var errs []string
	for _, s := range sts {
		if s.Err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", s.Member.Name, s.Err))
			continue
		}
		byID[s.ID] = s.Member
		if s.Leader != 0 {
			votes[s.Leader]++
		}
	}
	for id, n := range votes {
		if n*2 > len(sts) {
			if m, ok := byID[id]; ok {
				return m, nil
			}
		}
	}
	sort.Strings(errs)
	return Member{}, fmt.Errorf("no leader agreed by a majority of %d members (%s)", len(sts), strings.Join(errs, "; "))
}

// WaitHealthy polls until every member answers and a majority agree on a
// leader. Backends use it to implement Cluster.WaitHealthy.
func WaitHealthy(ctx context.Context, c Cluster) error {
	var last error
	for {
		last = healthyOnce(ctx, c)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func healthyOnce(ctx context.Context, c Cluster) error {
	cli, err := c.Client(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	for _, s := range Statuses(ctx, c, cli) {
		if s.Err != nil {
			return fmt.Errorf("%s does not answer: %v", s.Member.Name, s.Err)
		}
		if s.Leader == 0 {
			return fmt.Errorf("%s has no leader", s.Member.Name)
		}
	}
	_, err = FindLeader(ctx, c)
	return err
}

// HashKV is one member's hash of its key-value store at a revision.
type HashKV struct {
	Member          string
	Revision        int64
	Hash            uint32
	CompactRevision int64
	Err             error
}

// CompareHashKV asks every member for HashKV at rev (0: the lowest current
// revision among them, so all can answer) and returns the hashes and an error
// naming the members whose hashes differ.
func CompareHashKV(ctx context.Context, c Cluster, rev int64) ([]HashKV, error) {
	cli, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	if rev == 0 {
		for _, s := range Statuses(ctx, c, cli) {
			if s.Err != nil {
				return nil, fmt.Errorf("hashkv: %s does not answer: %v", s.Member.Name, s.Err)
			}
			if rev == 0 || s.Revision < rev {
				rev = s.Revision
			}
		}
	}
	var out []HashKV
	hashes := map[uint32][]string{}
	for _, m := range c.Members() {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.HashKV(hctx, m.ClientURL, rev)
		cancel()
		h := HashKV{Member: m.Name, Revision: rev, Err: err}
		if err == nil {
			h.Hash = resp.Hash
			h.CompactRevision = resp.CompactRevision
			hashes[resp.Hash] = append(hashes[resp.Hash], m.Name)
		}
		out = append(out, h)
	}
	for _, h := range out {
		if h.Err != nil {
			return out, fmt.Errorf("hashkv at revision %d: %s: %v", rev, h.Member, h.Err)
		}
	}
	if len(hashes) > 1 {
		var parts []string
		for _, h := range out {
			parts = append(parts, fmt.Sprintf("%s=%d", h.Member, h.Hash))
		}
		return out, fmt.Errorf("members diverge at revision %d: %s", rev, strings.Join(parts, " "))
	}
	return out, nil
}
