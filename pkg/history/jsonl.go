package history

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Line types of the JSON Lines format. See docs/history-format.md.
const (
	lineMeta  = "meta"
	lineOp    = "op"
	lineWatch = "watch"
	lineFault = "fault"
)

type metaLine struct {
	Type string `json:"type"`
	Meta
}

type opLine struct {
	Type string `json:"type"`
	Operation
}

type watchLine struct {
	Type string `json:"type"`
	Watch
}

type faultLine struct {
	Type string `json:"type"`
	Fault
}

// Write encodes h as JSON Lines: one meta line, then operations, watches and
// faults, one per line.
func Write(w io.Writer, h *History) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	meta := h.Meta
	meta.Format = FormatVersion
	if err := enc.Encode(metaLine{Type: lineMeta, Meta: meta}); err != nil {
		return err
	}
	for _, op := range h.Operations {
		if err := enc.Encode(opLine{Type: lineOp, Operation: op}); err != nil {
			return err
		}
	}
	for _, wt := range h.Watches {
		if err := enc.Encode(watchLine{Type: lineWatch, Watch: wt}); err != nil {
			return err
		}
	}
	for _, f := range h.Faults {
		if err := enc.Encode(faultLine{Type: lineFault, Fault: f}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Save writes h to path atomically: a crash mid-write never leaves a
// truncated history where a good one was.
func Save(path string, h *History) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".history-*.jsonl")
	if err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, h); err != nil {
		tmp.Close()
		return fmt.Errorf("save history %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save history %s: %w", path, err)
	}
	// CreateTemp makes the file private; a history is an artifact to share.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("save history %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

// Load reads a history saved by Save.
func Load(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	defer f.Close()
	h, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// LineError says which line of a history file is bad and why.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// gzipMagic starts every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// Read decodes JSON Lines written by Write. It checks each line's type and
// the fields every checker relies on, and reports the first bad line by
// number, so a malformed or truncated file is a clear error, never a panic or
// a silently shorter history. A gzip-compressed history (as CI artifacts and
// test data are kept) is decompressed on the fly.
func Read(r io.Reader) (*History, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(len(gzipMagic)); bytes.Equal(magic, gzipMagic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip-compressed history: %w", err)
		}
		defer zr.Close()
		h, err := read(bufio.NewReaderSize(zr, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("gzip-compressed history: %w", err)
		}
		return h, nil
	}
	return read(br)
}

func read(br *bufio.Reader) (*History, error) {
	h := &History{}
	n := 0
	sawMeta := false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) == 0 && errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		n++
		truncated := errors.Is(err, io.EOF) && !bytes.HasSuffix(line, []byte("\n"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if perr := decodeLine(h, line, n, &sawMeta); perr != nil {
			if truncated {
				return nil, &LineError{Line: n, Err: fmt.Errorf("file is truncated (last line has no newline): %v", perr)}
			}
			return nil, &LineError{Line: n, Err: perr}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if !sawMeta {
		return nil, errors.New("not an etcd-chaos history: no meta line")
	}
	h.SortOperations()
	return h, nil
}

func decodeLine(h *History, line []byte, n int, sawMeta *bool) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if !*sawMeta && head.Type != lineMeta {
		return fmt.Errorf("first line must be the meta line, found type %q", head.Type)
	}
	switch head.Type {
	case lineMeta:
		if *sawMeta {
			return errors.New("second meta line")
		}
		var m metaLine
		if err := strictUnmarshal(line, &m); err != nil {
			return err
		}
		if m.Format != FormatVersion {
			return fmt.Errorf("history format %d is not supported (this build reads format %d)", m.Format, FormatVersion)
		}
		h.Meta = m.Meta
		*sawMeta = true
	case lineOp:
		var o opLine
		if err := strictUnmarshal(line, &o); err != nil {
			return err
		}
		if err := validateOp(&o.Operation, h.Meta.NoRevisions); err != nil {
			return err
		}
		h.Operations = append(h.Operations, o.Operation)
	case lineWatch:
		var w watchLine
		if err := strictUnmarshal(line, &w); err != nil {
			return err
		}
		h.Watches = append(h.Watches, w.Watch)
	case lineFault:
		var f faultLine
		if err := strictUnmarshal(line, &f); err != nil {
			return err
		}
		h.Faults = append(h.Faults, f.Fault)
	case "":
		return errors.New(`missing "type"`)
	default:
		return fmt.Errorf("unknown line type %q (want meta, op, watch or fault)", head.Type)
	}
	return nil
}

func strictUnmarshal(line []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad record: %w", err)
	}
	return nil
}

func validateOp(op *Operation, noRevisions bool) error {
	switch op.Kind {
	case Get, Put, Delete, Txn, Range, LeaseGrant, LeaseRevoke, LeaseKeepAlive, Compact, Defragment:
	case "":
		return errors.New("operation has no kind")
	default:
		return fmt.Errorf("unknown operation kind %q", op.Kind)
	}
	switch op.Outcome {
	case OK:
		if op.Resp == nil {
			return fmt.Errorf("operation %d: outcome ok without a response", op.ID)
		}
	case Fail, Unknown:
	default:
		return fmt.Errorf("operation %d: unknown outcome %q (want ok, fail or unknown)", op.ID, op.Outcome)
	}
	if op.Return < op.Call {
		return fmt.Errorf("operation %d: returns (%d) before it is called (%d)", op.ID, op.Return, op.Call)
	}
	switch {
	case op.Then == "":
	case op.Kind != Txn:
		return fmt.Errorf("operation %d: then on a %s; only a txn has branches", op.ID, op.Kind)
	case op.Then == Put:
		return fmt.Errorf("operation %d: then %q; a txn that puts leaves then out", op.ID, op.Then)
	case op.Then != Delete:
		return fmt.Errorf("operation %d: then %q; a txn's then branch puts (then left out) or deletes (then \"delete\")", op.ID, op.Then)
	case op.Value != "" || op.Lease != 0:
		return fmt.Errorf("operation %d: a txn whose then branch deletes writes no value or lease", op.ID)
	}
	if op.Kind == Txn && op.Then != Delete && op.Outcome == OK && op.Resp.Deleted != 0 {
		return fmt.Errorf("operation %d: a txn whose then branch puts deletes nothing (resp.deleted %d)", op.ID, op.Resp.Deleted)
	}
	if op.Kind == Txn && op.Outcome == OK && !op.Resp.Succeeded && op.Resp.Deleted != 0 {
		return fmt.Errorf("operation %d: a failed txn ran its else branch, which deletes nothing (resp.deleted %d)", op.ID, op.Resp.Deleted)
	}
	if op.ExpectValue != nil {
		if op.Kind != Txn {
			return fmt.Errorf("operation %d: expect_value on a %s; only a txn compares", op.ID, op.Kind)
		}
		if op.ExpectModRev != 0 {
			return fmt.Errorf("operation %d: a txn compares either expect_value or expect_mod_rev, not both", op.ID)
		}
		if !op.ElseGet && op.Outcome == OK && !op.Resp.Succeeded && len(op.Resp.KVs) > 0 {
			return fmt.Errorf("operation %d: a failed value-compare txn without else_get returns no keys (it has no else branch)", op.ID)
		}
	} else if op.ElseGet {
		return fmt.Errorf("operation %d: else_get on a %s without expect_value; only a value-compare txn takes it (a revision-compare txn always gets its key on failure)", op.ID, op.Kind)
	}
	if noRevisions {
		// Without revisions only absence can be compared by revision.
		if op.Kind == Txn && op.ExpectValue == nil && op.ExpectModRev != 0 {
			return fmt.Errorf("operation %d: a txn comparing mod revision %d in a history with no_revisions; compare expect_value, or expect_mod_rev 0 (key absent)", op.ID, op.ExpectModRev)
		}
		return nil
	}
	// A checker given a revision-less response in a history that claims
	// revisions would call it impossible; the file is wrong, not etcd.
	if op.Outcome == OK && op.Resp.Revision == 0 {
		switch op.Kind {
		case Get, Put, Delete, Txn, Range:
			return fmt.Errorf("operation %d: ok %s without a header revision (resp.rev); a history that carries no revisions must say so with \"no_revisions\": true in its meta line", op.ID, op.Kind)
		}
	}
	return nil
}
