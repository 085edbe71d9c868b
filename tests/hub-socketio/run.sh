#!/usr/bin/env bash
# The hub's Socket.IO contract with the official clients: starts `prise serve`
# (memory store, ports picked by the system), runs hub.mjs (socket.io-client),
# seed-chat.mjs (the seed course's ChatClient, with real tokens against a second
# server started with --jwt-secret), auth.mjs (token checks) and hub.py (python-socketio),
# stops the server by its PID. Exit code 0 only when every check passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/hub-socketio"
CLIENTS="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh" >/dev/null
export NODE_PATH="$CLIENTS/node_modules"
# ES modules ignore NODE_PATH: link the pinned clients next to the tests.
ln -sfn "$CLIENTS/node_modules" "$HERE/node_modules"

PRISE_BIN="${PRISE_BIN:-$ROOT/target/debug/prise}"
[ -x "$PRISE_BIN" ] || cargo build --quiet -p prise --manifest-path "$ROOT/Cargo.toml"
LOG="$(mktemp)"
# With --ws-deflate: the official JavaScript client offers permessage-deflate
# on its websocket transport, so hub.mjs runs compressed (its 70 KB publish
# included); python-socketio does not offer it and runs uncompressed.
"$PRISE_BIN" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --ws-deflate >"$LOG" 2>"$LOG.err" &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG" "$LOG.err"' EXIT
HTTP=""; TCP=""
for _ in $(seq 1 100); do
  HTTP="$(sed -n 's/^listening http //p' "$LOG")"
  TCP="$(sed -n 's/^listening tcp //p' "$LOG")"
  [ -n "$HTTP" ] && [ -n "$TCP" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$LOG.err"; echo "server exited"; exit 1; }
  sleep 0.1
done
[ -n "$HTTP" ] || { cat "$LOG.err"; echo "server did not start"; exit 1; }

# A second server with token authentication (anonymous refused).
SECRET="test-secret-$$-$RANDOM"
ALOG="$(mktemp)"
"$PRISE_BIN" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --jwt-secret "$SECRET" --anonymous deny >"$ALOG" 2>"$ALOG.err" &
APID=$!
trap 'kill "$PID" "$APID" 2>/dev/null || true; wait "$PID" "$APID" 2>/dev/null || true; rm -f "$LOG" "$LOG.err" "$ALOG" "$ALOG.err"' EXIT
AHTTP=""
for _ in $(seq 1 100); do
  AHTTP="$(sed -n 's/^listening http //p' "$ALOG")"
  [ -n "$AHTTP" ] && break
  kill -0 "$APID" 2>/dev/null || { cat "$ALOG.err"; echo "auth server exited"; exit 1; }
  sleep 0.1
done
[ -n "$AHTTP" ] || { cat "$ALOG.err"; echo "auth server did not start"; exit 1; }

status=0
echo "== socket.io-client against prise serve (http://$HTTP)"
node "$HERE/hub.mjs" "http://$HTTP" "$TCP" || status=1
echo "== seed ChatClient"
node "$HERE/seed-chat.mjs" "http://$AHTTP" "$SECRET" || status=1
echo "== Socket.IO authentication (http://$AHTTP)"
node "$HERE/auth.mjs" "http://$AHTTP" "$SECRET" || status=1
echo "== python-socketio"
"$CLIENTS/.venv/bin/python" "$HERE/hub.py" "http://$HTTP" "http://$AHTTP" "$SECRET" || status=1
exit $status
