#!/usr/bin/env bash
# Socket.IO long-polling across three `prise serve --redis` nodes behind
# `prise proxy --balance roundrobin`, without sticky sessions: starts a real
# redis-server (free loopback port, own temp dir, no persistence), the three
# nodes (ports picked by the system) and the proxy in front of their HTTP
# ports; runs cluster.mjs (socket.io-client) and cluster.py (python-socketio)
# with polling only and no HTTP keep-alive through the proxy, and checks in
# the nodes' logs that each session's requests were served by more than one
# node; then kills (SIGKILL) the node a subscriber landed on while messages
# are published, and checks with failover.mjs that the subscriber recovers on
# another node. Stops everything it started by PID. Exit code 0 only when every check
# passed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/cluster-socketio"
CLIENTS="$ROOT/tests/socketio"
"$ROOT/scripts/deps-socketio.sh" >/dev/null
# ES modules ignore NODE_PATH: link the pinned clients next to the tests.
ln -sfn "$CLIENTS/node_modules" "$HERE/node_modules"

PRISE_BIN="${PRISE_BIN:-$ROOT/target/debug/prise}"
[ -x "$PRISE_BIN" ] || cargo build --quiet -p prise --manifest-path "$ROOT/Cargo.toml"
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)"; exit 1; }

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits (bounded) until `cmd` prints something; fails when `pid` exits first.
wait_for() {
  local pid="$1" what="$2"; shift 2
  local out=""
  for _ in $(seq 1 100); do
    out="$("$@" 2>/dev/null || true)"
    [ -n "$out" ] && { echo "$out"; return 0; }
    kill -0 "$pid" 2>/dev/null || { echo "$what exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$what did not start" >&2
  return 1
}

# Redis on a free loopback port (retried if another process takes it first).
REDIS_PORT=""
for _ in 1 2 3 4 5; do
  port="$(free_port)"
  mkdir -p "$TMP/redis"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$TMP/redis" --daemonize no >"$TMP/redis.log" 2>&1 &
  pid=$!
  if wait_for "$pid" redis-server grep -m1 "Ready to accept connections" "$TMP/redis.log" >/dev/null 2>&1; then
    PIDS+=("$pid")
    REDIS_PORT="$port"
    break
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
[ -n "$REDIS_PORT" ] || { cat "$TMP/redis.log"; echo "redis-server did not start"; exit 1; }
echo "== redis-server on 127.0.0.1:$REDIS_PORT"

# Three nodes. Every test client comes from 127.0.0.1, and so do the
# requests nodes forward to each other: the per-IP limits are off.
HTTP=(); TCP=(); NODE_PID=()
for i in 0 1 2; do
  "$PRISE_BIN" --log "info,prise_server::http::forward=debug" serve \
    --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "cluster-$$:" \
    --http 127.0.0.1:0 --tcp 127.0.0.1:0 --presence-ttl 2s --recovery-window 4s \
    --ip-connect-rate 0 --max-connections-per-ip 0 \
    >"$TMP/node$i.out" 2>"$TMP/node$i.err" &
  pid=$!
  PIDS+=("$pid")
  NODE_PID[i]="$pid"
  HTTP[i]="$(wait_for "$pid" "node $i" sed -n 's/^listening http //p' "$TMP/node$i.out")" \
    || { cat "$TMP/node$i.err"; exit 1; }
  TCP[i]="$(sed -n 's/^listening tcp //p' "$TMP/node$i.out")"
  echo "== node $i: http ${HTTP[i]} tcp ${TCP[i]}"
done

"$PRISE_BIN" proxy --listen 127.0.0.1:0 --balance roundrobin --check none \
  --backend "${HTTP[0]}" --backend "${HTTP[1]}" --backend "${HTTP[2]}" \
  >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
pid=$!
PIDS+=("$pid")
PROXY="$(wait_for "$pid" proxy sh -c "sed 's/\x1b\[[0-9;]*m//g' '$TMP/proxy.err' | sed -n 's/.*proxy listening listen=\([^ ]*\).*/\1/p'")" \
  || { cat "$TMP/proxy.err"; exit 1; }
echo "== prise proxy (roundrobin) on $PROXY"

# Nodes (besides the owner) that forwarded requests of session $1.
forwarders() {
  local sid="$1" n=0
  for i in 0 1 2; do
    if strip "$TMP/node$i.err" | grep -E "sid=\"?$sid\"?[ }]" | grep -q "forwarded status="; then
      n=$((n + 1))
    fi
  done
  echo "$n"
}
# Checks that the session printed as "sid X" in $1 was served by >1 node.
spread() {
  local name="$1" out="$2" sid n
  sid="$(sed -n 's/^sid //p' "$out" | head -n1)"
  if [ -z "$sid" ]; then
    echo "FAIL $name: no session id printed"
    return 1
  fi
  n="$(forwarders "$sid")"
  if [ "$n" -ge 1 ]; then
    echo "ok   $name: session $sid served by its owner and $n other node(s)"
  else
    echo "FAIL $name: session $sid was served by one node only"
    return 1
  fi
}

status=0
echo "== socket.io-client through the proxy (polling only, then an upgrade)"
timeout 90 node "$HERE/cluster.mjs" "http://$PROXY" "http://${HTTP[2]}" "${TCP[1]}" \
  | tee "$TMP/js.out" || status=1
spread "socket.io-client" "$TMP/js.out" || status=1

echo "== python-socketio, polling only, through the proxy"
timeout 90 "$CLIENTS/.venv/bin/python" "$HERE/cluster.py" "http://$PROXY" "http://${HTTP[1]}" \
  | tee "$TMP/py.out" || status=1
spread "python-socketio" "$TMP/py.out" || status=1

# Last: it kills one of the nodes.
echo "== a node killed under publish load (socket.io-client through the proxy)"
timeout 120 node "$HERE/failover.mjs" "http://$PROXY" \
  "http://${HTTP[0]}=${NODE_PID[0]}" "http://${HTTP[1]}=${NODE_PID[1]}" "http://${HTTP[2]}=${NODE_PID[2]}" \
  || status=1

if [ "$status" -ne 0 ]; then
  for i in 0 1 2; do
    echo "-- node $i log (tail)"
    strip "$TMP/node$i.err" | tail -n 20
  done
fi
exit $status
