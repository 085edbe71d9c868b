#!/usr/bin/env bash
# Interop test of the Socket.IO server with the official clients, in one
# command: installs the pinned clients (scripts/deps-socketio.sh), builds and
# starts the conformance example on 127.0.0.1:0, runs interop.mjs
# (socket.io-client) and interop.py (python-socketio) against it in three
# transport modes, stops the server by its PID. Exit code 0 only when every
# check passed. Takes a few seconds once built.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh"

cargo build --quiet -p prise-sio --example conformance --manifest-path "$ROOT/Cargo.toml"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
LOG="$(mktemp)"
"$TARGET_DIR/debug/examples/conformance" --port 0 >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG"' EXIT

URL=""
for _ in $(seq 1 100); do
  URL="$(sed -n 's/^listening on //p' "$LOG")"
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG"; echo "server exited"; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG"; echo "server did not start"; exit 1; }
echo "server at $URL"

status=0
echo "== socket.io-client (node)"
node "$HERE/interop.mjs" "$URL" || status=1
echo "== python-socketio"
"$HERE/.venv/bin/python" "$HERE/interop.py" "$URL" || status=1
exit $status
