package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The kube backend finds its cluster as kubectl does (client-go's loading
// rules: $KUBECONFIG, then ~/.kube/config), with no kubeconfig named.
func TestKubeBackendFollowsKubectlLoadingRules(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	// Port 1 on loopback refuses at once: reaching it proves the file was
	// loaded.
	kubeconfig := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(cfg, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Open(ctx, Backend{Name: "kube", Members: 3})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("want an error reaching the kubeconfig's server 127.0.0.1:1, got %v", err)
	}
}
