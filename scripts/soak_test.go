package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeEtcdChaos stands in for the etcd-chaos binary soak.sh builds: `etcd`
// succeeds, and `run` writes a summary.json shaped like the real one (as
// encoding/json indents it), failing watch/reliable for seed 1002.
const fakeEtcdChaos = `#!/bin/sh
[ "$1" = etcd ] && exit 0
seed= out=
while [ $# -gt 0 ]; do
	case $1 in
	--seed) seed=$2 ;;
	--out) out=$2 ;;
	esac
	shift
done
mkdir -p "$out"
verdict=pass status=pass
[ "$seed" = 1002 ] && verdict=fail status=fail
cat > "$out/summary.json" <<EOF
{
  "verdict": "$verdict",
  "seed": $seed,
  "checks": [
    {
      "name": "watch/reliable",
      "status": "$status",
      "summary": "holds on 5 watch streams",
      "duration_ns": 0
    },
    {
      "name": "watch/drain",
      "status": "pass",
      "summary": "watchers caught up with revision 9; 5 watch streams, 1 of them resumed (1 after a silent stream was given up, 0 after the server or client ended one)",
      "duration_ns": 0
    }
  ]
}
EOF
[ "$verdict" = pass ]
`

// TestSoakTable runs scripts/soak.sh against a fake go and etcd-chaos, with
// nothing on PATH but the POSIX tools it may use: seeded runs alternate
// versions and walk the matrix, and the table names each run's verdict, its
// resumed watch streams, the checks that failed and the command that
// replays it; one failed run fails the soak.
func TestSoakTable(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	bin := t.TempDir()
	for _, tool := range []string{"awk", "cat", "cp", "dirname", "grep", "mkdir", "rm", "sed", "tail", "wc"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	fake := filepath.Join(t.TempDir(), "etcd-chaos")
	if err := os.WriteFile(fake, []byte(fakeEtcdChaos), 0o755); err != nil {
		t.Fatal(err)
	}
	// go build -o <bin> ./cmd/etcd-chaos copies the fake into place.
	script(t, bin, "go", `[ "$1" = build ] && [ "$2" = -o ] && exec cp `+fake+` "$3"`)
	out := t.TempDir()
	cmd := exec.Command(bash, "soak.sh")
	cmd.Env = []string{"PATH=" + bin, "HOME=" + t.TempDir(), "SOAK_OUT=" + out, "SOAK_RUNS=3", "SOAK_SEED=1000"}
	got, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("soak.sh passed although run 2 failed:\n%s", got)
	}
	table, err := os.ReadFile(filepath.Join(out, "table.txt"))
	if err != nil {
		t.Fatalf("no table: %v\n%s", err, got)
	}
	lines := strings.Split(strings.TrimSpace(string(table)), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want 3:\n%s", len(lines), table)
	}
	for i, want := range []struct{ seed, version, verdict, failing string }{
		{"1001", "v3.6.16", "PASS", "-"},
		{"1002", "v3.5.33", "FAIL", "watch/reliable"},
		{"1003", "v3.6.16", "PASS", "-"},
	} {
		f := strings.Fields(lines[i])
		if len(f) < 10 || f[1] != want.seed || f[2] != want.version || f[6] != want.verdict || f[7] != "5/1" || f[8] != want.failing {
			t.Errorf("line %d = %q, want seed %s, %s, %s, 5/1 streams resumed, failing %s", i+1, lines[i], want.seed, want.version, want.verdict, want.failing)
		}
		if !strings.Contains(lines[i], "go run ./cmd/etcd-chaos run --etcd-version "+want.version) || !strings.Contains(lines[i], "--seed "+want.seed) {
			t.Errorf("line %d has no replay command for seed %s: %q", i+1, want.seed, lines[i])
		}
	}
	if !strings.Contains(string(got), "2 of 3 runs passed") {
		t.Errorf("soak.sh did not count the passes:\n%s", got)
	}
}
