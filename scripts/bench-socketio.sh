#!/usr/bin/env bash
# prise against the reference Node socket.io 4.8 server, side by side in one
# run, with `prise bench` speaking Socket.IO over WebSocket to both:
#   fan-out to N subscribers at a fixed rate, ack round trips, idle connections.
# Installs the Node server from npm (bench/socketio-node), starts both servers
# on loopback ports picked by the system, stops them by PID.
#   SUBSCRIBERS=1000 RATE=200 DURATION=10s CLIENTS=16 IDLE=10000 scripts/bench-socketio.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS="${SUBSCRIBERS:-1000}"; RATE="${RATE:-200}"; DURATION="${DURATION:-10s}"
CLIENTS="${CLIENTS:-16}"; IDLE="${IDLE:-10000}"
(cd bench/socketio-node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
BIN="${PRISE_BIN:-target/release/prise}"
[ -n "${PRISE_BIN:-}" ] || cargo build --release --quiet -p prise
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start_prise() {
  local log; log="$(mktemp)"
  # The Node server announces no joins; prise's announcements are capped so
  # the 1,000 joins do not queue ~500k presence pushes the Node run never has.
  "$BIN" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --log warn --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 --max-presence-fanout 1 >"$log" &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 1 100); do grep -q "^listening http" "$log" && break; sleep 0.1; done
  TARGET="sio://$(sed -n 's/^listening http //p' "$log")"
}
start_node() {
  local log; log="$(mktemp)"
  node bench/socketio-node/server.mjs 0 >"$log" &
  PID=$!; PIDS+=("$PID")
  for _ in $(seq 1 100); do grep -q "^listening" "$log" && break; sleep 0.1; done
  TARGET="sio://127.0.0.1:$(sed -n 's/^listening //p' "$log")"
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

for server in prise node; do
  echo "== $server: fanout to $SUBSCRIBERS subscribers at $RATE msg/s for $DURATION"
  "start_$server"
  "$BIN" bench fanout --target "$TARGET" -n "$SUBSCRIBERS" --rate "$RATE" --duration "$DURATION" --sources 4 --pid "$PID" --quiet
  stop
  echo "== $server: echo (publish + ack) with $CLIENTS clients for $DURATION"
  "start_$server"
  "$BIN" bench echo --target "$TARGET" -n "$CLIENTS" --duration "$DURATION" --pid "$PID" --quiet
  stop
  echo "== $server: $IDLE idle connections"
  "start_$server"
  "$BIN" bench connect --target "$TARGET" -n "$IDLE" --sources 8 --pid "$PID" --hold 3s --quiet
  stop
done
