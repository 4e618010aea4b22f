package kind

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// dockerProbeTimeout bounds DockerAvailable's `docker info`; tests shorten it.
var dockerProbeTimeout = 5 * time.Second

// DockerAvailable returns nil only if a Docker daemon answers the docker CLI
// within a few seconds. It asks the CLI (`docker info`), as kind does,
// rather than dialling a socket: the CLI follows DOCKER_HOST and the current
// `docker context`, which is how Colima, Docker Desktop for Linux and
// Rancher Desktop are reached. The backend choice and the tests that need
// Docker rely on it.
func DockerAvailable(ctx context.Context) error {
	docker, err := exec.LookPath("docker")
	if err != nil {
		return errors.New("docker CLI not found in PATH")
	}
	ctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, docker, "info", "--format", "{{.ServerVersion}}")
	// A CLI plugin or helper the CLI started may keep the output pipe open
	// after the CLI is killed; stop waiting for it shortly after.
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if ctx.Err() != nil {
		return fmt.Errorf("docker info did not answer within %v: is the daemon (or the VM of your docker context) stuck?", dockerProbeTimeout)
	}
	if err != nil {
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return fmt.Errorf("docker info: %v: %s (check `docker context ls` and that the daemon runs)", err, msg)
	}
	if strings.TrimSpace(string(out)) == "" {
		return errors.New("docker info reports no server version: the CLI reaches no daemon")
	}
	return nil
}
