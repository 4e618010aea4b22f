#!/usr/bin/env bash
# Runs the benchmarks that back docs/PERFORMANCE.md and prints their figures.
# BENCH narrows them (a go test -bench regexp); BENCHTIME sets -benchtime.
set -euo pipefail
cd "$(dirname "$0")/.."
bench="${BENCH:-.}"
benchtime="${BENCHTIME:-1x}"
pkgs=(./pkg/checker ./pkg/checker/linearizable ./pkg/workload ./pkg/cluster/local ./pkg/faultproxy ./pkg/snapshot)
echo "bench: $(go version), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
for p in "${pkgs[@]}"; do
  [ -d "$p" ] || continue
  echo "== $p"
  go test -run '^$' -bench "$bench" -benchtime "$benchtime" -benchmem -timeout 60m "$p" | grep -vE '^(goos|goarch|pkg|cpu):'
done
# A per-operation cost needs many iterations, not one.
echo "== ./pkg/workload (recorder cost per operation)"
go test -run '^$' -bench 'Record$' -benchmem ./pkg/workload | grep -E '^Benchmark'

