#!/usr/bin/env bash
# Runs the Ginkgo suites. Picks the backend: ETCD_CHAOS_BACKEND if set, else
# kind when a Docker daemon answers, else the embedded local backend. Says
# which on its first line. Only bash, the docker CLI and POSIX sleep/kill are
# used, so it runs the same on Linux and macOS (which has no `timeout`).
set -euo pipefail
cd "$(dirname "$0")/.."

# docker_answers succeeds when the docker CLI reaches a daemon within about
# 5 seconds. It asks the CLI (`docker info`), as kind does, so the current
# `docker context` is honoured: Colima, Docker Desktop and Rancher Desktop
# put their socket elsewhere than /var/run/docker.sock. A daemon that hangs
# is given up on and the probe killed.
docker_answers() {
  command -v docker >/dev/null 2>&1 || return 1
  docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 &
  local pid=$! tries=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$tries" -ge 50 ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
    tries=$((tries + 1))
  done
  wait "$pid"
}

# pick_backend prints the backend to use when ETCD_CHAOS_BACKEND is unset,
# then a reason on stderr. Backends that need explicit setup (kube,
# kube-host) are never picked automatically.
pick_backend() {
  if docker_answers; then
    echo kind
    echo "e2e: using the kind backend (a Docker daemon answers; set ETCD_CHAOS_BACKEND=local to override)" >&2
  else
    echo local
    echo "e2e: using the local backend (no Docker daemon answers to \`docker info\`; real etcd processes on loopback)" >&2
  fi
}

backend="${ETCD_CHAOS_BACKEND:-}"
if [ -z "$backend" ]; then
  backend="$(pick_backend)"
else
  echo "e2e: using the $backend backend (ETCD_CHAOS_BACKEND)"
fi
export ETCD_CHAOS_BACKEND="$backend"

artifacts="${ARTIFACTS:-$PWD/artifacts}"
mkdir -p "$artifacts"
args=(-ginkgo.v -ginkgo.junit-report="$artifacts/junit.xml" -ginkgo.timeout="${E2E_TIMEOUT:-90m}")
[ -n "${E2E_FOCUS:-}" ] && args+=(-ginkgo.focus="$E2E_FOCUS")
# The known-bugs-slow specs (failpoint builds, minutes each) run only when
# asked for: E2E_LABELS=known-bugs-slow, or make known-bugs-slow.
args+=(-ginkgo.label-filter="${E2E_LABELS:-!known-bugs-slow}")
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

# go test's own -timeout must be longer than -ginkgo.timeout: Ginkgo's timer
# has to fire first, so that it interrupts the running spec, runs
# DeferCleanup and AfterSuite (releases and the kind cluster are deleted) and
# writes junit.xml. go test's timer would panic the process instead, skipping
# all of that. It stays as a backstop for a cleanup that hangs, 30 minutes
# later; 0 (none, as Ginkgo's CLI does) when E2E_TIMEOUT is not in m or h.
go_timeout() {
  local t="$1"
  case "$t" in
    *h) t="${t%h}"; [ -n "$t" ] && [ -z "${t//[0-9]/}" ] && { echo "$((t * 60 + 30))m"; return; } ;;
    *m) t="${t%m}"; [ -n "$t" ] && [ -z "${t//[0-9]/}" ] && { echo "$((t + 30))m"; return; } ;;
  esac
  echo 0
}

go test -v -count=1 -tags e2e -timeout "$(go_timeout "${E2E_TIMEOUT:-90m}")" ./suites/ -args "${args[@]}"
