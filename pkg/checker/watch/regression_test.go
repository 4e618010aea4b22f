package watch

import (
	"compress/gzip"
	"os"
	"strings"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
	"github.com/etcd-chaos/etcd-chaos/pkg/verdict"
)

// A real history recorded by `etcd-chaos run --etcd-version v3.5.2
// --nemesis partition-leader`: etcd before v3.5.8 could send a requested
// progress notification ahead of events it had not delivered yet
// (etcd-io/etcd#15220, fixed by #15237). The checker must find it, and find
// nothing else.
func TestFindsEtcd3_5_2ProgressNotifyBug(t *testing.T) {
	f, err := os.Open("testdata/etcd-v3.5.2-issue-15220.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.Read(zr)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Check(h) {
		want := verdict.Pass
		if c.Name == "watch/bookmarkable" {
			want = verdict.Fail
		}
		if c.Status != want {
			t.Errorf("%s: %s, want %s: %s", c.Name, c.Status, want, c.Summary)
		}
		if c.Name == "watch/bookmarkable" && (len(c.Violations) == 0 || !strings.Contains(c.Violations[0], "progress notification")) {
			t.Errorf("bookmarkable violation does not name the progress notification: %v", c.Violations)
		}
	}
}
