#!/usr/bin/env bash
# Installs the external peers that the toolkit's tests and benchmarks run
# against: netcat (openbsd), socat, openssl, iperf3, iproute2.
# Idempotent: returns at once when everything is already installed.
set -euo pipefail

need=()
command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -- '-N' || need+=(netcat-openbsd)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ip >/dev/null 2>&1 || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing: ${need[*]}" >&2
$SUDO apt-get update -qq
# iperf3 asks whether to start a daemon; answer no.
echo "iperf3 iperf3/start_daemon boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
