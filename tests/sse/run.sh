#!/usr/bin/env bash
# An EventSource in headless Chromium reading `prise serve`'s /sse from a
# page on another origin (served by the test itself), and resuming with
# Last-Event-ID after the hub restarts on its SQLite store.
#   PRISE_BIN     path to the prise binary (default: target/debug/prise, built first)
#   CHROMIUM_BIN  path to Chromium (default: /usr/bin/chromium)
# Uses the playwright-core pinned in tests/browser.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$root/scripts/deps-browser.sh"

if [ -z "${PRISE_BIN:-}" ]; then
    (cd "$root" && cargo build -q -p prise)
    PRISE_BIN="$root/target/debug/prise"
fi
export PRISE_BIN

exec node "$here/eventsource.mjs"
