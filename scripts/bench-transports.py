#!/usr/bin/env python3
"""Measures what a transport and an encoding cost the server, side by side.

For each mode — WebSocket+JSON, WebSocket+MessagePack, WebSocket+JSON over
TLS (wss://), SSE — it starts the release binary with the synthetic feed
(TLS with a self-signed certificate made by `openssl`), opens M idle
connections and reads the growth of the server's RSS (per idle connection),
closes them, then opens N connections each subscribed to K symbols and, over the measurement,
reads the server's own CPU seconds and delivered messages from /metrics
(server CPU per delivered message) and counts the bytes of tick frames the
clients receive (bytes per tick on the wire, headers included). The client
is the same asyncio program for every mode, so the modes differ only by
what the server does. Standard library, plus `msgpack` to check frames.

    cargo build --release && scripts/bench-transports.py --connections 1000 --seconds 20 --idle-connections 5000
"""
import argparse, asyncio, base64, json, os, re, resource, signal, ssl, subprocess, sys, tempfile, time

def metric(page, name):
    for line in page.splitlines():
        if line.startswith(name):
            rest = line[len(name):]
            if rest.startswith("{"):
                rest = rest[rest.index("}") + 1:]
            return float(rest.split()[0])
    raise KeyError(name)

def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024

async def http_get(port, path, tls_ctx):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=tls_ctx)
    w.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    data = await r.read()
    w.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return body.decode()

class Counter:
    def __init__(self):
        self.ticks = 0
        self.tick_bytes = 0

async def read_ws_frames(reader, counter, msgpack_mode):
    """Counts tick frames (header + payload bytes) until the connection ends."""
    while True:
        head = await reader.readexactly(2)
        n = head[1] & 0x7F
        extra = b""
        if n == 126:
            extra = await reader.readexactly(2)
            n = int.from_bytes(extra, "big")
        elif n == 127:
            extra = await reader.readexactly(8)
            n = int.from_bytes(extra, "big")
        payload = await reader.readexactly(n)
        opcode = head[0] & 0x0F
        is_tick = (b'"type":"tick"' in payload[:20]) if opcode == 1 else (opcode == 2 and b"tick" in payload[:16])
        if is_tick:
            counter.ticks += 1
            counter.tick_bytes += 2 + len(extra) + n

async def open_ws(port, source, tls_ctx, protocol):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls_ctx, local_addr=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    proto = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    writer.write((f"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{proto}\r\n").encode())
    await reader.readuntil(b"\r\n\r\n")
    return reader, writer

def masked_text(payload):
    mask = os.urandom(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + data

async def read_sse(reader, counter):
    """Counts `event: tick` blocks (their bytes, chunk framing left out)."""
    await reader.readuntil(b"\r\n\r\n")
    buf = b""
    while True:
        size = await reader.readuntil(b"\r\n")
        n = int(size.strip(), 16)
        chunk = await reader.readexactly(n + 2)
        buf += chunk[:-2]
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            if block.startswith(b"event: tick"):
                counter.ticks += 1
                counter.tick_bytes += len(block) + 2

async def run_mode(mode, a, binary, cert_dir):
    tls = mode == "wss-json"
    port = a.port
    args = [binary, "--listen", f"127.0.0.1:{port}", "--symbols", str(a.universe), "--rate", str(a.rate),
            "--ping-interval", "5m"]
    client_ctx = None
    if tls:
        args += ["--tls-cert", f"{cert_dir}/cert.pem", "--tls-key", f"{cert_dir}/key.pem"]
        client_ctx = ssl.create_default_context(cafile=f"{cert_dir}/cert.pem")
        client_ctx.check_hostname = False
    server = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                await http_get(port, "/readyz", client_ctx)
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        symbols = [t["symbol"] for t in json.loads(await http_get(port, "/snapshot", client_ctx))]
        idle_per_conn = None
        if a.idle_connections:
            before_idle = rss_bytes(server.pid)
            idle, sem = [], asyncio.Semaphore(100)
            protocol = "tickcast.msgpack" if mode == "ws-msgpack" else None
            async def one(i):
                async with sem:
                    source = f"127.0.0.{2 + i // 20000}"
                    if mode == "sse-json":
                        # A stream of one name nobody publishes: idle, like an idle WebSocket.
                        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
                        w.write(b"GET /sse?symbols=IDLE HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        await r.readuntil(b"\r\n\r\n")
                        idle.append((r, w))
                    else:
                        idle.append(await open_ws(port, source, client_ctx, protocol))
            await asyncio.gather(*(one(i) for i in range(a.idle_connections)))
            await asyncio.sleep(2.0)
            idle_per_conn = (rss_bytes(server.pid) - before_idle) / a.idle_connections
            for _, w in idle:
                w.close()
            await asyncio.sleep(1.0)
        conns = []
        if mode != "sse-json":
            sem = asyncio.Semaphore(100)
            protocol = "tickcast.msgpack" if mode == "ws-msgpack" else None
            async def one(i):
                async with sem:
                    conns.append(await open_ws(port, f"127.0.0.{2 + i // 20000}", client_ctx, protocol))
            await asyncio.gather(*(one(i) for i in range(a.connections)))
        counter = Counter()
        tasks = []
        rng = __import__("random").Random(1)
        for i in range(a.connections):
            picks = rng.sample(symbols, a.per_conn)
            if mode == "sse-json":
                r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + i // 20000}", 0))
                w.write(f"GET /sse?symbols={','.join(picks)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                tasks.append(asyncio.create_task(read_sse(r, counter)))
                conns.append((r, w))
            else:
                r, w = conns[i]
                msg = json.dumps({"type": "subscribe", "id": 1, "payload": {"symbols": picks}}).encode()
                w.write(masked_text(msg))
                tasks.append(asyncio.create_task(read_ws_frames(r, counter, mode == "ws-msgpack")))
        await asyncio.sleep(3.0)  # snapshots out of the way
        page = await http_get(port, "/metrics", client_ctx)
        cpu0, sent0 = metric(page, "process_cpu_seconds_total"), metric(page, "tickcast_messages_sent_total")
        t0, ticks0, bytes0 = time.time(), counter.ticks, counter.tick_bytes
        await asyncio.sleep(a.seconds)
        page = await http_get(port, "/metrics", client_ctx)
        cpu1, sent1 = metric(page, "process_cpu_seconds_total"), metric(page, "tickcast_messages_sent_total")
        elapsed = time.time() - t0
        ticks, tick_bytes = counter.ticks - ticks0, counter.tick_bytes - bytes0
        for t in tasks:
            t.cancel()
        sent = sent1 - sent0
        return {
            "mode": mode,
            "delivered_msgs_per_s": round(sent / elapsed),
            "server_cpu_us_per_msg": round((cpu1 - cpu0) / sent * 1e6, 2) if sent else None,
            "bytes_per_tick": round(tick_bytes / ticks, 1) if ticks else None,
            "received_per_s": round(ticks / elapsed),
            "idle_rss_per_conn_kib": round(idle_per_conn / 1024, 2) if idle_per_conn else None,
        }
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()

async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--idle-connections", type=int, default=5000,
                    help="connections opened and left idle to measure RSS per connection (0: skip)")
    ap.add_argument("--per-conn", type=int, default=5)
    ap.add_argument("--universe", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--binary", default="target/release/tickcast")
    ap.add_argument("--port", type=int, default=18310)
    ap.add_argument("--modes", default="ws-json,ws-msgpack,wss-json,sse-json")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        rows = []
        for mode in a.modes.split(","):
            rows.append(await run_mode(mode, a, a.binary, d))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{a.connections} connections × {a.per_conn} of {a.universe} symbols, synthetic feed {a.rate} ticks/s, {a.seconds} s")
    print("| mode | delivered msgs/s | server CPU per msg | bytes per tick | idle RSS per connection |")
    print("|---|---|---|---|---|")
    for r in rows:
        idle = f"{r['idle_rss_per_conn_kib']} KiB" if r["idle_rss_per_conn_kib"] else "—"
        print(f"| {r['mode']} | {r['delivered_msgs_per_s']} | {r['server_cpu_us_per_msg']} µs | {r['bytes_per_tick']} | {idle} |")

asyncio.run(main())
