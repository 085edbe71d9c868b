#!/usr/bin/env bash
# Installs what tests/socketio/run.sh needs: the official JavaScript client
# (npm ci from tests/socketio/package-lock.json) and the official Python
# client (pip install -r tests/socketio/requirements.txt into
# tests/socketio/.venv). Idempotent; returns at once when both are present
# at the pinned versions. Needs node >= 18 with npm, and python3 >= 3.8 with venv.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/socketio" && pwd)"
cd "$DIR"

want_js="$(node -p 'require("./package.json").dependencies["socket.io-client"]')"
have_js="$(node -p 'try { require("./node_modules/socket.io-client/package.json").version } catch { "" }')"
if [ "$have_js" != "$want_js" ]; then
  echo "deps-socketio: npm ci (socket.io-client $want_js)"
  npm ci --no-audit --no-fund --loglevel=error
fi

want_py="$(sed -n 's/^python-socketio\[client\]==//p' requirements.txt)"
have_py=""
if [ -x .venv/bin/python ]; then
  have_py="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("python-socketio"))' 2>/dev/null || true)"
fi
if [ "$have_py" != "$want_py" ]; then
  echo "deps-socketio: pip install python-socketio[client]==$want_py"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
echo "deps-socketio: socket.io-client $want_js, python-socketio $want_py ready"
