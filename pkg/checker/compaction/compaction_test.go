package compaction

import (
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

func compactOp(id, rev, header int64) history.Operation {
	return history.Operation{ID: id, ClientID: 600, Kind: history.Compact, Revision: rev,
		Call: 10, Return: 20, Outcome: history.OK, Resp: &history.Response{Revision: header}}
}

func ev(key string, rev int64) history.Event {
	return history.Event{Type: "put", Key: key, Value: key, ModRevision: rev}
}

func TestAccepts(t *testing.T) {
	for name, h := range map[string]*history.History{
		"refused below the compact revision": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 5, Responses: []history.WatchResponse{
				{Time: 30, Revision: 15, Canceled: true, CompactRevision: 10},
			}}},
		},
		"a lagging member served old events before it applied the compaction": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 5, Responses: []history.WatchResponse{
				{Time: 30, Revision: 15, Events: []history.Event{ev("/kv/a", 5), ev("/kv/b", 9)}},
				{Time: 31, Revision: 16, Events: []history.Event{ev("/kv/a", 16)}},
			}}},
		},
		"a watch from the compact revision itself is served": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 10, Responses: []history.WatchResponse{
				{Time: 30, Revision: 20, Events: []history.Event{ev("/kv/a", 10), ev("/kv/b", 12)}},
			}}},
		},
		"refused after events, with the next revision compacted": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 3, Responses: []history.WatchResponse{
				{Time: 30, Revision: 8, Events: []history.Event{ev("/kv/a", 4)}},
				{Time: 31, Revision: 15, Canceled: true, CompactRevision: 10},
			}}},
		},
	} {
		if ck := Check(h); ck.Status != verdict.Pass {
			t.Errorf("%s: got %s, want pass: %v", name, ck.Status, ck.Violations)
		}
	}
}

func TestRejects(t *testing.T) {
	for name, h := range map[string]*history.History{
		"refused although the start revision was kept": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 10, Responses: []history.WatchResponse{
				{Time: 30, Revision: 15, Canceled: true, CompactRevision: 10},
			}}},
		},
		"refused although the stream was past the compact revision": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 3, Responses: []history.WatchResponse{
				{Time: 30, Revision: 12, Events: []history.Event{ev("/kv/a", 12)}},
				{Time: 31, Revision: 15, Canceled: true, CompactRevision: 10},
			}}},
		},
		"events below a compaction the member had applied": {
			Operations: []history.Operation{compactOp(1, 10, 15)},
			Watches: []history.Watch{{ID: 2, ClientID: 100, Key: "/kv/", StartRevision: 5, Responses: []history.WatchResponse{
				{Time: 30, Revision: 16, Events: []history.Event{ev("/kv/a", 5), ev("/kv/b", 16)}},
			}}},
		},
	} {
		if ck := Check(h); ck.Status != verdict.Fail {
			t.Errorf("%s: got %s, want fail", name, ck.Status)
		} else {
			t.Logf("%s: %v", name, ck.Violations)
		}
	}
}

func TestSkippedWithoutCompaction(t *testing.T) {
	if ck := Check(&history.History{}); ck.Status != verdict.Skipped {
		t.Errorf("got %s, want skipped", ck.Status)
	}
}
