#!/usr/bin/env bash
# loadgen at 100,000 connections on this machine, before the cluster exists:
# 7 independent tickcast processes on 7 ports (each under the 20,000
# open-files limit), each with its own synthetic feed; one loadgen run spreads
# the connections over all of them. Proves loadgen's side of the 100k run
# (workers, source addresses, merge); the NATS cluster is its own benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-100000} DURATION=${DURATION:-20s} BASE=${BASE:-18400} RATE=${RATE:-50}
cargo build --release --workspace -q
pids=() urls=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
for i in 1 2 3 4 5 6 7; do
    port=$((BASE + i))
    target/release/tickcast --listen "127.0.0.1:$port" --symbols 500 --rate "$RATE" 2>"/tmp/tickcast-100k-$i.log" &
    pids+=($!)
    urls+=(--url "ws://127.0.0.1:$port/ws")
done
for i in 1 2 3 4 5 6 7; do
    until curl -sf "http://127.0.0.1:$((BASE + i))/readyz" >/dev/null; do sleep 0.1; done
done
sleep 1
target/release/loadgen "${urls[@]}" --connections "$CONNS" --symbols-per-conn 5 --duration "$DURATION" \
    --json "${JSON:-/tmp/loadgen-100k.json}" "$@"
