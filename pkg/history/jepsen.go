package history

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// JepsenKey is the key a Jepsen register log's operations act on: the log
// names no key, because the register is the whole store.
const JepsenKey = "register"

// JepsenFormat states what ReadJepsen accepts, for --help and errors.
const JepsenFormat = `a Jepsen register log: one operation event per line,
  INFO jepsen.util - PROCESS TYPE F VALUE
where PROCESS is a number, TYPE is :invoke, :ok, :fail or :info, and F VALUE is
  :read nil         (invoke)   :read nil|N   (ok: absent, or the integer N)
  :write N          write the integer N
  :cas [A B]        if the register holds A then write B
Every :invoke is followed on its process by one :ok, :fail or :info with the
same F (and the same VALUE for :write and :cas). :info is an unknown outcome:
the operation may take effect at any later time. :fail means it did not take
effect, except ":fail :cas [A B]", which is etcd's answer that the register
did not hold A (a definite observation, as porcupine reads it). A :fail or
:info may give a keyword (:timed-out) instead of VALUE. An operation with no
completion by the end of the log is unknown. Time order is line order. Blank
lines are ignored; any other line is an error naming its number.`

// jepsenTick is the time one line stands for: a Jepsen log has no clock,
// only order, and a millisecond per line keeps durations in the report
// readable without claiming to be real.
const jepsenTick = int64(time.Millisecond)

// LoadJepsen reads a Jepsen register log (see JepsenFormat).
func LoadJepsen(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load Jepsen log: %w", err)
	}
	defer f.Close()
	h, err := ReadJepsen(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h.Meta.Notes = append([]string{"converted from the Jepsen register log " + path}, h.Meta.Notes...)
	return h, nil
}

// jepsenEvent is one parsed line.
type jepsenEvent struct {
	process int
	typ     string // invoke, ok, fail, info
	f       string // read, write, cas
	value   string // as written
	// what VALUE holds, when it is not a keyword
	isNil    bool
	n        int64
	from, to int64
	keyword  string // ":timed-out" and the like
}

// ReadJepsen converts a Jepsen register log (see JepsenFormat) into a
// history without revisions: one key, JepsenKey, read, written and
// compared-and-set by value. Operation IDs are the line numbers of their
// :invoke lines, and times are line numbers (a millisecond per line).
func ReadJepsen(r io.Reader) (*History, error) {
	h := &History{Meta: Meta{
		Format:      FormatVersion,
		Scenario:    "jepsen register",
		Backend:     "jepsen",
		NoRevisions: true,
		Notes: []string{
			"a Jepsen log has no clock: times are line numbers (1 ms per line), and operation ids are the line numbers of the :invoke lines",
		},
	}}
	pending := map[int]int{} // process -> index in h.Operations
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		ev, err := parseJepsenLine(line)
		if err != nil {
			return nil, &LineError{Line: n, Err: err}
		}
		at := int64(n) * jepsenTick
		if ev.typ == "invoke" {
			if i, busy := pending[ev.process]; busy {
				return nil, &LineError{Line: n, Err: fmt.Errorf("process %d invokes again while its %s from line %d has not completed", ev.process, jepsenF(h.Operations[i].Kind), h.Operations[i].ID)}
			}
			op, err := jepsenInvoke(ev, int64(n), at)
			if err != nil {
				return nil, &LineError{Line: n, Err: err}
			}
			pending[ev.process] = len(h.Operations)
			h.Operations = append(h.Operations, op)
			continue
		}
		i, ok := pending[ev.process]
		if !ok {
			return nil, &LineError{Line: n, Err: fmt.Errorf(":%s for process %d, which has no operation in flight", ev.typ, ev.process)}
		}
		delete(pending, ev.process)
		if err := jepsenComplete(&h.Operations[i], ev, at); err != nil {
			return nil, &LineError{Line: n, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &LineError{Line: n + 1, Err: errors.New("line longer than 1 MiB")}
		}
		return nil, err
	}
	if len(h.Operations) == 0 {
		return nil, errors.New("no operations: not a Jepsen register log (expected lines like 'INFO jepsen.util - 0 :invoke :read nil')")
	}
	// Never dropped: an operation the log does not complete may have
	// taken effect.
	end := int64(n+1) * jepsenTick
	for _, i := range pending {
		op := &h.Operations[i]
		op.Outcome, op.Return, op.Error = Unknown, end, "no completion in the log"
	}
	h.SortOperations()
	return h, nil
}

func jepsenF(k Kind) string {
	switch k {
	case Get:
		return ":read"
	case Put:
		return ":write"
	}
	return ":cas"
}

// parseJepsenLine splits "INFO jepsen.util - PROCESS TYPE F VALUE".
func parseJepsenLine(line string) (jepsenEvent, error) {
	var ev jepsenEvent
	fields := strings.Fields(line)
	if len(fields) < 3 || fields[0] != "INFO" || fields[1] != "jepsen.util" || fields[2] != "-" {
		return ev, fmt.Errorf("not a Jepsen operation line (want 'INFO jepsen.util - PROCESS TYPE F VALUE'): %q", clipLine(line))
	}
	if len(fields) > 7 && strings.HasPrefix(fields[6], "[") {
		// "[A B]" is one VALUE.
		fields = append(fields[:6:6], strings.Join(fields[6:], " "))
	}
	if len(fields) != 7 {
		return ev, fmt.Errorf("want 4 fields after 'INFO jepsen.util -' (PROCESS TYPE F VALUE), got %d: %q", len(fields)-3, clipLine(line))
	}
	p, err := strconv.Atoi(fields[3])
	if err != nil || p < 0 {
		return ev, fmt.Errorf("process %q is not a number (nemesis and other processes are not supported)", fields[3])
	}
	ev.process = p
	switch fields[4] {
	case ":invoke", ":ok", ":fail", ":info":
		ev.typ = fields[4][1:]
	default:
		return ev, fmt.Errorf("type %q is not :invoke, :ok, :fail or :info", fields[4])
	}
	switch fields[5] {
	case ":read", ":write", ":cas":
		ev.f = fields[5][1:]
	default:
		return ev, fmt.Errorf("operation %q is not supported (a register log has :read, :write and :cas)", fields[5])
	}
	v := fields[6]
	ev.value = v
	switch {
	case v == "nil":
		ev.isNil = true
	case strings.HasPrefix(v, ":") && len(v) > 1:
		ev.keyword = v
	case strings.HasPrefix(v, "["):
		parts := strings.Fields(strings.Trim(v, "[]"))
		if len(parts) != 2 || !strings.HasSuffix(v, "]") {
			return ev, fmt.Errorf("value %q is not [A B]", v)
		}
		if ev.from, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
			return ev, fmt.Errorf("value %q: %q is not an integer", v, parts[0])
		}
		if ev.to, err = strconv.ParseInt(parts[1], 10, 64); err != nil {
			return ev, fmt.Errorf("value %q: %q is not an integer", v, parts[1])
		}
	default:
		if ev.n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return ev, fmt.Errorf("value %q is not nil, an integer, [A B] or a :keyword", v)
		}
	}
	return ev, nil
}

func clipLine(s string) string {
	if len(s) > 80 {
		return s[:79] + "…"
	}
	return s
}

// isPair reports whether VALUE was "[A B]".
func (ev jepsenEvent) isPair() bool { return strings.HasPrefix(ev.value, "[") }

// isInt reports whether VALUE was an integer.
func (ev jepsenEvent) isInt() bool { return !ev.isNil && ev.keyword == "" && !ev.isPair() }

// jepsenInvoke makes the operation an :invoke line starts.
func jepsenInvoke(ev jepsenEvent, line, at int64) (Operation, error) {
	op := Operation{ID: line, ClientID: ev.process, Key: JepsenKey, Call: at}
	switch ev.f {
	case "read":
		if !ev.isNil {
			return op, fmt.Errorf(":invoke :read takes nil, got %q", ev.value)
		}
		op.Kind = Get
	case "write":
		if !ev.isInt() {
			return op, fmt.Errorf(":invoke :write takes an integer, got %q", ev.value)
		}
		op.Kind, op.Value = Put, strconv.FormatInt(ev.n, 10)
	case "cas":
		if !ev.isPair() {
			return op, fmt.Errorf(":invoke :cas takes [A B], got %q", ev.value)
		}
		from := strconv.FormatInt(ev.from, 10)
		op.Kind, op.Value, op.ExpectValue = Txn, strconv.FormatInt(ev.to, 10), &from
	}
	return op, nil
}

// jepsenComplete applies an :ok, :fail or :info line to the operation its
// process invoked.
func jepsenComplete(op *Operation, ev jepsenEvent, at int64) error {
	if jepsenF(op.Kind) != ":"+ev.f {
		return fmt.Errorf(":%s :%s completes the %s invoked on line %d", ev.typ, ev.f, jepsenF(op.Kind), op.ID)
	}
	op.Return = at
	if ev.keyword != "" {
		if ev.typ == "ok" {
			return fmt.Errorf(":ok :%s needs a value, got %q", ev.f, ev.value)
		}
		op.Error = ev.keyword
	} else if ev.typ != "ok" || op.Kind != Get {
		// A completion repeats the invoked argument; anything else is a
		// log this reader does not understand.
		if err := sameArgument(op, ev); err != nil {
			return err
		}
	}
	switch ev.typ {
	case "info":
		op.Outcome = Unknown
		if op.Error == "" {
			op.Error = ":info"
		}
		return nil
	case "fail":
		if op.Kind == Txn && ev.keyword == "" {
			// etcd answered: the register did not hold A.
			op.Outcome, op.Resp = OK, &Response{Succeeded: false}
			return nil
		}
		op.Outcome = Fail
		if op.Error == "" {
			op.Error = ":fail"
		}
		return nil
	}
	op.Outcome = OK
	op.Resp = &Response{}
	switch op.Kind {
	case Get:
		if ev.isNil {
			return nil
		}
		if !ev.isInt() {
			return fmt.Errorf(":ok :read returns nil or an integer, got %q", ev.value)
		}
		op.Resp.KVs = []KV{{Key: JepsenKey, Value: strconv.FormatInt(ev.n, 10)}}
	case Txn:
		op.Resp.Succeeded = true
	}
	return nil
}

func sameArgument(op *Operation, ev jepsenEvent) error {
	switch op.Kind {
	case Get:
		if !ev.isNil {
			return fmt.Errorf(":%s :read repeats nil, got %q", ev.typ, ev.value)
		}
	case Put:
		if !ev.isInt() || strconv.FormatInt(ev.n, 10) != op.Value {
			return fmt.Errorf(":%s :write %s does not repeat the value %s invoked on line %d", ev.typ, ev.value, op.Value, op.ID)
		}
	case Txn:
		want := "[" + *op.ExpectValue + " " + op.Value + "]"
		if !ev.isPair() || fmt.Sprintf("[%d %d]", ev.from, ev.to) != want {
			return fmt.Errorf(":%s :cas %s does not repeat the %s invoked on line %d", ev.typ, ev.value, want, op.ID)
		}
	}
	return nil
}
