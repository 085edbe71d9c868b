#!/usr/bin/env bash
# System calls per delivery in a Socket.IO fan-out, counted by the kernel
# (`perf stat -e raw_syscalls:sys_enter` and the send/write/epoll/futex
# tracepoints) on the server's process while `prise bench fanout` publishes.
# The count covers a window in the middle of the publishing phase only (after
# the subscribers joined, before the last message), and is divided by the
# deliveries made in that window (subscribers x messages published in it, the
# publisher's rate being steady there).
#   FLOOR_BIN=... scripts/bench-syscalls.sh SERVER SUBSCRIBERS RATE
#   SERVER: prise | floor | a path to a prise binary
# Needs perf with tracepoints (root). Stops the server by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER="${1:?server}"; SUBS="${2:-1000}"; RATE="${3:-20}"
WINDOW="${WINDOW:-4}"; SETUP="${SETUP:-6}"
BIN="${PRISE_BIN:-target/release/prise}"
SCRATCH="$(mktemp -d)"; PID=""
cleanup() { [ -z "$PID" ] || kill "$PID" 2>/dev/null || true; rm -rf "$SCRATCH"; }
trap cleanup EXIT
log="$SCRATCH/log"
case "$SERVER" in
  floor) "${FLOOR_BIN:?set FLOOR_BIN}" serve --http 127.0.0.1:0 --tcp 127.0.0.1:0 >"$log" & ;;
  *)
    bin="$BIN"; [ "$SERVER" = prise ] || bin="$SERVER"
    "$bin" serve --store sqlite --data "$SCRATCH/data" --http 127.0.0.1:0 --tcp 127.0.0.1:0 \
      --log warn --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 \
      --max-presence-fanout 1 >"$log" & ;;
esac
PID=$!
for _ in $(seq 1 100); do grep -q "^listening http" "$log" && break; sleep 0.1; done
TARGET="sio://$(sed -n 's/^listening http //p' "$log")"
# Publishing lasts SETUP + 2 x WINDOW seconds at RATE: the window sits inside it.
SECS=$(( SETUP + 2 * WINDOW ))
"$BIN" bench fanout --target "$TARGET" -n "$SUBS" --rate "$RATE" --duration "${SECS}s" \
  --sources 4 --pid "$PID" --quiet >"$SCRATCH/bench" 2>&1 &
BENCH=$!
sleep "$SETUP"
EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex
perf stat -x, -e "$EVENTS" -p "$PID" -- sleep "$WINDOW" 2>"$SCRATCH/perf" || true
wait "$BENCH" || true
tail -1 "$SCRATCH/bench"
# Deliveries in the window: the publisher's rate (published / publishing
# seconds) times subscribers times the window.
python3 - "$SCRATCH/perf" "$SCRATCH/bench" "$SUBS" "$WINDOW" <<'EOF'
import json, sys
perf, bench, subs, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
r = json.loads(open(bench).readline())
rate = r["published"] / r["seconds"]
deliveries = rate * subs * window
counts = {}
for line in open(perf):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit():
        name = f[2]
        counts["total" if name.startswith("raw_") else name.split("sys_enter_")[-1]] = int(f[0])
print(json.dumps({"messages_per_second": round(rate, 1), "deliveries_in_window": int(deliveries),
                  "syscalls_per_delivery": {k: round(v / deliveries, 3) for k, v in counts.items()}}))
EOF
