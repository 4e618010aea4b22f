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
# Colour only on a terminal: escape codes make a log file or a pipe hard to read.
[ -t 1 ] || args+=(-ginkgo.no-color)

# The local backend builds etcd from the Go module proxy; build every version
# the specs start (make passes E2E_ETCD_VERSIONS) before any spec runs, so no
# spec's timeout includes a cold build.
if [ "$backend" = local ]; then
  for v in $(printf '%s\n' ${E2E_ETCD_VERSIONS:-${ETCD_VERSION:-v3.6.4} v3.5.2} | sort -u); do
    go run ./cmd/etcd-chaos etcd --version "$v" >/dev/null
  done
fi

go test -v -count=1 -tags e2e -timeout "${E2E_TIMEOUT:-90m}" ./suites/ -args "${args[@]}"
