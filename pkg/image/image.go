// Package image writes container image tarballs without Docker or a
// registry, and builds the images the kube-host backend runs: a pause image
// for pod sandboxes and an etcd image at any etcd version.
//
// An image here is one layer made of files we name (path, mode, contents)
// plus an image configuration (entrypoint, environment, working directory,
// user). Write emits it in the `docker save` layout, which
// `ctr -n k8s.io images import` accepts:
//
//	manifest.json            [{"Config": "<hex>.json", "RepoTags": [ref], "Layers": ["<hex>/layer.tar"]}]
//	repositories             {"<name>": {"<tag>": "<layer hex>"}}
//	<config hex>.json        the image configuration; its sha256 is the image ID
//	<layer hex>/layer.tar    the uncompressed layer; its sha256 is the diff ID
//
// Output is deterministic: every timestamp is the Unix epoch, owners are
// 0:0 unless a file says otherwise, entries are sorted, so the same inputs give byte-identical tarballs
// and the same image ID.
//
// The builders (BuildPause, BuildEtcd) compile the in-image programs in
// cmd/pause and cmd/etcd-member with CGO_ENABLED=0, take etcd from
// pkg/etcdbin's cache and write the tarballs to <cache>/images/, where
// <cache> is pkg/etcdbin's cache root (~/.cache/etcd-chaos by default).
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// epoch is every timestamp in an image, so that output depends on content
// only.
var epoch = time.Unix(0, 0).UTC()

// File is one entry of the image's only layer.
type File struct {
	// Path is absolute inside the image ("/usr/local/bin/etcd").
	Path string
	// Mode holds the permission bits, plus fs.ModeDir for a directory or
	// fs.ModeSymlink for a symbolic link. Zero means 0644 for a file and
	// 0755 for a directory.
	Mode fs.FileMode
	// Data is the file's contents; Source, if set instead, names a file on
	// this machine to copy (large binaries are streamed, not loaded).
	Data   []byte
	Source string
	// Link is a symbolic link's target.
	Link string
	// UID and GID own the entry (default 0:0).
	UID, GID int
}

// Config is the part of the OCI image configuration a container starts
// from.
type Config struct {
	Entrypoint []string
	Cmd        []string
	// Env entries are "NAME=value".
	Env        []string
	WorkingDir string
	// User is "uid", "uid:gid" or a name from the image's /etc/passwd.
	User   string
	Labels map[string]string
	// StopSignal is what the runtime sends to stop the container
	// (default SIGTERM).
	StopSignal string
}

// Image is a single-layer image to write.
type Image struct {
	// Ref is the name it is imported under, such as
	// "localhost/etcd-chaos/etcd:v3.6.4". It must carry a tag.
	Ref    string
	Files  []File
	Config Config
}

// Written describes a tarball Write produced.
type Written struct {
	Ref string
	// ID is the image ID, "sha256:" + the digest of the configuration, as
	// `ctr images ls` and the CRI report it.
	ID string
	// DiffID is "sha256:" + the digest of the uncompressed layer.
	DiffID string
}

// Write writes img as a docker-save tarball to w. The layer is staged in a
// temporary file in tmpDir ("" for the system default), because its digest
// names it inside the tarball and must be known before it is written.
func (img Image) Write(w io.Writer, tmpDir string) (Written, error) {
	name, tag, err := splitRef(img.Ref)
	if err != nil {
		return Written{}, err
	}
	entries, err := img.entries()
	if err != nil {
		return Written{}, err
	}
	layer, err := os.CreateTemp(tmpDir, "layer-*.tar")
	if err != nil {
		return Written{}, fmt.Errorf("image %s: staging the layer: %w", img.Ref, err)
	}
	defer os.Remove(layer.Name())
	defer layer.Close()
	h := sha256.New()
	if err := writeLayer(io.MultiWriter(layer, h), entries); err != nil {
		return Written{}, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	size, err := layer.Seek(0, io.SeekCurrent)
	if err != nil {
		return Written{}, err
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return Written{}, err
	}
	layerHex := hex.EncodeToString(h.Sum(nil))
	cfg, err := img.configJSON("sha256:" + layerHex)
	if err != nil {
		return Written{}, err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgHex := hex.EncodeToString(cfgSum[:])

	manifest, err := json.Marshal([]dockerManifest{{
		Config:   cfgHex + ".json",
		RepoTags: []string{img.Ref},
		Layers:   []string{layerHex + "/layer.tar"},
	}})
	if err != nil {
		return Written{}, err
	}
	repos, err := json.Marshal(map[string]map[string]string{name: {tag: layerHex}})
	if err != nil {
		return Written{}, err
	}

	tw := tar.NewWriter(w)
	add := func(name string, mode int64, size int64, r io.Reader) error {
		typ := byte(tar.TypeReg)
		if strings.HasSuffix(name, "/") {
			typ = tar.TypeDir
		}
		hdr := &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: epoch, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				return err
			}
		}
		return nil
	}
	// Entries in a fixed order: the layer first, then the small metadata
	// files, so readers that stream (containerd does) see blobs before the
	// manifest that names them.
	steps := []func() error{
		func() error { return add(layerHex+"/", 0o755, 0, nil) },
		func() error { return add(layerHex+"/layer.tar", 0o644, size, layer) },
		func() error { return add(cfgHex+".json", 0o644, int64(len(cfg)), bytes.NewReader(cfg)) },
		func() error { return add("manifest.json", 0o644, int64(len(manifest)), bytes.NewReader(manifest)) },
		func() error { return add("repositories", 0o644, int64(len(repos)), bytes.NewReader(repos)) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return Written{}, fmt.Errorf("image %s: writing tarball: %w", img.Ref, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Written{}, fmt.Errorf("image %s: writing tarball: %w", img.Ref, err)
	}
	return Written{Ref: img.Ref, ID: "sha256:" + cfgHex, DiffID: "sha256:" + layerHex}, nil
}

// WriteFile writes the tarball to path atomically: readers see the old
// file or the whole new one, never a partial one, so concurrent builders of
// the same image do not corrupt each other's result.
func (img Image) WriteFile(path string) (Written, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Written{}, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return Written{}, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	wr, err := img.Write(bw, dir)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Written{}, fmt.Errorf("image %s: writing %s: %w", img.Ref, path, err)
	}
	// CreateTemp made it 0600; the tarball is not secret.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return Written{}, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return Written{}, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	return wr, nil
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// splitRef splits "host/path/name:tag" into "host/path/name" and "tag".
func splitRef(ref string) (string, string, error) {
	i := strings.LastIndexByte(ref, ':')
	if ref == "" || i <= 0 || i == len(ref)-1 || strings.Contains(ref[i:], "/") || strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("image reference %q must be name:tag (such as localhost/etcd-chaos/etcd:v3.6.4)", ref)
	}
	name := ref[:i]
	if name != strings.ToLower(name) || strings.ContainsAny(ref, " \t\n") {
		return "", "", fmt.Errorf("image reference %q: names are lower case without spaces", ref)
	}
	return name, ref[i+1:], nil
}

// imageConfig is the OCI image configuration, with only the fields we set.
type imageConfig struct {
	Architecture string        `json:"architecture"`
	OS           string        `json:"os"`
	Created      time.Time     `json:"created"`
	Config       runtimeConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []history `json:"history"`
}

type runtimeConfig struct {
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
	StopSignal string            `json:"StopSignal,omitempty"`
}

type history struct {
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

func (img Image) configJSON(diffID string) ([]byte, error) {
	c := imageConfig{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      epoch,
		Config: runtimeConfig{
			User:       img.Config.User,
			Env:        img.Config.Env,
			Entrypoint: img.Config.Entrypoint,
			Cmd:        img.Config.Cmd,
			WorkingDir: img.Config.WorkingDir,
			Labels:     img.Config.Labels,
			StopSignal: img.Config.StopSignal,
		},
		History: []history{{Created: epoch, CreatedBy: "etcd-chaos pkg/image"}},
	}
	c.RootFS.Type = "layers"
	c.RootFS.DiffIDs = []string{diffID}
	// encoding/json sorts map keys, so Labels do not break determinism.
	return json.Marshal(c)
}

// entry is a File with a clean relative path, ready for the layer.
type entry struct {
	name string // relative, no leading "/"; directories end in "/"
	File
}

// entries validates the files, adds the parent directories nobody listed
// and sorts them so that a directory precedes its contents.
func (img Image) entries() ([]entry, error) {
	byName := map[string]entry{}
	for _, f := range img.Files {
		if !path.IsAbs(f.Path) {
			return nil, fmt.Errorf("image %s: file path %q must be absolute", img.Ref, f.Path)
		}
		clean := strings.TrimPrefix(path.Clean(f.Path), "/")
		if clean == "" {
			return nil, fmt.Errorf("image %s: the root directory cannot be a file", img.Ref)
		}
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			if f.Link == "" {
				return nil, fmt.Errorf("image %s: symlink %s has no target", img.Ref, f.Path)
			}
		case f.Mode.IsDir():
			clean += "/"
		case f.Data != nil && f.Source != "":
			return nil, fmt.Errorf("image %s: %s has both Data and Source", img.Ref, f.Path)
		}
		if f.Mode&^(fs.ModeDir|fs.ModeSymlink|fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			return nil, fmt.Errorf("image %s: %s: unsupported mode %v", img.Ref, f.Path, f.Mode)
		}
		key := strings.TrimSuffix(clean, "/")
		if _, dup := byName[key]; dup {
			return nil, fmt.Errorf("image %s: %s listed twice", img.Ref, f.Path)
		}
		byName[key] = entry{name: clean, File: f}
	}
	for key := range byName {
		for dir := path.Dir(key); dir != "."; dir = path.Dir(dir) {
			e, ok := byName[dir]
			if !ok {
				byName[dir] = entry{name: dir + "/", File: File{Path: "/" + dir, Mode: fs.ModeDir | 0o755}}
				continue
			}
			if !e.Mode.IsDir() {
				return nil, fmt.Errorf("image %s: %s is a file but %s is inside it", img.Ref, e.Path, "/"+key)
			}
		}
	}
	out := make([]entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	// Sorting by the path without the trailing "/" puts "a" before "a/b".
	sort.Slice(out, func(i, j int) bool {
		return strings.TrimSuffix(out[i].name, "/") < strings.TrimSuffix(out[j].name, "/")
	})
	return out, nil
}

// writeLayer writes the layer tar.
func writeLayer(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			ModTime: epoch,
			Format:  tar.FormatPAX,
			Mode:    int64(e.Mode.Perm()),
			Uid:     e.UID,
			Gid:     e.GID,
		}
		if e.Mode&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if e.Mode&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if e.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		var src io.Reader
		switch {
		case e.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = e.Link
		case e.Mode.IsDir():
			hdr.Typeflag = tar.TypeDir
			if e.Mode.Perm() == 0 {
				hdr.Mode |= 0o755
			}
		default:
			hdr.Typeflag = tar.TypeReg
			if e.Mode.Perm() == 0 {
				hdr.Mode |= 0o644
			}
			if e.Source != "" {
				f, err := os.Open(e.Source)
				if err != nil {
					return fmt.Errorf("%s: %w", e.Path, err)
				}
				st, err := f.Stat()
				if err == nil && !st.Mode().IsRegular() {
					err = fmt.Errorf("source %s is not a regular file", e.Source)
				}
				if err != nil {
					f.Close()
					return fmt.Errorf("%s: %w", e.Path, err)
				}
				hdr.Size = st.Size()
				src = f
			} else {
				hdr.Size = int64(len(e.Data))
				src = bytes.NewReader(e.Data)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if src != nil {
			n, err := io.Copy(tw, src)
			if c, ok := src.(io.Closer); ok {
				c.Close()
			}
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("%s: source changed size while being read", e.Path)
			}
		}
	}
	return tw.Close()
}
