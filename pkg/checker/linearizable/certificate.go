package linearizable

import (
	"fmt"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// A certificate is what a Pass rests on: a linearization of the checked
// operations, as indices into them in the order they take effect. Whatever
// decider found it, verifyCertificate replays it through the model before
// the verdict is Pass, so a bug in a decider's shortcuts can cost a pass
// (Unknown) but can never produce a false one.

// verifyCertificate checks that lin is a linearization of ops starting
// from cfg's initial store: every operation with outcome OK appears exactly
// once and an unknown one at most once; none is placed before an
// operation that returned before it was called (an unknown operation never
// returned); and replayed in this order through the model's step function,
// every response is one the model gives. It runs in time linear in ops.
//
// keys, when known, are the keys the operations name (the replay's store is
// indexed for them up front); nil: they are collected here.
func verifyCertificate(ops []*history.Operation, lin []int32, cfg config, keys []string) error {
	if keys == nil {
		seenKey := map[string]bool{}
		for _, op := range ops {
			if op.Key != "" && !seenKey[op.Key] {
				seenKey[op.Key] = true
				keys = append(keys, op.Key)
			}
		}
	}
	st := model.NewReplay(cfg.initState(), keys)
	rule := cfg.rule()
	placed := make([]bool, len(ops))
	latest := int32(-1) // the placed operation called last
	var latestCall int64
	for pos, i := range lin {
		if i < 0 || int(i) >= len(ops) {
			return fmt.Errorf("position %d names operation %d of %d", pos, i, len(ops))
		}
		if placed[i] {
			return fmt.Errorf("%s is placed twice", descOp(ops[i]))
		}
		placed[i] = true
		op := ops[i]
		if latest >= 0 && op.Return < latestCall && op.Outcome == history.OK {
			return fmt.Errorf("%s is placed after %s, which was called after it returned", descOp(op), descOp(ops[latest]))
		}
		if latest < 0 || op.Call > latestCall {
			latest, latestCall = i, op.Call
		}
		if why := model.Apply(st, op, respOf(op), rule); why != "" {
			return fmt.Errorf("at position %d of %d, %s: %s", pos, len(lin), descOp(op), why)
		}
	}
	for i, op := range ops {
		if !placed[i] && op.Outcome == history.OK {
			return fmt.Errorf("%s, which succeeded, is missing", descOp(op))
		}
	}
	return nil
}

func descOp(op *history.Operation) string {
	return fmt.Sprintf("op %d (client %d, %s)", op.ID, op.ClientID, model.Describe(op, respOf(op)))
}
