#!/usr/bin/env bash
# A local cluster on loopback: nats-server with JetStream, one ingest (the
# synthetic feed), and EDGES edges sharing one client port (SO_REUSEPORT).
# Runs until Ctrl-C (or SIGTERM), then stops everything it started.
#
#   scripts/cluster.sh [EDGES]        clients: ws://127.0.0.1:$PORT/ws
#
# Metrics: ingest on 127.0.0.1:8081, edge i on 127.0.0.1:$((8081 + i)) (as in
# dashboards/prometheus.yml). Environment: PORT (8080), NATS_PORT (4222),
# SYMBOLS (500), RATE (5000 ticks/s), BIN (target/release/tickcast),
# EDGE_FLAGS (extra flags for every edge, e.g. "--bus-subscribe wildcard").
set -euo pipefail
cd "$(dirname "$0")/.."
EDGES=${1:-3} PORT=${PORT:-8080} NATS_PORT=${NATS_PORT:-4222} SYMBOLS=${SYMBOLS:-500} RATE=${RATE:-5000}
BIN=${BIN:-target/release/tickcast}
[ -x "$BIN" ] || cargo build --release -q --bin tickcast
command -v nats-server >/dev/null || { echo "cluster.sh: nats-server is not installed (Debian package nats-server)" >&2; exit 1; }
store=$(mktemp -d)
pids=()
stop() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$store"
    echo "cluster.sh: stopped" >&2
}
trap stop EXIT INT TERM
ready() { until curl -sf "http://$1/readyz" >/dev/null; do sleep 0.1; done; }

nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$store" 2>"$store/nats.log" &
pids+=($!)
until (echo > "/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; do sleep 0.1; done
NATS="nats://127.0.0.1:$NATS_PORT"
"$BIN" --role ingest --nats "$NATS" --node ingest --listen 127.0.0.1:8081 --symbols "$SYMBOLS" --rate "$RATE" 2>"$store/ingest.log" &
pids+=($!)
ready 127.0.0.1:8081
for i in $(seq 1 "$EDGES"); do
    "$BIN" --role edge --nats "$NATS" --node "edge-$i" --listen "127.0.0.1:$PORT" --reuse-port \
        --metrics-listen "127.0.0.1:$((8081 + i))" ${EDGE_FLAGS:-} 2>"$store/edge-$i.log" &
    pids+=($!)
done
for i in $(seq 1 "$EDGES"); do ready "127.0.0.1:$((8081 + i))"; done
echo "cluster.sh: up — clients: ws://127.0.0.1:$PORT/ws ($EDGES edges), NATS $NATS, ingest metrics :8081, edges :8082…" >&2
wait
