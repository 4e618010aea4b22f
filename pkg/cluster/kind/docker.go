package kind

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DockerAvailable returns nil only if a Docker daemon answers: the docker
// CLI (which kind drives) is on PATH and the daemon replies to GET /_ping
// within a few seconds. The Makefile uses it to choose kind or local, and
// tests that need Docker skip when it fails.
func DockerAvailable(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("docker CLI not found in PATH")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	host := os.Getenv("DOCKER_HOST")
	var network, addr string
	switch {
	case host == "":
		network, addr = "unix", "/var/run/docker.sock"
	case strings.HasPrefix(host, "unix://"):
		network, addr = "unix", strings.TrimPrefix(host, "unix://")
	case strings.HasPrefix(host, "tcp://"):
		network, addr = "tcp", strings.TrimPrefix(host, "tcp://")
	default:
		// ssh:// and friends: let the CLI find out.
		out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
		if err != nil {
			return fmt.Errorf("docker info: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return ping(ctx, network, addr)
}

func ping(ctx context.Context, network, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return fmt.Errorf("docker daemon at %s: %v", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := fmt.Fprint(conn, "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"); err != nil {
		return fmt.Errorf("docker daemon at %s: %v", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("docker daemon at %s does not answer /_ping: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("docker daemon at %s answers /_ping with %s", addr, resp.Status)
	}
	return nil
}
