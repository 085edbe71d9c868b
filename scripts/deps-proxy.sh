#!/usr/bin/env bash
# Installs what the prise-proxy benchmark (scripts/bench-proxy.sh) compares against.
# The crate's tests need none of it: they use their own loopback backends.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v haproxy >/dev/null || need+=(haproxy)
command -v socat >/dev/null || need+=(socat)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v python3 >/dev/null || need+=(python3)

if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Debian starts the packaged services; the benchmark runs its own instances on free ports.
