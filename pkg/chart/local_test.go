package chart

import (
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

// A directory of packaged charts is picked from by version; a chart
// directory is used as it is.
func TestResolveLocalPicksPackagedVersion(t *testing.T) {
	src := testChart(t)
	repo := t.TempDir()
	for _, v := range []string{"0.1.0", "0.2.0"} {
		ch, err := loader.LoadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		ch.Metadata.Version = v
		if _, err := chartutil.Save(ch, repo); err != nil {
			t.Fatal(err)
		}
	}
	got, err := resolveLocal(repo, "0.2.0")
	if err != nil || filepath.Base(got) != "etcd-0.2.0.tgz" {
		t.Fatalf("resolveLocal(repo, 0.2.0) = %s, %v", got, err)
	}
	if _, err := resolveLocal(repo, "12.0.18"); err == nil || !strings.Contains(err.Error(), "0.1.0, 0.2.0") {
		t.Errorf("unknown version: %v, want the versions listed", err)
	}
	if _, err := resolveLocal(repo, ""); err == nil {
		t.Error("no version in a directory of several charts was accepted")
	}
	if got, err := resolveLocal(src, "anything"); err != nil || got != src {
		t.Errorf("a chart directory must be used as it is: %s, %v", got, err)
	}
	if _, err := resolveLocal(t.TempDir(), "0.1.0"); err == nil {
		t.Error("an empty directory was accepted as a chart")
	}
	tgz := filepath.Join(repo, "etcd-0.1.0.tgz")
	if got, err := resolveLocal(tgz, "0.2.0"); err != nil || got != tgz {
		t.Errorf("a .tgz must be used as it is: %s, %v", got, err)
	}
}
