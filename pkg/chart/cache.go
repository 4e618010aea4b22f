package chart

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/cli"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

// locate fetches a remote chart and returns its local path; tests replace it
// to count pulls without a registry.
var locate = func(opts *action.ChartPathOptions, ref string, settings *cli.EnvSettings) (string, error) {
	return opts.LocateChart(ref, settings)
}

// pullMu serializes pulls, so that specs starting together pull a chart
// once rather than racing to write the same cache file.
var pullMu sync.Mutex

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// exactVersion matches a single semantic version, not a range such as "^12".
var exactVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// CacheDir is where pulled charts are kept: <etcd-chaos cache>/charts, the
// cache the etcd binaries use ($ETCD_CHAOS_CACHE, else the user cache dir).
func CacheDir() (string, error) {
	root, err := etcdbin.DefaultCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts"), nil
}

// cachedPull returns a local copy of remote chart ref at an exact version,
// pulling it only if no earlier pull (in this process or an earlier run)
// left one in CacheDir: a nightly matrix that pulled the chart for every
// spec hit Docker Hub's pull rate limit. A version range is pulled every
// time, since what it resolves to changes. A cache that cannot be written
// costs only the reuse.
func cachedPull(opts *action.ChartPathOptions, settings *cli.EnvSettings, ref, version string, logf func(string, ...any)) (string, error) {
	if !exactVersion.MatchString(version) {
		return locate(opts, ref, settings)
	}
	pullMu.Lock()
	defer pullMu.Unlock()
	dir, err := CacheDir()
	if err != nil {
		logf("chart cache: %v; pulling %s without caching", err, ref)
		return locate(opts, ref, settings)
	}
	file := filepath.Join(dir, unsafeChars.ReplaceAllString(ref, "_"), version, "chart.tgz")
	if st, err := os.Stat(file); err == nil && st.Size() > 0 {
		return file, nil
	}
	pulled, err := locate(opts, ref, settings)
	if err != nil {
		return "", err
	}
	if err := copyFile(pulled, file); err != nil {
		logf("chart cache: cannot keep %s %s: %v", ref, version, err)
		return pulled, nil
	}
	return file, nil
}

// copyFile writes src to dst through a temporary file and a rename, so a
// reader never sees half a chart.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".chart-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("rename into cache: %w", err)
	}
	return nil
}
