#!/usr/bin/env python3
"""One markdown table from a scripts/bench-peers.sh results folder.

Every point of every run in the folder, one row each: server (and for
tickcast the --max-delay), workload, R, delivered, p50/p99 (fan-out, ms),
e2e p99, server cores, µs of server CPU per delivered message, client
cores, machine busy, RSS per connection, and tickcast's frames per write.

    scripts/peers-table.py target/peers/results/sweep-<stamp>
"""
import glob
import json
import os
import sys


def points(path):
    data = json.load(open(path))
    return data["points"] if "points" in data else [data]


def main():
    folder = sys.argv[1]
    print("| run | R | delivered | p50 ms | p99 ms | e2e p99 ms | server cores | µs/msg | client cores | busy | RSS/conn KiB | frames/write |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in sorted(d for d in glob.glob(os.path.join(folder, "*")) if os.path.isdir(d)):
        tag = os.path.basename(run)
        fpw = []
        fpw_file = run + ".fpw.jsonl"
        if os.path.exists(fpw_file):
            fpw = [json.loads(line)["frames_per_write"] for line in open(fpw_file) if line.strip()]
        rows = [p for js in sorted(glob.glob(os.path.join(run, "*.json"))) for p in points(js)]
        for i, p in enumerate(rows):
            rate = p["delivered_per_sec"] or 1
            cpu = p["server_cpu_cores"]
            f = f"{fpw[i]:.2f}" if i < len(fpw) else "—"
            print(f"| {tag} | {p['rate_target']:.0f} | {p['delivery_ratio'] * 100:.1f}% "
                  f"| {p['latency_pub_us']['p50'] / 1000:.2f} | {p['latency_pub_us']['p99'] / 1000:.1f} "
                  f"| {p['latency_ts_us']['p99'] / 1000:.1f} | {cpu:.2f} | {cpu * 1e6 / rate:.2f} "
                  f"| {p['client_cpu_cores']:.2f} | {p['machine_busy_cores']:.2f} "
                  f"| {p['rss_per_conn_bytes'] / 1024:.1f} | {f} |")


if __name__ == "__main__":
    main()
