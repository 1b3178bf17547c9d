#!/usr/bin/env python3
"""Run 4 of RELIABILITY.md: network faults between an edge and NATS.

nats-server runs in a network namespace of its own, reached over two veth
pairs: one for the ingest, one for the edge. loadgen's clients stay on the
edge (loopback) while the edge's pair gets, each for --phase seconds and
healed in between: a congested link (`tc tbf`: 4 Mbit/s, at most 200 ms of
queue, the rest dropped), random loss of 10% (nftables in the namespace,
when `nft` is installed), and a partition (the link down: every packet lost
without a word). This kernel has no `tc netem`. The edge's /metrics is sampled every 200 ms. Prints one JSON
object with, per phase: whether the edge stayed ready, how long it took to
say not ready under the partition and to be ready again after it, the
clients it kept, fan-out latency, and from loadgen: gaps, stale values after
the link returned (must be 0), clients that gave up (must be 0).

    sudo scripts/netfaults.py --connections 5000

Needs root (ip netns, tc; nft for the loss phase). Everything it creates is
removed at the end.
Binaries: --bin (default target/release/tickcast), --loadgen.
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

from runlib import free_port, scrape, sh, spawn










def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/tickcast")
    p.add_argument("--loadgen", default="target/release/loadgen")
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--phase", type=float, default=20.0, help="seconds of each fault")
    p.add_argument("--net", default="10.214", help="first two octets: the pairs get .1.0/24 and .2.0/24")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("netfaults.py: needs root (ip netns, tc)")

    tag = f"tcn{os.getpid() % 100000}"
    ns = tag
    pairs = {"ingest": (f"{tag}ih", f"{tag}in", f"{args.net}.1"), "edge": (f"{tag}eh", f"{tag}en", f"{args.net}.2")}
    procs, samples, stop = {}, [], threading.Event()
    store = tempfile.mkdtemp(prefix="tickcast-nats-")
    report = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for host_if, ns_if, net in pairs.values():
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            sh("ip", "link", "set", ns_if, "netns", ns)
            sh("ip", "addr", "add", f"{net}.1/24", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", ns_if)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        nats_port = 4222
        procs["nats"] = subprocess.Popen(
            ["ip", "netns", "exec", ns, "nats-server", "-js", "-p", str(nats_port), "-sd", store],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        edge_nats = f"nats://{pairs['edge'][2]}.2:{nats_port}"
        ingest_nats = f"nats://{pairs['ingest'][2]}.2:{nats_port}"
        deadline = time.time() + 10
        while socket.socket().connect_ex((f"{pairs['ingest'][2]}.2", nats_port)) != 0:
            if time.time() > deadline:
                sys.exit("nats-server did not start")
            time.sleep(0.05)
        procs["ingest"], _ = spawn([args.bin, "--role", "ingest", "--nats", ingest_nats,
                                 "--listen", f"127.0.0.1:{free_port()}", "--symbols", "500", "--rate", "2000",
                                 "--node", "ingest"], "listening on")
        public = free_port()
        procs["edge"], _ = spawn([args.bin, "--role", "edge", "--nats", edge_nats, "--listen", f"127.0.0.1:{public}",
                               "--node", "edge"], "listening on")
        metrics = f"http://127.0.0.1:{public}/metrics"

        def ready():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{public}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        def sample():
            while not stop.is_set():
                t = time.time()
                try:
                    m = scrape(metrics)
                    samples.append((t, ready(), m.get("tickcast_connections", 0.0),
                                    m.get("tickcast_fanout_latency_seconds_count", 0.0),
                                    m.get("tickcast_messages_sent_total", 0.0)))
                except OSError:
                    pass
                stop.wait(max(0.0, 0.2 - (time.time() - t)))

        deadline = time.time() + 30
        while not ready():
            if time.time() > deadline:
                sys.exit("the edge never got ready")
            time.sleep(0.1)
        threading.Thread(target=sample, daemon=True).start()
        total = 5 + 3 * (args.phase + 25)
        loadgen = procs["loadgen"] = subprocess.Popen(
            [args.loadgen, "--url", f"ws://127.0.0.1:{public}/ws", "--connections", str(args.connections),
             "--symbols-per-conn", "5", "--duration", f"{int(total)}s", "--json", report],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        human = []
        threading.Thread(target=lambda: human.extend(loadgen.stdout), daemon=True).start()
        deadline = time.time() + 60
        while not samples or samples[-1][2] < args.connections:
            if time.time() > deadline or loadgen.poll() is not None:
                sys.exit("never all connected:\n" + "".join(human))
            time.sleep(0.2)
        time.sleep(5)
        host_if, ns_if = pairs["edge"][0], pairs["edge"][1]
        in_ns = ("ip", "netns", "exec", ns)

        def tbf(on):
            for cmd in ((*in_ns, "tc", "qdisc"), ("tc", "qdisc")):
                dev = ns_if if cmd[0] == "ip" else host_if
                if on:
                    sh(*cmd, "add", "dev", dev, "root", "tbf", "rate", "4mbit", "burst", "32kb", "latency", "200ms")
                else:
                    sh(*cmd, "del", "dev", dev, "root")

        def loss(on):
            if on:
                rules = (f"table inet tickcastloss {{\n"
                         f"  chain out {{ type filter hook output priority 0; oifname \"{ns_if}\" numgen random mod 100 < 10 drop; }}\n"
                         f"  chain inp {{ type filter hook input priority 0; iifname \"{ns_if}\" numgen random mod 100 < 10 drop; }}\n"
                         f"}}\n")
                subprocess.run([*in_ns, "nft", "-f", "-"], input=rules, text=True, check=True)
            else:
                sh(*in_ns, "nft", "delete", "table", "inet", "tickcastloss")

        def partition(on):
            sh(*in_ns, "ip", "link", "set", ns_if, "up" if on is False else "down")

        faults = [("congested link: 4 Mbit/s, 200 ms of queue", tbf)]
        if subprocess.run(["which", "nft"], capture_output=True).returncode == 0:
            faults.append(("random loss 10% both ways", loss))
        faults.append(("partition: the link down", partition))
        phases = []
        for name, fault in faults:
            fault(True)
            t0 = time.time()
            time.sleep(args.phase)
            during = [s for s in samples if t0 <= s[0] <= time.time()]
            fault(False)
            healed = time.time()
            deadline = healed + 60
            while not ready() and time.time() < deadline:
                time.sleep(0.1)
            back = time.time() - healed
            time.sleep(10)
            not_ready = [s[0] for s in during if not s[1]]
            phases.append({
                "fault": name,
                "stayed_ready": not not_ready,
                "not_ready_after_s": round(not_ready[0] - t0, 2) if not_ready else None,
                "ready_again_after_heal_s": round(back, 2),
                "clients_kept_min": min((s[2] for s in during), default=None),
                "messages_sent_during": (during[-1][4] - during[0][4]) if len(during) > 1 else None,
            })
        loadgen.wait()
    finally:
        stop.set()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        sh("ip", "netns", "del", ns, check=False)
        for host_if, _, _ in pairs.values():
            sh("ip", "link", "del", host_if, check=False)
    r = json.load(open(report))
    os.unlink(report)
    print(json.dumps({
        "connections": args.connections, "phase_s": args.phase, "phases": phases,
        "gave_up": r["connections"]["failed"], "reconnects": r["connections"]["reconnects"],
        "seq_gaps": r["gaps"], "stale": r["stale"],
        "fanout_ms": {k: r["latency_us"]["fanout"][k] / 1000 for k in ("p50", "p99", "max")},
        "loadgen_saturated": r["loadgen"]["saturated"],
    }, indent=1))


if __name__ == "__main__":
    main()
