#!/usr/bin/env python3
"""Measures tickcast's resident memory per idle WebSocket connection.

Starts the release binary with the synthetic feed, reads its RSS, opens N
WebSocket connections (handshake + welcome, then idle; source addresses
127.0.0.2, .3, ... so ephemeral ports never run out), reads the RSS again,
and prints (after - before) / N. Needs only the Python standard library.

    cargo build --release && scripts/idle-rss.py --connections 15000
"""
import argparse, asyncio, base64, os, re, resource, signal, subprocess, sys, time

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024

async def open_ws(host, port, source):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    head = await reader.readexactly(2)           # the welcome frame
    await reader.readexactly(head[1] & 0x7F)
    return reader, writer

async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--binary", default="target/release/tickcast")
    ap.add_argument("--port", type=int, default=18090)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.connections > hard - 100:
        sys.exit(f"--connections {a.connections}: this process may open only {hard} files")
    server = subprocess.Popen([a.binary, "--listen", f"127.0.0.1:{a.port}", "--ping-interval", "5m"],
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        before = rss_bytes(server.pid)
        conns, sem = [], asyncio.Semaphore(200)
        async def one(i):
            async with sem:
                conns.append(await open_ws("127.0.0.1", a.port, f"127.0.0.{2 + i // 20000}"))
        start = time.time()
        await asyncio.gather(*(one(i) for i in range(a.connections)))
        took = time.time() - start
        await asyncio.sleep(2)
        after = rss_bytes(server.pid)
        per = (after - before) / a.connections
        print(f"connections: {len(conns)} (opened in {took:.1f} s)")
        print(f"server RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after")
        print(f"RSS per idle connection: {per / 1024:.2f} KiB")
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()

asyncio.run(main())
