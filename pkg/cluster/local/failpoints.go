package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/etcd-chaos/etcd-chaos/pkg/cluster"
)

// Failpoints lists the failpoints of the members' binary; nil for a plain
// build (see WithFailpoints).
func (c *Cluster) Failpoints() []string { return c.failpoints }

// gofailURL returns the base URL of the running member's gofail endpoint.
func (c *Cluster) gofailURL(member string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.member(member)
	if err != nil {
		return "", err
	}
	if c.failpoints == nil {
		return "", fmt.Errorf("%w: etcd %s here is a plain build without failpoints (use the failpoint build: --failpoints)", cluster.ErrUnsupported, c.version)
	}
	if m.proc == nil || m.proc.done() {
		return "", fmt.Errorf("%s: %w", member, cluster.ErrMemberDown)
	}
	return "http://" + m.gofail, nil
}

func (c *Cluster) knownFailpoint(name string) error {
	for _, f := range c.failpoints {
		if f == name {
			return nil
		}
	}
	return fmt.Errorf("etcd %s has no failpoint %q (it has: %s)", c.version, name, strings.Join(c.failpoints, ", "))
}

// SetFailpoint arms (or with "off" disarms) a failpoint on one member
// through gofail's HTTP endpoint: PUT /<name> with the term as body.
func (c *Cluster) SetFailpoint(ctx context.Context, member, name, term string) error {
	base, err := c.gofailURL(member)
	if err != nil {
		return err
	}
	if err := c.knownFailpoint(name); err != nil {
		return err
	}
	method, body := http.MethodPut, term
	if term == "off" || term == "" {
		method, body = http.MethodDelete, ""
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/"+name, strings.NewReader(body))
	if err != nil {
		return err
	}
	_, err = c.gofailDo(req, member)
	return err
}

// FailpointHits is gofail's count of the failpoint's executions on member.
func (c *Cluster) FailpointHits(ctx context.Context, member, name string) (int, error) {
	base, err := c.gofailURL(member)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+name+"/count", nil)
	if err != nil {
		return 0, err
	}
	out, err := c.gofailDo(req, member)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("gofail on %s answered %q for the count of %s", member, out, name)
	}
	return n, nil
}

func (c *Cluster) gofailDo(req *http.Request, member string) (string, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// A panicking failpoint takes the endpoint down with the process.
		if _, derr := c.gofailURL(member); derr != nil {
			return "", derr
		}
		return "", fmt.Errorf("gofail endpoint of %s: %w", member, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("gofail on %s: %s %s: %s: %s", member, req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
