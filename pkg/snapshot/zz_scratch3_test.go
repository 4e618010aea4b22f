package snapshot

import (
	"context"
	"os"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/etcdbin"
)

func TestScratchTool(t *testing.T) {
	p, err := etcdbin.EnsureTool(context.Background(), etcdbin.EtcdutlModule, etcdbin.EtcdutlModule, "v3.7.3", "", os.Stderr)
	t.Log(p, err)
}
