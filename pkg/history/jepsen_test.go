package history

import (
	"errors"
	"strings"
	"testing"
)

func jepsenLines(lines ...string) string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if l != "" {
			out[i] = "INFO  jepsen.util - " + l
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestReadJepsen(t *testing.T) {
	in := jepsenLines(
		"0\t:invoke\t:read\tnil",
		"1\t:invoke\t:write\t3",
		"2   :invoke :cas    [3 4]", // spaces, as some logs have
		"0\t:ok\t:read\tnil",
		"1\t:ok\t:write\t3",
		"2\t:fail\t:cas\t[3 4]",
		"3\t:invoke\t:cas\t[1 2]",
		"3\t:info\t:cas\t:timed-out",
		"4\t:invoke\t:read\tnil",
		"4\t:fail\t:read\t:timed-out",
		"",
		"5\t:invoke\t:write\t7", // never completes
		"6\t:invoke\t:read\tnil",
		"6\t:ok\t:read\t3",
	)
	h, err := ReadJepsen(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Meta.NoRevisions {
		t.Fatal("a Jepsen log has no revisions, the history must say so")
	}
	byID := map[int64]Operation{}
	for _, op := range h.Operations {
		byID[op.ID] = op
		if op.Key != JepsenKey {
			t.Errorf("op %d key %q", op.ID, op.Key)
		}
	}
	if len(byID) != 7 {
		t.Fatalf("want 7 operations, got %d: %+v", len(byID), h.Operations)
	}
	check := func(id int64, kind Kind, outcome Outcome, call, ret int64) Operation {
		t.Helper()
		op := byID[id]
		if op.Kind != kind || op.Outcome != outcome || op.Call != call*jepsenTick || op.Return != ret*jepsenTick {
			t.Fatalf("op %d: %s %s call %d return %d, want %s %s lines %d..%d", id, op.Kind, op.Outcome, op.Call, op.Return, kind, outcome, call, ret)
		}
		return op
	}
	if op := check(1, Get, OK, 1, 4); len(op.Resp.KVs) != 0 {
		t.Errorf("read nil returned %v", op.Resp.KVs)
	}
	if op := check(2, Put, OK, 2, 5); op.Value != "3" {
		t.Errorf("write value %q", op.Value)
	}
	// etcd's answer that the compare failed is an observation, not a
	// failure to apply.
	if op := check(3, Txn, OK, 3, 6); *op.ExpectValue != "3" || op.Value != "4" || op.Resp.Succeeded {
		t.Errorf("failed cas: %+v %+v", op, op.Resp)
	}
	if op := check(7, Txn, Unknown, 7, 8); op.Error != ":timed-out" {
		t.Errorf(":info error %q", op.Error)
	}
	check(9, Get, Fail, 9, 10)
	check(12, Put, Unknown, 12, 15) // open at the end: unknown, never dropped
	if op := check(13, Get, OK, 13, 14); len(op.Resp.KVs) != 1 || op.Resp.KVs[0].Value != "3" {
		t.Errorf("read 3 returned %v", op.Resp.KVs)
	}
}

func TestReadJepsenRejects(t *testing.T) {
	cases := []struct {
		name, input, want string
	}{
		{"empty", "", "no operations"},
		{"other logger", "INFO  jepsen.core - Run complete\n", `line 1: not a Jepsen operation line`},
		{"nemesis", jepsenLines(":nemesis\t:info\t:start\tnil"), `line 1: process ":nemesis" is not a number`},
		{"unknown type", jepsenLines("0\t:invoke\t:read\tnil", "0\t:done\t:read\tnil"), `line 2: type ":done"`},
		{"unknown f", jepsenLines("0\t:invoke\t:add\t1"), `line 1: operation ":add" is not supported`},
		{"missing value", jepsenLines("0\t:invoke\t:read"), "line 1: want 4 fields"},
		{"string value", jepsenLines(`0	:invoke	:write	"x"`), `line 1: value "\"x\"" is not nil, an integer`},
		{"bad pair", jepsenLines("0\t:invoke\t:cas\t[1 2 3]"), "line 1: value \"[1 2 3]\" is not [A B]"},
		{"read with a value", jepsenLines("0\t:invoke\t:read\t3"), "line 1: :invoke :read takes nil"},
		{"write without a number", jepsenLines("0\t:invoke\t:write\tnil"), "line 1: :invoke :write takes an integer"},
		{"double invoke", jepsenLines("0\t:invoke\t:read\tnil", "0\t:invoke\t:read\tnil"), "line 2: process 0 invokes again while its :read from line 1"},
		{"completion without invoke", jepsenLines("0\t:ok\t:read\tnil"), "line 1: :ok for process 0, which has no operation in flight"},
		{"wrong f", jepsenLines("0\t:invoke\t:read\tnil", "0\t:ok\t:write\t1"), "line 2: :ok :write completes the :read invoked on line 1"},
		{"wrong write value", jepsenLines("0\t:invoke\t:write\t1", "0\t:ok\t:write\t2"), "line 2: :ok :write 2 does not repeat the value 1"},
		{"wrong cas value", jepsenLines("0\t:invoke\t:cas\t[1 2]", "0\t:ok\t:cas\t[1 3]"), "line 2: :ok :cas [1 3] does not repeat the [1 2]"},
		{"ok with a keyword", jepsenLines("0\t:invoke\t:read\tnil", "0\t:ok\t:read\t:timed-out"), "line 2: :ok :read needs a value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadJepsen(strings.NewReader(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error must be one line: %q", err)
			}
			var le *LineError
			if strings.HasPrefix(tc.want, "line") && !errors.As(err, &le) {
				t.Fatalf("want a LineError, got %T", err)
			}
		})
	}
}
