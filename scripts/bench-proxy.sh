#!/usr/bin/env bash
# Side-by-side benchmark of TCP proxies on loopback, in one run:
#   direct (no proxy) | prise proxy (splice) | prise proxy (buffers) | HAProxy (TCP mode, splice) | socat
# 1. bulk throughput: iperf3, one stream, client -> server (and -R, server -> client)
# 2. request/response: redis-benchmark PING (inline and bulk) with 50 clients
#
# Everything runs on 127.0.0.1 with ports found free at start; only the processes started
# here are stopped (by pid). Needs: scripts/deps-proxy.sh.
# Env: DURATION (s per iperf3 run, default 5), REPEAT (runs per case, default 3),
#      REQUESTS (redis-benchmark -n, default 200000), CLIENTS (default 50),
#      PRISE (path of the prise binary, default target/release/prise, built if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
PRISE=${PRISE:-target/release/prise}
[[ -x $PRISE ]] || cargo build --release -p prise

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port: wait (bounded, 10 s) until something listens
    for _ in $(seq 1 200); do
        if python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1',$1)))"; then
            return 0
        fi
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}

# Starts "name port -- command..." in the background and records its pid.
start() {
    local port=$1
    shift
    "$@" >"$WORK/log.$port" 2>&1 &
    PIDS+=($!)
    wait_port "$port"
}

# Proxies for one backend port; prints "name port" lines.
start_proxies() {
    local backend=$1 tag=$2 p
    p=$(free_port)
    start "$p" "$PRISE" proxy --listen "127.0.0.1:$p" --backend "127.0.0.1:$backend" --check none
    echo "prise-splice $p"
    p=$(free_port)
    start "$p" "$PRISE" proxy --listen "127.0.0.1:$p" --backend "127.0.0.1:$backend" --check none --no-splice
    echo "prise-buffers $p"
    p=$(free_port)
    cat >"$WORK/haproxy-$tag.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    option splice-request
    option splice-response
frontend fe
    bind 127.0.0.1:$p
    default_backend be
backend be
    server s1 127.0.0.1:$backend
EOF
    start "$p" haproxy -db -f "$WORK/haproxy-$tag.cfg"
    echo "haproxy-splice $p"
    p=$(free_port)
    start "$p" socat "TCP-LISTEN:$p,fork,reuseaddr,bind=127.0.0.1" "TCP:127.0.0.1:$backend"
    echo "socat $p"
}

echo "# prise proxy benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
echo "# $("$PRISE" --version 2>/dev/null || echo prise) | $(haproxy -v | head -1 | cut -d' ' -f1-3) | $(iperf3 --version | head -1 | cut -d' ' -f1-2) | $(socat -V | grep 'socat version' | cut -d' ' -f1-3) | redis $(redis-server --version | cut -d' ' -f3)"

# ---- bulk throughput -------------------------------------------------------------------
ISRV=$(free_port)
start "$ISRV" iperf3 -s -p "$ISRV" -B 127.0.0.1
# (Not in a subshell: `start` records the pids to stop.)
start_proxies "$ISRV" iperf >"$WORK/targets-iperf"
mapfile -t TARGETS < <(echo "direct $ISRV"; cat "$WORK/targets-iperf")

gbps() { # port [extra iperf3 args]: receiver Gbit/s of one run
    local port=$1
    shift
    iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -J "$@" |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

echo
echo "## iperf3, 1 stream, ${DURATION}s, best of $REPEAT interleaved runs (Gbit/s; fraction of direct)"
declare -A UP DOWN
for _ in $(seq 1 "$REPEAT"); do
    for t in "${TARGETS[@]}"; do
        read -r name port <<<"$t"
        u=$(gbps "$port")
        d=$(gbps "$port" -R)
        UP[$name]=$(python3 -c "print(max(${UP[$name]:-0},$u))")
        DOWN[$name]=$(python3 -c "print(max(${DOWN[$name]:-0},$d))")
    done
done
printf "%-14s %10s %8s %12s %8s\n" target "up" "frac" "down(-R)" "frac"
for t in "${TARGETS[@]}"; do
    read -r name _ <<<"$t"
    printf "%-14s %10s %8s %12s %8s\n" "$name" "${UP[$name]}" \
        "$(python3 -c "print('%.2f' % (${UP[$name]}/${UP[direct]}))")" "${DOWN[$name]}" \
        "$(python3 -c "print('%.2f' % (${DOWN[$name]}/${DOWN[direct]}))")"
done

# ---- request/response ------------------------------------------------------------------
RSRV=$(free_port)
start "$RSRV" redis-server --port "$RSRV" --bind 127.0.0.1 --save '' --appendonly no
start_proxies "$RSRV" redis >"$WORK/targets-redis"
mapfile -t TARGETS < <(echo "direct $RSRV"; cat "$WORK/targets-redis")

echo
echo "## redis-benchmark -t ping -n $REQUESTS -c $CLIENTS, best of $REPEAT interleaved runs (requests/s; fraction of direct)"
declare -A INL BULK
for _ in $(seq 1 "$REPEAT"); do
    for t in "${TARGETS[@]}"; do
        read -r name port <<<"$t"
        # Bounded: a target that stalls (socat's fork per connection can)
        # counts as 0 instead of hanging the run.
        out=$(timeout 120 redis-benchmark -h 127.0.0.1 -p "$port" -t ping -n "$REQUESTS" -c "$CLIENTS" -q 2>/dev/null | tr '\r' '\n' || true)
        inl=$(grep -o 'PING_INLINE: [0-9.]*' <<<"$out" | tail -1 | cut -d' ' -f2 || true)
        bulk=$(grep -o 'PING_MBULK: [0-9.]*' <<<"$out" | tail -1 | cut -d' ' -f2 || true)
        inl=${inl:-0}; bulk=${bulk:-0}
        INL[$name]=$(python3 -c "print(max(${INL[$name]:-0},$inl))")
        BULK[$name]=$(python3 -c "print(max(${BULK[$name]:-0},$bulk))")
    done
done
printf "%-14s %12s %8s %12s %8s\n" target "PING_INLINE" "frac" "PING_MBULK" "frac"
for t in "${TARGETS[@]}"; do
    read -r name _ <<<"$t"
    printf "%-14s %12s %8s %12s %8s\n" "$name" "${INL[$name]}" \
        "$(python3 -c "print('%.2f' % (${INL[$name]}/${INL[direct]}))")" "${BULK[$name]}" \
        "$(python3 -c "print('%.2f' % (${BULK[$name]}/${BULK[direct]}))")"
done
