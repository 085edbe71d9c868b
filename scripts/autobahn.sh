#!/usr/bin/env bash
# Autobahn|Testsuite against prise's WebSocket stack, both sides, with
# permessage-deflate: the server side drives `prise echo ws://… --deflate`,
# the client side runs crates/prise-ws/examples/autobahn_client.rs against the
# suite's fuzzing server. Not run by CI: the suite needs a Python 2.7
# interpreter (see the harness README). About 20 minutes per side on a 2-core
# machine.
#
#   scripts/autobahn.sh [server|client|both]     (default both)
# env: AUTOBAHN_HARNESS  the shared harness folder (default ../shared/conformance/autobahn,
#                        the shared folder beside the checkout)
#      CASES, EXCLUDE    passed to the harness (JSON lists, default every case)
#      PORT              first of two free loopback ports (default 9301)
# Reports land in a temporary copy of the harness; the last lines printed are
# the harness' `N passed, M failed` for each side. Exit 0 iff both passed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WHICH="${1:-both}"
PORT="${PORT:-9301}"
HARNESS="${AUTOBAHN_HARNESS:-}"
if [ -z "$HARNESS" ]; then
  d="$ROOT/../shared/conformance/autobahn"
  if [ -x "$d/setup-autobahn.sh" ]; then HARNESS="$d"; fi
fi
[ -n "$HARNESS" ] || { echo "no Autobahn harness found (set AUTOBAHN_HARNESS)" >&2; exit 2; }

WORK="$(mktemp -d)"
cp -r "$HARNESS"/. "$WORK"/
"$WORK/setup-autobahn.sh"

cargo build --release --quiet -p prise -p prise-ws --example autobahn_client
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
PRISE="$TARGET_DIR/release/prise"
CLIENT="$TARGET_DIR/release/examples/autobahn_client"

status=0
if [ "$WHICH" = server ] || [ "$WHICH" = both ]; then
  "$PRISE" echo "ws://127.0.0.1:$PORT" --deflate >"$WORK/echo.log" 2>&1 &
  ECHO=$!
  trap 'kill "$ECHO" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do grep -q "listening" "$WORK/echo.log" && break; sleep 0.1; done
  AGENT=prise OUTDIR="$WORK/reports/server" "$WORK/autobahn-server.sh" "$PORT" || status=1
  kill "$ECHO" 2>/dev/null || true
  wait "$ECHO" 2>/dev/null || true
fi
if [ "$WHICH" = client ] || [ "$WHICH" = both ]; then
  AGENT=prise-client OUTDIR="$WORK/reports/client" \
    "$WORK/autobahn-client.sh" "$((PORT + 1))" "$CLIENT" || status=1
fi
echo "reports: $WORK/reports/{server,client}/index.html"
exit $status
