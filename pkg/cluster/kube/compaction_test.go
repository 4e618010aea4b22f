package kube

import (
	"strings"
	"testing"
)

// Whether a pod's etcd auto-compacts is read from the settings it logged
// as it started; a log that does not show them is an error, never "off".
func TestLoggedAutoCompaction(t *testing.T) {
	start := func(mode, retention string) string {
		return `{"level":"info","ts":"2026-12-02T10:11:53.691683Z","caller":"embed/etcd.go:323","msg":"starting an etcd server","etcd-version":"3.6.4","auto-compaction-mode":"` +
			mode + `","auto-compaction-retention":"` + retention + `","auto-compaction-interval":"0s"}`
	}
	for _, tc := range []struct {
		name, log, want, err string
	}{
		{"default", "etcd 13:00:00.00 INFO  ==> Starting etcd in background\n" + start("periodic", "0s") + "\n", "", ""},
		{"retention zero", start("revision", "0"), "", ""},
		{"periodic", start("periodic", "1h0m0s"), "auto-compaction-mode=periodic auto-compaction-retention=1h0m0s", ""},
		{"revision", start("revision", "1000"), "auto-compaction-mode=revision auto-compaction-retention=1000", ""},
		{"no start line", `{"level":"info","msg":"serving client traffic"}`, "", "does not show the settings"},
		{"start line not JSON", "starting: " + `"msg":"starting an etcd server" {`, "", "not JSON"},
		{"start line without an object", `"msg":"starting an etcd server"`, "", "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loggedAutoCompaction(strings.NewReader(tc.log))
			if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("loggedAutoCompaction = %q, %v; want %q, error %q", got, err, tc.want, tc.err)
			}
		})
	}
}
