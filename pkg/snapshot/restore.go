package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	etcdutlsnap "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/local"
)

// RestoreOption configures Seeder and Restore.
type RestoreOption func(*restoreConfig)

type restoreConfig struct {
	token       string
	logger      *zap.Logger
	version     string
	binary      string
	cacheDir    string
	progress    io.Writer
	artifactDir string
	flags       []string
	user, pass  string
}

// WithEtcdVersion picks the etcd version Restore runs (built and cached by
// pkg/etcdbin).
func WithEtcdVersion(v string) RestoreOption {
	return func(c *restoreConfig) { c.version = v }
}

// WithEtcdBinary makes Restore run this etcd binary.
func WithEtcdBinary(path string) RestoreOption {
	return func(c *restoreConfig) { c.binary = path }
}

// WithCacheDir sets where Restore finds or builds the etcd binary.
func WithCacheDir(dir string) RestoreOption {
	return func(c *restoreConfig) { c.cacheDir = dir }
}

// WithProgress receives the one line printed when etcd is first built.
func WithProgress(w io.Writer) RestoreOption {
	return func(c *restoreConfig) { c.progress = w }
}

// WithArtifactDir keeps the restored cluster's logs in dir.
func WithArtifactDir(dir string) RestoreOption {
	return func(c *restoreConfig) { c.artifactDir = dir }
}

// WithCredentials makes the restored cluster's clients authenticate as
// user: a snapshot keeps the auth state of the cluster it came from, so a
// snapshot of a cluster with auth on (every release of the Bitnami chart,
// and charts/etcd, have RBAC on) restores into members that answer even
// Status only to an authenticated client.
func WithCredentials(user, password string) RestoreOption {
	return func(c *restoreConfig) { c.user, c.pass = user, password }
}

func newRestoreConfig(opts []RestoreOption) *restoreConfig {
	c := &restoreConfig{logger: zap.NewNop()}
	for _, o := range opts {
		o(c)
	}
	return c
}

func newToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "etcd-chaos-restore-" + hex.EncodeToString(b)
}

// Seeder returns a local.Seeder that fills every member's data dir from the
// snapshot at path. It verifies the snapshot first, so a cluster never starts
// on partial or damaged data, and it restores with etcd's own restore code
// (etcdutl), sha256 check on, under a new cluster token. If any member fails,
// every data dir it wrote is removed again.
func Seeder(path string, opts ...RestoreOption) local.Seeder {
	cfg := newRestoreConfig(opts)
	return func(ctx context.Context, members []local.MemberSpec) error {
		if _, err := Verify(path); err != nil {
			return fmt.Errorf("refusing to restore: %w", err)
		}
		token := cfg.token
		if token == "" {
			token = newToken()
		}
		var done []string
		for _, m := range members {
			if err := ctx.Err(); err != nil {
				removeAll(done)
				return err
			}
			done = append(done, m.DataDir)
			err := etcdutlsnap.NewV3(cfg.logger).Restore(etcdutlsnap.RestoreConfig{
				SnapshotPath:        path,
				Name:                m.Name,
				OutputDataDir:       m.DataDir,
				PeerURLs:            []string{m.PeerURL},
				InitialCluster:      m.InitialCluster,
				InitialClusterToken: token,
				SkipHashCheck:       false,
			})
			if err != nil {
				removeAll(done)
				return fmt.Errorf("restore snapshot %s into %s: %w", path, m.Name, err)
			}
		}
		return nil
	}
}

// removeAll empties data dirs a failed restore wrote, leaving the dirs
// themselves as the provider created them.
func removeAll(dirs []string) {
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			os.RemoveAll(d + string(os.PathSeparator) + e.Name())
		}
	}
}

// Restore verifies the snapshot at path and starts a new local cluster of
// members members (1, 3 or 5) restored from it, under a new cluster ID. The
// caller closes the cluster.
func Restore(ctx context.Context, path string, members int, opts ...RestoreOption) (*local.Cluster, error) {
	if members < 1 {
		return nil, fmt.Errorf("restore: members must be at least 1, got %d", members)
	}
	if _, err := Verify(path); err != nil {
		return nil, fmt.Errorf("refusing to restore: %w", err)
	}
	cfg := newRestoreConfig(opts)
	var popts []local.ProviderOption
	if cfg.version != "" {
		popts = append(popts, local.WithVersion(cfg.version))
	}
	if cfg.binary != "" {
		popts = append(popts, local.WithEtcdBinary(cfg.binary))
	}
	if cfg.cacheDir != "" {
		popts = append(popts, local.WithCacheDir(cfg.cacheDir))
	}
	if cfg.progress != nil {
		popts = append(popts, local.WithProgress(cfg.progress))
	}
	copts := []local.CreateOption{local.CreateWithMembers(members), local.CreateWithSeeder(Seeder(path, opts...))}
	if cfg.artifactDir != "" {
		copts = append(copts, local.CreateWithArtifactDir(cfg.artifactDir))
	}
	if len(cfg.flags) > 0 {
		copts = append(copts, local.CreateWithFlags(cfg.flags...))
	}
	if cfg.user != "" {
		copts = append(copts, local.CreateWithCredentials(cfg.user, cfg.pass))
	}
	// Create waits until every member serves and they agree on a leader,
	// and removes everything it made when it fails.
	c, err := local.NewProvider(popts...).Create(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("restore %s into a %d-member cluster: %w", path, members, err)
	}
	return c, nil
}
