package cluster

import (
	"strconv"
	"strings"
	"time"
)

// RetentionOff reports whether an etcd auto-compaction retention turns
// auto-compaction off: empty (etcd's default, 0) or zero, as hours or
// revisions ("0") or as a duration ("0s"). Anything else, even a value
// etcd would refuse, counts as on, so that a backend that reads it never
// claims a compaction-free store it cannot vouch for.
func RetentionOff(v string) bool {
	v = strings.TrimSpace(v)
	if v == "" {
		return true
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return n == 0
	}
	d, err := time.ParseDuration(v)
	return err == nil && d == 0
}
