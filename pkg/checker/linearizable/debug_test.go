package linearizable

import (
	"context"
	"testing"

	"github.com/etcd-chaos/etcd-chaos/pkg/histgen"
)

func TestDebugOne(t *testing.T) {
	h := histgen.Generate(histgen.Config{Ops: 1000000, Clients: 16, Seed: 1, UnknownRate: 0.2, Keys: 100})
	debugPasses = func(p int, f *fast) {
		t.Logf("pass %d: %s hint %+v", p, f.undecided, f.hint)
	}
	c := Check(context.Background(), h, Options{mode: modeFastOnly})
	t.Logf("%s", c.Summary)
}
