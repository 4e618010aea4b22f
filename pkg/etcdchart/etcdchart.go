// Package etcdchart is etcd-chaos's own etcd Helm chart, charts/etcd: a
// chart shaped like bitnami/etcd (fullname rule, selector labels, headless
// Service with publishNotReadyAddresses, Secret <fullname> key
// etcd-root-password, RBAC on, ports 2379/2380, Parallel pods, PVCs or
// emptyDir) that runs the etcd image pkg/image.BuildEtcd makes. It exists
// for clusters that can pull neither the Bitnami chart nor its images, the
// kube-host backend first; the harness's Kubernetes code treats it exactly
// like the Bitnami chart.
//
// The chart ships at several versions (Releases), which differ in the etcd
// version they run, so that a chart upgrade is an etcd minor upgrade under
// a rolling update. Repository packages them all into one directory of
// .tgz files; pkg/chart accepts such a directory as the chart reference
// and picks the file by chart version:
//
//	p, _ := etcdchart.Prepare(ctx, "", os.Stderr, "1.0.0", "1.1.0") // packages, etcd images
//	// import p.Images (and image.BuildPause's) with `ctr -n k8s.io images import`
//	// install: ChartRef p.Repository, ChartVersion etcdchart.Latest().Version
//	//          (or CHART_FROM), Set p.Set after the values files
//	// upgrade: ChartVersion CHART_TO, same ChartRef and Set
package etcdchart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
	"github.com/etcd-chaos/etcd-chaos/pkg/image"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// Release is one version of the chart and the etcd version it runs.
type Release struct {
	// Version is the chart version ("1.1.0").
	Version string
	// AppVersion is the etcd version without "v" ("3.6.4"); the image tag
	// defaults to "v" + AppVersion.
	AppVersion string
}

// Releases are the chart versions this repository ships, oldest first.
// Upgrading 1.0.0 -> 1.1.0 moves etcd from 3.5 to 3.6; v3.5.35 is the last
// 3.5 patch on the Go module proxy, and etcd supports 3.6 upgrades only
// from a recent 3.5. The newest entry is what charts/etcd/Chart.yaml says.
var Releases = []Release{
	{Version: "1.0.0", AppVersion: "3.5.35"},
	{Version: "1.1.0", AppVersion: "3.6.4"},
}

// Latest is the newest release.
func Latest() Release { return Releases[len(Releases)-1] }

// Find returns the release with that chart version.
func Find(version string) (Release, error) {
	var have []string
	for _, r := range Releases {
		if r.Version == version {
			return r, nil
		}
		have = append(have, r.Version)
	}
	return Release{}, fmt.Errorf("etcd-chaos chart has no version %q (it ships %s)", version, strings.Join(have, ", "))
}

// ImageSet are the --set values that point the chart at the images
// pkg/image builds. The tag is left to the chart (from its appVersion), so
// that upgrading the chart upgrades etcd. base.yaml sets the Bitnami image
// repository for every install, so these must come after it, on install
// and upgrade alike, as --set values do.
func ImageSet() []string {
	repo := strings.TrimPrefix(image.EtcdRepository, "localhost/")
	return []string{"image.registry=localhost", "image.repository=" + repo}
}

// Prepared is what a cluster without a registry needs to run the chart.
type Prepared struct {
	// Repository is the directory of packaged chart versions (Repository).
	Repository string
	// Images are the etcd image tarballs, one per release, to import.
	Images []string
	// Set are the values that select those images (ImageSet).
	Set []string
}

// Prepare packages every release of the chart and builds the etcd images
// of the chart versions given (every release when none), so that a run that
// installs only the latest version does not build the older etcd. Building
// an etcd version for the first time takes minutes and prints one line to
// progress; later calls reuse pkg/etcdbin's cache.
func Prepare(ctx context.Context, cacheDir string, progress io.Writer, versions ...string) (Prepared, error) {
	rels := Releases
	if len(versions) > 0 {
		rels = nil
		for _, v := range versions {
			r, err := Find(v)
			if err != nil {
				return Prepared{}, err
			}
			rels = append(rels, r)
		}
	}
	repo, err := Repository(cacheDir)
	if err != nil {
		return Prepared{}, err
	}
	p := Prepared{Repository: repo, Set: ImageSet()}
	for _, r := range rels {
		b, err := image.BuildEtcd(ctx, r.AppVersion, cacheDir, progress)
		if err != nil {
			return Prepared{}, fmt.Errorf("etcd image for chart %s: %w", r.Version, err)
		}
		p.Images = append(p.Images, b.Path)
	}
	return p, nil
}

// DirEnv overrides where SourceDir looks for the chart.
const DirEnv = "ETCD_CHAOS_CHART_DIR"

// SourceDir finds charts/etcd: $ETCD_CHAOS_CHART_DIR if set, else the first
// ancestor of the working directory that holds it, so that tests and the
// CLI find it from anywhere inside the repository.
func SourceDir() (string, error) {
	if d := os.Getenv(DirEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "charts", "etcd")
		if _, err := os.Stat(filepath.Join(cand, "Chart.yaml")); err == nil {
			return cand, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", errors.New("charts/etcd not found above the working directory: run from the repository or set " + DirEnv)
}

// Repository packages every release into <cache>/charts/etcd-chaos (cache
// as in pkg/etcdbin; "" means its default) as etcd-<version>.tgz, and
// returns that directory. Packages are rewritten on every call, since the
// chart source may have changed; each appears atomically.
func Repository(cacheDir string) (string, error) {
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	root := cacheDir
	if root == "" {
		if root, err = etcdbin.DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	out := filepath.Join(root, "charts", "etcd-chaos")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", fmt.Errorf("chart repository %s: %w", out, err)
	}
	for _, r := range Releases {
		if err := packageRelease(src, out, r); err != nil {
			return "", err
		}
	}
	return out, nil
}

func packageRelease(src, out string, r Release) error {
	ch, err := loader.LoadDir(src)
	if err != nil {
		return fmt.Errorf("load chart %s: %w", src, err)
	}
	ch.Metadata.Version = r.Version
	ch.Metadata.AppVersion = r.AppVersion
	if err := ch.Validate(); err != nil {
		return fmt.Errorf("chart %s at %s: %w", src, r.Version, err)
	}
	tmp, err := os.MkdirTemp(out, ".pkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path, err := chartutil.Save(ch, tmp)
	if err != nil {
		return fmt.Errorf("package chart %s: %w", r.Version, err)
	}
	if err := os.Rename(path, filepath.Join(out, filepath.Base(path))); err != nil {
		return fmt.Errorf("package chart %s: %w", r.Version, err)
	}
	return nil
}
