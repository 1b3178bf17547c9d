#!/usr/bin/env bash
# The side-by-side of BENCHMARKS.md: tickcast and the peers of ../shared/peers
# on one workload with one client, in one sitting. Copies the harness to
# target/peers (it builds beside itself), builds what it needs, then runs one
# suite and writes its results under target/peers/results/<suite>-<stamp>/.
#
#   scripts/bench-peers.sh sweep      # both spreads, R = 100 … 1000, every server
#   scripts/bench-peers.sh watchlist  # 2,000 connections × 50 of 500 symbols, R = 1000 2000 3000
#   scripts/bench-peers.sh curve      # --max-delay 0 1 2 5 10 20 ms: blocks R=100 and 500, random R=300, watch-list R=2000
#   scripts/bench-peers.sh floor      # rawfloor at the sweep's message rates
#
# Environment: TICKCAST_BIN (the tickcast binary; default: build this
# checkout), DELAY (tickcast's corking delay besides 0, default: the
# binary's default), SERVERS (default: all), RATES, DURATION (default 20).
# tickcast runs get frames per write from its /metrics (scripts/peers-metrics.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$ROOT/target/peers
SUITE=${1:?usage: scripts/bench-peers.sh sweep|watchlist|curve|floor}
DURATION=${DURATION:-20}
SERVERS=${SERVERS:-"tickcast naive-rs node-ws nchan sockudo"}

if [[ ! -d $PEERS ]]; then
  cp -r ../shared/peers "$PEERS"
fi
# The copies live inside this workspace's folder: keep cargo from taking
# them for members of it.
for manifest in "$PEERS"/{wsprobe,rawfloor,naive-rs}/Cargo.toml; do
  grep -q '^\[workspace\]' "$manifest" || printf '\n[workspace]\n' >>"$manifest"
done
# TICKCAST_BIN: a binary built beforehand (nothing is built during a
# sitting then, and the results name the build they measured).
if [[ -n ${TICKCAST_BIN:-} ]]; then
  BIN=$TICKCAST_BIN
else
  cargo build --release -q --bin tickcast
  BIN=$ROOT/target/release/tickcast
fi
(cd "$PEERS/wsprobe" && cargo build --release --locked -q)
cargo build --release -q --manifest-path "$PEERS/rawfloor/Cargo.toml"
DELAY=${DELAY:-$("$BIN" --help | grep -A6 -- '--max-delay' | sed -n 's/.*\[default: \(.*\)\]/\1/p' | head -1)}
[[ -n $DELAY ]] || DELAY=0

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$PEERS/results/$SUITE-$STAMP
mkdir -p "$OUT"
echo "results: $OUT"
echo "tickcast: $BIN ($("$BIN" --version 2>/dev/null || true))" | tee "$OUT/build.txt"

# tickcast with a given --max-delay; frames per write recorded beside it.
tickcast_run() { # delay tag compare-args…
  local delay=$1 tag=$2
  shift 2
  python3 scripts/peers-metrics.py --port 9131 --out "$OUT/tickcast-$tag.fpw.jsonl" &
  local sampler=$!
  "$PEERS/compare.sh" tickcast --bin "$BIN" --server-args "--max-delay $delay" \
    --duration "$DURATION" --out "$OUT/tickcast-$tag" "$@" || true
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
}

peer_run() { # server tag compare-args…
  local server=$1 tag=$2
  shift 2
  "$PEERS/compare.sh" "$server" --duration "$DURATION" --out "$OUT/$server-$tag" "$@" || true
}

every_server() { # tag compare-args…
  local tag=$1
  shift
  for s in $SERVERS; do
    if [[ $s == tickcast ]]; then
      tickcast_run 0 "$tag-delay0" "$@"
      [[ $DELAY == 0 || $DELAY == 0ms ]] || tickcast_run "$DELAY" "$tag-delay$DELAY" "$@"
    else
      peer_run "$s" "$tag" "$@"
    fi
  done
}

WATCHLIST=(--conns 2000 --per-conn 50 --symbols 500 --spread random)
case $SUITE in
  sweep)
    RATES=${RATES:-"100 200 300 500 700 1000"}
    for spread in blocks random; do
      every_server "$spread" --spread "$spread" --rates "$RATES"
    done ;;
  watchlist)
    RATES=${RATES:-"1000 2000 3000"}
    every_server watchlist "${WATCHLIST[@]}" --rates "$RATES" ;;
  curve)
    for d in ${DELAYS:-0 1ms 2ms 5ms 10ms 20ms}; do
      tickcast_run "$d" "light-$d" --spread blocks --rates 100 --no-stop
      tickcast_run "$d" "blocks-$d" --spread blocks --rates "${CURVE_RATE_1:-500}" --no-stop
      tickcast_run "$d" "random-$d" --spread random --rates "${CURVE_RATE_RANDOM:-300}" --no-stop
      tickcast_run "$d" "watchlist-$d" "${WATCHLIST[@]}" --rates "${CURVE_RATE_2:-2000}" --no-stop
    done ;;
  floor)
    # R updates/s of the sweep = R × 500 messages/s at 10,000 connections;
    # rawfloor holds 9,000 (open files), the cost per message is what counts.
    ulimit -n 20000
    for r in ${RATES:-100 200 300 500 700 1000}; do
      for k in 1 5; do
        "$PEERS/rawfloor/target/release/rawfloor" 9000 "$k" $((r * 500)) 8 | tee -a "$OUT/rawfloor.txt"
      done
    done ;;
  *) echo "bench-peers.sh: unknown suite $SUITE" >&2; exit 2 ;;
esac
for table in "$OUT"/*/*.md; do
  [[ -e $table ]] && { echo "## $(basename "$(dirname "$table")")"; grep '^|' "$table"; echo; }
done >"$OUT/summary.md"
for f in "$OUT"/*.fpw.jsonl; do
  [[ -e $f ]] && { echo "## $(basename "$f")"; cat "$f"; }
done >>"$OUT/summary.md"
cat "$OUT/summary.md"
