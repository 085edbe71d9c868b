#!/usr/bin/env bash
# Side-by-side loopback throughput of the toolkit against iperf3, socat and nc.
# Usage: scripts/bench-toolkit.sh [SIZE_MIB]   (needs: cargo build --release -p prise)
# Files live on tmpfs (/dev/shm) so the disk does not limit any of the runs.
set -euo pipefail
SIZE_MIB=${1:-1024}
PRISE=${PRISE:-target/release/prise}
DIR=$(mktemp -d /dev/shm/prise-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2)/1048576:.0f}')"; }   # bytes start end -> MiB/s
# Waits until something listens on port $1 (without connecting to it: the
# one-shot listeners below would take the probe for their client).
wait_port() { for _ in $(seq 1 500); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.01; done; return 1; }
wait_line() { for _ in $(seq 1 500); do grep -q "listening on" "$1" 2>/dev/null && return 0; sleep 0.01; done; return 1; }
port_of() { grep -o ':[0-9]*/\?$' "$1" | tr -d ':/'; }

head -c $((SIZE_MIB << 20)) /dev/urandom > "$DIR/file"
BYTES=$((SIZE_MIB << 20))
echo "size: ${SIZE_MIB} MiB on tmpfs; $(nproc) cores; $(date -u +%F)"

# iperf3: the ceiling of the loopback path.
P=$(free_port)
iperf3 -s -1 -p "$P" >/dev/null 2>&1 & PIDS+=($!)
wait_port "$P"
IPERF=$(iperf3 -c 127.0.0.1 -p "$P" -n "${SIZE_MIB}M" -J | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["end"]["sum_received"]["bits_per_second"]/8/1048576))')
echo "iperf3 -n ${SIZE_MIB}M:                 $IPERF MiB/s"

# prise send/recv (hash, transfer, hash again, verify).
mkdir -p "$DIR/out"
"$PRISE" recv tcp://127.0.0.1:0 --out "$DIR/out" --quiet 2>"$DIR/recv.err" & PIDS+=($!)
wait_line "$DIR/recv.err"
RP=$(port_of "$DIR/recv.err")
T0=$(now); "$PRISE" send "$DIR/file" "tcp://127.0.0.1:$RP" --quiet; T1=$(now)
SEND=$(rate $BYTES $T0 $T1)
echo "prise send/recv (verified):       $SEND MiB/s  ($(python3 -c "print(f'{$SEND/$IPERF:.2f}')") of iperf3)"
rm -f "$DIR/out/file"

# socat file to file.
P=$(free_port)
socat -u TCP-LISTEN:"$P",bind=127.0.0.1,reuseaddr OPEN:"$DIR/out/socat",creat,trunc & S=$!; PIDS+=($S)
wait_port "$P"
T0=$(now); socat -u OPEN:"$DIR/file" TCP:127.0.0.1:"$P"; wait $S || true; T1=$(now)
SOCAT=$(rate $BYTES $T0 $T1)
echo "socat file->file (no verify):     $SOCAT MiB/s  ($(python3 -c "print(f'{$SOCAT/$IPERF:.2f}')") of iperf3)"
rm -f "$DIR/out/socat"

# Relaying stdin to a socket: prise connect vs socat vs nc, into one sink.
relay() {
    local name=$1; shift
    local P; P=$(free_port)
    socat -u -b 1048576 TCP-LISTEN:"$P",bind=127.0.0.1,reuseaddr OPEN:/dev/null & local S=$!; PIDS+=($S)
    wait_port "$P"
    local T0; T0=$(now)
    "$@" "$P" < "$DIR/file" > /dev/null
    wait $S || true
    local T1; T1=$(now)
    printf '%-33s %s MiB/s\n' "$name stdin->tcp:" "$(rate $BYTES $T0 $T1)"
}
relay "prise connect" sh -c "exec $PRISE connect tcp://127.0.0.1:\$0"
relay "socat" sh -c 'exec socat -u - TCP:127.0.0.1:$0'
relay "nc -N" sh -c 'exec nc -N 127.0.0.1 $0'

