package history

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample() *History {
	rec := NewRecorder(Meta{Scenario: "unit", Backend: "local", Members: 3, Seed: 42, Compactions: CompactionsRecorded})
	rec.AddOperation(Operation{ID: rec.NextID(), ClientID: 1, Kind: Put, Key: "/kv/k001", Value: "c1-1", Call: 10, Return: 20, Outcome: OK, Resp: &Response{Revision: 2}})
	rec.AddOperation(Operation{ID: rec.NextID(), ClientID: 2, Kind: Get, Key: "/kv/k001", Call: 5, Return: 30, Outcome: OK,
		Resp: &Response{Revision: 2, KVs: []KV{{Key: "/kv/k001", Value: "c1-1", ModRevision: 2, CreateRevision: 2, Version: 1}}}})
	rec.AddOperation(Operation{ID: rec.NextID(), ClientID: 3, Kind: Delete, Key: "/kv/k002", Call: 40, Return: 50, Outcome: Unknown, Error: "context deadline exceeded"})
	rec.AddWatch(Watch{ID: rec.NextID(), ClientID: 9, Key: "/kv/", End: "/kv0", StartRevision: 1, Responses: []WatchResponse{
		{Time: 21, Revision: 2, Events: []Event{{Type: "put", Key: "/kv/k001", Value: "c1-1", ModRevision: 2, CreateRevision: 2, Version: 1, IsCreate: true}}},
		{Time: 25, Revision: 2, Progress: true},
	}})
	id := rec.StartFault("kill-leader", "kill member-1", "member-1")
	rec.EndFault(id, nil)
	id = rec.StartFault("failpoint-compaction", "failpoint compactBeforeSetFinishedCompact=panic on member-2", "member-2")
	rec.FaultCompacts(id)
	rec.EndFault(id, nil)
	return rec.History()
}

func TestRoundTrip(t *testing.T) {
	h := sample()
	path := filepath.Join(t.TempDir(), "history.jsonl")
	if err := Save(path, h); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got.Meta.Started, h.Meta.Started = h.Meta.Started.UTC(), h.Meta.Started.UTC()
	got.Meta.Started = got.Meta.Started.Round(0)
	h.Meta.Started = h.Meta.Started.Round(0)
	if !got.Meta.Started.Equal(h.Meta.Started) {
		t.Fatalf("started %v != %v", got.Meta.Started, h.Meta.Started)
	}
	got.Meta.Started = h.Meta.Started
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", got, h)
	}
	if got.Meta.Compactions != CompactionsRecorded || got.Faults[0].Compacts || !got.Faults[1].Compacts {
		t.Fatalf("compactions %q, faults %+v; want recorded, and only the second fault compacting", got.Meta.Compactions, got.Faults)
	}
	if h.Operations[0].Call != 5 {
		t.Fatalf("operations not sorted by call: %+v", h.Operations)
	}
}

func TestReadRejectsBadInput(t *testing.T) {
	var good bytes.Buffer
	if err := Write(&good, sample()); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(good.String(), "\n")
	cases := []struct {
		name, input, want string
	}{
		{"empty", "", "no meta line"},
		{"not json", lines[0] + "{oops\n", "line 2: not valid JSON"},
		{"unknown type", lines[0] + `{"type":"banana"}` + "\n", `line 2: unknown line type "banana"`},
		{"unknown kind", lines[0] + `{"type":"op","id":1,"kind":"frobnicate","call":1,"return":2,"outcome":"ok","resp":{"rev":1}}` + "\n", `line 2: unknown operation kind "frobnicate"`},
		{"unknown outcome", lines[0] + `{"type":"op","id":1,"kind":"get","call":1,"return":2,"outcome":"maybe"}` + "\n", `unknown outcome "maybe"`},
		{"ok without response", lines[0] + `{"type":"op","id":1,"kind":"get","call":1,"return":2,"outcome":"ok"}` + "\n", "without a response"},
		{"return before call", lines[0] + `{"type":"op","id":1,"kind":"get","call":5,"return":2,"outcome":"fail"}` + "\n", "returns (2) before it is called (5)"},
		{"unknown field", lines[0] + `{"type":"op","id":1,"kind":"get","call":1,"return":2,"outcome":"fail","colour":"red"}` + "\n", `unknown field "colour"`},
		{"no meta first", lines[1], "line 1: first line must be the meta line"},
		{"future format", `{"type":"meta","format":99,"seed":1,"started":"2026-01-01T00:00:00Z"}` + "\n", "format 99 is not supported"},
		{"truncated", good.String()[:len(good.String())-20], "truncated"},
		{"ok put without revision", lines[0] + `{"type":"op","id":7,"kind":"put","key":"k","value":"v","call":1,"return":2,"outcome":"ok","resp":{}}` + "\n", `line 2: operation 7: ok put without a header revision`},
		{"ok get without revision", lines[0] + `{"type":"op","id":8,"kind":"get","key":"k","call":1,"return":2,"outcome":"ok","resp":{"kvs":[{"key":"k","value":"v","mod_rev":0}]}}` + "\n", `line 2: operation 8: ok get without a header revision`},
		{"value compare on a put", lines[0] + `{"type":"op","id":1,"kind":"put","key":"k","value":"v","expect_value":"a","call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: expect_value on a put"},
		{"two compares", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","expect_value":"a","expect_mod_rev":3,"call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: a txn compares either"},
		{"failed value txn with keys", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","expect_value":"a","call":1,"return":2,"outcome":"ok","resp":{"rev":3,"kvs":[{"key":"k","value":"b","mod_rev":2}]}}` + "\n", "line 2: operation 1: a failed value-compare txn without else_get returns no keys"},
		{"else_get without a value compare", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","expect_mod_rev":3,"else_get":true,"call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: else_get on a txn without expect_value"},
		{"else_get on a get", lines[0] + `{"type":"op","id":1,"kind":"get","key":"k","else_get":true,"call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: else_get on a get"},
		{"then on a put", lines[0] + `{"type":"op","id":1,"kind":"put","key":"k","value":"v","then":"delete","call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: then on a put"},
		{"then put spelled out", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","then":"put","call":1,"return":2,"outcome":"fail"}` + "\n", `line 2: operation 1: then "put"; a txn that puts leaves then out`},
		{"then get", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","then":"get","call":1,"return":2,"outcome":"fail"}` + "\n", `line 2: operation 1: then "get"`},
		{"delete that writes a value", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","then":"delete","call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: a txn whose then branch deletes writes no value"},
		{"put txn that deleted", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","call":1,"return":2,"outcome":"ok","resp":{"rev":3,"succeeded":true,"deleted":1}}` + "\n", "line 2: operation 1: a txn whose then branch puts deletes nothing"},
		{"failed delete txn that deleted", lines[0] + `{"type":"op","id":1,"kind":"txn","key":"k","expect_mod_rev":2,"then":"delete","call":1,"return":2,"outcome":"ok","resp":{"rev":3,"deleted":1}}` + "\n", "line 2: operation 1: a failed txn ran its else branch, which deletes nothing"},
		{"mod revision compare without revisions", `{"type":"meta","format":1,"seed":1,"started":"2026-01-01T00:00:00Z","no_revisions":true}` + "\n" + `{"type":"op","id":1,"kind":"txn","key":"k","value":"v","expect_mod_rev":3,"call":1,"return":2,"outcome":"fail"}` + "\n", "line 2: operation 1: a txn comparing mod revision 3 in a history with no_revisions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error must be one line: %q", err)
			}
			var le *LineError
			if strings.HasPrefix(tc.want, "line") && !errors.As(err, &le) {
				t.Fatalf("want a LineError, got %T", err)
			}
		})
	}
}

// A history that says it has no revisions loads ok operations without
// them, and a value-compare txn survives the round trip, including a
// compare against the empty value.
func TestNoRevisionsAndValueCompareRoundTrip(t *testing.T) {
	empty, one := "", "1"
	h := &History{
		Meta: Meta{Format: FormatVersion, Scenario: "client log", NoRevisions: true},
		Operations: []Operation{
			{ID: 1, Kind: Put, Key: "k", Value: "1", Call: 1, Return: 2, Outcome: OK, Resp: &Response{}},
			{ID: 2, Kind: Txn, Key: "k", Value: "2", ExpectValue: &one, Call: 3, Return: 4, Outcome: OK, Resp: &Response{Succeeded: true}},
			{ID: 3, Kind: Txn, Key: "k", Value: "3", ExpectValue: &empty, Call: 5, Return: 6, Outcome: OK, Resp: &Response{}},
			{ID: 4, Kind: Get, Key: "k", Call: 7, Return: 8, Outcome: OK, Resp: &Response{KVs: []KV{{Key: "k", Value: "2"}}}},
			{ID: 5, Kind: Txn, Key: "k", Value: "5", ExpectValue: &one, ElseGet: true, Call: 9, Return: 10, Outcome: OK, Resp: &Response{KVs: []KV{{Key: "k", Value: "2"}}}},
		},
	}
	var buf bytes.Buffer
	if err := Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"no_revisions":true`) || !strings.Contains(buf.String(), `"expect_value":""`) {
		t.Fatalf("written history lacks no_revisions or the empty value compare:\n%s", buf.String())
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Meta.NoRevisions {
		t.Fatal("no_revisions lost")
	}
	if ev := got.Operations[2].ExpectValue; ev == nil || *ev != "" {
		t.Fatalf("the compare against the empty value became %v", ev)
	}
	if ev := got.Operations[1].ExpectValue; ev == nil || *ev != "1" {
		t.Fatalf("the compare against 1 became %v", ev)
	}
	// Which failed txns read their key: a value compare only with else_get.
	for i, want := range []bool{false, false, false, false, true} {
		if op := &got.Operations[i]; op.ElseReads() != want {
			t.Errorf("op %d (%s, else_get %v): ElseReads %v, want %v", op.ID, op.Kind, op.ElseGet, op.ElseReads(), want)
		}
	}
	if rev := (&Operation{Kind: Txn, ExpectModRev: 3}); !rev.ElseReads() {
		t.Error("a revision-compare txn's else branch gets its key")
	}
}

// A txn whose then branch deletes survives the round trip, and the
// helpers say what each kind of write does to its key.
func TestThenDeleteRoundTrip(t *testing.T) {
	h := &History{
		Meta: Meta{Format: FormatVersion},
		Operations: []Operation{
			{ID: 1, Kind: Txn, Key: "k", Value: "1", Call: 1, Return: 2, Outcome: OK, Resp: &Response{Revision: 2, Succeeded: true}},
			{ID: 2, Kind: Txn, Key: "k", ExpectModRev: 2, Then: Delete, Call: 3, Return: 4, Outcome: OK, Resp: &Response{Revision: 3, Succeeded: true, Deleted: 1}},
			{ID: 3, Kind: Txn, Key: "k", Then: Delete, Call: 5, Return: 6, Outcome: OK, Resp: &Response{Revision: 3, Succeeded: true}},
			{ID: 4, Kind: Txn, Key: "k", ExpectModRev: 7, Then: Delete, Call: 7, Return: 8, Outcome: OK, Resp: &Response{Revision: 3}},
			{ID: 5, Kind: Delete, Key: "k", Call: 9, Return: 10, Outcome: OK, Resp: &Response{Revision: 3}},
			{ID: 6, Kind: Put, Key: "k", Value: "6", Call: 11, Return: 12, Outcome: Unknown},
		},
	}
	var buf bytes.Buffer
	if err := Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"then":"delete"`) || strings.Contains(buf.String(), `"then":""`) {
		t.Fatalf("written history spells then wrongly:\n%s", buf.String())
	}
	got, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct{ writes, deletes, changed bool }{
		{true, false, true},  // put txn that held
		{false, true, true},  // delete txn that removed the key
		{false, true, false}, // delete txn on an absent key: held, removed nothing
		{false, true, false}, // delete txn whose compare failed
		{false, true, false}, // delete that removed nothing
		{true, false, false}, // unknown put: not known to have changed anything
	} {
		op := &got.Operations[i]
		if op.Then != h.Operations[i].Then || op.WritesValue() != want.writes || op.DeletesKey() != want.deletes || op.Changed() != want.changed {
			t.Errorf("op %d: then %q, writes %v, deletes %v, changed %v; want then %q, %+v", op.ID, op.Then, op.WritesValue(), op.DeletesKey(), op.Changed(), h.Operations[i].Then, want)
		}
	}
}

func TestEndFaultClosesOpenWindows(t *testing.T) {
	rec := NewRecorder(Meta{})
	rec.StartFault("pause-random", "pause member-0", "member-0")
	h := rec.History()
	if h.Faults[0].End == 0 {
		t.Fatal("an open fault must be closed in a history snapshot")
	}
}

// CI artifacts and test data are kept gzip-compressed; Load reads them as
// they are, and a damaged one is one clear error, not JSON noise.
func TestLoadGzip(t *testing.T) {
	h := sample()
	var plain bytes.Buffer
	if err := Write(&plain, h); err != nil {
		t.Fatal(err)
	}
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write(plain.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "history.jsonl.gz")
	if err := os.WriteFile(path, zipped.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Operations) != len(h.Operations) || len(got.Watches) != len(h.Watches) || len(got.Faults) != len(h.Faults) {
		t.Fatalf("gzip round trip lost records: %d/%d/%d", len(got.Operations), len(got.Watches), len(got.Faults))
	}

	cut := zipped.Bytes()[:zipped.Len()-12]
	if _, err := Read(bytes.NewReader(cut)); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("a truncated gzip file must say so, got %v", err)
	}
	bad := append([]byte{0x1f, 0x8b}, []byte("not really gzip")...)
	if _, err := Read(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("a corrupt gzip file must say so, got %v", err)
	}
}
