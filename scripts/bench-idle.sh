#!/usr/bin/env bash
# Server RSS per idle connection: starts a release `prise serve` (memory store,
# ports picked by the system), opens N idle connections per transport with
# `prise bench connect` spread over 8 loopback source addresses, prints the
# JSON reports, stops the server by its PID.
#   scripts/bench-idle.sh [N]     (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
BIN="${PRISE_BIN:-target/release/prise}"
[ -n "${PRISE_BIN:-}" ] || cargo build --release --quiet -p prise
run() {
  local transport="$1"
  local log; log="$(mktemp)"
  "$BIN" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --log warn --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 >"$log" &
  local pid=$!
  trap 'kill "$pid" 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do grep -q "^listening tcp" "$log" && break; sleep 0.1; done
  local http tcp target
  http="$(sed -n 's/^listening http //p' "$log")"
  tcp="$(sed -n 's/^listening tcp //p' "$log")"
  case "$transport" in
    ws) target="ws://$http/ws" ;;
    tcp) target="tcp://$tcp" ;;
    sio) target="sio://$http" ;;
  esac
  "$BIN" bench connect --target "$target" -n "$N" --sources 8 --pid "$pid" --hold 3s --quiet
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$log"
}
for t in ws tcp sio; do
  echo "== $t: $N idle connections"
  run "$t"
done
