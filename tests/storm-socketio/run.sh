#!/usr/bin/env bash
# A reconnect storm: Socket.IO clients (the official JavaScript client) cut
# at once reconnect and recover every acknowledged message, once each, in
# order, with the server's RSS bounded (storm.mjs). 500 clients by default;
# docs/PERFORMANCE.md has the 5,000-client run:
#   STORM_CLIENTS=5000 tests/storm-socketio/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/storm-socketio"
CLIENTS="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh" >/dev/null
# ES modules ignore NODE_PATH: link the pinned clients next to the test.
ln -sfn "$CLIENTS/node_modules" "$HERE/node_modules"
PRISE_BIN="${PRISE_BIN:-$ROOT/target/debug/prise}"
[ -x "$PRISE_BIN" ] || cargo build --quiet -p prise --manifest-path "$ROOT/Cargo.toml"
exec node "$HERE/storm.mjs" "$PRISE_BIN" "${STORM_CLIENTS:-500}" "${STORM_MESSAGES:-200}"
