package model

import (
	"context"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// PorcupineWith returns the model in porcupine's terms, starting from init,
// under rule. Inputs are *history.Operation and outputs *history.Response
// (nil: unknown outcome). The caller may set a Partition.
//
// Porcupine's states are *State: each step copies the state once onto the
// heap and applies the operation to that copy in place, where a State value
// would be copied again to box it.
func PorcupineWith(init State, rule Rule) porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { s := init; return &s },
		StepContext: func(_ context.Context, state, input, output interface{}) (bool, interface{}) {
			n := new(State)
			*n = *state.(*State)
			if Apply(n, input.(*history.Operation), output.(*history.Response), rule) != "" {
				return false, state
			}
			return true, n
		},
		Equal: func(a, b interface{}) bool { return a.(*State).Equal(*b.(*State)) },
		Hash:  func(s interface{}) uint64 { return s.(*State).Hash() },
		DescribeOperation: func(input, output interface{}) string {
			return rule.Describe(input.(*history.Operation), output.(*history.Response))
		},
		DescribeState: func(state interface{}) string { return rule.DescribeState(*state.(*State)) },
	}
}
