#!/usr/bin/env bash
# One tickcast process, 15,000 connections each subscribed to 5 of 500 symbols,
# the synthetic feed at RATE ticks/s; loadgen measures. Prints loadgen's report
# and writes it as JSON to $JSON. Example: RATE=500 scripts/bench-15k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-500} CONNS=${CONNS:-15000} DURATION=${DURATION:-30s} PORT=${PORT:-18200}
JSON=${JSON:-/tmp/bench-15k.json}
cargo build --release --workspace -q
target/release/tickcast --listen "127.0.0.1:$PORT" --symbols 500 --rate "$RATE" 2>/tmp/tickcast-bench.log &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.1; done
sleep 1 # every symbol's first quote
echo "server: tickcast --symbols 500 --rate $RATE (pid $SERVER)"
target/release/loadgen --url "ws://127.0.0.1:$PORT/ws" --connections "$CONNS" --symbols-per-conn 5 \
    --duration "$DURATION" --json "$JSON" "$@"
