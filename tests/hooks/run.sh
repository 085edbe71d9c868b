#!/usr/bin/env bash
# Backends in the loop: hooks.mjs starts a test backend and `prise serve`
# from prise.toml, drives them with socket.io-client, a WebSocket client and
# a TCP client, and stops both by their PIDs; once with the Python backend
# (backend.py, standard library), once with the Node.js one (backend.mjs),
# the two examples of docs/HOOKS.md. Exit code 0 only when every check passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/hooks"
CLIENTS="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh" >/dev/null
# ES modules ignore NODE_PATH: link the pinned clients next to the tests.
ln -sfn "$CLIENTS/node_modules" "$HERE/node_modules"

export PRISE_BIN="${PRISE_BIN:-$ROOT/target/debug/prise}"
[ -x "$PRISE_BIN" ] || cargo build --quiet -p prise --manifest-path "$ROOT/Cargo.toml"
export PYTHON="${PYTHON:-python3}"
status=0
echo "== the Python backend"
node "$HERE/hooks.mjs" backend.py || status=1
echo "== the Node.js backend"
node "$HERE/hooks.mjs" backend.mjs || status=1
exit $status
