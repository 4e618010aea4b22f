package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	etcdutlsnap "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Layout of a bolt file, which bbolt keeps in internal packages. A snapshot
// is a bolt database written by Tx.WriteTo: two identical meta pages, the
// data pages up to the high-water mark, then the sha256 of all that, which
// etcd appends when it serves Maintenance.Snapshot.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	// Offsets inside the meta struct that follows the page header.
	metaMagic    = 0
	metaVersion  = 4
	metaPageSize = 8
	metaPgid     = 40
	metaTxid     = 48
	metaChecksum = 56
	metaSize     = 64
)

// ErrBadSnapshot is wrapped by every error that says a snapshot file is
// damaged or is not a snapshot, as opposed to an error reading it.
var ErrBadSnapshot = errors.New("bad snapshot")

type badSnapshotError struct{ msg string }

func (e *badSnapshotError) Error() string        { return e.msg }
func (e *badSnapshotError) Is(target error) bool { return target == ErrBadSnapshot }

func bad(path, format string, args ...any) error {
	return &badSnapshotError{msg: fmt.Sprintf("snapshot %s ", path) + fmt.Sprintf(format, args...)}
}

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
	valid    bool
}

func parseMeta(page []byte) boltMeta {
	if len(page) < pageHeaderSize+metaSize {
		return boltMeta{}
	}
	m := page[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:metaChecksum])
	return boltMeta{
		pageSize: le.Uint32(m[metaPageSize:]),
		pgid:     le.Uint64(m[metaPgid:]),
		txid:     le.Uint64(m[metaTxid:]),
		valid: le.Uint32(m[metaMagic:]) == boltMagic &&
			le.Uint32(m[metaVersion:]) == boltVersion &&
			le.Uint64(m[metaChecksum:]) == h.Sum64(),
	}
}

// Verify checks that path holds a complete, undamaged etcd snapshot saved
// through the snapshot API, and returns what it holds. It checks, in order:
// the file is not empty; it is a bolt database; it is as long as its bolt
// header says plus the 32-byte sha256 trailer etcd appends; the trailer
// matches the content; bolt's own consistency check passes while every key
// is read; and the database holds etcd's key bucket. Every failure wraps
// ErrBadSnapshot and names the problem in one line.
//
// Member, Saved and Duration are left zero: the file does not record them.
func Verify(path string) (Info, error) {
	info := Info{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return info, fmt.Errorf("open snapshot: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return info, fmt.Errorf("stat snapshot: %w", err)
	}
	if !st.Mode().IsRegular() {
		return info, fmt.Errorf("snapshot %s is not a regular file", path)
	}
	size := st.Size()
	info.Size = size
	if size == 0 {
		return info, bad(path, "is empty (0 bytes): the save was interrupted or wrote nothing; take a new snapshot")
	}

	// The first meta page tells whether this is bolt at all and, with the
	// second, how long the database must be.
	head := make([]byte, min(size, 64<<10))
	if _, err := io.ReadFull(f, head); err != nil {
		return info, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	if len(head) < pageHeaderSize+metaSize {
		// Too short for a header: call it truncated only if what is there
		// starts like bolt.
		if n := len(head) - pageHeaderSize; n > 0 && bytes.Equal(head[pageHeaderSize:pageHeaderSize+min(n, 4)], magicBytes()[:min(n, 4)]) {
			return info, bad(path, "is truncated: file is %d bytes, smaller than one bolt page", size)
		}
		return info, bad(path, "is too short to be a snapshot: file is only %d bytes (truncated, or not a snapshot at all)", size)
	}
	if binary.LittleEndian.Uint32(head[pageHeaderSize+metaMagic:]) != boltMagic {
		return info, bad(path, "is not an etcd snapshot (not a bolt database): no bolt magic number in its first page")
	}
	m0 := parseMeta(head)
	var m1 boltMeta
	if m0.pageSize >= 512 && int64(m0.pageSize)+pageHeaderSize+metaSize <= int64(len(head)) {
		m1 = parseMeta(head[m0.pageSize:])
	}
	m := m0
	if !m0.valid || (m1.valid && m1.txid > m0.txid) {
		m = m1
	}
	if !m.valid {
		if size < 2*int64(m0.pageSize) || size < 4096 {
			return info, bad(path, "is truncated: file is %d bytes, too short to hold both bolt meta pages", size)
		}
		return info, bad(path, "is corrupt: both bolt meta pages fail their checksum (flipped or damaged bytes)")
	}
	dbSize := int64(m.pgid) * int64(m.pageSize)
	want := dbSize + sha256.Size
	switch {
	case size < dbSize:
		return info, bad(path, "is truncated: file is %d bytes, but its bolt header says the database is %d bytes plus a %d-byte sha256 (%d bytes missing); take a new snapshot", size, dbSize, sha256.Size, want-size)
	case size == dbSize:
		return info, bad(path, "has no sha256 trailer: it was not saved through the snapshot API (a db file copied from a data dir?); save one with 'etcd-chaos snapshot save' or 'etcdctl snapshot save'")
	case size < want:
		return info, bad(path, "is truncated: file is %d bytes, but its bolt header says the database is %d bytes plus a %d-byte sha256 (the sha256 trailer is cut short)", size, dbSize, sha256.Size)
	case size > want:
		return info, bad(path, "has %d unexpected trailing bytes: file is %d bytes, but its bolt header says the database is %d bytes plus a %d-byte sha256", size-want, size, dbSize, sha256.Size)
	}

	// The sha256 covers every byte bolt will read, so checking it first
	// means the bolt walk below never sees a flipped bit.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, dbSize)); err != nil {
		return info, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return info, fmt.Errorf("read snapshot %s: %w", path, err)
	}
	sum := h.Sum(nil)
	if !bytes.Equal(sum, trailer) {
		return info, bad(path, "is corrupt: sha256 mismatch (flipped or damaged bytes): content hashes to %x, trailer says %x", sum[:8], trailer[:8])
	}
	// Hashing the trailer too gives the whole file's sha256, which is what
	// sha256sum prints, so users can compare copies with their own tools.
	h.Write(trailer)
	info.SHA256 = fmt.Sprintf("%x", h.Sum(nil))

	if err := checkBuckets(path); err != nil {
		return info, err
	}
	st2, err := status(path)
	if err != nil {
		return info, bad(path, "is corrupt: %v", err)
	}
	info.Revision = st2.Revision
	info.TotalKeys = st2.TotalKey
	info.Hash = st2.Hash
	info.StorageVersion = st2.Version
	return info, nil
}

func magicBytes() []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, boltMagic)
	return b
}

// checkBuckets opens the database read-only and makes sure it is etcd's: a
// bolt file from another program has no "key" bucket.
func checkBuckets(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = bad(path, "is corrupt: reading it crashed bolt: %v", r)
		}
	}()
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return bad(path, "is corrupt: bolt cannot open it: %v", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta"} {
			if tx.Bucket([]byte(name)) == nil {
				return bad(path, "is not an etcd snapshot: the bolt database has no %q bucket", name)
			}
		}
		return nil
	})
}

// status runs etcdutl's reader, which walks every bucket with bolt's
// consistency check and derives the revision and key count from the key
// bucket itself. A damaged page can make bolt panic rather than fail, so the
// panic is turned into an error.
func status(path string) (st etcdutlsnap.Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading it crashed bolt: %v", r)
		}
	}()
	return etcdutlsnap.NewV3(zap.NewNop()).Status(path)
}
