// Package chart installs and upgrades the Bitnami etcd Helm chart with the
// Helm v3 SDK, one type per action as in Helm's own pkg/action: Install and
// Upgrade. It also layers the values files kept in charts/etcd-values and
// explains a failed wait by naming the pods that are not Ready.
package chart

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
)

// Defaults for the chart the harness tests.
const (
	// DefaultRef is the Bitnami OCI location. The legacy HTTP repository is
	// avoided on purpose: its index points at OCI and fails with "invalid
	// tag" (bitnami/charts#30609).
	DefaultRef = "oci://registry-1.docker.io/bitnamicharts/etcd"
	// DefaultVersion is the last tagged release of the chart (etcd 3.6.4).
	DefaultVersion = "12.0.18"
	// RootPasswordKey is the key of the root password in Secret <fullname>.
	RootPasswordKey = "etcd-root-password"
	// ValuesDirEnv overrides where ValuesDir looks for the values files.
	ValuesDirEnv = "ETCD_CHAOS_VALUES_DIR"
)

// BaseValues is the values file layered first on every install and upgrade
// the harness makes: without it the chart's default image
// (docker.io/bitnami/etcd) no longer resolves, probes wait 60 s, and the
// PDB and NetworkPolicy come back.
const BaseValues = "base.yaml"

// Layered is the values layering of every install and of every upgrade of a
// release the harness installed: BaseValues, then files in order, then set.
// Install and upgrade both call it, so an upgrade passes exactly what the
// install passed; helm would otherwise fall back to the chart's defaults
// plus whatever the upgrade names. A BaseValues among files is applied once,
// first.
func Layered(files, set []string) Values {
	v := Values{Files: []string{BaseValues}}
	for _, f := range files {
		if f != BaseValues {
			v.Files = append(v.Files, f)
		}
	}
	v.Set = append([]string(nil), set...)
	return v
}

// FullName is the chart's fullname for a release: the release name if it
// contains "etcd", else "<release>-etcd". The StatefulSet, the client Service
// and the password Secret all carry it; pods are <fullname>-N.
func FullName(release string) string {
	if strings.Contains(release, "etcd") {
		return release
	}
	return release + "-etcd"
}

// Values says how to build the values passed to the chart. Layers apply in
// this order, later ones winning, like helm's -f then --set: Files (in
// order), then Maps (in order), then Set (in order).
type Values struct {
	// Dir holds Files given by bare name; empty means ValuesDir().
	Dir string
	// Files are file names in Dir (such as "base.yaml") or paths.
	Files []string
	// Maps are merged as they are.
	Maps []map[string]any
	// Set are --set style strings ("a.b=c,d[0]=e"), parsed by helm's strvals.
	Set []string
}

// Merge loads and layers the values. A file name that is not found says
// which directory was searched.
func (v Values) Merge() (map[string]any, error) {
	out := map[string]any{}
	for _, f := range v.Files {
		path, err := v.resolve(f)
		if err != nil {
			return nil, err
		}
		vals, err := chartutil.ReadValuesFile(path)
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", path, err)
		}
		out = mergeMaps(out, vals)
	}
	for _, m := range v.Maps {
		out = mergeMaps(out, m)
	}
	for _, s := range v.Set {
		if err := strvals.ParseInto(s, out); err != nil {
			return nil, fmt.Errorf("--set %q: %w (use key.sub=value, comma-separated)", s, err)
		}
	}
	return out, nil
}

func (v Values) resolve(name string) (string, error) {
	if filepath.IsAbs(name) || strings.ContainsRune(name, filepath.Separator) {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("values file %s: %w", name, err)
		}
		return name, nil
	}
	dir := v.Dir
	if dir == "" {
		d, err := ValuesDir()
		if err != nil {
			return "", err
		}
		dir = d
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("values file %q not found in %s: pick one of %s", name, dir, listYAML(dir))
	}
	return path, nil
}

func listYAML(dir string) string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var names []string
	for _, p := range m {
		names = append(names, filepath.Base(p))
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// ValuesDir finds charts/etcd-values: $ETCD_CHAOS_VALUES_DIR if set, else the
// first ancestor of the working directory that holds it, so that tests and
// the CLI find it from anywhere inside the repository.
func ValuesDir() (string, error) {
	if d := os.Getenv(ValuesDirEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "charts", "etcd-values")
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", errors.New("charts/etcd-values not found above the working directory: run from the repository or set " + ValuesDirEnv)
}

// mergeMaps deep-merges src into dst (src wins), the way helm merges -f files.
func mergeMaps(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			if dv, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(dv, sv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// lookup returns the value at a dotted path, or nil.
func lookup(vals map[string]any, path string) any {
	var cur any = vals
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// setPath sets a value at a dotted path, creating maps as needed.
func setPath(vals map[string]any, path string, v any) {
	parts := strings.Split(path, ".")
	cur := vals
	for _, p := range parts[:len(parts)-1] {
		next, ok := cur[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[p] = next
		}
		cur = next
	}
	cur[parts[len(parts)-1]] = v
}
