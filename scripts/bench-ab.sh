#!/usr/bin/env bash
# Two builds of `prise serve` side by side in one run, ROUNDS interleaved
# rounds (A, B, A, B, …), with the same `prise bench` client (B's) speaking
# Socket.IO over WebSocket: fan-out to SUBSCRIBERS at RATE, publish + ack
# round trips with CLIENTS, and IDLE idle connections. For "did this change
# move the figures": A is the build before, B the build after.
#   ROUNDS=3 SUBSCRIBERS=1000 RATE=50 DURATION=10s CLIENTS=16 IDLE=2000 \
#     scripts/bench-ab.sh path/to/prise-before path/to/prise-after
# Per-IP and per-connection limits are off on both servers.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PRISE_A PRISE_B" >&2; exit 2; }
A="$1"; B="$2"
ROUNDS="${ROUNDS:-3}"; SUBSCRIBERS="${SUBSCRIBERS:-1000}"; RATE="${RATE:-50}"
DURATION="${DURATION:-10s}"; CLIENTS="${CLIENTS:-16}"; IDLE="${IDLE:-2000}"
PID=""
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; }
trap cleanup EXIT

start() {
  local bin="$1" log; log="$(mktemp)"
  "$bin" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --log warn \
    --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 \
    --max-presence-fanout 1 >"$log" &
  PID=$!
  for _ in $(seq 1 100); do grep -q "^listening http" "$log" && break; sleep 0.1; done
  TARGET="sio://$(sed -n 's/^listening http //p' "$log")"
  rm -f "$log"
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }

for round in $(seq 1 "$ROUNDS"); do
  for side in A B; do
    bin="$A"; [ "$side" = B ] && bin="$B"
    echo "== round $round, $side: fanout to $SUBSCRIBERS subscribers at $RATE msg/s for $DURATION"
    start "$bin"
    "$B" bench fanout --target "$TARGET" -n "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION" --sources 4 --pid "$PID" --quiet
    stop
    echo "== round $round, $side: echo (publish + ack) with $CLIENTS clients for $DURATION"
    start "$bin"
    "$B" bench echo --target "$TARGET" -n "$CLIENTS" --duration "$DURATION" --pid "$PID" --quiet
    stop
    echo "== round $round, $side: $IDLE idle connections"
    start "$bin"
    "$B" bench connect --target "$TARGET" -n "$IDLE" --sources 8 --pid "$PID" --hold 3s --quiet
    stop
  done
done
