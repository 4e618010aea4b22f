package chart

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/kube"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"
)

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{"etcd": "etcd", "my-etcd-x": "my-etcd-x", "chaos": "chaos-etcd", "": "-etcd"} {
		if got := FullName(in); got != want {
			t.Errorf("FullName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValuesLayering(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", "replicaCount: 1\nauth:\n  rbac:\n    create: true\n    rootPassword: a\npersistence:\n  enabled: true\n  size: 8Gi\n")
	write(t, dir, "b.yaml", "replicaCount: 3\npersistence:\n  enabled: false\n")
	v := Values{
		Dir:   dir,
		Files: []string{"a.yaml", "b.yaml"},
		Maps:  []map[string]any{{"auth": map[string]any{"rbac": map[string]any{"rootPassword": "fromMap"}}}},
		Set:   []string{"persistence.size=1Gi,extra.list[0]=x", "replicaCount=5"},
	}
	got, err := v.Merge()
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]any{
		"replicaCount":           int64(5), // --set wins over files
		"persistence.enabled":    false,    // later file wins
		"persistence.size":       "1Gi",    // --set wins, sibling keys kept
		"auth.rbac.create":       true,     // deep merge keeps untouched keys
		"auth.rbac.rootPassword": "fromMap",
	}
	for path, want := range checks {
		if g := lookup(got, path); g != want {
			t.Errorf("%s = %#v (%T), want %#v", path, g, g, want)
		}
	}
	if l, _ := lookup(got, "extra.list").([]any); len(l) != 1 || l[0] != "x" {
		t.Errorf("extra.list = %#v, want [x]", lookup(got, "extra.list"))
	}
}

func TestValuesErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "base.yaml", "a: 1\n")
	_, err := Values{Dir: dir, Files: []string{"nope.yaml"}}.Merge()
	if err == nil || !strings.Contains(err.Error(), "base.yaml") || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("missing file error should name it and list the choices, got %v", err)
	}
	write(t, dir, "bad.yaml", "a: [\n")
	if _, err := (Values{Dir: dir, Files: []string{"bad.yaml"}}).Merge(); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("malformed file should fail naming it, got %v", err)
	}
	if _, err := (Values{Set: []string{"a[=b"}}).Merge(); err == nil || !strings.Contains(err.Error(), "--set") {
		t.Errorf("malformed --set should fail, got %v", err)
	}
}

// TestRepoValuesFiles keeps the shipped values files loadable and holding
// the settings the harness depends on.
func TestRepoValuesFiles(t *testing.T) {
	for _, files := range [][]string{
		{"base.yaml", "3-replicas-ephemeral.yaml"},
		{"base.yaml", "3-replicas-persistent.yaml"},
		{"base.yaml", "3-replicas-ephemeral.yaml", "tls-auth.yaml"},
	} {
		v, err := Values{Files: files}.Merge()
		if err != nil {
			t.Fatal(err)
		}
		if got := lookup(v, "image.repository"); got != "bitnamilegacy/etcd" {
			t.Errorf("%v: image.repository = %v", files, got)
		}
		if got := lookup(v, "global.security.allowInsecureImages"); got != true {
			t.Errorf("%v: allowInsecureImages = %v", files, got)
		}
		if got := lookup(v, "replicaCount"); got != float64(3) {
			t.Errorf("%v: replicaCount = %#v", files, got)
		}
	}
}

// newConfig is the equivalent of Helm's unexported actionConfigFixture:
// memory storage and a fake kube client that prints nothing.
func newConfig(t *testing.T, kc *kubefake.FailingKubeClient) *action.Configuration {
	t.Helper()
	if kc == nil {
		kc = &kubefake.FailingKubeClient{PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard}}
	}
	return &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   kc,
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
}

func testChart(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../../charts/testchart")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallAndUpgradeKeepsPassword(t *testing.T) {
	ctx := context.Background()
	cfg := newConfig(t, nil)
	env := Env{Namespace: "chaos", Config: cfg}
	rel, err := Install{Env: env, Release: "chaos", ChartRef: testChart(t),
		Values: Values{Maps: []map[string]any{{"replicaCount": 3}}}}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rel.Manifest, "name: chaos-etcd\n") || !strings.Contains(rel.Manifest, "replicas: 3") {
		t.Fatalf("manifest lacks the fullname StatefulSet with 3 replicas:\n%s", rel.Manifest)
	}
	pw, ok := passwordFromManifest(rel.Manifest, "chaos-etcd")
	if !ok || len(pw) != 10 {
		t.Fatalf("install should have generated a password, got %q", pw)
	}

	// No Clientset: the password comes from the previous manifest.
	up, err := Upgrade{Env: env, Release: "chaos", ChartRef: testChart(t),
		Values: Values{Set: []string{"replicaCount=3"}}}.Run(ctx)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if got, _ := passwordFromManifest(up.Manifest, "chaos-etcd"); got != pw {
		t.Errorf("upgrade changed the root password: %q -> %q", pw, got)
	}
	if up.Version != 2 {
		t.Errorf("upgrade produced revision %d, want 2", up.Version)
	}

	// With a Clientset, the live Secret wins over the manifest.
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "chaos-etcd", Namespace: "chaos"},
		Data:       map[string][]byte{RootPasswordKey: []byte("live-secret")},
	})
	env.Clientset = cs
	up, err = Upgrade{Env: env, Release: "chaos", ChartRef: testChart(t)}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := passwordFromManifest(up.Manifest, "chaos-etcd"); got != "live-secret" {
		t.Errorf("upgrade password = %q, want the Secret's", got)
	}
}

func TestUpgradeWithoutPasswordFailsClearly(t *testing.T) {
	cfg := newConfig(t, nil)
	_, err := Upgrade{Env: Env{Namespace: "chaos", Config: cfg, Clientset: fake.NewClientset()},
		Release: "absent", ChartRef: testChart(t)}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "auth.rbac.rootPassword") || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("want an error naming the Secret and the fix, got %v", err)
	}
}

func TestInstallWaitFailureNamesPods(t *testing.T) {
	kc := &kubefake.FailingKubeClient{
		PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard},
		WaitError:          errors.New("context deadline exceeded"),
	}
	labels := map[string]string{"app.kubernetes.io/name": "etcd", "app.kubernetes.io/instance": "chaos", "app.kubernetes.io/component": "etcd"}
	cs := fake.NewClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "chaos-etcd-0", Namespace: "chaos", Labels: labels},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "chaos-etcd-1", Namespace: "chaos", Labels: labels},
			Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "etcd", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "docker.io/bitnami/etcd:3.6.4 not found"}}}}}},
	)
	_, err := Install{Env: Env{Namespace: "chaos", Config: newConfig(t, kc), Clientset: cs}, Release: "chaos", ChartRef: testChart(t)}.Run(context.Background())
	if err == nil {
		t.Fatal("install should fail when the wait fails")
	}
	msg := err.Error()
	if !strings.Contains(msg, "chaos-etcd-1: ") || !strings.Contains(msg, "ImagePullBackOff") || strings.Contains(msg, "chaos-etcd-0:") {
		t.Errorf("error should name only the unready pod and its reason, got %v", msg)
	}
}

func TestInstallErrors(t *testing.T) {
	env := Env{Namespace: "chaos", Config: newConfig(t, nil)}
	if _, err := (Install{Env: env, ChartRef: testChart(t)}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "release name") {
		t.Errorf("empty release: %v", err)
	}
	if _, err := (Install{Env: env, Release: "x", ChartRef: "./no/such/chart"}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "no/such/chart") {
		t.Errorf("missing local chart: %v", err)
	}
	// Installing twice under one name is refused by Helm; the error says helm install.
	if _, err := (Install{Env: env, Release: "twice", ChartRef: testChart(t)}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := (Install{Env: env, Release: "twice", ChartRef: testChart(t)}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "helm install") {
		t.Errorf("second install: %v", err)
	}
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeResetThenReuseKeepsUserValues: a version bump without values
// must not silently reset the replica count to the chart default.
func TestUpgradeResetThenReuseKeepsUserValues(t *testing.T) {
	ctx := context.Background()
	env := Env{Namespace: "chaos", Config: newConfig(t, nil)}
	if _, err := (Install{Env: env, Release: "etcd-x", ChartRef: testChart(t), Values: Values{Set: []string{"replicaCount=3"}}}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	up, err := Upgrade{Env: env, Release: "etcd-x", ChartRef: testChart(t), ResetThenReuseValues: true}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(up.Manifest, "replicas: 3") || !strings.Contains(up.Manifest, "name: etcd-x\n") {
		t.Errorf("reset-then-reuse upgrade lost replicaCount=3 or the fullname:\n%s", up.Manifest)
	}
	plain, err := Upgrade{Env: env, Release: "etcd-x", ChartRef: testChart(t)}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain.Manifest, "replicas: 1") {
		t.Errorf("a plain upgrade should reset to chart defaults, as helm does")
	}
}

func TestLayeredPutsBaseFirstOnce(t *testing.T) {
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{nil, "base.yaml"},
		{[]string{"3-replicas-persistent.yaml"}, "base.yaml,3-replicas-persistent.yaml"},
		{[]string{"base.yaml", "3-replicas-ephemeral.yaml", "tls-auth.yaml"}, "base.yaml,3-replicas-ephemeral.yaml,tls-auth.yaml"},
	} {
		v := Layered(tc.files, []string{"replicaCount=5"})
		if got := strings.Join(v.Files, ","); got != tc.want || len(v.Set) != 1 {
			t.Errorf("Layered(%v) = %v %v, want files %s", tc.files, v.Files, v.Set, tc.want)
		}
	}
}

// hookRecorder is a fake kube client that builds resources from manifests
// by kind and name and records what is deleted.
type hookRecorder struct {
	kubefake.FailingKubeClient
	// uninstalling turns the recording on; install and upgrade need
	// resources with REST mappings, which the plain fake gives them.
	uninstalling bool
	deleted      []string
}

func (h *hookRecorder) Build(r io.Reader, v bool) (kube.ResourceList, error) {
	if !h.uninstalling {
		return h.FailingKubeClient.Build(r, v)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var out kube.ResourceList
	for _, doc := range strings.Split(string(b), "\n---") {
		var m struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil || m.Kind == "" {
			continue
		}
		out = append(out, &resource.Info{Name: m.Metadata.Name, Namespace: "chaos",
			Object: &unstructured.Unstructured{Object: map[string]any{"kind": m.Kind, "metadata": map[string]any{"name": m.Metadata.Name}}}})
	}
	return out, nil
}

func (h *hookRecorder) record(res kube.ResourceList) {
	for _, i := range res {
		h.deleted = append(h.deleted, i.Object.GetObjectKind().GroupVersionKind().Kind+"/"+i.Name)
	}
}

func (h *hookRecorder) Delete(res kube.ResourceList) (*kube.Result, []error) {
	h.record(res)
	return &kube.Result{Deleted: res}, nil
}

func (h *hookRecorder) DeleteWithPropagationPolicy(res kube.ResourceList, _ metav1.DeletionPropagation) (*kube.Result, []error) {
	return h.Delete(res)
}

// TestUninstallDeletesHooks: helm uninstall keeps hook resources; the
// chart's pre-upgrade Job (and its pods, by propagation) must not outlive
// the release.
func TestUninstallDeletesHooks(t *testing.T) {
	ctx := context.Background()
	kc := &hookRecorder{FailingKubeClient: kubefake.FailingKubeClient{PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard}}}
	cfg := newConfig(t, nil)
	cfg.KubeClient = kc
	env := Env{Namespace: "chaos", Config: cfg}
	if _, err := (Install{Env: env, Release: "chaos", ChartRef: testChart(t)}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := (Upgrade{Env: env, Release: "chaos", ChartRef: testChart(t)}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	kc.uninstalling = true
	if err := (Uninstall{Env: env, Release: "chaos"}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(kc.deleted, " ")
	if !strings.Contains(got, "StatefulSet/chaos-etcd") {
		t.Errorf("the release's own resources were not deleted: %s", got)
	}
	if strings.Count(got, "Job/chaos-etcd-pre-upgrade") != 1 {
		t.Errorf("the pre-upgrade hook Job should be deleted once, deleted: %s", got)
	}
	// Uninstalling a release that is gone is not an error.
	if err := (Uninstall{Env: env, Release: "chaos"}).Run(ctx); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

// packagedTestChart packages charts/testchart at version into dir, standing
// in for a registry pull.
func packagedTestChart(t *testing.T, dir, version string) string {
	t.Helper()
	ch, err := loader.Load(testChart(t))
	if err != nil {
		t.Fatal(err)
	}
	ch.Metadata.Version = version
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRemoteChartPulledOnce: every spec installs the same chart; it must be
// pulled once, and a later run (a new process) must not pull it again.
func TestRemoteChartPulledOnce(t *testing.T) {
	t.Setenv("ETCD_CHAOS_CACHE", t.TempDir())
	pulls := map[string]int{}
	old := locate
	t.Cleanup(func() { locate = old })
	locate = func(opts *action.ChartPathOptions, ref string, _ *cli.EnvSettings) (string, error) {
		pulls[ref+"@"+opts.Version]++
		v := opts.Version
		if v == "^0.1" { // what the registry would resolve the range to
			v = "0.1.1"
		}
		return packagedTestChart(t, t.TempDir(), v), nil
	}
	ctx := context.Background()
	env := Env{Namespace: "chaos", Config: newConfig(t, nil)}
	const ref = "oci://registry.example.invalid/charts/etcd"
	for i, rel := range []string{"etcd-a", "etcd-b", "etcd-c"} {
		if _, err := (Install{Env: env, Release: rel, ChartRef: ref, Version: "0.1.0"}).Run(ctx); err != nil {
			t.Fatalf("install %d: %v", i, err)
		}
	}
	if _, err := (Upgrade{Env: env, Release: "etcd-a", ChartRef: ref, Version: "0.1.0"}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	if pulls[ref+"@0.1.0"] != 1 {
		t.Errorf("chart pulled %d times for 3 installs and an upgrade, want 1", pulls[ref+"@0.1.0"])
	}
	// Another version is another chart.
	if _, err := (Upgrade{Env: env, Release: "etcd-a", ChartRef: ref, Version: "0.2.0"}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	// A range resolves differently over time: never served from the cache.
	for i := 0; i < 2; i++ {
		if _, err := (Upgrade{Env: env, Release: "etcd-b", ChartRef: ref, Version: "^0.1"}).Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{ref + "@0.1.0": 1, ref + "@0.2.0": 1, ref + "@^0.1": 2}
	for k, n := range want {
		if pulls[k] != n {
			t.Errorf("%s pulled %d times, want %d (all pulls: %v)", k, pulls[k], n, pulls)
		}
	}
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*", "0.1.0", "chart.tgz")); len(m) != 1 {
		t.Errorf("cache dir %s holds %v, want one chart for 0.1.0", dir, m)
	}
}
