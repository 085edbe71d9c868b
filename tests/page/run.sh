#!/usr/bin/env bash
# Unit tests of the web page's logic (the ES modules in
# crates/prise-server/assets): formatting, room state on server events, the
# connection's sign-in, requests, heartbeat and backoff, what the page
# remembers. Plain `node --test`, no browser and no server; needs node >= 20.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec node --test "$here"/*.test.mjs
