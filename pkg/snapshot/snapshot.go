// Package snapshot saves etcd snapshots, verifies them before anyone trusts
// them, restores them into fresh local clusters, and checks that a restored
// cluster holds exactly the state the recorded history says it must.
//
// A backup is only real if it restores, and a damaged backup is worse than
// none because it is discovered when it is needed. So every path here treats
// the file as untrusted: Save verifies the file before it appears under its
// final name, and restore verifies again before any member starts.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// Info describes one snapshot file.
type Info struct {
	// Path is where the snapshot file is.
	Path string `json:"path"`
	// Member is the client endpoint the snapshot was streamed from.
	Member string `json:"member,omitempty"`
	// MemberName is that member's name, when the cluster was known.
	MemberName string `json:"member_name,omitempty"`
	// Role is "leader" or "follower" when SaveFrom picked the member by
	// role, empty otherwise.
	Role string `json:"role,omitempty"`
	// Revision is the store revision the snapshot holds, read from the file.
	Revision int64 `json:"revision"`
	// TotalKeys is how many live keys the snapshot holds.
	TotalKeys int `json:"total_keys"`
	// Size is the file size in bytes, sha256 trailer included.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the whole file, as sha256sum prints it.
	SHA256 string `json:"sha256"`
	// Hash is etcd's crc32 over every bucket, as `etcdutl snapshot status`
	// prints it.
	Hash uint32 `json:"hash"`
	// StorageVersion is the storage version recorded in the snapshot (empty
	// for snapshots from etcd before v3.6).
	StorageVersion string `json:"storage_version,omitempty"`
	// ServerVersion is the version the serving member reported.
	ServerVersion string `json:"server_version,omitempty"`
	// Saved is when the save started.
	Saved time.Time `json:"saved,omitzero"`
	// Duration is how long the save took, verification included.
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// Save streams a snapshot from the member at endpoint into path and returns
// what the file holds. cli supplies credentials and TLS; the stream goes to
// endpoint alone, because a snapshot is the point-in-time state of one
// member and a balanced client could switch members mid-stream.
//
// The data lands in a temporary file next to path, is fsynced, verified
// (Verify), and only then renamed to path, so path never holds a partial or
// damaged snapshot: on any error or cancellation the temporary file is
// removed and path is untouched. The revision comes from the file itself,
// not from a Status call, which would race with traffic.
func Save(ctx context.Context, cli *clientv3.Client, endpoint, path string) (Info, error) {
	start := time.Now()
	info := Info{Path: path, Member: endpoint, Saved: start}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return info, fmt.Errorf("save snapshot: %w", err)
	}
	tmpName := tmp.Name()
	renamed := false
	defer func() {
		tmp.Close()
		if !renamed {
			os.Remove(tmpName)
		}
	}()

	conn, err := cli.Dial(endpoint)
	if err != nil {
		return info, fmt.Errorf("save snapshot: dial %s: %w", endpoint, err)
	}
	defer conn.Close()
	m := clientv3.NewMaintenanceFromMaintenanceClient(clientv3.RetryMaintenanceClient(cli, conn), cli)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := m.SnapshotWithVersion(sctx)
	if err != nil {
		return info, fmt.Errorf("save snapshot from %s: %w", endpoint, err)
	}
	defer resp.Snapshot.Close()
	info.ServerVersion = resp.Version
	if _, err := io.Copy(tmp, resp.Snapshot); err != nil {
		if ctx.Err() != nil {
			return info, fmt.Errorf("save snapshot from %s: %w", endpoint, ctx.Err())
		}
		return info, fmt.Errorf("save snapshot from %s: stream broke: %w", endpoint, err)
	}
	if err := tmp.Sync(); err != nil {
		return info, fmt.Errorf("save snapshot: fsync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return info, fmt.Errorf("save snapshot: %w", err)
	}

	v, err := Verify(tmpName)
	if err != nil {
		var b *badSnapshotError
		if errors.As(err, &b) {
			return info, fmt.Errorf("%w: snapshot streamed from %s failed verification and was discarded: %s", ErrBadSnapshot, endpoint, err)
		}
		return info, err
	}
	if err := ctx.Err(); err != nil {
		return info, fmt.Errorf("save snapshot: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return info, fmt.Errorf("save snapshot: %w", err)
	}
	renamed = true
	syncDir(dir)

	info.Revision = v.Revision
	info.TotalKeys = v.TotalKeys
	info.Size = v.Size
	info.SHA256 = v.SHA256
	info.Hash = v.Hash
	info.StorageVersion = v.StorageVersion
	info.Duration = time.Since(start)
	return info, nil
}

// syncDir makes a rename durable. Failure only weakens crash safety, so it
// is not an error.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// SaveFrom saves a snapshot from one member of c. role is "leader", the
// current leader; "follower", the first member in c.Members() that is not
// the leader; or a member name. Info records the member and the role.
func SaveFrom(ctx context.Context, c cluster.Cluster, role, path string) (Info, error) {
	m, err := PickMember(ctx, c, role)
	if err != nil {
		return Info{Path: path}, err
	}
	cli, err := c.Client(ctx, m.ClientURL)
	if err != nil {
		return Info{Path: path}, fmt.Errorf("save snapshot: %w", err)
	}
	defer cli.Close()
	info, err := Save(ctx, cli, m.ClientURL, path)
	info.MemberName = m.Name
	if role == "leader" || role == "follower" {
		info.Role = role
	}
	return info, err
}

// PickMember resolves role ("leader", "follower" or a member name) to a
// member of c.
func PickMember(ctx context.Context, c cluster.Cluster, role string) (cluster.Member, error) {
	members := c.Members()
	switch role {
	case "leader", "follower":
		leader, err := c.Leader(ctx)
		if err != nil {
			return cluster.Member{}, fmt.Errorf("pick %s: %w", role, err)
		}
		if role == "leader" {
			return leader, nil
		}
		for _, m := range members {
			if m.Name != leader.Name {
				return m, nil
			}
		}
		return cluster.Member{}, fmt.Errorf("pick follower: the cluster has only one member (%s, the leader); use --from leader", leader.Name)
	}
	var names []string
	for _, m := range members {
		if m.Name == role {
			return m, nil
		}
		names = append(names, m.Name)
	}
	return cluster.Member{}, fmt.Errorf("no member named %q (want leader, follower or one of %v)", role, names)
}
