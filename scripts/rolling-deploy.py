#!/usr/bin/env python3
"""Run 2 of RELIABILITY.md: a rolling deploy of a cluster.

nats-server (JetStream), one ingest (synthetic feed) and --edges edges
sharing one port (SO_REUSEPORT), --connections loadgen connections on it.
Each edge in turn gets SIGTERM (a drain: `reconnect`, then 1001, in waves),
is started again once it has exited, and the next waits until every client
is connected again. The edges' /metrics are sampled every 100 ms. Prints one
JSON object: per edge drained, how long until every client was back; the
worst second of new sessions on any node; 503s; clients that gave up; seq
gaps; stale values seen after a resume (loadgen counts any tick older than
what its connection held); how long clients went without ticks.

    scripts/rolling-deploy.py --connections 20000 --edges 3

Binaries: --bin (default target/release/tickcast), --loadgen (default
target/release/loadgen). Needs nats-server.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from runlib import busiest_second, free_port, scrape, spawn








ACCEPTED = 'tickcast_connections_total{result="accepted"}'
REFUSED = 'tickcast_refused_total{reason="handshake_rate"}'
UNAVAILABLE = 'tickcast_refused_total{reason="unavailable"}'


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/tickcast")
    p.add_argument("--loadgen", default="target/release/loadgen")
    p.add_argument("--connections", type=int, default=20000)
    p.add_argument("--edges", type=int, default=3)
    p.add_argument("--drain-period", default="5s")
    p.add_argument("--max-handshake-rate", type=int, default=3000)
    p.add_argument("--duration", default="90s", help="loadgen's window: longer than the rounds take")
    args = p.parse_args()

    store = tempfile.mkdtemp(prefix="tickcast-nats-")
    nats_port, public = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    procs = {}
    nats = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while socket.socket().connect_ex(("127.0.0.1", nats_port)) != 0:
        if time.time() > deadline:
            sys.exit("nats-server did not start")
        time.sleep(0.05)
    procs["ingest"], _ = spawn([args.bin, "--role", "ingest", "--nats", nats_url, "--listen", f"127.0.0.1:{free_port()}",
                             "--symbols", "500", "--rate", "2000", "--node", "ingest"], "listening on")
    ops = {f"edge-{i}": free_port() for i in range(1, args.edges + 1)}

    def start_edge(name):
        procs[name], _ = spawn([args.bin, "--role", "edge", "--nats", nats_url, "--listen", f"127.0.0.1:{public}",
                             "--reuse-port", "--metrics-listen", f"127.0.0.1:{ops[name]}", "--node", name,
                             "--drain-period", args.drain_period,
                             "--max-handshake-rate", str(args.max_handshake_rate)], "listening on")

    def ready(name):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ops[name]}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    samples = {name: [] for name in ops}
    # Queue entries dropped for slow readers (drop-oldest: the latest value is
    # re-sent, so the client sees a seq gap, not a stale value), per edge,
    # summed across its restarts.
    dropped, last_dropped = {}, {}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            t = time.time()
            for name, port in ops.items():
                try:
                    m = scrape(f"http://127.0.0.1:{port}/metrics")
                    samples[name].append((t, m.get("tickcast_connections", 0.0), m.get(ACCEPTED, 0.0),
                                          m.get(REFUSED, 0.0) + m.get(UNAVAILABLE, 0.0)))
                    dropped[name] = dropped.get(name, 0.0) + max(0.0, m.get("tickcast_dropped_total", 0.0) - last_dropped.get(name, 0.0))
                    last_dropped[name] = m.get("tickcast_dropped_total", 0.0)
                except OSError:
                    pass
            stop.wait(max(0.0, 0.1 - (time.time() - t)))

    def total_connections():
        return sum(s[-1][1] for s in samples.values() if s)

    report = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    loadgen = None
    try:
        for name in ops:
            start_edge(name)
        deadline = time.time() + 60
        while not all(ready(n) for n in ops):
            if time.time() > deadline:
                sys.exit("edges never ready")
            time.sleep(0.1)
        threading.Thread(target=sample, daemon=True).start()
        loadgen = subprocess.Popen(
            [args.loadgen, "--url", f"ws://127.0.0.1:{public}/ws", "--connections", str(args.connections),
             "--symbols-per-conn", "5", "--duration", args.duration, "--json", report],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        human = []
        threading.Thread(target=lambda: human.extend(loadgen.stdout), daemon=True).start()
        deadline = time.time() + 120
        while total_connections() < args.connections:
            if time.time() > deadline or loadgen.poll() is not None:
                sys.exit("never all connected:\n" + "".join(human))
            time.sleep(0.2)
        time.sleep(5)
        rounds = []
        for name in ops:
            before = {n: (samples[n][-1][1] if samples[n] else 0) for n in ops}
            t0 = time.time()
            procs[name].send_signal(signal.SIGTERM)
            procs[name].wait()
            exited = time.time() - t0
            start_edge(name)
            while not ready(name):
                time.sleep(0.05)
            restarted = time.time() - t0
            deadline = time.time() + 120
            while total_connections() < args.connections:
                if time.time() > deadline:
                    break
                time.sleep(0.1)
            rounds.append({"edge": name, "held": before[name], "drained_and_exited_s": round(exited, 2),
                           "ready_again_s": round(restarted, 2),
                           "all_back_s": round(time.time() - t0, 2) if total_connections() >= args.connections else None,
                           "after": {n: samples[n][-1][1] for n in ops}})
            time.sleep(3)
        loadgen.wait()  # its window outlasts the rounds
    finally:
        stop.set()
        for proc in [loadgen, *procs.values(), nats]:
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    r = json.load(open(report))
    os.unlink(report)
    worst = {name: round(busiest_second([(t, a) for t, _, a, _ in s])) for name, s in samples.items()}
    lat = r["latency_us"]
    print(json.dumps({
        "connections": args.connections, "edges": args.edges, "drain_period": args.drain_period,
        "max_handshake_rate": args.max_handshake_rate, "rounds": rounds,
        "worst_second_new_sessions_per_node": worst,
        "refused_503": {n: s[-1][3] for n, s in samples.items() if s},
        "gave_up": r["connections"]["failed"], "reconnects": r["connections"]["reconnects"],
        "reconnect_messages": r["connections"]["reconnect_messages"],
        "loadgen_waited_retry_after": r["connections"]["refused_retry_after"],
        "seq_gaps": r["gaps"], "stale_after_resume": r["stale"],
        "dropped_for_slow_readers": {n: round(v) for n, v in dropped.items()},
        "outage_ms": {**{k: lat["outage"][k] / 1000 for k in ("p50", "p99", "max")}, "count": lat["outage"]["count"]},
        "resume_ms": {**{k: lat["resume"][k] / 1000 for k in ("p50", "p99", "max")}, "count": lat["resume"]["count"]},
        "closes": r["closes"], "loadgen_saturated": r["loadgen"]["saturated"],
    }, indent=1))


if __name__ == "__main__":
    main()
