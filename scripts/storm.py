#!/usr/bin/env python3
"""Run 1 of RELIABILITY.md: a reconnect storm on one node.

Starts tickcast (synthetic feed), holds --connections loadgen connections on
it (each subscribed to 5 of 500 symbols), kills the node with SIGKILL once
every connection is up and subscribed, and starts it again on the same port
at once. While it runs, the node's /metrics is sampled every 100 ms. Prints
one JSON object: time from the restart until every client is back and
resubscribed, the peak of new sessions per second, the 503s served, clients
that gave up, seq gaps, and how long clients went without ticks (outage: from
the loss to the first tick after it; resume: from the new welcome to it).

    scripts/storm.py --connections 15000 --max-handshake-rate 2000

Binaries: --bin (default target/release/tickcast), --loadgen (default
target/release/loadgen); build them first (cargo build --release --workspace).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from runlib import busiest_second, free_port, scrape, spawn






def start_server(args, port):
    return spawn([args.bin, "--listen", f"127.0.0.1:{port}", "--symbols", "500", "--rate", str(args.rate),
                  "--max-handshake-rate", str(args.max_handshake_rate)], "listening on http://")[0]


class Sampler(threading.Thread):
    """Samples a few series every `every` seconds while the run lasts."""

    KEEP = ("tickcast_connections", "tickcast_subscriptions",
            'tickcast_connections_total{result="accepted"}',
            'tickcast_refused_total{reason="handshake_rate"}',
            'tickcast_refused_total{reason="handshakes"}',
            "process_resident_memory_bytes", "process_cpu_seconds_total")

    def __init__(self, url, every):
        super().__init__(daemon=True)
        self.url, self.every, self.samples, self.stop = url, every, [], False

    def run(self):
        while not self.stop:
            t = time.time()
            try:
                m = scrape(self.url)
                self.samples.append((t, {k: m.get(k, 0.0) for k in self.KEEP}))
            except OSError:
                self.samples.append((t, None))  # the node is down
            time.sleep(max(0.0, self.every - (time.time() - t)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/tickcast")
    p.add_argument("--loadgen", default="target/release/loadgen")
    p.add_argument("--connections", type=int, default=15000)
    p.add_argument("--max-handshake-rate", type=int, default=2000)
    p.add_argument("--rate", type=int, default=2000, help="synthetic ticks/s")
    p.add_argument("--duration", default="60s", help="loadgen's measuring window (the kill comes 5 s into it)")
    args = p.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    subs = args.connections * 5
    report = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    server = start_server(args, port)
    sampler = Sampler(url, 0.1)
    sampler.start()
    loadgen = subprocess.Popen(
        [args.loadgen, "--url", f"ws://127.0.0.1:{port}/ws", "--connections", str(args.connections),
         "--symbols-per-conn", "5", "--duration", args.duration, "--json", report],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    human = []
    threading.Thread(target=lambda: human.extend(loadgen.stdout), daemon=True).start()
    try:
        deadline = time.time() + 120
        while True:
            s = sampler.samples[-1][1] if sampler.samples else None
            if s and s["tickcast_connections"] == args.connections and s["tickcast_subscriptions"] == subs:
                break
            if time.time() > deadline or loadgen.poll() is not None:
                sys.exit("the connections never all came up:\n" + "".join(human))
            time.sleep(0.1)
        time.sleep(5)
        refused_first = scrape(url).get('tickcast_refused_total{reason="handshake_rate"}', 0.0)
        server.send_signal(signal.SIGKILL)
        server.wait()
        killed = time.time()
        server = start_server(args, port)
        restarted = time.time()
        back = None
        deadline = time.time() + 300
        while back is None and time.time() < deadline:
            for t, s in list(sampler.samples):
                if t > restarted and s and s["tickcast_connections"] == args.connections \
                        and s["tickcast_subscriptions"] == subs:
                    back = t
                    break
            time.sleep(0.1)
        loadgen.wait()
    finally:
        sampler.stop = True
        for proc in (loadgen, server):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    r = json.load(open(report))
    os.unlink(report)
    after = [(t, s) for t, s in sampler.samples if t > restarted and s]
    # New sessions per second: the largest rise of `accepted` over any 1 s.
    peak = busiest_second([(t, s['tickcast_connections_total{result="accepted"}']) for t, s in after])
    lat = r["latency_us"]
    print(json.dumps({
        "connections": args.connections,
        "max_handshake_rate": args.max_handshake_rate,
        "down_s": round(restarted - killed, 2),
        "all_back_and_subscribed_s": None if back is None else round(back - restarted, 2),
        "peak_new_sessions_per_s": round(peak),
        "refused_503_after_restart": after[-1][1]['tickcast_refused_total{reason="handshake_rate"}'] if after else None,
        "refused_503_initial_connect": refused_first,
        "gave_up": r["connections"]["failed"],
        "reconnects": r["connections"]["reconnects"],
        "loadgen_waited_retry_after": r["connections"]["refused_retry_after"],
        "seq_gaps": r["gaps"],
        "stale": r["stale"],
        "refused_503_busy_handshakes_after_restart": after[-1][1]['tickcast_refused_total{reason="handshakes"}'] if after else None,
        "outage_ms": {**{k: lat["outage"][k] / 1000 for k in ("p50", "p99", "max")}, "count": lat["outage"]["count"]},
        "resume_ms": {**{k: lat["resume"][k] / 1000 for k in ("p50", "p99", "max")}, "count": lat["resume"]["count"]},
        "fanout_p99_ms": lat["fanout"]["p99"] / 1000,
        "loadgen_saturated": r["loadgen"]["saturated"],
    }, indent=1))


if __name__ == "__main__":
    main()
