package kubehost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// NodeRunner runs fault commands on the one node, which is this host:
// directly, as root, with crictl pointed at the cluster's containerd.
type NodeRunner struct {
	sock   string
	crictl string
	// config is crictl's configuration file, naming the cluster's
	// containerd. Without one crictl prints a warning, to the same output
	// fault commands parse, on every call.
	config string
}

// writeCrictlConfig writes the crictl configuration for the cluster's
// containerd at path.
func writeCrictlConfig(path, sock string) error {
	cfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", sock, sock)
	return os.WriteFile(path, []byte(cfg), 0o644)
}

// Run runs args on node (which must be NodeName) and returns stdout and
// stderr combined. "crictl" means the cluster's crictl.
func (r *NodeRunner) Run(ctx context.Context, node string, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("node command is empty")
	}
	if node != NodeName {
		return nil, fmt.Errorf("node %q is not the kube-host node %q", node, NodeName)
	}
	name := args[0]
	if name == "crictl" {
		name = r.crictl
	}
	cmd := exec.CommandContext(ctx, name, args[1:]...)
	cmd.Env = append(os.Environ(),
		"CRI_CONFIG_FILE="+r.config,
		"CONTAINER_RUNTIME_ENDPOINT=unix://"+r.sock,
		"IMAGE_SERVICE_ENDPOINT=unix://"+r.sock,
		"PATH="+filepath.Dir(r.crictl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.Bytes(), err
}
