// Package kind creates (or reuses) a local kind cluster with the kind Go
// library and hands back a kube.Provider whose faults run on the kind node
// containers, so the Bitnami chart can be tested on a laptop or a CI runner
// with nothing but Docker.
package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster/kube"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
)

// DefaultNodeImage is kind v0.33.0's default node image (Kubernetes
// 1.37.0), pinned by digest as kind's release notes ask.
const DefaultNodeImage = "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"

// DefaultClusterName is used when Create gets an empty name.
const DefaultClusterName = "etcd-chaos"

// Provider creates kind clusters.
type Provider struct {
	nodeImage  string
	keep       bool
	kubeconfig string
	workers    int
	wait       time.Duration
	logf       func(string, ...any)
}

// Option configures a Provider.
type Option func(*Provider)

// WithNodeImage selects the kindest/node image (default DefaultNodeImage).
func WithNodeImage(img string) Option { return func(p *Provider) { p.nodeImage = img } }

// WithKeepCluster leaves the kind cluster in place on Close, for debugging
// with kubectl. Releases in it are removed on their own Close unless kept
// (kube.WithKeep, kube.Cluster.KeepRelease).
func WithKeepCluster(keep bool) Option { return func(p *Provider) { p.keep = keep } }

// WithLogf receives progress lines.
func WithLogf(f func(string, ...any)) Option { return func(p *Provider) { p.logf = f } }

// NewProvider returns a kind Provider.
func NewProvider(opts ...Option) *Provider {
	p := &Provider{nodeImage: DefaultNodeImage, wait: 5 * time.Minute, logf: func(string, ...any) {}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Cluster is a kind cluster. Its embedded kube.Provider installs the chart
// into it (Install/Attach) with faults run on the kind nodes.
type Cluster struct {
	*kube.Provider
	Name       string
	Kubeconfig string

	kind    *kindcluster.Provider
	created bool // Close deletes only what Create created
	keep    bool
	logf    func(string, ...any)

	closeOnce sync.Once
	closeErr  error
}

// Create creates the kind cluster name, or reuses it if it exists, and waits
// until its nodes are Ready. If ctx ends during creation, Create waits for
// kind to finish and deletes the half-made cluster (unless kept) before
// returning, so that Ctrl-C leaves nothing behind.
func (p *Provider) Create(ctx context.Context, name string) (*Cluster, error) {
	if name == "" {
		name = DefaultClusterName
	}
	if err := DockerAvailable(ctx); err != nil {
		return nil, fmt.Errorf("kind needs a Docker daemon: %w (start Docker, or use ETCD_CHAOS_BACKEND=local)", err)
	}
	kp := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	kubeconfig := p.kubeconfig
	if kubeconfig == "" {
		kubeconfig = filepath.Join(os.TempDir(), "etcd-chaos-kind-"+name+".kubeconfig")
	}
	existing, err := kp.List()
	if err != nil {
		return nil, fmt.Errorf("list kind clusters: %w", err)
	}
	c := &Cluster{Name: name, Kubeconfig: kubeconfig, kind: kp, keep: p.keep, logf: p.logf}
	if slices.Contains(existing, name) {
		p.logf("reusing kind cluster %q", name)
		if err := kp.ExportKubeConfig(name, kubeconfig, false); err != nil {
			return nil, fmt.Errorf("kubeconfig of kind cluster %q: %w", name, err)
		}
	} else {
		p.logf("creating kind cluster %q with %s (a few minutes on first pull)", name, p.nodeImage)
		cfg := &v1alpha4.Cluster{
			TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
			Nodes:    []v1alpha4.Node{{Role: v1alpha4.ControlPlaneRole}},
		}
		for i := 0; i < p.workers; i++ {
			cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole})
		}
		done := make(chan error, 1)
		go func() {
			done <- kp.Create(name,
				kindcluster.CreateWithV1Alpha4Config(cfg),
				kindcluster.CreateWithNodeImage(p.nodeImage),
				kindcluster.CreateWithWaitForReady(p.wait),
				kindcluster.CreateWithKubeconfigPath(kubeconfig),
				kindcluster.CreateWithDisplayUsage(false),
				kindcluster.CreateWithDisplaySalutation(false),
			)
		}()
		c.created = true
		select {
		case err := <-done:
			if err != nil {
				_ = c.Close(context.Background())
				return nil, fmt.Errorf("create kind cluster %q: %w", name, err)
			}
		case <-ctx.Done():
			p.logf("interrupted: waiting for kind to finish creating %q so it can be deleted", name)
			if err := <-done; err != nil {
				p.logf("kind create ended with %v; deleting what it made", err)
			}
			_ = c.Close(context.Background())
			return nil, fmt.Errorf("create kind cluster %q: %v", name, ctx.Err())
		}
	}
	c.Provider = kube.NewProvider(
		kube.WithKubeconfig(kubeconfig),
		kube.WithContext("kind-"+name),
		kube.WithNodeRunner(&NodeRunner{kind: kp, cluster: name}),
		kube.WithBackendName("kind"),
		kube.WithLogf(p.logf),
	)
	return c, nil
}

// Close deletes the kind cluster if Create created it and it is not kept.
// Close the kube.Clusters installed in it first. It is safe to call more
// than once, and from a signal handler path with a fresh context.
func (c *Cluster) Close(ctx context.Context) error {
	c.closeOnce.Do(func() {
		if !c.created {
			return
		}
		if c.keep {
			c.logf("keeping kind cluster %q (kubeconfig %s; delete with: kind delete cluster --name %s)", c.Name, c.Kubeconfig, c.Name)
			return
		}
		done := make(chan error, 1)
		go func() { done <- c.kind.Delete(c.Name, c.Kubeconfig) }()
		select {
		case err := <-done:
			if err != nil {
				c.closeErr = fmt.Errorf("delete kind cluster %q: %v (run: kind delete cluster --name %s)", c.Name, err, c.Name)
			}
		case <-ctx.Done():
			c.closeErr = fmt.Errorf("delete kind cluster %q: %v (run: kind delete cluster --name %s)", c.Name, ctx.Err(), c.Name)
		}
	})
	return c.closeErr
}

// NodeRunner runs commands on kind nodes with `docker exec --privileged`
// (kind's nodes.Node.CommandContext). Kubernetes node names are the kind
// node container names.
type NodeRunner struct {
	kind    *kindcluster.Provider
	cluster string

	mu    sync.Mutex
	nodes map[string]nodes.Node
}

// Run runs args on node and returns stdout and stderr combined.
func (r *NodeRunner) Run(ctx context.Context, node string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("node command is empty")
	}
	n, err := r.node(node)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = n.CommandContext(ctx, args[0], args[1:]...).SetStdout(&buf).SetStderr(&buf).Run()
	return buf.Bytes(), err
}

func (r *NodeRunner) node(name string) (nodes.Node, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.nodes[name]; ok {
		return n, nil
	}
	list, err := r.kind.ListNodes(r.cluster)
	if err != nil {
		return nil, fmt.Errorf("list nodes of kind cluster %q: %w", r.cluster, err)
	}
	r.nodes = map[string]nodes.Node{}
	var names []string
	for _, n := range list {
		r.nodes[n.String()] = n
		names = append(names, n.String())
	}
	if n, ok := r.nodes[name]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("node %q is not a node of kind cluster %q (nodes: %v)", name, r.cluster, names)
}
