#!/usr/bin/env bash
# Apps on prise: named events, namespaces, room policies and personal rooms,
# with the official clients. Each script starts its own `prise serve` from a
# configuration file of this folder (memory store, ports picked by the
# system) and stops it by its PID: apps.mjs (socket.io-client, WebSocket
# JSON, TCP lines, the HTTP API; prise.toml), apps.py (python-socketio;
# prise.toml) and chat.mjs (the Socket.IO "get started" chat page in two
# headless Chromium tabs; chat.toml). Exit code 0 only when every check passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/apps"
CLIENTS="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh" >/dev/null
"$ROOT/scripts/deps-browser.sh" >/dev/null
# ES modules ignore NODE_PATH: link the pinned clients next to the tests.
ln -sfn "$CLIENTS/node_modules" "$HERE/node_modules"

export PRISE_BIN="${PRISE_BIN:-$ROOT/target/debug/prise}"
[ -x "$PRISE_BIN" ] || cargo build --quiet -p prise --manifest-path "$ROOT/Cargo.toml"

status=0
echo "== socket.io-client, WebSocket and TCP clients (prise.toml)"
node "$HERE/apps.mjs" || status=1
echo "== python-socketio (prise.toml)"
"$CLIENTS/.venv/bin/python" "$HERE/apps.py" || status=1
echo "== the get-started chat in two Chromium tabs (chat.toml)"
node "$HERE/chat.mjs" || status=1
exit $status
