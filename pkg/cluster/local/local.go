// Package local is the embedded default backend: a cluster of real etcd
// processes on 127.0.0.1, each member behind a fault proxy for its peer port
// and one for its client port (pkg/faultproxy). Members advertise the proxy
// addresses, so partitions and degradations act on every byte the members
// exchange, including on connections that were open before the fault.
//
// Processes run in their own process group with Pdeathsig SIGKILL, so a
// crashed or killed harness takes its etcd members with it, and Ctrl-C in a
// terminal reaches the harness only, which then shuts the members down in
// order.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/faultproxy"
)

// Provider creates local clusters. Its options say which etcd to run.
type Provider struct {
	version    string
	binary     string
	failpoints bool
	cacheDir   string
	progress   io.Writer
}

// ProviderOption configures a Provider.
type ProviderOption func(*Provider)

// WithVersion selects the etcd version to build and run (default
// etcdbin.DefaultVersion). Ignored when WithEtcdBinary is given.
func WithVersion(v string) ProviderOption { return func(p *Provider) { p.version = v } }

// WithEtcdBinary runs the given etcd binary instead of building one.
func WithEtcdBinary(path string) ProviderOption { return func(p *Provider) { p.binary = path } }

// WithFailpoints runs the failpoint build of the version (see
// etcdbin.EnsureFailpoints), or checks that WithEtcdBinary's binary is one;
// each member then serves gofail's HTTP endpoint (see FailpointAddr).
func WithFailpoints() ProviderOption { return func(p *Provider) { p.failpoints = true } }

// WithCacheDir sets the etcdbin cache root ("" is etcdbin's default).
func WithCacheDir(dir string) ProviderOption { return func(p *Provider) { p.cacheDir = dir } }

// WithProgress receives one line when etcd has to be built first.
func WithProgress(w io.Writer) ProviderOption { return func(p *Provider) { p.progress = w } }

// NewProvider returns a Provider.
func NewProvider(opts ...ProviderOption) *Provider {
	p := &Provider{version: etcdbin.DefaultVersion}
	for _, o := range opts {
		o(p)
	}
	return p
}

// MemberSpec is what a Seeder learns about a member before it starts.
type MemberSpec struct {
	Name string
	// DataDir is the member's --data-dir; it does not exist yet.
	DataDir string
	// PeerURL is the member's advertised peer URL (its peer proxy).
	PeerURL string
	// ClientURL is the member's advertised client URL (its client proxy).
	ClientURL string
	// InitialCluster is the full "name=peerURL,..." list.
	InitialCluster string
	ClusterToken   string
}

// Seeder pre-populates the members' data dirs (for example with `etcdutl
// snapshot restore`) after ports are allocated and before any member starts.
type Seeder func(ctx context.Context, members []MemberSpec) error

type createConfig struct {
	members     int
	artifactDir string
	keepData    bool
	seeder      Seeder
	creds       cluster.Credentials
	flags       []string
	settings    Settings
	token       string
	faultSeed   int64
}

// CreateOption configures one cluster.
type CreateOption func(*createConfig)

// CreateWithMembers sets the member count: 1, 3 or 5 (default 3).
func CreateWithMembers(n int) CreateOption { return func(c *createConfig) { c.members = n } }

// CreateWithArtifactDir puts member logs at <dir>/logs/<member>.log.
// Without it logs live in the cluster's private temp dir.
func CreateWithArtifactDir(dir string) CreateOption {
	return func(c *createConfig) { c.artifactDir = dir }
}

// CreateWithSeeder runs s before the members start; they then start from
// the data dirs it wrote.
func CreateWithSeeder(s Seeder) CreateOption { return func(c *createConfig) { c.seeder = s } }

// CreateWithFlags appends extra etcd flags to every member's command line.
func CreateWithFlags(extra ...string) CreateOption {
	return func(c *createConfig) { c.flags = append(c.flags, extra...) }
}

// CreateWithSettings sets the members' etcd settings (snapshot count,
// catch-up entries, compaction batch, progress notify, peer TLS, flags).
func CreateWithSettings(s Settings) CreateOption {
	return func(c *createConfig) { c.settings = s }
}

// CreateWithCredentials makes the cluster's clients authenticate as user
// with password: for members started from data with auth enabled (a
// snapshot of a Kubernetes release, whose chart turns RBAC on).
func CreateWithCredentials(user, password string) CreateOption {
	return func(c *createConfig) { c.creds = cluster.Credentials{Username: user, Password: password} }
}

// CreateWithClusterToken sets --initial-cluster-token. The default is random
// per cluster, so a cluster restored from a snapshot gets a new cluster ID
// and its members cannot be confused with the original's.
func CreateWithClusterToken(tok string) CreateOption {
	return func(c *createConfig) { c.token = tok }
}

// Create starts a cluster and returns once every member serves and they
// agree on a leader. On any error nothing is left running or on disk.
func (p *Provider) Create(ctx context.Context, opts ...CreateOption) (_ *Cluster, err error) {
	cfg := createConfig{members: 3, faultSeed: 1}
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.members {
	case 1, 3, 5:
	default:
		return nil, fmt.Errorf("local cluster: members must be 1, 3 or 5 (got %d)", cfg.members)
	}
	if cfg.token == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.token = "etcd-chaos-" + hex.EncodeToString(b)
	}

	bin := p.binary
	if bin == "" {
		ensure := etcdbin.Ensure
		if p.failpoints {
			ensure = etcdbin.EnsureFailpoints
		}
		if bin, err = ensure(ctx, p.version, p.cacheDir, p.progress); err != nil {
			return nil, err
		}
	}
	version, err := etcdbin.Check(ctx, bin)
	if err != nil {
		return nil, err
	}
	var failpoints []string
	if p.failpoints {
		if failpoints, err = etcdbin.Failpoints(bin); err != nil {
			return nil, err
		}
	}
	settingFlags, err := settingFlags(ctx, bin, version, cfg.settings)
	if err != nil {
		return nil, err
	}

	removeStaleTempDirs()
	tmp, owner, err := makeTempDir(cfg.keepData)
	if err != nil {
		return nil, err
	}
	logDir := filepath.Join(tmp, "logs")
	if cfg.artifactDir != "" {
		logDir = filepath.Join(cfg.artifactDir, "logs")
	}
	netOpts := []faultproxy.Option{faultproxy.WithSeed(cfg.faultSeed)}
	var certs *peerTLS
	if cfg.settings.PeerTLS {
		if certs, err = newPeerTLS(filepath.Join(tmp, "tls")); err != nil {
			owner.Close()
			os.RemoveAll(tmp)
			return nil, err
		}
		netOpts = append(netOpts, faultproxy.WithPeerTLS(certs.server, certs.client))
	}
	c := &Cluster{
		bin:        bin,
		version:    version,
		token:      cfg.token,
		flags:      append(settingFlags, cfg.flags...),
		settings:   cfg.settings,
		peerTLS:    certs,
		creds:      cfg.creds,
		failpoints: failpoints,
		tmpDir:     tmp,
		logDir:     logDir,
		keepData:   cfg.keepData,
		owner:      owner,
		net:        faultproxy.New(netOpts...),
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
			defer cancel()
			_ = c.Close(cctx)
		}
	}()
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create log dir: %w", err)
	}
	if err := c.addMembers(cfg.members); err != nil {
		return nil, err
	}
	if cfg.seeder != nil {
		if err := cfg.seeder(ctx, c.specs()); err != nil {
			return nil, fmt.Errorf("seeding member data dirs: %w", err)
		}
	}
	for _, m := range c.members {
		if err := c.startMember(m); err != nil {
			return nil, err
		}
	}
	if err := c.waitHealthyWatchingExits(ctx); err != nil {
		return nil, err
	}
	if err := c.learnMemberIDs(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

const tempPrefix = "etcd-chaos-local-"

// makeTempDir creates the cluster's private dir and holds a flock on its
// .owner file for the cluster's life. A harness that dies without Close
// (SIGKILL, a test timeout) releases the lock with its last breath, which is
// how a later Create knows the dir is garbage.
func makeTempDir(keep bool) (string, *os.File, error) {
	tmp, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("cannot create a temp dir for member data: %w", err)
	}
	if keep {
		// Kept dirs are for post-mortems: never collected.
		_ = os.WriteFile(filepath.Join(tmp, ".keep"), nil, 0o644)
	}
	f, err := os.Create(filepath.Join(tmp, ".owner"))
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(tmp)
		return "", nil, fmt.Errorf("cannot lock temp dir %s: %w", tmp, err)
	}
	return tmp, f, nil
}

// removeStaleTempDirs deletes private dirs whose owner died without Close.
func removeStaleTempDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, ".keep")); err == nil {
			continue
		}
		f, err := os.Open(filepath.Join(d, ".owner"))
		if err != nil {
			continue // being created right now, or not ours
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(d)
		}
		f.Close()
	}
}
