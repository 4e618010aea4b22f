package historytest

import (
	"bytes"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// What Add fills in is what history.Read demands of an operation, so a
// built history survives a save and load unchanged.
func TestBuiltHistoryLoads(t *testing.T) {
	var b Builder
	b.Add(history.Operation{Kind: history.Get, Key: "k", Call: 30, Return: 40, Resp: &history.Response{Revision: 2}})
	put := b.Add(Put("k", "v", 0, 2))
	put.Call, put.Return = 10, 15
	b.Add(history.Operation{Kind: history.Put, Key: "k", Value: "u", Call: 20, Return: 50, Outcome: history.Unknown})
	w := b.AddWatch(history.Watch{Key: "k"})
	if w.ID != 4 {
		t.Errorf("the watch got ID %d, want 4: operations and watches share one sequence", w.ID)
	}
	h := b.History()
	if ids := [3]int64{h.Operations[0].ID, h.Operations[1].ID, h.Operations[2].ID}; ids != [3]int64{2, 3, 1} {
		t.Errorf("operations in call order have IDs %v, want [2 3 1]", ids)
	}
	for _, op := range h.Operations {
		if op.ClientID != 1 || op.Outcome == "" || op.Outcome == history.OK && op.Resp == nil {
			t.Errorf("op %d not filled in: %+v", op.ID, op)
		}
	}
	if b.H.Operations[0].ID != 1 {
		t.Error("History must not reorder the builder's own operations")
	}
	var buf bytes.Buffer
	if err := history.Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	if _, err := history.Read(&buf); err != nil {
		t.Fatalf("a built history does not load: %v", err)
	}
}
