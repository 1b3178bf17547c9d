#!/usr/bin/env python3
"""Measures tickcast's resident memory per idle WebSocket connection.

Starts the release binary with a TCP feed nobody publishes to, reads its RSS,
opens N WebSocket connections (handshake + welcome, optionally a subscribe to
names nobody publishes, then idle; source addresses
127.0.0.2, .3, ... so ephemeral ports never run out), reads the RSS again,
and prints (after - before) / N. Needs only the Python standard library.

    cargo build --release && scripts/idle-rss.py --connections 15000 [--subscribe 5]
"""
import argparse, asyncio, base64, os, re, resource, signal, subprocess, sys, time

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024

async def read_frame(reader):
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(n)

def masked_text(payload):
    mask = os.urandom(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + data

async def open_ws(host, port, source, symbols):
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    await read_frame(reader)                     # the welcome
    if symbols:
        msg = '{"type":"subscribe","id":1,"payload":{"symbols":[%s]}}' % ",".join(f'"{s}"' for s in symbols)
        writer.write(masked_text(msg.encode()))
        while b'"subscribed"' not in (await read_frame(reader))[1]:
            pass
    return reader, writer

async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--binary", default="target/release/tickcast")
    ap.add_argument("--port", type=int, default=18090)
    ap.add_argument("--subscribe", type=int, default=0,
                    help="symbols each connection subscribes to (names nobody publishes: no traffic)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.connections > hard - 100:
        sys.exit(f"--connections {a.connections}: this process may open only {hard} files")
    # --feed tcp: nothing published, so subscriptions are quiet (and named
    # symbols without a value: allow as many as asked, whole universe 5000).
    server = subprocess.Popen([a.binary, "--listen", f"127.0.0.1:{a.port}", "--ping-interval", "5m",
                               "--feed", "tcp://127.0.0.1:0"]
                              + (["--max-unknown-symbols", str(a.subscribe)] if a.subscribe > 64 else []),
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        before = rss_bytes(server.pid)
        conns, sem = [], asyncio.Semaphore(200)
        async def one(i):
            async with sem:
                names = [f"Q{(i * a.subscribe + k) % 5000}" for k in range(a.subscribe)]
                conns.append(await open_ws("127.0.0.1", a.port, f"127.0.0.{2 + i // 20000}", names))
        start = time.time()
        await asyncio.gather(*(one(i) for i in range(a.connections)))
        took = time.time() - start
        await asyncio.sleep(2)
        after = rss_bytes(server.pid)
        per = (after - before) / a.connections
        print(f"connections: {len(conns)} (opened in {took:.1f} s)")
        print(f"server RSS: {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB after")
        what = f"with {a.subscribe} subscriptions" if a.subscribe else "idle"
        print(f"RSS per connection ({what}): {per / 1024:.2f} KiB")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

asyncio.run(main())
