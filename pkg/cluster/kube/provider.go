// Package kube runs the harness against the Bitnami etcd chart on any
// Kubernetes cluster reachable through a kubeconfig. It installs (or
// attaches to) a release, reaches every member through a self-healing
// port-forward, and injects faults from inside the node that hosts a pod
// through a NodeRunner (pkg/cluster/kind provides one for kind nodes).
package kube

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Provider creates Clusters on one Kubernetes cluster.
type Provider struct {
	kubeconfig string
	context    string
	runner     NodeRunner
	backend    string
	keep       bool
	logf       func(format string, args ...any)

	rest *rest.Config
	cs   kubernetes.Interface
	// openForward is replaced in tests; nil means a client-go port-forward.
	openForward forwardFunc
	// helm is set in tests (Helm's memory storage); nil means one built
	// from the kubeconfig.
	helm *action.Configuration
}

// Option configures a Provider.
type Option func(*Provider)

// WithKubeconfig uses this kubeconfig file (default: $KUBECONFIG, then
// ~/.kube/config, then in-cluster).
func WithKubeconfig(path string) Option { return func(p *Provider) { p.kubeconfig = path } }

// WithContext selects a kubeconfig context (default: current-context).
func WithContext(name string) Option { return func(p *Provider) { p.context = name } }

// WithNodeRunner gives access to the nodes, which Kill, Pause, Cut and
// Degrade need. Without one those faults return cluster.ErrUnsupported.
func WithNodeRunner(r NodeRunner) Option { return func(p *Provider) { p.runner = r } }

// WithBackendName sets what Cluster.Backend reports ("kube" by default;
// pkg/cluster/kind sets "kind").
func WithBackendName(name string) Option { return func(p *Provider) { p.backend = name } }

// WithKeep leaves installed releases (and their namespaces) in place on
// Close, and after a failed Install, for debugging. Cluster.KeepRelease
// decides for one release, such as only the one whose test failed.
func WithKeep(keep bool) Option { return func(p *Provider) { p.keep = keep } }

// WithLogf receives progress and background errors (re-applied faults,
// re-established port-forwards). Default: discard.
func WithLogf(f func(format string, args ...any)) Option { return func(p *Provider) { p.logf = f } }

// WithClientset uses an existing clientset and REST config instead of the
// kubeconfig; rc may be nil when no port-forward is needed (tests).
func WithClientset(cs kubernetes.Interface, rc *rest.Config) Option {
	return func(p *Provider) { p.cs, p.rest = cs, rc }
}

// NewProvider returns a Provider. Clients are built on first use, so that
// a wrong kubeconfig is reported by the call that needs it.
func NewProvider(opts ...Option) *Provider {
	p := &Provider{backend: "kube", logf: func(string, ...any) {}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Kubeconfig is the kubeconfig path the provider uses ("" for defaults).
func (p *Provider) Kubeconfig() string { return p.kubeconfig }

// Clientset returns the provider's Kubernetes client.
func (p *Provider) Clientset() (kubernetes.Interface, error) {
	if p.cs != nil {
		return p.cs, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if p.kubeconfig != "" {
		rules.ExplicitPath = p.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: p.context})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %q (context %q): %w; set KUBECONFIG or pass --kubeconfig", p.kubeconfig, p.context, err)
	}
	// Port-forwards and watches are long-lived; the default QPS of 5
	// throttles the polling that fault recovery does.
	rc.QPS, rc.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %q: %w", p.kubeconfig, err)
	}
	p.rest, p.cs = rc, cs
	return cs, nil
}

// InstallOptions say what to install.
type InstallOptions struct {
	Namespace string
	Release   string
	// ChartRef is an OCI reference (default chart.DefaultRef), a chart
	// directory or a .tgz.
	ChartRef     string
	ChartVersion string
	// ValuesFiles are names in charts/etcd-values (or paths), layered in
	// order after chart.BaseValues (chart.Layered).
	ValuesFiles []string
	// Set are --set style overrides applied last.
	Set []string
	// Timeout bounds install and wait (default chart.DefaultTimeout).
	Timeout time.Duration
}

// Install installs the chart and returns the running cluster. Close
// uninstalls it unless the provider keeps clusters.
func (p *Provider) Install(ctx context.Context, o InstallOptions) (*Cluster, error) {
	cs, err := p.Clientset()
	if err != nil {
		return nil, err
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Release == "" {
		return nil, fmt.Errorf("kube install: release name is empty")
	}
	createdNS, err := ensureNamespace(ctx, cs, o.Namespace)
	if err != nil {
		return nil, err
	}
	// A failed or interrupted install leaves a release (and, with it, pods
	// and PVCs) and maybe a namespace that nothing would remove: remove them
	// on a context of their own, after the error was explained.
	undo := func(err error) error {
		if p.keep {
			p.logf("keeping the failed release %s/%s (uninstall with: helm -n %s uninstall %s)", o.Namespace, o.Release, o.Namespace, o.Release)
			return err
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if terr := p.teardown(cctx, o.Namespace, o.Release, createdNS); terr != nil {
			return fmt.Errorf("%w; cleaning up after it: %w", err, terr)
		}
		return err
	}
	values := chart.Layered(o.ValuesFiles, o.Set)
	p.logf("installing chart %s %s as %s/%s (values %v)", orStr(o.ChartRef, chart.DefaultRef), orStr(o.ChartVersion, chart.DefaultVersion), o.Namespace, o.Release, values.Files)
	_, err = chart.Install{
		Env:      p.env(o.Namespace),
		Release:  o.Release,
		ChartRef: o.ChartRef,
		Version:  o.ChartVersion,
		Values:   values,
		Timeout:  o.Timeout,
	}.Run(ctx)
	if err != nil {
		return nil, undo(err)
	}
	c, err := p.Attach(ctx, o.Namespace, o.Release)
	if err != nil {
		return nil, undo(err)
	}
	c.installed = true
	c.ownNamespace = createdNS
	c.keepRelease = p.keep
	c.installValues = values
	c.installChartRef = o.ChartRef
	return c, nil
}

// teardown uninstalls the release (hooks included), deletes its
// PersistentVolumeClaims, which a StatefulSet leaves behind, and the
// namespace when the harness created it.
func (p *Provider) teardown(ctx context.Context, ns, release string, ownNamespace bool) error {
	cs, err := p.Clientset()
	if err != nil {
		return err
	}
	var errs []error
	if err := (chart.Uninstall{Env: p.env(ns), Release: release, Timeout: 5 * time.Minute}).Run(ctx); err != nil {
		errs = append(errs, err)
	}
	err = cs.CoreV1().PersistentVolumeClaims(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: chart.Selector(release)})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete PVCs of %s: %v (kubectl -n %s delete pvc -l %s)", release, err, ns, chart.Selector(release)))
	}
	if ownNamespace {
		err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %v (kubectl delete namespace %s)", ns, err, ns))
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) env(ns string) chart.Env {
	return chart.Env{Kubeconfig: p.kubeconfig, Context: p.context, Namespace: ns, Clientset: p.cs, Config: p.helm, Log: p.logf}
}

// ensureNamespace creates ns unless it exists; created says whether this
// call made it, and so whether the release's teardown deletes it.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) (created bool, err error) {
	_, err = cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err == nil {
		return false, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("namespace %s: %w", ns, err)
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return true, nil
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
