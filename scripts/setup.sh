#!/usr/bin/env bash
# Installs what gantry needs on a Debian machine, idempotently: the runtime's
# programs (apt), the npm dependencies (npm ci) and the compiled CLI (tsc).
# Run as root. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  crun runc conmon containernetworking-plugins iptables iproute2 util-linux hostname  # stage1 ns + networking
  skopeo umoci docker-registry busybox-static             # fixtures, peers, demo image
  apache2-utils openssl zstd gnupg ca-certificates        # tests: htpasswd, TLS, zstd layers, keys
)

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (gantry needs mounts, namespaces and cgroups)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

npx tsc -p .
