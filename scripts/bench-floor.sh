#!/usr/bin/env bash
# prise against the floor server (../shared/floor-hub/: one write(2) of one
# pre-encoded frame per delivery) and the reference Node socket.io 4.8
# server, in one run, ROUNDS interleaved rounds (prise, floor, node, prise,
# …), the same `prise bench` client speaking Socket.IO over WebSocket to all
# three:
#   - fan-out to SUBSCRIBERS, unpaced (MESSAGES published back to back, each
#     waiting for its ack) and paced at RATE msg/s;
#   - publish + ack round trips with CLIENTS clients, one in flight each;
#   - IDLE idle connections (RSS per connection).
# prise runs with STORE (default `sqlite` in a scratch folder: durable), its
# per-IP and per-connection limits off. The floor server is built from a copy
# of ../shared/floor-hub/ outside the repository and passed as FLOOR_BIN.
#   D=$(mktemp -d) && cp -r ../shared/floor-hub "$D" && (cd "$D/floor-hub" && cargo build --release --locked)
#   FLOOR_BIN="$D/floor-hub/target/release/floor-hub" ROUNDS=3 scripts/bench-floor.sh
# Set SERVERS="prise floor" to leave Node out; add `before` (with BEFORE_BIN, a
# build of prise from before a change) for an A/B inside the same run. Every
# server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"; SUBSCRIBERS="${SUBSCRIBERS:-1000}"; RATE="${RATE:-20}"
MESSAGES="${MESSAGES:-200}"; CLIENTS="${CLIENTS:-100}"; DURATION="${DURATION:-10s}"
IDLE="${IDLE:-2000}"; STORE="${STORE:-sqlite}"; SERVERS="${SERVERS:-prise floor node}"
: "${FLOOR_BIN:?set FLOOR_BIN to a floor-hub binary built from a copy of ../shared/floor-hub/}"
BIN="${PRISE_BIN:-target/release/prise}"
[ -n "${PRISE_BIN:-}" ] || cargo build --release --quiet -p prise
case " $SERVERS " in
  *" node "*) (cd bench/socketio-node && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ;;
esac
SCRATCH="$(mktemp -d)"
PID=""
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT

wait_for() { # log pattern
  for _ in $(seq 1 100); do grep -q "$2" "$1" && return; sleep 0.1; done
}
start() {
  local log="$SCRATCH/log"; : >"$log"
  local bin="$BIN"
  [ "$1" = before ] && bin="${BEFORE_BIN:?set BEFORE_BIN}"
  case "$1" in
    prise|before)
      local store=(--store memory)
      [ "$STORE" = sqlite ] && { rm -rf "$SCRATCH/data"; store=(--store sqlite --data "$SCRATCH/data"); }
      "$bin" serve "${store[@]}" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --log warn \
        --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 \
        --max-presence-fanout 1 >"$log" &
      PID=$!; wait_for "$log" "^listening http"
      TARGET="sio://$(sed -n 's/^listening http //p' "$log")" ;;
    floor)
      "$FLOOR_BIN" serve --http 127.0.0.1:0 --tcp 127.0.0.1:0 >"$log" &
      PID=$!; wait_for "$log" "^listening http"
      TARGET="sio://$(sed -n 's/^listening http //p' "$log")" ;;
    node)
      node bench/socketio-node/server.mjs 0 >"$log" &
      PID=$!; wait_for "$log" "^listening"
      TARGET="sio://127.0.0.1:$(sed -n 's/^listening //p' "$log")" ;;
  esac
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }

# Unpaced: a rate no publisher reaches, for as long as MESSAGES take at it.
UNPACED_RATE=100000
UNPACED_MS=$(( MESSAGES * 1000 / UNPACED_RATE ))
for round in $(seq 1 "$ROUNDS"); do
  for server in $SERVERS; do
    echo "== round $round, $server: fanout to $SUBSCRIBERS subscribers, $MESSAGES messages unpaced"
    start "$server"
    "$BIN" bench fanout --target "$TARGET" -n "$SUBSCRIBERS" --rate "$UNPACED_RATE" \
      --duration "${UNPACED_MS}ms" --sources 4 --pid "$PID" --quiet
    stop
    echo "== round $round, $server: fanout to $SUBSCRIBERS subscribers at $RATE msg/s, $MESSAGES messages"
    start "$server"
    "$BIN" bench fanout --target "$TARGET" -n "$SUBSCRIBERS" --rate "$RATE" \
      --duration "$(( MESSAGES * 1000 / RATE ))ms" --sources 4 --pid "$PID" --quiet
    stop
    echo "== round $round, $server: echo (publish + ack) with $CLIENTS clients for $DURATION"
    start "$server"
    "$BIN" bench echo --target "$TARGET" -n "$CLIENTS" --duration "$DURATION" --pid "$PID" --quiet
    stop
    echo "== round $round, $server: $IDLE idle connections"
    start "$server"
    "$BIN" bench connect --target "$TARGET" -n "$IDLE" --sources 8 --pid "$PID" --hold 3s --quiet
    stop
  done
done
