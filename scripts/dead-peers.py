#!/usr/bin/env python3
"""Dead peers: clients that vanish without a FIN must be found by heartbeats.

Runs tickcast on the host end of a veth pair whose other end is in a network
namespace of its own; a client process in that namespace opens N WebSocket
connections (each subscribed to one symbol, sending a ping frame now and then
so that the server's heartbeats see it alive, reading nothing). Then the
namespace's end of the link goes down, so every packet either way is lost
without a word (this kernel has no `tc netem`; a veth whose peer is down
drops what it is given), and the client is killed: its FINs never leave.
The server must drop every connection within --ping-interval +
--pong-timeout. Prints one JSON line with the figures.

    sudo scripts/dead-peers.py --bin target/release/tickcast --connections 15000

Needs root (ip netns). Everything it creates (namespace, veth, server)
is removed at the end, whatever happens. No traffic leaves the machine: the
addresses are on the veth pair only.
"""

import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

from runlib import free_port, scrape, sh, spawn




def client_frame(opcode, payload):
    """A masked, final client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def run_client(args):
    """In the namespace: open the connections, say "ready", keep them alive."""
    host, port = args.server.rsplit(":", 1)
    socks = []
    for i in range(args.connections):
        s = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {args.server}\r\nConnection: Upgrade\r\n"
                f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                sys.exit(f"connection {i}: closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            sys.exit(f"connection {i}: {head.splitlines()[0]!r}")
        sym = args.symbols[i % len(args.symbols)]
        sub = json.dumps({"type": "subscribe", "id": 1, "payload": {"symbols": [sym]}})
        s.sendall(client_frame(1, sub.encode()))
        s.setblocking(False)
        socks.append(s)
    print("ready", flush=True)
    ping = client_frame(9, b"")
    while True:
        # Any frame answers the server's pings: one each half interval keeps
        # every connection alive (nothing is read: its buffer holds what comes).
        for s in socks:
            try:
                s.send(ping)
            except BlockingIOError:
                pass
        time.sleep(args.keepalive)




def series(m, prefix):
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/tickcast")
    p.add_argument("--connections", type=int, default=15000)
    p.add_argument("--ping-interval", type=float, default=5.0)
    p.add_argument("--pong-timeout", type=float, default=5.0)
    p.add_argument("--net", default="10.213.77", help="first three octets of the veth pair's /24")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--keepalive", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--symbols", nargs="*", default=[], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        return run_client(args)
    if os.geteuid() != 0:
        sys.exit("dead-peers.py: needs root (ip netns)")

    tag = f"tcd{os.getpid() % 100000}"
    ns, host_if, ns_if = tag, f"{tag}h", f"{tag}n"
    host_ip, ns_ip = f"{args.net}.1", f"{args.net}.2"
    server = client = None
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

        ops_port = free_port()
        server, line = spawn(
            [args.bin, "--listen", f"{host_ip}:0", "--metrics-listen", f"127.0.0.1:{ops_port}",
             "--symbols", "50", "--rate", "50",
             "--ping-interval", f"{int(args.ping_interval * 1000)}ms",
             "--pong-timeout", f"{int(args.pong_timeout * 1000)}ms"],
            "listening on http://")
        addr = line.split("listening on http://")[1].split()[0]
        url = f"http://127.0.0.1:{ops_port}/metrics"
        deadline = time.time() + 30
        while True:
            try:
                scrape(url)
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("no metrics")
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://{addr}/snapshot", timeout=10) as r:
            symbols = [t["symbol"] for t in json.load(r)]

        started = time.time()
        client = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--client",
             "--server", addr, "--connections", str(args.connections),
             "--keepalive", str(min(args.ping_interval, args.pong_timeout) / 2), "--symbols", *symbols],
            stdout=subprocess.PIPE, text=True)
        if client.stdout.readline().strip() != "ready":
            sys.exit("the client could not open its connections")
        connected_s = time.time() - started
        deadline = time.time() + 60
        while series(scrape(url), "tickcast_connections") < args.connections:
            if time.time() > deadline:
                sys.exit("the server never held every connection")
            time.sleep(0.1)
        # Hold them past a few heartbeats: alive clients are kept.
        time.sleep(2 * (args.ping_interval + args.pong_timeout))
        m = scrape(url)
        kept = series(m, "tickcast_connections")
        if kept != args.connections:
            sys.exit(f"live clients were dropped: {kept} of {args.connections} left")
        before = {r: m.get(f'tickcast_disconnects_total{{reason="{r}"}}', 0.0) for r in ("heartbeat", "client")}
        rss = m.get("process_resident_memory_bytes", 0.0)

        # The cut: the link goes dark both ways, then the client dies unheard.
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "down")
        cut = time.time()
        client.kill()
        client.wait()
        bound = args.ping_interval + args.pong_timeout
        while series(scrape(url), "tickcast_connections") > 0:
            if time.time() - cut > 3 * bound + 30:
                break
            time.sleep(0.05)
        found_s = time.time() - cut
        m = scrape(url)
        after = {r: m.get(f'tickcast_disconnects_total{{reason="{r}"}}', 0.0) - before[r] for r in before}
        print(json.dumps({
            "connections": args.connections,
            "connected_s": round(connected_s, 2),
            "ping_interval_s": args.ping_interval,
            "pong_timeout_s": args.pong_timeout,
            "bound_s": bound,
            "all_found_s": round(found_s, 2),
            "left": series(m, "tickcast_connections"),
            "dropped_by": after,
            "rss_bytes_before_cut": rss,
            "open_fds_after": m.get("process_open_fds"),
        }), flush=True)
    finally:
        for proc in (client, server):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", host_if, check=False)


if __name__ == "__main__":
    main()
