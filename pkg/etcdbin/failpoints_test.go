package etcdbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScanFailpointsFindsDeclarationsOnly(t *testing.T) {
	root := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("raft/raft.go", "package raft\nfunc f() {\n\t// gofail: var raftBeforeSave struct{}\n\t// gofail: labelDrop:\n\t\t// gofail: var raftAfterSave struct{}\n}\n")
	write("backend/batch.go", "package backend\n// gofail: var beforeCommit struct{}\n// a comment that mentions gofail: var notAFailpoint\n")
	write("backend/batch_test.go", "package backend\n// gofail: var onlyInTests struct{}\n")
	write("plain/plain.go", "package plain\n")
	names, dirs, err := scanFailpoints(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "beforeCommit,raftAfterSave,raftBeforeSave" {
		t.Errorf("names = %s; want beforeCommit,raftAfterSave,raftBeforeSave", got)
	}
	if len(dirs) != 2 || filepath.Base(dirs[0]) != "backend" || filepath.Base(dirs[1]) != "raft" {
		t.Errorf("dirs = %v; want backend and raft", dirs)
	}
}

func TestFailpointsOfAPlainBuildIsOneLine(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcd")
	if _, err := Failpoints(bin); err == nil || !strings.Contains(err.Error(), "not a failpoint build") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Failpoints of a plain build: err = %v; want one line saying it is not a failpoint build", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FailpointsFile), []byte("a\nb\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Failpoints(bin); err != nil || strings.Join(got, ",") != "a,b" {
		t.Fatalf("Failpoints = %v, %v; want a,b", got, err)
	}
}
