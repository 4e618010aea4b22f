package kube

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// AutoCompaction says why the members may compact their store without a
// client asking, from the settings each pod's etcd logged as it started
// (whatever set them: chart values, environment, flags or a config file),
// or why that cannot be told; "" when no member auto-compacts. A kill or
// an upgrade starts a new container, whose log then tells its settings.
func (c *Cluster) AutoCompaction(ctx context.Context) string {
	pods, err := DiscoverPods(ctx, c.cs, c.ns, c.release)
	if err != nil {
		return fmt.Sprintf("cannot tell whether the members auto-compact: %v", err)
	}
	for _, p := range pods {
		why, err := c.podAutoCompaction(ctx, p.Name)
		if err != nil {
			return fmt.Sprintf("cannot tell whether %s auto-compacts: %v", p.Name, err)
		}
		if why != "" {
			return p.Name + " runs with " + why
		}
	}
	return ""
}

func (c *Cluster) podAutoCompaction(ctx context.Context, pod string) (string, error) {
	rc, err := c.cs.CoreV1().Pods(c.ns).GetLogs(pod, &corev1.PodLogOptions{Container: "etcd"}).Stream(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return loggedAutoCompaction(rc)
}

// startLine is the message etcd (3.4 with the zap logger, 3.5 and later)
// logs as it starts, with every setting it runs with.
const startLine = `"msg":"starting an etcd server"`

// loggedAutoCompaction reads an etcd log up to its first start line and
// returns the auto-compaction it started with ("" when off), or an error
// when the log does not show it.
func loggedAutoCompaction(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, startLine) {
			continue
		}
		var start struct {
			Mode      string `json:"auto-compaction-mode"`
			Retention string `json:"auto-compaction-retention"`
		}
		brace := strings.Index(line, "{")
		if brace < 0 {
			return "", errors.New("its start line is not JSON")
		}
		if err := json.Unmarshal([]byte(line[brace:]), &start); err != nil {
			return "", fmt.Errorf("its start line is not JSON: %w", err)
		}
		if cluster.RetentionOff(start.Retention) {
			return "", nil
		}
		return fmt.Sprintf("auto-compaction-mode=%s auto-compaction-retention=%s", start.Mode, start.Retention), nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading its log: %w", err)
	}
	return "", errors.New("its log does not show the settings it started with (no \"starting an etcd server\" line)")
}
