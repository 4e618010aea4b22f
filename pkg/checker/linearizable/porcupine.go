package linearizable

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/etcd-chaos/etcd-chaos/pkg/checker/model"
	"github.com/etcd-chaos/etcd-chaos/pkg/history"
)

// porcupineResult is what the exhaustive search concluded.
type porcupineResult struct {
	result     porcupine.CheckResult
	violations []string
	artifact   string // file name in ArtifactDir, when written
	warn       string
	abandoned  string  // why the search was stopped early; result is then meaningless
	lin        []int32 // on Ok: porcupine's linearization, as indices into the operations
}

// completeLinearization returns the linearization porcupine found for n
// operations (one partition: the model does not partition), or nil when it
// reported none that long.
func completeLinearization(info porcupine.LinearizationInfo, n int) []int32 {
	for _, part := range info.PartialLinearizations() {
		for _, l := range part {
			if len(l) == n {
				out := make([]int32, n)
				for i, id := range l {
					out[i] = int32(id)
				}
				return out
			}
		}
	}
	return nil
}

// config is what the deciders share beyond the operations: the initial
// store and whether unrecorded writes may take revisions.
type config struct {
	init    *InitialState
	foreign bool
}

// rule is the model's rule for writes the history may leave out.
func (c config) rule() model.Rule {
	if c.foreign {
		return model.ForeignWrites
	}
	return model.Strict
}

// initState is the model state the history starts from.
func (c config) initState() model.State {
	if c.init == nil {
		return model.Init()
	}
	return model.InitWith(c.init.Revision, c.init.KVs)
}

// watchdogPeriod is how often runPorcupine samples the heap.
const watchdogPeriod = 200 * time.Millisecond

// toPorcupine turns the checked operations into porcupine operations.
// Unknown writes may take effect at any time after their call, so they
// return "after everything"; their output is nil and the model accepts any.
// Client IDs are made dense because the visualisation draws one row per ID.
func toPorcupine(ops []*history.Operation) []porcupine.Operation {
	dense := map[int]int{}
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		c, ok := dense[op.ClientID]
		if !ok {
			c = len(dense)
			dense[op.ClientID] = c
		}
		ret := op.Return
		var resp *history.Response
		if op.Outcome == history.OK {
			resp = op.Resp
		} else {
			ret = math.MaxInt64
		}
		out[i] = porcupine.Operation{ClientId: c, Input: op, Call: op.Call, Output: resp, Return: ret, Metadata: op.ID}
	}
	return out
}

// runPorcupine checks ops exhaustively. On Illegal it explains the longest
// partial linearization and writes the visualisation when artifactDir is set.
//
// Porcupine v1.3.1 takes no context, so the search runs in a goroutine
// under a watchdog: on ctx cancellation, or when the heap grows past
// memLimit, an abort flag makes every model step fail, which unwinds the
// search in moments (it backtracks to the root and returns), and the result
// is reported as abandoned. The goroutine is waited for, so no search is
// ever left running.
func runPorcupine(ctx context.Context, h *history.History, ops []*history.Operation, cfg config, timeout time.Duration, memLimit uint64, artifactDir string) porcupineResult {
	m := porcupineModel(cfg.initState(), cfg.rule())
	res, info, why := searchBounded(ctx, m, toPorcupine(ops), timeout, memLimit)
	if why != "" {
		return porcupineResult{result: porcupine.Unknown, abandoned: why}
	}
	out := porcupineResult{result: res}
	if res == porcupine.Ok {
		out.lin = completeLinearization(info, len(ops))
	}
	if res != porcupine.Illegal {
		return out
	}
	out.violations = append(out.violations, explainIllegal(ops, info, cfg))
	if artifactDir != "" {
		out.artifact, out.warn = visualize(m, info, h, artifactDir)
	}
	return out
}

// porcupineModel is the model under rule in porcupine's terms, naming each
// operation by its ID in the visualisation.
func porcupineModel(init model.State, rule model.Rule) porcupine.Model {
	m := model.PorcupineWith(init, rule)
	m.DescribeOperationMetadata = func(info interface{}) string {
		if info == nil {
			return ""
		}
		return fmt.Sprintf("op %v", info)
	}
	return m
}

// visualize writes porcupine's visualisation of info into dir, with the
// fault windows shaded. It returns the file's name, or a warning saying
// why it could not be written.
func visualize(m porcupine.Model, info porcupine.LinearizationInfo, h *history.History, dir string) (artifact, warn string) {
	var ann []porcupine.Annotation
	for _, f := range h.Faults {
		ann = append(ann, porcupine.Annotation{
			Tag:             "faults",
			Start:           f.Start,
			End:             f.End,
			Description:     f.Nemesis + " " + f.Action,
			Details:         fmt.Sprintf("%s %s %v", f.Nemesis, f.Action, f.Targets),
			BackgroundColor: "#f8d7da",
		})
	}
	info.AddAnnotations(ann)
	path := filepath.Join(dir, VisualizationFile)
	if err := porcupine.VisualizePath(m, info, path); err != nil {
		return "", fmt.Sprintf("could not write the visualisation to %s: %v", path, err)
	}
	return VisualizationFile, ""
}

// searchBounded runs porcupine under the watchdog described at
// runPorcupine; abandoned says why it stopped the search, if it did.
func searchBounded(ctx context.Context, m porcupine.Model, pops []porcupine.Operation, timeout time.Duration, memLimit uint64) (res porcupine.CheckResult, info porcupine.LinearizationInfo, abandoned string) {
	// The limit bounds what the search adds to the heap, not the heap
	// the caller already holds (a large loaded history, say).
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	startHeap := ms.HeapAlloc
	if memLimit < 1<<20 {
		// Below what any search needs: refuse rather than race the
		// first sample.
		return porcupine.Unknown, info, fmt.Sprintf("the memory limit of %d bytes is below what a search needs", memLimit)
	}
	var abort atomic.Bool
	inner := m.StepContext
	m.StepContext = func(c context.Context, state, input, output interface{}) (bool, interface{}) {
		if abort.Load() {
			return false, state
		}
		return inner(c, state, input, output)
	}
	type answer struct {
		res  porcupine.CheckResult
		info porcupine.LinearizationInfo
	}
	done := make(chan answer, 1)
	go func() {
		res, info := porcupine.CheckOperationsVerbose(m, pops, timeout)
		done <- answer{res, info}
	}()
	var why string
	tick := time.NewTicker(watchdogPeriod)
	defer tick.Stop()
	var a answer
wait:
	for {
		select {
		case a = <-done:
			break wait
		case <-ctx.Done():
			why = ctx.Err().Error()
		case <-tick.C:
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > startHeap && ms.HeapAlloc-startHeap > memLimit {
				why = fmt.Sprintf("the search grew the heap by %d MiB, past the %d MiB memory limit", (ms.HeapAlloc-startHeap)>>20, memLimit>>20)
			}
		}
		if why != "" {
			abort.Store(true)
			<-done
			runtime.GC() // hand the search's memory back before anything else runs
			return porcupine.Unknown, porcupine.LinearizationInfo{}, why
		}
	}
	return a.res, a.info, ""
}

// explainIllegal names the operation porcupine could not place after its
// longest partial linearization, and why the model rejects it there.
func explainIllegal(ops []*history.Operation, info porcupine.LinearizationInfo, cfg config) string {
	parts := info.PartialLinearizations()
	var longest []int
	for _, p := range parts {
		for _, l := range p {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	in := make([]bool, len(ops))
	s := cfg.initState()
	for _, id := range longest {
		in[id] = true
		op := ops[id]
		_, s, _ = model.Explain(s, op, respOf(op), cfg.rule())
	}
	// Of the operations left out, the one that returned first is the one
	// the linearization could not get past: everything called after its
	// return had to wait for it.
	pending := make([]int, 0, len(ops)-len(longest))
	for i := range ops {
		if !in[i] && ops[i].Outcome == history.OK {
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return fmt.Sprintf("no linearization exists: the longest partial linearization covers %d of %d operations", len(longest), len(ops))
	}
	sort.Slice(pending, func(a, b int) bool { return ops[pending[a]].Return < ops[pending[b]].Return })
	op := ops[pending[0]]
	_, _, why := model.Explain(s, op, op.Resp, cfg.rule())
	if why == "" {
		why = "placing it here makes a later operation impossible"
	}
	return fmt.Sprintf("op %d (client %d, %s) cannot be linearized: after the longest partial linearization (%d of %d operations, store at %s) %s",
		op.ID, op.ClientID, model.Describe(op, op.Resp), len(longest), len(ops), shortState(s), why)
}

func respOf(op *history.Operation) *history.Response {
	if op.Outcome == history.OK {
		return op.Resp
	}
	return nil
}

func shortState(s model.State) string {
	str := s.String()
	if len(str) > 300 {
		str = str[:300] + "..."
	}
	return str
}
