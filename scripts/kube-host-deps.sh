#!/usr/bin/env bash
# Installs what the kube-host backend needs: the Debian packages it runs
# (containerd, runc, CNI plugins, iptables, conntrack, socat) and the
# Kubernetes, CoreDNS and crictl binaries it builds from the Go module proxy
# (once; cached in ~/.cache/etcd-chaos). With --packages, only the packages.
# Installing packages needs root and apt-get; without them it says what to
# install and carries on, so the build part still runs.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(containerd runc iptables containernetworking-plugins conntrack socat)
# What each package provides, to tell whether it is installed: a command on
# PATH, or (for the CNI plugins, which are not commands) files, any of them.
# The CNI bridge plugin must never be looked up on PATH: iproute2's `bridge`
# command would pass for it.
probes=(containerd runc iptables "/usr/lib/cni/bridge /opt/cni/bin/bridge" conntrack socat)

installed() {
  case "$1" in
    /*) for f in $1; do [ -x "$f" ] && return 0; done; return 1 ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

missing=()
for i in "${!packages[@]}"; do
  installed "${probes[$i]}" || missing+=("${packages[$i]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "kube-host-deps: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "kube-host-deps: missing ${missing[*]}: run as root: apt-get install ${missing[*]}" >&2
  fi
fi

[ "${1:-}" = --packages ] && exit 0
go run ./cmd/etcd-chaos kubernetes ${KUBE_VERSION:+--version "$KUBE_VERSION"} >/dev/null
