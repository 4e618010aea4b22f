package etcdchart

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/chart"
	"github.com/etcd-chaos/etcd-chaos/pkg/image"
	"helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

func loadSource(t *testing.T) *helmchart.Chart {
	t.Helper()
	dir, err := SourceDir()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestChartYAMLIsLatestRelease(t *testing.T) {
	ch := loadSource(t)
	if l := Latest(); ch.Metadata.Version != l.Version || ch.Metadata.AppVersion != l.AppVersion {
		t.Fatalf("charts/etcd/Chart.yaml is %s (etcd %s); Releases ends with %s (etcd %s)", ch.Metadata.Version, ch.Metadata.AppVersion, l.Version, l.AppVersion)
	}
	if ch.Metadata.Name != "etcd" {
		t.Errorf("chart name %q: Bitnami's is etcd", ch.Metadata.Name)
	}
	if _, err := Find("9.9.9"); err == nil || !strings.Contains(err.Error(), "1.0.0") {
		t.Errorf("Find of an unknown version should list the known ones, got %v", err)
	}
}

// rendered is one render of the chart, by kind and name.
type rendered struct {
	sts     appsv1.StatefulSet
	svcs    map[string]corev1.Service
	secrets map[string]corev1.Secret
	pdbs    int
	kinds   []string
}

// render renders the chart the way an install with these values files
// (from charts/etcd-values) and the image --set values would.
func render(t *testing.T, release string, upgrade bool, files []string, set ...string) (rendered, error) {
	t.Helper()
	ch := loadSource(t)
	vals, err := chart.Values{Files: files, Set: append(ImageSet(), set...)}.Merge()
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: release, Namespace: "ns", IsInstall: !upgrade, IsUpgrade: upgrade}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return rendered{}, err
	}
	r := rendered{svcs: map[string]corev1.Service{}, secrets: map[string]corev1.Secret{}}
	for name, doc := range out {
		if strings.HasSuffix(name, ".tpl") || strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s does not parse: %v\n%s", name, err, doc)
		}
		r.kinds = append(r.kinds, meta.Kind)
		var obj any
		switch meta.Kind {
		case "StatefulSet":
			obj = &r.sts
		case "Service":
			obj = &corev1.Service{}
		case "Secret":
			obj = &corev1.Secret{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
			r.pdbs++
		default:
			t.Fatalf("unexpected kind %s in %s", meta.Kind, name)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s is not a valid %s: %v\n%s", name, meta.Kind, err, doc)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			r.svcs[o.Name] = *o
		case *corev1.Secret:
			r.secrets[o.Name] = *o
		}
	}
	return r, nil
}

func envOf(c corev1.Container) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

var selector = map[string]string{
	"app.kubernetes.io/name":      "etcd",
	"app.kubernetes.io/instance":  "chaos",
	"app.kubernetes.io/component": "etcd",
}

func TestRenderIsBitnamiShaped(t *testing.T) {
	r, err := render(t, "chaos", false, []string{"base.yaml", "3-replicas-ephemeral.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	s := r.sts
	if s.Name != "chaos-etcd" || *s.Spec.Replicas != 3 || s.Spec.ServiceName != "chaos-etcd-headless" ||
		s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || s.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		t.Errorf("StatefulSet %s: replicas %d, serviceName %s, policy %s, update %s", s.Name, *s.Spec.Replicas, s.Spec.ServiceName, s.Spec.PodManagementPolicy, s.Spec.UpdateStrategy.Type)
	}
	if len(s.Spec.Selector.MatchLabels) != len(selector) {
		t.Errorf("selector %v, want exactly %v", s.Spec.Selector.MatchLabels, selector)
	}
	for k, v := range selector {
		if s.Spec.Selector.MatchLabels[k] != v || s.Spec.Template.Labels[k] != v {
			t.Errorf("label %s: selector %q, pod %q; want %q", k, s.Spec.Selector.MatchLabels[k], s.Spec.Template.Labels[k], v)
		}
	}
	if cl := chart.Selector("chaos"); !strings.Contains(cl, "app.kubernetes.io/instance=chaos") {
		t.Errorf("pkg/chart selector %q", cl)
	}
	if len(s.Spec.Template.Spec.Containers) != 1 || s.Spec.Template.Spec.Containers[0].Name != "etcd" {
		t.Fatalf("containers %+v, want one named etcd", s.Spec.Template.Spec.Containers)
	}
	c := s.Spec.Template.Spec.Containers[0]
	if c.Image != image.EtcdRef(Latest().AppVersion) {
		t.Errorf("image %s, want %s (base.yaml's Bitnami repository overridden by ImageSet)", c.Image, image.EtcdRef(Latest().AppVersion))
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["client"] != 2379 || ports["peer"] != 2380 {
		t.Errorf("container ports %v", ports)
	}
	env := envOf(c)
	pw := env["ETCD_ROOT_PASSWORD"].ValueFrom
	if pw == nil || pw.SecretKeyRef == nil || pw.SecretKeyRef.Name != "chaos-etcd" || pw.SecretKeyRef.Key != chart.RootPasswordKey {
		t.Errorf("ETCD_ROOT_PASSWORD = %+v, want Secret chaos-etcd key %s", env["ETCD_ROOT_PASSWORD"], chart.RootPasswordKey)
	}
	wantCluster := "chaos-etcd-0=http://chaos-etcd-0.chaos-etcd-headless.ns.svc.cluster.local:2380," +
		"chaos-etcd-1=http://chaos-etcd-1.chaos-etcd-headless.ns.svc.cluster.local:2380," +
		"chaos-etcd-2=http://chaos-etcd-2.chaos-etcd-headless.ns.svc.cluster.local:2380"
	checks := map[string]string{
		"ETCD_NAME":                        "$(MY_POD_NAME)",
		"ETCD_DATA_DIR":                    "/bitnami/etcd/data",
		"ETCD_INITIAL_CLUSTER":             wantCluster,
		"ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://$(MY_POD_NAME).chaos-etcd-headless.ns.svc.cluster.local:2380",
		"ETCD_ADVERTISE_CLIENT_URLS":       "http://$(MY_POD_NAME).chaos-etcd-headless.ns.svc.cluster.local:2379,http://chaos-etcd.ns.svc.cluster.local:2379",
		"ETCD_LISTEN_CLIENT_URLS":          "http://0.0.0.0:2379",
		"ETCD_LISTEN_PEER_URLS":            "http://0.0.0.0:2380",
	}
	for k, want := range checks {
		if got := env[k].Value; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if env["MY_POD_NAME"].ValueFrom == nil || env["MY_POD_NAME"].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("MY_POD_NAME must come from metadata.name: %+v", env["MY_POD_NAME"])
	}
	if _, ok := env["ETCD_AUTO_TLS"]; ok {
		t.Error("plaintext render sets ETCD_AUTO_TLS")
	}
	// Probes: etcd-member probe, with base.yaml's short delays.
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.Exec == nil || len(p.Exec.Command) < 2 || p.Exec.Command[0] != image.MemberBin || p.Exec.Command[1] != "probe" {
			t.Errorf("%s probe = %+v, want exec %s probe", name, p, image.MemberBin)
		}
	}
	if c.ReadinessProbe != nil && (c.ReadinessProbe.InitialDelaySeconds != 2 || c.ReadinessProbe.TimeoutSeconds != 3) {
		t.Errorf("readiness probe ignores base.yaml: %+v", c.ReadinessProbe)
	}
	if c.Resources.Requests.Cpu().String() != "100m" || c.Resources.Limits.Memory().String() != "512Mi" {
		t.Errorf("resources ignore base.yaml: %+v", c.Resources)
	}
	// emptyDir data, mounted where Bitnami mounts it.
	if len(s.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("ephemeral render has volumeClaimTemplates")
	}
	var data *corev1.Volume
	for i := range s.Spec.Template.Spec.Volumes {
		if s.Spec.Template.Spec.Volumes[i].Name == "data" {
			data = &s.Spec.Template.Spec.Volumes[i]
		}
	}
	if data == nil || data.EmptyDir == nil {
		t.Errorf("volume data = %+v, want an emptyDir", data)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != "data" || c.VolumeMounts[0].MountPath != "/bitnami/etcd" {
		t.Errorf("mounts %+v", c.VolumeMounts)
	}

	hl, ok := r.svcs["chaos-etcd-headless"]
	if !ok || hl.Spec.ClusterIP != corev1.ClusterIPNone || !hl.Spec.PublishNotReadyAddresses {
		t.Errorf("headless service %+v, want clusterIP None and publishNotReadyAddresses", hl.Spec)
	}
	for _, svc := range []string{"chaos-etcd-headless", "chaos-etcd"} {
		sp := map[string]int32{}
		for _, p := range r.svcs[svc].Spec.Ports {
			sp[p.Name] = p.Port
		}
		if sp["client"] != 2379 || sp["peer"] != 2380 {
			t.Errorf("service %s ports %v", svc, sp)
		}
		for k, v := range selector {
			if r.svcs[svc].Spec.Selector[k] != v {
				t.Errorf("service %s selector %v", svc, r.svcs[svc].Spec.Selector)
			}
		}
	}
	sec, ok := r.secrets["chaos-etcd"]
	if !ok {
		t.Fatalf("no Secret chaos-etcd (kinds %v)", r.kinds)
	}
	// The yaml decoder already base64-decodes Secret data.
	if got := sec.Data[chart.RootPasswordKey]; len(got) != 10 {
		t.Errorf("Secret chaos-etcd %s = %q, want a generated 10-character password", chart.RootPasswordKey, got)
	}
	if r.pdbs != 0 {
		t.Error("base.yaml turns the PDB off; the chart rendered one")
	}
}

func TestRenderFullnameRule(t *testing.T) {
	r, err := render(t, "my-etcd", false, []string{"base.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if r.sts.Name != "my-etcd" || chart.FullName("my-etcd") != "my-etcd" {
		t.Errorf("release my-etcd: StatefulSet %s", r.sts.Name)
	}
	if _, ok := r.svcs["my-etcd-headless"]; !ok {
		t.Errorf("services %v", r.svcs)
	}
	if _, ok := r.secrets["my-etcd"]; !ok {
		t.Errorf("secrets %v", r.secrets)
	}
	if got := envOf(r.sts.Spec.Template.Spec.Containers[0])["ETCD_INITIAL_CLUSTER"].Value; got != "my-etcd-0=http://my-etcd-0.my-etcd-headless.ns.svc.cluster.local:2380" {
		t.Errorf("one replica: ETCD_INITIAL_CLUSTER = %s", got)
	}
	// Without base.yaml the chart's own defaults hold: a PDB, Bitnami's
	// probe delays and persistence.
	r, err = render(t, "chaos", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.pdbs != 1 || len(r.sts.Spec.VolumeClaimTemplates) != 1 || r.sts.Spec.Template.Spec.Containers[0].ReadinessProbe.InitialDelaySeconds != 60 {
		t.Errorf("defaults: pdbs %d, claims %d, readiness %+v", r.pdbs, len(r.sts.Spec.VolumeClaimTemplates), r.sts.Spec.Template.Spec.Containers[0].ReadinessProbe)
	}
}

func TestRenderPersistent(t *testing.T) {
	r, err := render(t, "chaos", false, []string{"base.yaml", "3-replicas-persistent.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	vct := r.sts.Spec.VolumeClaimTemplates
	if len(vct) != 1 || vct[0].Name != "data" || vct[0].Spec.Resources.Requests.Storage().String() != "1Gi" || vct[0].Spec.StorageClassName != nil {
		t.Fatalf("volumeClaimTemplates %+v, want data of 1Gi on the default class", vct)
	}
	// Close deletes the PVCs by the release selector.
	for k, v := range selector {
		if vct[0].Labels[k] != v {
			t.Errorf("PVC label %s = %q, want %q", k, vct[0].Labels[k], v)
		}
	}
	for _, v := range r.sts.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			t.Errorf("persistent render also has a data volume %+v", v)
		}
	}
	r, err = render(t, "chaos", false, []string{"base.yaml", "3-replicas-persistent.yaml"}, "persistence.storageClass=fast")
	if err != nil {
		t.Fatal(err)
	}
	if sc := r.sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName; sc == nil || *sc != "fast" {
		t.Errorf("storageClass not applied: %v", sc)
	}
}

func TestRenderAutoTLS(t *testing.T) {
	r, err := render(t, "chaos", false, []string{"base.yaml", "3-replicas-ephemeral.yaml", "tls-auth.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(r.sts.Spec.Template.Spec.Containers[0])
	if env["ETCD_AUTO_TLS"].Value != "true" || env["ETCD_PEER_AUTO_TLS"].Value != "true" {
		t.Errorf("auto TLS env: %v / %v", env["ETCD_AUTO_TLS"], env["ETCD_PEER_AUTO_TLS"])
	}
	// pkg/cluster/kube decides to speak TLS from these two.
	for _, k := range []string{"ETCD_ADVERTISE_CLIENT_URLS", "ETCD_LISTEN_CLIENT_URLS", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "ETCD_LISTEN_PEER_URLS"} {
		if !strings.HasPrefix(env[k].Value, "https://") {
			t.Errorf("%s = %s, want https", k, env[k].Value)
		}
	}
	if !strings.Contains(env["ETCD_INITIAL_CLUSTER"].Value, "=https://chaos-etcd-0.") {
		t.Errorf("initial cluster %s, want https peers", env["ETCD_INITIAL_CLUSTER"].Value)
	}

	// Certificates from a Secret: mounted as etcd-client-certs, where the
	// harness looks for the CA.
	r, err = render(t, "chaos", false, []string{"base.yaml"}, "auth.client.secureTransport=true,auth.client.existingSecret=certs,auth.client.caFilename=ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	env = envOf(r.sts.Spec.Template.Spec.Containers[0])
	if env["ETCD_CERT_FILE"].Value != "/opt/bitnami/etcd/certs/client/cert.pem" || env["ETCD_TRUSTED_CA_FILE"].Value != "/opt/bitnami/etcd/certs/client/ca.crt" {
		t.Errorf("client cert env %v %v", env["ETCD_CERT_FILE"], env["ETCD_TRUSTED_CA_FILE"])
	}
	found := false
	for _, v := range r.sts.Spec.Template.Spec.Volumes {
		if v.Name == "etcd-client-certs" && v.Secret != nil && v.Secret.SecretName == "certs" {
			found = true
		}
	}
	if !found {
		t.Errorf("no etcd-client-certs volume from Secret certs: %+v", r.sts.Spec.Template.Spec.Volumes)
	}
	if _, err := render(t, "chaos", false, nil, "auth.client.secureTransport=true"); err == nil {
		t.Error("client TLS without auto TLS or a Secret rendered")
	}
}

func TestRenderUpgradeNeedsPassword(t *testing.T) {
	_, err := render(t, "chaos", true, []string{"base.yaml"})
	if err == nil || !strings.Contains(err.Error(), "PASSWORDS ERROR") {
		t.Fatalf("upgrade without the root password (and no live Secret): %v, want PASSWORDS ERROR", err)
	}
	r, err := render(t, "chaos", true, []string{"base.yaml"}, "auth.rbac.rootPassword=kept")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.secrets["chaos-etcd"].Data[chart.RootPasswordKey]); got != "kept" {
		t.Errorf("upgrade Secret password %q, want kept", got)
	}
	r, err = render(t, "chaos", false, []string{"base.yaml"}, "auth.rbac.create=false")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.secrets) != 0 {
		t.Error("auth.rbac.create=false still renders a Secret")
	}
	if _, ok := envOf(r.sts.Spec.Template.Spec.Containers[0])["ETCD_ROOT_PASSWORD"]; ok {
		t.Error("auth.rbac.create=false still passes a root password")
	}
}

// TestRepositoryInstallThenUpgrade installs release 1.0.0 from the
// packaged repository through pkg/chart (Helm's install action on memory
// storage), then upgrades to 1.1.0 by version alone, as the chart-upgrade
// suite does, and checks the etcd image moves from 3.5 to 3.6.
func TestRepositoryInstallThenUpgrade(t *testing.T) {
	repo, err := Repository(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pkgs, _ := filepath.Glob(filepath.Join(repo, "*.tgz"))
	if len(pkgs) != len(Releases) {
		t.Fatalf("repository holds %v, want one package per release", pkgs)
	}
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.FailingKubeClient{PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard}},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
	env := chart.Env{Namespace: "ns", Config: cfg}
	vals := chart.Values{Files: []string{"base.yaml", "3-replicas-persistent.yaml"}, Set: ImageSet()}
	ctx := context.Background()
	from, to := Releases[0], Latest()
	rel, err := chart.Install{Env: env, Release: "chaos", ChartRef: repo, Version: from.Version, Values: vals}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Chart.Metadata.Version != from.Version || !strings.Contains(rel.Manifest, "image: "+image.EtcdRef(from.AppVersion)) {
		t.Fatalf("installed chart %s, manifest image not %s", rel.Chart.Metadata.Version, image.EtcdRef(from.AppVersion))
	}
	rel, err = chart.Upgrade{Env: env, Release: "chaos", ChartRef: repo, Version: to.Version, Values: vals}.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Chart.Metadata.Version != to.Version || !strings.Contains(rel.Manifest, "image: "+image.EtcdRef(to.AppVersion)) {
		t.Fatalf("upgraded chart %s, manifest image not %s", rel.Chart.Metadata.Version, image.EtcdRef(to.AppVersion))
	}
	if _, err := (chart.Install{Env: env, Release: "other", ChartRef: repo, Version: "0.0.1", Values: vals}).Run(ctx); err == nil || !strings.Contains(err.Error(), from.Version) {
		t.Errorf("unknown version in the repository: %v, want an error listing the versions", err)
	}
}

// TestPrepareLatest builds what an install of the latest chart needs: the
// repository and the one etcd image (etcd v3.6.4, which make test builds
// before the tests).
func TestPrepareLatest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	// The default cache, where make test has built etcd v3.6.4.
	p, err := Prepare(context.Background(), "", io.Discard, Latest().Version)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 1 || filepath.Base(p.Images[0]) != "etcd_v"+Latest().AppVersion+".tar" {
		t.Errorf("images %v, want the latest release's only", p.Images)
	}
	if strings.Join(p.Set, ",") != strings.Join(ImageSet(), ",") || filepath.Base(p.Repository) != "etcd-chaos" {
		t.Errorf("prepared %+v", p)
	}
	if _, err := Prepare(context.Background(), "", io.Discard, "0.0.9"); err == nil {
		t.Error("an unknown chart version was prepared")
	}
}
