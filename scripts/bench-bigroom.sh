#!/usr/bin/env bash
# Big rooms: N Socket.IO members joining one room, for each N given.
#
# For each N: starts a release `prise serve` (memory store, ports picked by
# the system, the per-IP and per-connection rate limits turned off), then
# ceil(N/5000) `prise bench bigroom` processes (one process holds at most
# 20,000 files here) spread over 16 loopback source addresses, driven phase
# by phase through a FIFO each:
#   1. connect N idle clients            -> server RSS per idle connection
#   2. every client joins room "big"     -> RSS per member over the idle cost,
#                                           first and last join after the
#                                           signal, the largest join answer
#   3. server quiet, then M messages to the room, each after the previous
#      ack                               -> deliveries per server CPU-second
# Prints one JSON line per N (and a summary on stderr), stops the server by
# its PID.
#   scripts/bench-bigroom.sh [N...]      (default: 1000 5000 20000)
#   PRISE_BIN=path  MESSAGES=20  SOURCES=16  PER_PROCESS=5000
# The server holds N sockets plus its own files under the per-process limit
# (`ulimit -n`); an N above what fits is lowered to it, and the report says so.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 5000 20000)
BIN="${PRISE_BIN:-target/release/prise}"
[ -n "${PRISE_BIN:-}" ] || cargo build --release --quiet -p prise
MESSAGES="${MESSAGES:-20}"
SOURCES="${SOURCES:-16}"
PER_PROCESS="${PER_PROCESS:-5000}"
HZ="$(getconf CLK_TCK)"

rss() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
cpu() { awk -v hz="$HZ" '{sub(/^.*\) /, ""); print ($12 + $13) / hz}' "/proc/$1/stat"; }
now_ms() { date +%s%3N; }

# Waits until every file named holds a line with "phase":"$1" (at most $2 s).
wait_phase() {
  local phase="$1" limit="$2"; shift 2
  local deadline=$(( $(date +%s) + limit )) f
  for f in "$@"; do
    until grep -q "\"phase\":\"$phase\"" "$f"; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $phase in $f" >&2; return 1; }
      sleep 0.2
    done
  done
}

# Waits until the server uses under 5% of a core over 0.5 s (at most 60 s).
settle() {
  local pid="$1" a b i
  for i in $(seq 1 120); do
    a="$(cpu "$pid")"; sleep 0.5; b="$(cpu "$pid")"
    awk -v a="$a" -v b="$b" 'BEGIN { exit !(b - a < 0.025) }' && return 0
  done
}

run() {
  local asked="$1" n="$1" work log pid http
  work="$(mktemp -d)"
  log="$work/server.log"
  local limit; limit="$(ulimit -n)"
  local fit=$(( limit - 64 ))
  [ "$n" -le "$fit" ] || n="$fit"
  "$BIN" serve --store memory --http 127.0.0.1:0 --tcp 127.0.0.1:0 --log warn \
    --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 \
    --max-connections $(( n + 100 )) >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -qs "^listening http" "$log" && break; sleep 0.1; done
  http="$(sed -n 's/^listening http //p' "$log")"
  local rss0; rss0="$(rss "$pid")"

  local procs=$(( (n + PER_PROCESS - 1) / PER_PROCESS )) p share left="$n"
  local -a fds=() outs=() kids=()
  for p in $(seq 0 $(( procs - 1 ))); do
    share=$(( left / (procs - p) )); left=$(( left - share ))
    mkfifo "$work/ctl.$p"
    local extra=()
    [ "$p" -ne 0 ] || extra=(--publisher)
    "$BIN" bench bigroom --target "sio://$http" -n "$share" --sources "$SOURCES" --quiet \
      "${extra[@]}" <"$work/ctl.$p" >"$work/out.$p" 2>"$work/err.$p" &
    kids+=($!)
    exec {fd}>"$work/ctl.$p"
    fds+=("$fd"); outs+=("$work/out.$p")
  done
  stop() {
    local f
    for f in "${fds[@]}"; do echo quit >&"$f" 2>/dev/null || true; exec {f}>&-; done
    for f in "${kids[@]}"; do wait "$f" 2>/dev/null || true; done
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  }

  wait_phase connected 600 "${outs[@]}"
  sleep 2
  local rss1; rss1="$(rss "$pid")"
  local sent f; sent="$(now_ms)"
  for f in "${fds[@]}"; do echo join >&"$f"; done
  wait_phase joined 900 "${outs[@]}"
  sleep 2
  local rss2; rss2="$(rss "$pid")"
  settle "$pid"
  local cpu0; cpu0="$(cpu "$pid")"
  echo "publish $MESSAGES" >&"${fds[0]}"
  wait_phase published 600 "${outs[0]}"
  for f in "${fds[@]}"; do echo "count $MESSAGES" >&"$f"; done
  wait_phase received 300 "${outs[@]}"
  local cpu1; cpu1="$(cpu "$pid")"
  stop

  cat "${outs[@]}" | jq -s -c \
    --argjson asked "$asked" --argjson n "$n" --argjson procs "$procs" \
    --argjson sent "$sent" --argjson rss0 "$rss0" --argjson rss1 "$rss1" --argjson rss2 "$rss2" \
    --argjson cpu0 "$cpu0" --argjson cpu1 "$cpu1" --argjson messages "$MESSAGES" \
    --argjson limit "$limit" '
    (map(select(.phase == "connected"))) as $c |
    (map(select(.phase == "joined"))) as $j |
    (map(select(.phase == "received"))) as $r |
    ($j | map(.joined) | add) as $joined |
    ($r | map(.deliveries) | add) as $deliveries |
    {
      bench: "bigroom",
      members_asked: $asked,
      members: $n,
      lowered_to_fit_open_file_limit: (if $n < $asked then $limit else null end),
      client_processes: $procs,
      open: ($c | map(.open) | add),
      joined: $joined,
      join_failures: ($j | map(.failed) | add),
      server_rss_idle_bytes: $rss0,
      server_rss_bytes_per_idle_connection: (($rss1 - $rss0) / $n),
      server_rss_bytes_per_member_over_idle: (($rss2 - $rss1) / $n),
      first_join_ms: (($j | map(.first_join_unix_ms) | min) - $sent),
      last_join_ms: (($j | map(.last_join_unix_ms) | max) - $sent),
      largest_join_answer_bytes: ($j | map(.largest_join_answer_bytes) | max),
      messages: $messages,
      deliveries: $deliveries,
      expected_deliveries: ($r | map(.expected) | add),
      server_cpu_seconds: ($cpu1 - $cpu0),
      deliveries_per_server_cpu_second: (if $cpu1 > $cpu0 then $deliveries / ($cpu1 - $cpu0) else null end)
    }'
  rm -rf "$work"
}

for n in "${SIZES[@]}"; do
  echo "== $n Socket.IO members in one room" >&2
  report="$(run "$n")"
  echo "$report"
  echo "$report" | jq -r '"   \(.joined)/\(.members) joined; RSS \(.server_rss_bytes_per_idle_connection | floor) B per idle connection, +\(.server_rss_bytes_per_member_over_idle | floor) B per member; joins done \(.first_join_ms)..\(.last_join_ms) ms after the signal; largest join answer \(.largest_join_answer_bytes) B; \(.deliveries)/\(.expected_deliveries) deliveries, \(.deliveries_per_server_cpu_second // 0 | floor) per server CPU-second"' >&2
done
