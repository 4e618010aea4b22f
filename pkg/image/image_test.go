package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarball is a docker-save tarball read back into memory.
type tarball struct {
	names []string // in archive order
	files map[string][]byte
	hdrs  map[string]*tar.Header
}

func readTar(t *testing.T, r io.Reader) tarball {
	t.Helper()
	tb := tarball{files: map[string][]byte{}, hdrs: map[string]*tar.Header{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return tb
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		tb.names = append(tb.names, h.Name)
		tb.files[h.Name] = b
		tb.hdrs[h.Name] = h
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func testImage(t *testing.T) Image {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("#!binary\x00\x01"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Image{
		Ref: "localhost/etcd-chaos/test:v1.2.3",
		Files: []File{
			{Path: "/usr/local/bin/tool", Mode: 0o755, Source: src},
			{Path: "/etc/motd", Data: []byte("hello\n"), UID: 1001, GID: 1002},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/bin/tool", Mode: fs.ModeSymlink, Link: "/usr/local/bin/tool"},
		},
		Config: Config{
			Entrypoint: []string{"/usr/local/bin/tool"},
			Cmd:        []string{"--flag"},
			Env:        []string{"PATH=/usr/local/bin", "A=b"},
			WorkingDir: "/tmp",
			User:       "1001:1001",
			Labels:     map[string]string{"z": "1", "a": "2"},
		},
	}
}

func TestWriteDockerSaveLayout(t *testing.T) {
	img := testImage(t)
	var buf bytes.Buffer
	w, err := img.Write(&buf, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tb := readTar(t, &buf)

	var mf []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(tb.files["manifest.json"], &mf); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(mf) != 1 || len(mf[0].Layers) != 1 || len(mf[0].RepoTags) != 1 || mf[0].RepoTags[0] != img.Ref {
		t.Fatalf("manifest.json = %+v, want one image tagged %s with one layer", mf, img.Ref)
	}
	cfgBytes, ok := tb.files[mf[0].Config]
	if !ok {
		t.Fatalf("config %s named by manifest.json is not in the tarball (entries %v)", mf[0].Config, tb.names)
	}
	if got := sha(cfgBytes) + ".json"; got != mf[0].Config {
		t.Errorf("config is stored as %s but its digest is %s", mf[0].Config, got)
	}
	if w.ID != "sha256:"+sha(cfgBytes) {
		t.Errorf("Written.ID = %s, want sha256 of the config %s", w.ID, sha(cfgBytes))
	}
	layer, ok := tb.files[mf[0].Layers[0]]
	if !ok {
		t.Fatalf("layer %s is not in the tarball", mf[0].Layers[0])
	}
	if got := sha(layer) + "/layer.tar"; got != mf[0].Layers[0] {
		t.Errorf("layer is stored as %s but its digest is %s", mf[0].Layers[0], got)
	}

	var cfg struct {
		Architecture, OS string
		Config           struct {
			User, WorkingDir string
			Env, Entrypoint  []string
			Cmd              []string
			Labels           map[string]string
		}
		RootFS struct {
			Type    string
			DiffIDs []string `json:"diff_ids"`
		}
	}
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/<arch>", cfg.OS, cfg.Architecture)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != "sha256:"+sha(layer) || w.DiffID != cfg.RootFS.DiffIDs[0] {
		t.Errorf("rootfs = %+v (Written.DiffID %s), want the layer's sha256 %s", cfg.RootFS, w.DiffID, sha(layer))
	}
	c := cfg.Config
	if c.User != "1001:1001" || c.WorkingDir != "/tmp" || strings.Join(c.Entrypoint, " ") != "/usr/local/bin/tool" ||
		strings.Join(c.Cmd, " ") != "--flag" || strings.Join(c.Env, ",") != "PATH=/usr/local/bin,A=b" || c.Labels["a"] != "2" {
		t.Errorf("runtime config = %+v", c)
	}

	var repos map[string]map[string]string
	if err := json.Unmarshal(tb.files["repositories"], &repos); err != nil {
		t.Fatalf("repositories: %v", err)
	}
	if repos["localhost/etcd-chaos/test"]["v1.2.3"] != sha(layer) {
		t.Errorf("repositories = %v", repos)
	}

	// The layer: parents first, sorted, owned by root, epoch timestamps.
	lt := readTar(t, bytes.NewReader(layer))
	want := []string{"bin/", "bin/tool", "etc/", "etc/motd", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"}
	if strings.Join(lt.names, " ") != strings.Join(want, " ") {
		t.Fatalf("layer entries = %v, want %v", lt.names, want)
	}
	for name, h := range lt.hdrs {
		uid, gid := 0, 0
		if name == "etc/motd" {
			uid, gid = 1001, 1002
		}
		if h.Uid != uid || h.Gid != gid || h.ModTime.Unix() != 0 || h.Uname != "" {
			t.Errorf("%s: owner %d:%d %q, mtime %v; want %d:%d, epoch", name, h.Uid, h.Gid, h.Uname, h.ModTime, uid, gid)
		}
	}
	checks := []struct {
		name string
		typ  byte
		mode int64
		data string
		link string
	}{
		{"usr/local/bin/tool", tar.TypeReg, 0o755, "#!binary\x00\x01", ""},
		{"etc/motd", tar.TypeReg, 0o644, "hello\n", ""},
		{"tmp/", tar.TypeDir, 0o1777, "", ""},
		{"usr/", tar.TypeDir, 0o755, "", ""},
		{"bin/tool", tar.TypeSymlink, 0, "", "/usr/local/bin/tool"},
	}
	for _, c := range checks {
		h := lt.hdrs[c.name]
		if h.Typeflag != c.typ || h.Mode != c.mode || string(lt.files[c.name]) != c.data || h.Linkname != c.link {
			t.Errorf("%s: type %c mode %o data %q link %q; want type %c mode %o data %q link %q",
				c.name, h.Typeflag, h.Mode, lt.files[c.name], h.Linkname, c.typ, c.mode, c.data, c.link)
		}
	}
}

func TestWriteIsDeterministic(t *testing.T) {
	img := testImage(t)
	var a, b bytes.Buffer
	wa, err := img.Write(&a, "")
	if err != nil {
		t.Fatal(err)
	}
	// Listing order must not matter either.
	rev := img
	rev.Files = append([]File(nil), img.Files...)
	for i, j := 0, len(rev.Files)-1; i < j; i, j = i+1, j-1 {
		rev.Files[i], rev.Files[j] = rev.Files[j], rev.Files[i]
	}
	wb, err := rev.Write(&b, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) || wa != wb {
		t.Fatalf("two writes of the same image differ: %v vs %v", wa, wb)
	}

	changed := img
	changed.Files = append([]File(nil), img.Files...)
	changed.Files[1].Data = []byte("bye\n")
	var c bytes.Buffer
	wc, err := changed.Write(&c, "")
	if err != nil {
		t.Fatal(err)
	}
	if wc.ID == wa.ID || wc.DiffID == wa.DiffID {
		t.Fatalf("changing a file kept the image ID %s", wc.ID)
	}
}

func TestWriteFileIsAtomicAndReadable(t *testing.T) {
	img := testImage(t)
	path := filepath.Join(t.TempDir(), "sub", "img.tar")
	w, err := img.WriteFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tb := readTar(t, f)
	if _, ok := tb.files[strings.TrimPrefix(w.ID, "sha256:")+".json"]; !ok {
		t.Fatalf("%s lacks the config of image %s", path, w.ID)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*"))
	left2, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "layer-*"))
	if len(left)+len(left2) > 0 {
		t.Fatalf("temporary files left behind: %v %v", left, left2)
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	cases := map[string]Image{
		"no tag":           {Ref: "localhost/etcd-chaos/etcd"},
		"digest":           {Ref: "localhost/x@sha256:00"},
		"upper case":       {Ref: "localhost/Etcd:v1"},
		"port without tag": {Ref: "localhost:5000/etcd"},
		"relative path":    {Ref: "x:1", Files: []File{{Path: "bin/etcd"}}},
		"duplicate":        {Ref: "x:1", Files: []File{{Path: "/a"}, {Path: "/a/"}}},
		"file as parent":   {Ref: "x:1", Files: []File{{Path: "/a", Data: []byte("x")}, {Path: "/a/b"}}},
		"symlink target":   {Ref: "x:1", Files: []File{{Path: "/a", Mode: fs.ModeSymlink}}},
		"data and source":  {Ref: "x:1", Files: []File{{Path: "/a", Data: []byte("x"), Source: "/etc/hostname"}}},
		"missing source":   {Ref: "x:1", Files: []File{{Path: "/a", Source: "/nonexistent/file"}}},
		"device":           {Ref: "x:1", Files: []File{{Path: "/dev/null", Mode: fs.ModeDevice}}},
	}
	for name, img := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := img.Write(io.Discard, t.TempDir()); err == nil {
				t.Fatalf("Write accepted %+v", img)
			}
		})
	}
}

func TestTarNameAndRefs(t *testing.T) {
	if got := EtcdRef("3.6.4"); got != "localhost/etcd-chaos/etcd:v3.6.4" {
		t.Errorf("EtcdRef(3.6.4) = %s", got)
	}
	if got := tarName(EtcdRef("v3.5.35")); got != "etcd_v3.5.35.tar" {
		t.Errorf("tarName = %s", got)
	}
	if got := tarName(PauseRef); got != "pause_1.0.tar" {
		t.Errorf("tarName(PauseRef) = %s", got)
	}
}
