#!/usr/bin/env bash
# Fan-out through Redis: N release-built `prise serve --redis` nodes on loopback, one
# `prise bench fanout` per node (own room each), run at once. Usage:
#   scripts/bench-redis.sh SUBSCRIBERS RATE DURATION NODES   (e.g. 100 1000 5s 3)
# Needs redis-server, redis-cli, curl, python3 and target/release/prise.
set -u
BIN=${PRISE_BIN:-$(dirname "$0")/../target/release/prise}
SUBS=$1; RATE=$2; DUR=$3; N=$4
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
D=$(mktemp -d); RP=$(free)
redis-server --port $RP --bind 127.0.0.1 --dir $D --save '' --appendonly no --logfile $D/redis.log --daemonize no & RPID=$!
until redis-cli -p $RP ping >/dev/null 2>&1; do sleep 0.1; done
PIDS=""; HS=""
for i in $(seq 1 $N); do
  h=$(free); t=$(free)
  $BIN serve --http 127.0.0.1:$h --tcp 127.0.0.1:$t --redis redis://127.0.0.1:$RP --rate-messages 0 --ip-connect-rate 0 --max-connections-per-ip 0 >$D/node-$i.log 2>&1 &
  PIDS="$PIDS $!"; HS="$HS $h"
done
for h in $HS; do until curl -sf http://127.0.0.1:$h/readyz >/dev/null; do sleep 0.1; done; done
i=0; BP=""
for h in $HS; do i=$((i+1))
  timeout 60 $BIN bench fanout --target ws://127.0.0.1:$h/ws --subscribers $SUBS --rate $RATE --duration $DUR --room bench-$i --quiet > $D/b$i.out 2>&1 &
  BP="$BP $!"
done
wait $BP; grep -h "^fanout" $D/b*.out; tail -3 $D/node-1.log
kill $PIDS; wait $PIDS 2>/dev/null; kill $RPID; wait $RPID 2>/dev/null; rm -rf $D
