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

// newNodeRunner returns the runner for the cluster whose containerd
// listens on sock, with crictl's configuration written into dir.
func newNodeRunner(dir, sock, crictl string) (*NodeRunner, error) {
	config := filepath.Join(dir, "crictl.yaml")
	cfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 30\n", sock, sock)
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("crictl config: %w", err)
	}
	return &NodeRunner{sock: sock, crictl: crictl, config: config}, nil
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
	// The endpoints repeat the config file's on purpose: crictl prefers
	// the environment's, and an inherited CONTAINER_RUNTIME_ENDPOINT (the
	// host's own containerd) would otherwise send faults to the wrong
	// runtime. exec keeps the last of duplicate variables, so these win.
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
