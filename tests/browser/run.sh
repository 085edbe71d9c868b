#!/usr/bin/env bash
# Runs the browser test of the web page against a freshly started prise server.
#   PRISE_BIN     path to the prise binary (default: target/debug/prise, built first)
#   CHROMIUM_BIN  path to Chromium (default: /usr/bin/chromium)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$root/scripts/deps-browser.sh"

if [ -z "${PRISE_BIN:-}" ]; then
    # The page is embedded in the binary: build so it carries the current assets
    # (a no-op when nothing changed).
    (cd "$root" && cargo build -q -p prise)
    PRISE_BIN="$root/target/debug/prise"
fi
export PRISE_BIN

exec node "$here/test.mjs"
