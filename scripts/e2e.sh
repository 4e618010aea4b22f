#!/usr/bin/env bash
# Runs the Ginkgo suites. Picks the backend: ETCD_CHAOS_BACKEND if set, else
# kind when a Docker daemon answers, else the embedded local backend. Says
# which on its first line.
set -euo pipefail
cd "$(dirname "$0")/.."

backend="${ETCD_CHAOS_BACKEND:-}"
if [ -z "$backend" ]; then
  if command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1; then
    backend=kind
    echo "e2e: using the kind backend (a Docker daemon answers; set ETCD_CHAOS_BACKEND=local to override)"
  else
    backend=local
    echo "e2e: using the local backend (no Docker daemon answers; real etcd processes on loopback)"
  fi
else
  echo "e2e: using the $backend backend (ETCD_CHAOS_BACKEND)"
fi
export ETCD_CHAOS_BACKEND="$backend"

artifacts="${ARTIFACTS:-$PWD/artifacts}"
mkdir -p "$artifacts"
args=(-ginkgo.v -ginkgo.junit-report="$artifacts/junit.xml" -ginkgo.timeout="${E2E_TIMEOUT:-90m}")
[ -n "${E2E_FOCUS:-}" ] && args+=(-ginkgo.focus="$E2E_FOCUS")
[ -n "${E2E_LABELS:-}" ] && args+=(-ginkgo.label-filter="$E2E_LABELS")
# Escape codes make CI logs hard to read.
[ -n "${CI:-}" ] && args+=(-ginkgo.no-color)

go test -v -count=1 -tags e2e -timeout "${E2E_TIMEOUT:-90m}" ./suites/ -args "${args[@]}"
