package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// helmProvider is a Provider on Helm's memory storage and a fake clientset
// holding release "chaos"'s pods; kc fails helm's waits when asked to.
func helmProvider(t *testing.T, kc *kubefake.FailingKubeClient) (*Provider, *fake.Clientset) {
	t.Helper()
	if kc == nil {
		kc = &kubefake.FailingKubeClient{}
	}
	kc.PrintingKubeClient = kubefake.PrintingKubeClient{Out: io.Discard}
	cs := fake.NewClientset(threePods()...)
	p := NewProvider(WithClientset(cs, nil))
	p.openForward = func(context.Context, string, string, int) (*forward, error) {
		return nil, errors.New("no port-forward in unit tests")
	}
	p.helm = &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   kc,
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
	return p, cs
}

func testChart(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../../charts/testchart")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// installForTest installs charts/testchart as release "chaos" in namespace
// ns through Provider.Install and returns the cluster and the Helm
// configuration.
func installForTest(t *testing.T, o InstallOptions) (*Cluster, *fake.Clientset, *action.Configuration) {
	t.Helper()
	p, cs := helmProvider(t, nil)
	o.Namespace, o.Release, o.ChartRef = ns, "chaos", testChart(t)
	c, err := p.Install(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, cs, p.helm
}

func userValue(t *testing.T, cfg *action.Configuration, path ...string) any {
	t.Helper()
	rel, err := cfg.Releases.Last("chaos")
	if err != nil {
		t.Fatal(err)
	}
	var v any = rel.Config
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// An upgrade must pass exactly the layering the install passed: base.yaml
// first. Without it helm falls back to the chart's defaults plus the named
// file: docker.io/bitnami/etcd (which no longer resolves), the PDB and the
// NetworkPolicy.
func TestUpgradeLayersValuesAsInstallDid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		upgrade UpgradeOptions
	}{
		{"same values file as the install", UpgradeOptions{ValuesFiles: []string{"3-replicas-persistent.yaml"}}},
		{"no values: the install's again", UpgradeOptions{}},
		// No chart named: the install's chart again, not the Bitnami OCI
		// default (kube-host installs from a local chart repository).
		{"no chart: the install's again", UpgradeOptions{ChartRef: "-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cs, helm := installForTest(t, InstallOptions{ValuesFiles: []string{"3-replicas-persistent.yaml"}, Set: []string{"replicaCount=5"}})
			if got := userValue(t, helm, "image", "repository"); got != "bitnamilegacy/etcd" {
				t.Fatalf("install: image.repository = %v, want base.yaml's bitnamilegacy/etcd", got)
			}
			// Without pods Upgrade stops right after helm's upgrade, which
			// is all this test is about.
			for _, n := range []string{"chaos-etcd-1", "chaos-etcd-2", "chaos-etcd-10"} {
				if err := cs.CoreV1().Pods(ns).Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.upgrade.ChartRef == "-" {
				tc.upgrade.ChartRef = ""
			} else {
				tc.upgrade.ChartRef = testChart(t)
			}
			_ = c.Upgrade(context.Background(), tc.upgrade)
			rel, err := helm.Releases.Last("chaos")
			if err != nil || rel.Version != 2 {
				t.Fatalf("the upgrade did not reach helm: %v %+v", err, rel)
			}
			for path, want := range map[string]string{
				"image.repository": "bitnamilegacy/etcd", // base.yaml
				"pdb.create":       "false",              // base.yaml
				"persistence.size": "1Gi",                // 3-replicas-persistent.yaml
				"replicaCount":     "5",                  // the install's --set
			} {
				if got := fmt.Sprint(userValue(t, helm, strings.Split(path, ".")...)); got != want {
					t.Errorf("upgrade: %s = %#v, want %#v (user values %v)", path, got, want, rel.Config)
				}
			}
		})
	}
}

func releaseGone(t *testing.T, cfg *action.Configuration) bool {
	t.Helper()
	_, err := cfg.Releases.Last("chaos")
	return errors.Is(err, driver.ErrReleaseNotFound)
}

func namespaceGone(t *testing.T, cs *fake.Clientset) bool {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

// A failed install must not leave its release (pods, PVCs) or the
// namespace it created behind: nothing else would ever remove them.
func TestFailedInstallIsRemoved(t *testing.T) {
	p, cs := helmProvider(t, &kubefake.FailingKubeClient{WaitError: errors.New("context deadline exceeded")})
	_, err := p.Install(context.Background(), InstallOptions{Namespace: ns, Release: "chaos", ChartRef: testChart(t)})
	if err == nil {
		t.Fatal("install succeeded although helm's wait failed")
	}
	if !releaseGone(t, p.helm) || !namespaceGone(t, cs) {
		t.Errorf("a failed install left its release (gone: %v) or namespace (gone: %v) behind", releaseGone(t, p.helm), namespaceGone(t, cs))
	}

	// Attach failing after a good install (no password Secret) too.
	p, cs = helmProvider(t, nil)
	if err := cs.CoreV1().Secrets(ns).Delete(context.Background(), "chaos-etcd", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Install(context.Background(), InstallOptions{Namespace: ns, Release: "chaos", ChartRef: testChart(t)}); err == nil {
		t.Fatal("install succeeded without the password Secret")
	}
	if !releaseGone(t, p.helm) || !namespaceGone(t, cs) {
		t.Errorf("a failed attach left its release (gone: %v) or namespace (gone: %v) behind", releaseGone(t, p.helm), namespaceGone(t, cs))
	}
}

// Close removes the release and the etcd-chaos-<hex> namespace Install
// made, unless the release is kept (KEEP_CLUSTER=1 keeps only a failed
// spec's); a namespace that existed before is never deleted.
func TestCloseRemovesWhatInstallMade(t *testing.T) {
	c, cs, helm := installForTest(t, InstallOptions{})
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !releaseGone(t, helm) || !namespaceGone(t, cs) {
		t.Errorf("Close left the release (gone: %v) or the namespace (gone: %v)", releaseGone(t, helm), namespaceGone(t, cs))
	}

	c, cs, helm = installForTest(t, InstallOptions{})
	c.KeepRelease()
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if releaseGone(t, helm) || namespaceGone(t, cs) {
		t.Errorf("a kept release was removed")
	}

	p, cs := helmProvider(t, nil)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c, err := p.Install(context.Background(), InstallOptions{Namespace: ns, Release: "chaos", ChartRef: testChart(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !releaseGone(t, p.helm) || namespaceGone(t, cs) {
		t.Errorf("Close must uninstall but keep a namespace it did not create")
	}
}
