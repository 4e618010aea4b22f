package chart

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// DefaultTimeout bounds an install or upgrade including the wait for Ready.
const DefaultTimeout = 10 * time.Minute

// Env is where an action runs: the kubeconfig, its context and the
// namespace. Tests set Config and Clientset instead, to run against Helm's
// memory storage and a fake cluster.
type Env struct {
	Kubeconfig string
	Context    string
	Namespace  string
	// Config, when set, is used as is (its RegistryClient is filled in if
	// nil). Otherwise one is built from Kubeconfig/Context with the
	// "secret" storage driver, like the helm CLI.
	Config *action.Configuration
	// Clientset reads the password Secret and diagnoses pods; built from the
	// kubeconfig when nil and Config is nil.
	Clientset kubernetes.Interface
	// Log receives Helm's debug lines; nil discards them.
	Log func(format string, args ...any)
}

func (e *Env) settings() *cli.EnvSettings {
	s := cli.New()
	if e.Kubeconfig != "" {
		s.KubeConfig = e.Kubeconfig
	}
	if e.Context != "" {
		s.KubeContext = e.Context
	}
	if e.Namespace != "" {
		s.SetNamespace(e.Namespace)
	}
	return s
}

func (e *Env) namespace() string {
	if e.Namespace == "" {
		return "default"
	}
	return e.Namespace
}

func (e *Env) logf() func(string, ...any) {
	if e.Log == nil {
		return func(string, ...any) {}
	}
	return e.Log
}

// setup returns the Helm configuration with a registry client in place.
// The registry client must be set BEFORE action.NewInstall/NewUpgrade,
// which copy it into their ChartPathOptions; set later, OCI pulls fail
// with "missing registry client".
func (e *Env) setup() (*action.Configuration, *cli.EnvSettings, error) {
	settings := e.settings()
	logf := e.logf()
	cfg := e.Config
	if cfg == nil {
		cfg = new(action.Configuration)
		if err := cfg.Init(settings.RESTClientGetter(), e.namespace(), "secret", func(f string, a ...any) { logf(f, a...) }); err != nil {
			return nil, nil, fmt.Errorf("helm: cannot use kubeconfig %q: %w", settings.KubeConfig, err)
		}
		if e.Clientset == nil {
			rc, err := settings.RESTClientGetter().ToRESTConfig()
			if err != nil {
				return nil, nil, fmt.Errorf("kubeconfig %q: %w", settings.KubeConfig, err)
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return nil, nil, fmt.Errorf("kubeconfig %q: %w", settings.KubeConfig, err)
			}
			e.Clientset = cs
		}
	}
	if cfg.RegistryClient == nil {
		rc, err := registry.NewClient(
			registry.ClientOptCredentialsFile(settings.RegistryConfig),
			registry.ClientOptWriter(io.Discard),
			registry.ClientOptEnableCache(true),
		)
		if err != nil {
			return nil, nil, fmt.Errorf("helm registry client: %w", err)
		}
		cfg.RegistryClient = rc
	}
	return cfg, settings, nil
}

// loadChart locates ref (OCI reference, local directory or .tgz) at version
// and loads it.
// A remote chart is pulled once and kept in CacheDir.
func loadChart(opts *action.ChartPathOptions, settings *cli.EnvSettings, ref, version string, logf func(string, ...any)) (*loadedChart, error) {
	if ref == "" {
		ref = DefaultRef
	}
	local := isLocal(ref)
	var path string
	var err error
	if local {
		if ref, err = resolveLocal(ref, version); err != nil {
			return nil, err
		}
		path, err = opts.LocateChart(ref, settings)
	} else {
		if version == "" {
			version = DefaultVersion
		}
		opts.Version = version
		path, err = cachedPull(opts, settings, ref, version, logf)
	}
	if err != nil {
		if local {
			return nil, fmt.Errorf("chart %s: %w", ref, err)
		}
		return nil, fmt.Errorf("pull chart %s version %s: %w (offline? pass a local chart dir or .tgz as the chart ref)", ref, version, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", path, err)
	}
	return &loadedChart{ch: ch, path: path}, nil
}

func isLocal(ref string) bool {
	if strings.HasPrefix(ref, "oci://") || strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		return false
	}
	_, err := os.Stat(ref)
	return err == nil || strings.HasPrefix(ref, ".") || strings.HasPrefix(ref, "/")
}

// Install installs the chart as a new release, waiting until its resources
// are Ready.
type Install struct {
	Env
	Release string
	// ChartRef is an OCI reference (default DefaultRef), a chart directory or
	// a packaged .tgz.
	ChartRef string
	// Version pins the chart version for remote refs (default DefaultVersion).
	Version string
	Values  Values
	// Timeout bounds the install and wait (default DefaultTimeout).
	Timeout         time.Duration
	CreateNamespace bool
	// NoWait returns once resources are created, without waiting for Ready.
	NoWait bool
}

// Run installs the release.
func (in Install) Run(ctx context.Context) (*release.Release, error) {
	if in.Release == "" {
		return nil, errors.New("chart install: release name is empty")
	}
	cfg, settings, err := in.setup()
	if err != nil {
		return nil, err
	}
	vals, err := in.Values.Merge()
	if err != nil {
		return nil, err
	}
	act := action.NewInstall(cfg)
	act.ReleaseName = in.Release
	act.Namespace = in.namespace()
	act.CreateNamespace = in.CreateNamespace
	act.Wait = !in.NoWait
	act.Timeout = orDefault(in.Timeout)
	lc, err := loadChart(&act.ChartPathOptions, settings, in.ChartRef, in.Version, in.logf())
	if err != nil {
		return nil, err
	}
	rel, err := act.RunWithContext(ctx, lc.ch, vals)
	if err != nil {
		return rel, in.explain(ctx, "install", in.Release, err)
	}
	return rel, nil
}

// Upgrade upgrades an installed release. The root password is always passed
// (read from the live Secret, else the previous release's manifest):
// without it the Bitnami chart refuses with "PASSWORDS ERROR".
type Upgrade struct {
	Env
	Release  string
	ChartRef string
	Version  string
	Values   Values
	Timeout  time.Duration
	// ReuseValues keeps the previous release's values under the new ones.
	ReuseValues bool
	// ResetThenReuseValues takes the new chart's defaults, then the previous
	// release's user values, then Values: the safe choice across chart
	// versions, where ReuseValues would miss keys the new chart added.
	ResetThenReuseValues bool
	NoWait               bool
}

// Run upgrades the release.
func (up Upgrade) Run(ctx context.Context) (*release.Release, error) {
	if up.Release == "" {
		return nil, errors.New("chart upgrade: release name is empty")
	}
	cfg, settings, err := up.setup()
	if err != nil {
		return nil, err
	}
	vals, err := up.Values.Merge()
	if err != nil {
		return nil, err
	}
	if s, _ := lookup(vals, "auth.rbac.rootPassword").(string); s == "" {
		pw, err := up.rootPassword(ctx, cfg)
		if err != nil {
			return nil, err
		}
		setPath(vals, "auth.rbac.rootPassword", pw)
	}
	act := action.NewUpgrade(cfg)
	act.Namespace = up.namespace()
	act.Wait = !up.NoWait
	act.Timeout = orDefault(up.Timeout)
	act.ReuseValues = up.ReuseValues
	act.ResetThenReuseValues = up.ResetThenReuseValues
	lc, err := loadChart(&act.ChartPathOptions, settings, up.ChartRef, up.Version, up.logf())
	if err != nil {
		return nil, err
	}
	rel, err := act.RunWithContext(ctx, up.Release, lc.ch, vals)
	if err != nil {
		return rel, up.explain(ctx, "upgrade", up.Release, err)
	}
	return rel, nil
}

// rootPassword reads the password the running release uses: the Secret is
// the truth (the chart may have generated it), the last release's rendered
// manifest a fallback when the Secret cannot be read.
func (up Upgrade) rootPassword(ctx context.Context, cfg *action.Configuration) (string, error) {
	var secretErr error
	if up.Clientset != nil {
		pw, err := ReadRootPassword(ctx, up.Clientset, up.namespace(), up.Release)
		if err == nil {
			return pw, nil
		}
		secretErr = err
	}
	if cfg.Releases != nil {
		if last, err := cfg.Releases.Last(up.Release); err == nil {
			if pw, ok := passwordFromManifest(last.Manifest, FullName(up.Release)); ok {
				return pw, nil
			}
		} else if secretErr == nil {
			secretErr = fmt.Errorf("release %q not found in namespace %s: install it first", up.Release, up.namespace())
		}
	}
	if secretErr == nil {
		secretErr = errors.New("no Secret and no previous manifest holds it")
	}
	return "", fmt.Errorf("upgrade %s: cannot find the root password (%v); pass auth.rbac.rootPassword=... to avoid the chart's PASSWORDS ERROR", up.Release, secretErr)
}

// ReadRootPassword returns the root password from Secret <fullname>, key
// etcd-root-password.
func ReadRootPassword(ctx context.Context, cs kubernetes.Interface, namespace, release string) (string, error) {
	name := FullName(release)
	sec, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("secret %s/%s not found: is release %q installed with auth.rbac.create=true?", namespace, name, release)
	}
	if err != nil {
		return "", fmt.Errorf("read secret %s/%s: %w", namespace, name, err)
	}
	pw, ok := sec.Data[RootPasswordKey]
	if !ok || len(pw) == 0 {
		return "", fmt.Errorf("secret %s/%s has no %q key: set auth.rbac.rootPassword", namespace, name, RootPasswordKey)
	}
	return string(pw), nil
}

// passwordFromManifest finds Secret name in a rendered manifest and decodes
// its root password.
func passwordFromManifest(manifest, name string) (string, bool) {
	for _, doc := range strings.Split(manifest, "\n---") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Data       map[string]string `json:"data"`
			StringData map[string]string `json:"stringData"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj.Kind != "Secret" || obj.Metadata.Name != name {
			continue
		}
		if s := obj.StringData[RootPasswordKey]; s != "" {
			return s, true
		}
		if b, err := base64.StdEncoding.DecodeString(obj.Data[RootPasswordKey]); err == nil && len(b) > 0 {
			return string(b), true
		}
	}
	return "", false
}

// explain adds to a failed action the pods that are not Ready and why, since
// Helm's own "context deadline exceeded" does not say what to look at.
func (e *Env) explain(ctx context.Context, what, release string, err error) error {
	msg := err.Error()
	if e.Clientset == nil || !isWaitFailure(msg) {
		return fmt.Errorf("helm %s: %w", what, err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	diag := NotReady(dctx, e.Clientset, e.namespace(), release)
	if diag == "" {
		return fmt.Errorf("helm %s: %w", what, err)
	}
	return fmt.Errorf("helm %s: %v; not ready: %s", what, err, diag)
}

func isWaitFailure(msg string) bool {
	for _, s := range []string{"deadline exceeded", "timed out", "timeout", "not ready", "context canceled"} {
		if strings.Contains(strings.ToLower(msg), s) {
			return true
		}
	}
	return false
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}

// Uninstall removes a release. The StatefulSet's PersistentVolumeClaims are
// not part of the release and survive it; callers that want a clean slate
// delete them (pkg/cluster/kube does).
type Uninstall struct {
	Env
	Release string
	Timeout time.Duration
}

// Run uninstalls the release and waits for its resources to be deleted,
// then deletes the hook resources Helm leaves behind: helm uninstall keeps
// hooks (such as the chart's pre-upgrade Job and, through it, its pods) that
// have no delete policy that already removed them. A release that is
// already gone is not an error.
func (un Uninstall) Run(ctx context.Context) error {
	cfg, _, err := un.setup()
	if err != nil {
		return err
	}
	hooks := hookManifests(cfg, un.Release)
	act := action.NewUninstall(cfg)
	act.Wait = true
	act.Timeout = orDefault(un.Timeout)
	act.IgnoreNotFound = true
	done := make(chan error, 1)
	// Uninstall has no context variant; run it aside so a cancelled ctx
	// returns promptly (Helm still finishes in the background).
	go func() {
		_, err := act.Run(un.Release)
		if err == nil {
			err = deleteHooks(cfg, hooks)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("helm uninstall %s: %w (remove it with: helm -n %s uninstall %s)", un.Release, err, un.namespace(), un.Release)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("helm uninstall %s: %w (remove it with: helm -n %s uninstall %s)", un.Release, ctx.Err(), un.namespace(), un.Release)
	}
}

// hookManifests returns the hook manifests of every stored revision of the
// release, each once: a pre-upgrade Job is recorded only in the revision
// whose upgrade ran it.
func hookManifests(cfg *action.Configuration, name string) []string {
	if cfg.Releases == nil {
		return nil
	}
	revs, err := cfg.Releases.History(name)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, rel := range revs {
		for _, h := range rel.Hooks {
			if h == nil || seen[h.Path+"\x00"+h.Kind+"\x00"+h.Name] {
				continue
			}
			seen[h.Path+"\x00"+h.Kind+"\x00"+h.Name] = true
			out = append(out, h.Manifest)
		}
	}
	return out
}

// deleteHooks deletes the hooks' resources with background propagation (a
// Job's pods go with it); ones already gone are not an error.
func deleteHooks(cfg *action.Configuration, manifests []string) error {
	if len(manifests) == 0 {
		return nil
	}
	res, err := cfg.KubeClient.Build(strings.NewReader(strings.Join(manifests, "\n---\n")), false)
	if err != nil {
		return fmt.Errorf("read the release's hooks: %w", err)
	}
	if len(res) == 0 {
		return nil
	}
	if _, errs := cfg.KubeClient.Delete(res); len(errs) > 0 {
		return fmt.Errorf("delete hook resources (kubectl delete job -l app.kubernetes.io/instance=<release>): %w", errors.Join(errs...))
	}
	return nil
}
