package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
)

// resolveLocal returns the chart to load for a local ref. A chart
// directory or .tgz is itself. A directory without a Chart.yaml is a
// directory of packaged charts (what `helm package -d DIR` fills, or
// pkg/etcdchart.Repository): the chart version picks the .tgz, so that
// CHART_VERSION and a chart upgrade's from/to versions work without a
// registry as they do with one.
func resolveLocal(ref, version string) (string, error) {
	st, err := os.Stat(ref)
	if err != nil || !st.IsDir() {
		return ref, nil
	}
	if _, err := os.Stat(filepath.Join(ref, "Chart.yaml")); err == nil {
		return ref, nil
	}
	pkgs, _ := filepath.Glob(filepath.Join(ref, "*.tgz"))
	if len(pkgs) == 0 {
		return "", fmt.Errorf("chart %s: neither a chart directory (no Chart.yaml) nor a directory of packaged charts (no .tgz)", ref)
	}
	sort.Strings(pkgs)
	var have []string
	for _, p := range pkgs {
		ch, err := loader.LoadFile(p)
		if err != nil {
			return "", fmt.Errorf("chart %s: %w", p, err)
		}
		if ch.Metadata.Version == version {
			return p, nil
		}
		have = append(have, ch.Metadata.Version)
	}
	if version == "" {
		return "", fmt.Errorf("chart %s holds several charts: pick a version (%s)", ref, strings.Join(have, ", "))
	}
	return "", fmt.Errorf("chart %s has no version %s (it holds %s)", ref, version, strings.Join(have, ", "))
}
