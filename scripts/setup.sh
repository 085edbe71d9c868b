#!/usr/bin/env bash
# Installs everything the build and the tests need, then builds prise.
# Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages used by the test suite (real peers, real browser).
APT_PACKAGES=(netcat-openbsd socat openssl iperf3 chromium redis-server redis-tools iproute2 curl microsocks)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo (Rust 1.89 or later) is required" >&2; exit 1; }
command -v node >/dev/null || { echo "setup: node (18 or later) is required" >&2; exit 1; }

# Per-area test dependencies (npm and pip packages pinned in their folders).
for deps in scripts/deps-*.sh; do
  [ -e "$deps" ] || continue
  bash "$deps"
done

cargo build --locked -p prise
echo "setup: done (binary: target/debug/prise)"
