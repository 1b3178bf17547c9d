#!/usr/bin/env python3
"""Frames per write of every tickcast run in a peers sweep.

../shared/peers/compare.sh starts a fresh tickcast for every point and its
client (wsprobe) knows nothing of writes, so this watches the node's
/metrics while a sweep runs: one record per server instance (a new instance
is seen when its counters go back), holding the writes and frames written
from 12 s after the instance was first seen (connections up, warm-up under
way) to its last sample, i.e. over the measured window.

    scripts/peers-metrics.py --port 9131 --out FILE &   # then the sweep; stop with SIGTERM

Writes FILE as JSON lines: {"instance": i, "frames_per_write": …, "writes": …, "frames": …}.
"""
import argparse
import json
import signal
import sys
import time
import urllib.request

SKIP_S = 12.0


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        for name in ("tickcast_writes_total", "tickcast_frames_written_total"):
            # `name value` or `name{labels} value`
            if line.startswith(name) and line[len(name)] in " {":
                values[name] = float(line.rsplit(" ", 1)[1])
    if len(values) < 2:
        return None
    return values["tickcast_writes_total"], values["tickcast_frames_written_total"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=9131)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    out = open(args.out, "a", buffering=1)
    state = {"instance": 0, "first": None, "base": None, "last": None, "prev": None}

    def close_instance():
        if state["base"] and state["last"] and state["last"] != state["base"]:
            writes = state["last"][0] - state["base"][0]
            frames = state["last"][1] - state["base"][1]
            out.write(json.dumps({
                "instance": state["instance"],
                "writes": writes,
                "frames": frames,
                "frames_per_write": frames / writes if writes else 0.0,
            }) + "\n")
        if state["first"] is not None:
            state["instance"] += 1
        state.update(first=None, base=None, last=None, prev=None)

    def stop(*_):
        close_instance()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        sample = scrape(args.port)
        now = time.monotonic()
        if sample is None:
            if state["first"] is not None:
                close_instance()
        else:
            if state["prev"] is not None and sample[0] < state["prev"][0]:
                close_instance()
            if state["first"] is None:
                state["first"] = now
            if state["base"] is None and now - state["first"] >= SKIP_S:
                state["base"] = sample
            state["last"] = sample
            state["prev"] = sample
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
