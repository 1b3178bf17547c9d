#!/usr/bin/env python3
"""How stale is what a slow reader sees? (TCP_NOTSENT_LOWAT before/after.)

Starts the release binary with the synthetic feed (--symbols S --rate R, so
every symbol changes at the coalescing limit), opens one WebSocket that
subscribes to all S symbols and then reads at most --read-rate bytes/s (a
phone on a poor link), with a small receive buffer so the backlog is not
hidden on the client's side. For every tick read it records its age
(receipt − `pub`) and prints the age's percentiles over the last half of
the run, for each --notsent-lowat given. Standard library only.

    cargo build --release && scripts/slow-reader.py --lowat 0 16384
"""
import argparse, base64, json, os, signal, socket, subprocess, sys, time, urllib.request


def masked_text(payload):
    mask = os.urandom(4)
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + data


def frames(buf):
    """Complete server frames at the front of `buf`: (list of (opcode, payload), bytes used)."""
    out, at = [], 0
    while len(buf) - at >= 2:
        n, head = buf[at + 1] & 0x7F, 2
        if n == 126:
            if len(buf) - at < 4:
                break
            n, head = int.from_bytes(buf[at + 2:at + 4], "big"), 4
        elif n == 127:
            if len(buf) - at < 10:
                break
            n, head = int.from_bytes(buf[at + 2:at + 10], "big"), 10
        if len(buf) - at < head + n:
            break
        out.append((buf[at] & 0x0F, bytes(buf[at + head:at + head + n])))
        at += head + n
    return out, at


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def run(a, lowat):
    port = a.port
    server = subprocess.Popen([a.binary, "--listen", f"127.0.0.1:{port}", "--symbols", str(a.symbols),
                               "--rate", str(a.rate), "--notsent-lowat", str(lowat)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("tickcast did not start")
                time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                   f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        buf = buf[buf.index(b"\r\n\r\n") + 4:]
        names = []
        while len(names) < a.symbols:  # the synthetic feed's names, once every symbol has a value
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/snapshot", timeout=5) as r:
                names = [t["symbol"] for t in json.load(r)]
            time.sleep(0.05)
        # Subscribe in messages under the server's 4 KiB request limit.
        for i in range(0, len(names), 200):
            chunk = ",".join(f'"{n}"' for n in names[i:i + 200])
            s.sendall(masked_text(('{"type":"subscribe","id":%d,"payload":{"symbols":[%s]}}' % (i + 1, chunk)).encode()))
        start = time.time()
        ages, ticks, read = [], 0, 0
        s.settimeout(0.05)
        while time.time() - start < a.seconds:
            # Read at most read-rate bytes per second, in 20 ms slices.
            budget = int(a.read_rate * 0.02)
            slice_end = time.time() + 0.02
            while budget > 0:
                try:
                    data = s.recv(min(budget, 65536))
                except socket.timeout:
                    break
                if not data:
                    sys.exit("the server closed the connection")
                buf += data
                budget -= len(data)
                read += len(data)
            got, used = frames(buf)
            del buf[:used]
            now_us = time.time() * 1e6
            for op, payload in got:
                if op != 1 or b'"tick"' not in payload:
                    continue
                m = json.loads(payload)
                ticks += 1
                if time.time() - start > a.seconds / 2:
                    ages.append(now_us - m["payload"]["pub"])
            time.sleep(max(0.0, slice_end - time.time()))
        ages.sort()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            dropped = [l for l in r.read().decode().splitlines() if l.startswith("tickcast_dropped_total")]
        dropped = float(dropped[0].rsplit(" ", 1)[1]) if dropped else None
        ms = lambda v: None if v is None else round(v / 1000, 1)
        return {"notsent_lowat": lowat, "ticks_read": ticks, "bytes_read": read, "dropped_in_queue": dropped,
                "age_ms": {"p50": ms(percentile(ages, 50)), "p99": ms(percentile(ages, 99)), "max": ms(ages[-1] if ages else None)}}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default="target/release/tickcast")
    ap.add_argument("--port", type=int, default=18095)
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--rate", type=int, default=4000, help="synthetic ticks/s (all symbols)")
    ap.add_argument("--read-rate", type=int, default=20000, help="bytes/s the client reads")
    ap.add_argument("--rcvbuf", type=int, default=16384, help="the client's SO_RCVBUF")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--lowat", type=int, nargs="+", default=[0, 16384])
    a = ap.parse_args()
    for lowat in a.lowat:
        print(json.dumps(run(a, lowat)), flush=True)


if __name__ == "__main__":
    main()
