#!/usr/bin/env bash
# The cluster benchmark: nats-server, one ingest, EDGES edges on one port
# (scripts/cluster.sh), and loadgen with CONNS connections through that port.
# Prints loadgen's report, then every node's RSS and CPU (ingest, edges, NATS).
#
#   EDGES=7 CONNS=100000 RATE=40 scripts/bench-cluster.sh     # the 100k run
#   EDGES=3 CONNS=20000 scripts/bench-cluster.sh              # the everyday one (< 2 min)
#   EDGE_FLAGS="--bus-subscribe wildcard" SYMBOLS=5000 …       # compare how edges follow NATS
set -euo pipefail
cd "$(dirname "$0")/.."
EDGES=${EDGES:-3} CONNS=${CONNS:-20000} RATE=${RATE:-40} DURATION=${DURATION:-20s}
PORT=${PORT:-18800} NATS_PORT=${NATS_PORT:-14400} JSON=${JSON:-/tmp/bench-cluster.json}
cargo build --release --workspace -q
PORT=$PORT NATS_PORT=$NATS_PORT RATE=$RATE SYMBOLS=${SYMBOLS:-500} EDGE_FLAGS=${EDGE_FLAGS:-} \
    scripts/cluster.sh "$EDGES" 2>/tmp/cluster-bench.log &
CLUSTER=$!
trap 'kill $CLUSTER 2>/dev/null; wait $CLUSTER 2>/dev/null || true' EXIT
until grep -q "up —" /tmp/cluster-bench.log 2>/dev/null; do sleep 0.2; done
sleep 1
usage() { # RSS (bytes) and CPU (s) of every node, from their metrics ports; NATS from /proc.
    for port in $(seq 8081 $((8081 + EDGES))); do
        curl -s "http://127.0.0.1:$port/metrics" | awk -v p="$port" '
            /^process_resident_memory_bytes/ {r=$2} /^process_cpu_seconds_total/ {c=$2}
            /^tickcast_connections\{/ {n=$2} END {printf "%s %d %.2f %d\n", p, r, c, n}'
    done
    pid=$(pgrep -f "nats-server -js -a 127.0.0.1 -p $NATS_PORT" | head -1)
    awk -v hz="$(getconf CLK_TCK)" '{printf "nats %d %.2f 0\n", $24*4096, ($14+$15)/hz}' "/proc/$pid/stat"
}
before=$(usage)
target/release/loadgen --url "ws://127.0.0.1:$PORT/ws" --connections "$CONNS" --symbols-per-conn 5 \
    --duration "$DURATION" --json "$JSON"
after=$(usage)
echo "nodes (whole run: connecting and measuring):"
paste <(echo "$before") <(echo "$after") | awk -v conns="$CONNS" '
    { name = ($1 == "nats") ? "nats-server" : ($1 == 8081 ? "ingest" : "edge :" $1);
      printf "  %-12s RSS %7.1f MiB  CPU %6.2f s\n", name, $6/1048576, $7-$3;
      rss += $6; cpu += $7 - $3 }
    END { printf "  all          RSS %7.1f MiB = %.2f KiB per connection, CPU %.2f s\n", rss/1048576, rss/1024/conns, cpu }'
