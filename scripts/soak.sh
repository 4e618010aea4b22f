#!/usr/bin/env bash
# make soak: SOAK_RUNS seeded runs of `etcd-chaos run`, one at a time, each
# with a different nemesis, etcd version and cluster size, then a table of
# verdicts. Every FAIL or UNKNOWN on a release without a known bug is a false
# alarm to find and fix (docs/PRECISION.md).
#
#   SOAK_RUNS=50 SOAK_SEED=1000 make soak
#   SOAK_VERSIONS="v3.5.33 v3.6.16" SOAK_DURATION=20s make soak
#
# Run i (1..SOAK_RUNS) uses seed SOAK_SEED+i, version i mod the number of
# versions, and row i mod the number of rows of the matrix below, so the
# same settings give the same runs; each line of the table carries the
# command that replays it.
set -uo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
RUNS=${SOAK_RUNS:-50}
SEED=${SOAK_SEED:-1000}
DURATION=${SOAK_DURATION:-20s}
# The oldest v3.5 and the newest v3.6 without a known bug our checks would
# see (docs/PRECISION.md says why these).
read -r -a VERSIONS <<<"${SOAK_VERSIONS:-v3.5.33 v3.6.16}"
OUT=${SOAK_OUT:-${ARTIFACTS:-artifacts}/soak}

# members nemesis fault-hold: an odd number of rows, so that with two
# versions every row meets both. Holds of 8s break watch streams: a
# partitioned member cancels its streams after about 4s without a leader,
# and a watcher gives a stream up after 3s of silence (a killed or paused
# member).
MATRIX=(
	"1 kill-random 3s"
	"3 partition-leader 8s"
	"1 pause-random 3s"
	"3 kill-random 8s"
	"3 partition-random 8s"
	"5 bridge 3s"
	"1 kill-leader 8s"
	"3 pause-leader 3s"
	"3 rolling-restart 3s"
	"3 mix 3s"
	"5 partition-leader 8s"
	"3 slow-network 3s"
	"1 rolling-restart 3s"
	"3 kill-leader 3s"
	"1 pause-leader 8s"
)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
bin="$OUT/etcd-chaos"
echo "soak: building etcd-chaos and etcd ${VERSIONS[*]} (once; cached)"
$GO build -o "$bin" ./cmd/etcd-chaos || exit 1
for v in "${VERSIONS[@]}"; do
	"$bin" etcd --version "$v" >/dev/null || exit 1
done

table="$OUT/table.txt"
: >"$table"
for ((i = 1; i <= RUNS; i++)); do
	seed=$((SEED + i))
	v=${VERSIONS[$((i % ${#VERSIONS[@]}))]}
	read -r members nemesis hold <<<"${MATRIX[$((i % ${#MATRIX[@]}))]}"
	dir="$OUT/run-$i"
	rm -rf "$dir"
	args=(run --etcd-version "$v" --members "$members" --nemesis "$nemesis" --duration "$DURATION" --fault-duration "$hold" --seed "$seed")
	replay="go run ./cmd/etcd-chaos ${args[*]}"
	echo "soak: run $i/$RUNS: $replay"
	"$bin" "${args[@]}" --out "$dir" >"$OUT/run-$i.log" 2>&1
	rc=$?
	summary="$dir/summary.json"
	if [[ -f $summary ]]; then
		# summary.json is indented by encoding/json, two spaces a level:
		# awk reads it without tools a fresh machine may lack.
		verdict=$(awk -F'"' '/^  "verdict":/ { print toupper($4); exit }' "$summary")
		failing=$(awk -F'"' '/^      "name":/ { n = $4 } /^      "status": "(fail|unknown)"/ { printf "%s%s", sep, n; sep = "," }' "$summary")
		streams=$(awk -F'"' '/^      "name": "watch\/drain"/ { d = 1; next } d && /^      "summary":/ { print $4; exit }' "$summary" |
			grep -oE '[0-9]+ watch streams, [0-9]+ of them resumed' | sed -E 's/ watch streams, /\//; s/ of them resumed//')
	else
		verdict=ERROR
		failing="exit $rc: $(tail -n 1 "$OUT/run-$i.log")"
		streams=
	fi
	printf '%-4s %-6s %-8s %-2s %-17s %-4s %-8s %-9s %-30s %s\n' "$i" "$seed" "$v" "$members" "$nemesis" "$hold" "$verdict" "${streams:--}" "${failing:--}" \
		"$replay" >>"$table"
	tail -n 1 "$table"
done

echo
echo "──── soak: $RUNS runs, ${DURATION} of traffic each ────"
printf '%-4s %-6s %-8s %-2s %-17s %-4s %-8s %-9s %-30s %s\n' run seed version n nemesis hold verdict "streams/resumed" failing replay
cat "$table"
pass=$(awk '$7 == "PASS"' "$table" | wc -l)
echo "$pass of $RUNS runs passed; table: $table; artifacts: $OUT"
[[ $pass -eq $RUNS ]]
