#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/.

Each seed is a small input that means something (a real client frame, a
message from docs/protocol.md, a token of each shape the server must refuse),
named `seed-<what it is>` so that a failing replay names it plainly. Run it
again after changing it; files the fuzzer added (named by their SHA-1) are
left alone.

    python3 fuzz/seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# The secret and clock of `tickcast::fuzzing::token`.
SECRET = b"fuzz-secret"
NOW = 1_700_000_000


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- frames

MASK = b"\x37\xfa\x21\x3d"


def frame(fin, opcode, payload, mask=MASK, length=None, bits=None):
    """A masked client frame (RFC 6455 §5.2). `length` overrides the length
    the header claims; `bits` forces the 7/16/64-bit length form."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    out = bytearray([(0x80 if fin else 0) | opcode])
    if bits is None:
        bits = 7 if n < 126 else 16 if n < 65536 else 64
    if bits == 7:
        out.append(0x80 | n)
    elif bits == 16:
        out.append(0x80 | 126)
        out += struct.pack(">H", n)
    else:
        out.append(0x80 | 127)
        out += struct.pack(">Q", n)
    out += mask
    out += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(out)


def frames(reads, *fs):
    """The frame target's input: 4 bytes that choose the read sizes, then
    the stream. `reads` b"\\xff\\xff\\xff\\xff" reads 255 bytes at a time."""
    return bytes(reads) + b"".join(fs)


def frame_seeds():
    big = bytes([255] * 4)
    small = bytes([1, 2, 3, 7])
    sub = '{"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT"]}}'
    write("frame_decoder", "text", frames(big, frame(True, 1, sub)))
    write("frame_decoder", "text-split-reads", frames(small, frame(True, 1, sub)))
    write("frame_decoder", "text-unmasked", frames(big, bytes([0x81, 5]) + b"hello"))
    write("frame_decoder", "empty-text", frames(big, frame(True, 1, b"")))
    write(
        "frame_decoder",
        "fragments-with-ping-between",
        frames(
            small,
            frame(False, 1, '{"type":'),
            frame(True, 9, b"p"),
            frame(False, 0, '"ping",'),
            frame(True, 0, '"id":3}'),
        ),
    )
    write("frame_decoder", "ping", frames(big, frame(True, 9, b"hi")))
    write("frame_decoder", "ping-125", frames(big, frame(True, 9, b"x" * 125)))
    write("frame_decoder", "ping-126-too-long", frames(big, frame(True, 9, b"x" * 126)))
    write("frame_decoder", "ping-fragmented", frames(big, frame(False, 9, b"x")))
    write("frame_decoder", "pong", frames(big, frame(True, 10, b"")))
    write("frame_decoder", "close-empty", frames(big, frame(True, 8, b"")))
    write("frame_decoder", "close-1000", frames(big, frame(True, 8, struct.pack(">H", 1000))))
    write(
        "frame_decoder",
        "close-1001-reason",
        frames(big, frame(True, 8, struct.pack(">H", 1001) + "going away ✓".encode())),
    )
    write("frame_decoder", "close-4000", frames(big, frame(True, 8, struct.pack(">H", 4000))))
    for code in (0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535):
        write(
            "frame_decoder",
            f"close-bad-code-{code}",
            frames(big, frame(True, 8, struct.pack(">H", code))),
        )
    write("frame_decoder", "close-one-byte", frames(big, frame(True, 8, b"\x03")))
    write(
        "frame_decoder",
        "close-reason-not-utf8",
        frames(big, frame(True, 8, struct.pack(">H", 1000) + b"\xff\xfe")),
    )
    write("frame_decoder", "len16", frames(big, frame(True, 1, "a" * 300)))
    write("frame_decoder", "len16-small-in-long-form", frames(big, frame(True, 1, "abc", bits=16)))
    write("frame_decoder", "len64-small-in-long-form", frames(big, frame(True, 1, "abc", bits=64)))
    write("frame_decoder", "len16-over-limit-header-only", frames(big, frame(True, 1, b"", length=5000)))
    write("frame_decoder", "len64-over-limit-header-only", frames(big, frame(True, 1, b"", length=1 << 40)))
    write("frame_decoder", "len64-top-bit", frames(big, frame(True, 1, b"", length=1 << 63)))
    write("frame_decoder", "len64-max", frames(big, frame(True, 1, b"", length=(1 << 64) - 1)))
    # The overflow attack: a 1-byte non-final fragment, then a continuation
    # that claims 2^64-1 (and 2^63-1) bytes, which must not wrap the sum.
    write(
        "frame_decoder",
        "overflow-fragment-then-2e64",
        frames(big, frame(False, 1, b"a"), frame(True, 0, b"", length=(1 << 64) - 1)),
    )
    write(
        "frame_decoder",
        "overflow-fragment-then-2e63",
        frames(big, frame(False, 1, b"a"), frame(True, 0, b"", length=(1 << 63) - 1)),
    )
    write(
        "frame_decoder",
        "fragments-reaching-limit",
        frames(big, frame(False, 1, b"a" * 4000), frame(True, 0, b"b" * 96)),
    )
    write(
        "frame_decoder",
        "fragments-one-over-limit",
        frames(big, frame(False, 1, b"a" * 4000), frame(True, 0, b"b" * 97)),
    )
    write("frame_decoder", "binary", frames(big, frame(True, 2, b"\x00\x01")))
    write("frame_decoder", "reserved-bits", frames(big, bytes([0xC1]) + frame(True, 1, b"x")[1:]))
    write("frame_decoder", "unknown-opcode", frames(big, frame(True, 3, b"x")))
    write("frame_decoder", "continuation-alone", frames(big, frame(True, 0, b"x")))
    write(
        "frame_decoder",
        "text-inside-fragments",
        frames(big, frame(False, 1, b"x"), frame(True, 1, b"y")),
    )
    write("frame_decoder", "text-not-utf8", frames(big, frame(True, 1, b"\xc3\x28")))
    write(
        "frame_decoder",
        "many-small-frames",
        frames(bytes([5, 11, 2, 64]), *[frame(True, 1, '{"type":"ping","id":%d}' % i) for i in range(8)]),
    )
    write("frame_decoder", "truncated-header", frames(big, frame(True, 1, "x" * 300)[:3]))


# ---------------------------------------------------------------- messages


def message_seeds():
    ok = {
        "subscribe": '{"type":"subscribe","id":1,"payload":{"symbols":["AAPL","MSFT"],"since":{"AAPL":1041}}}',
        "subscribe-no-since": '{"type":"subscribe","id":1,"payload":{"symbols":["FX:EUR/USD","BTC-USD"]}}',
        "unsubscribe": '{"type":"unsubscribe","id":2,"payload":{"symbols":["MSFT"]}}',
        "ping": '{"type":"ping","id":3}',
        "ping-no-id": '{"type":"ping"}',
        "auth": '{"type":"auth","id":4,"payload":{"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"}}',
        "null-fields": '{"type":"ping","id":null,"payload":null}',
        "whitespace": ' \t\n{ "type" : "ping" , "id" : -9223372036854775808 }\r\n',
    }
    bad = {
        "empty-symbols": '{"type":"subscribe","id":1,"payload":{"symbols":[]}}',
        "symbols-not-list": '{"type":"subscribe","id":1,"payload":{"symbols":"AAPL"}}',
        "symbol-not-string": '{"type":"subscribe","id":1,"payload":{"symbols":[1,null,{}]}}',
        "since-negative": '{"type":"subscribe","id":1,"payload":{"symbols":["A"],"since":{"A":-1}}}',
        "since-float": '{"type":"subscribe","id":1,"payload":{"symbols":["A"],"since":{"A":1.5}}}',
        "since-not-object": '{"type":"subscribe","id":1,"payload":{"symbols":["A"],"since":[1]}}',
        "id-float": '{"type":"ping","id":1.5}',
        "id-string": '{"type":"ping","id":"1"}',
        "id-huge": '{"type":"ping","id":18446744073709551616}',
        "type-number": '{"type":7}',
        "type-missing": '{"id":1}',
        "type-unknown": '{"type":"publish","id":1}',
        "payload-array": '{"type":"subscribe","payload":[]}',
        "auth-no-token": '{"type":"auth","id":4,"payload":{}}',
        "not-object": '[{"type":"ping"}]',
        "string": '"ping"',
        "not-json": "{type:ping}",
        "truncated": '{"type":"subscribe","payload":{"symbols":["AA',
        "duplicate-keys": '{"type":"ping","type":"auth","id":1,"id":2}',
        "escapes": '{"type":"\\u0070ing","id":1,"payload":{"symbols":["\\ud800"]}}',
        "deep-8": '{"type":"ping","payload":{"a":[[[[[[1]]]]]]}}',
        "deep-9": '{"type":"ping","payload":{"a":[[[[[[[1]]]]]]]}}',
        "deep-1000": "[" * 1000 + "]" * 1000,
        "deep-unclosed": '{"a":' * 200,
        "brackets-in-strings": '{"type":"ping","x":"[[[[[[[[[[[[{{{{{{{\\"]]]"}',
        "big-numbers": '{"type":"ping","id":1e400,"x":-0.0e-999999}',
    }
    for name, text in {**ok, **bad}.items():
        write("client_message", name, text)
    symbols = json.dumps(["S%d" % i for i in range(200)])
    write("client_message", "many-symbols", '{"type":"subscribe","id":5,"payload":{"symbols":%s}}' % symbols)
    write("client_message", "not-utf8", b'{"type":"ping","x":"\xff"}')


# ---------------------------------------------------------------- feed lines


def feed_seeds():
    lines = {
        "doc-bid-ask": '{"symbol":"AAPL","bid":189.10,"ask":189.12,"ts":1732400000123456}',
        "doc-last-volume": '{"symbol":"AAPL","last":189.11,"volume":1200}',
        "nulls": '{"symbol":"FX:EUR/USD","bid":null,"ask":1.0842,"last":null}',
        "extra-fields": '{"symbol":"BTC-USD","last":64000.5,"venue":"x","n":[1,2]}',
        "crlf": '{"symbol":"MSFT","last":411.2}\r',
        "escaped-symbol": '{"symbol":"A\\u0041PL","last":1}',
        "no-symbol": '{"bid":1.0}',
        "invalid-symbol": '{"symbol":"not a symbol!","bid":1}',
        "symbol-too-long": '{"symbol":"%s","bid":1}' % ("A" * 33),
        "symbol-number": '{"symbol":42}',
        "bid-string": '{"symbol":"AAPL","bid":"189.10"}',
        "volume-negative": '{"symbol":"AAPL","volume":-1}',
        "ts-negative": '{"symbol":"AAPL","ts":-1}',
        "ts-float": '{"symbol":"AAPL","ts":1.5}',
        "ts-u64-max": '{"symbol":"AAPL","ts":18446744073709551615}',
        "ts-over-u64": '{"symbol":"AAPL","ts":18446744073709551616}',
        "bid-huge": '{"symbol":"AAPL","bid":1e308,"ask":1e309}',
        "array": '[{"symbol":"AAPL"}]',
        "not-json": "symbol=AAPL bid=1",
        "blank": "   \t",
        "not-utf8": b'{"symbol":"AAPL","x":"\xff"}',
    }
    for name, text in lines.items():
        write("feed_line", name, text)
    write(
        "feed_line",
        "several-lines",
        "\n".join([lines["doc-bid-ask"], "", lines["no-symbol"], lines["doc-last-volume"]]) + "\n",
    )
    head = '{"symbol":"AAPL","x":"'
    write("feed_line", "line-at-limit", head + "y" * (4096 - len(head) - 2) + '"}\n')
    write("feed_line", "unfinished-long-line", '{"symbol":"AAPL","x":"%s' % ("y" * 5000))


# ---------------------------------------------------------------- tokens


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header, claims, secret=SECRET):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    c = claims if isinstance(claims, bytes) else json.dumps(claims, separators=(",", ":")).encode()
    signing = b64(h) + "." + b64(c)
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(sig)


def token_seeds():
    hs = {"alg": "HS256", "typ": "JWT"}
    good = {"sub": "alice", "exp": NOW + 60, "iat": NOW, "jti": "j1", "symbols": ["AAPL", "FX:*"]}
    tokens = {
        "jwt-good": jwt(hs, good),
        "jwt-no-jti": jwt(hs, {"sub": "alice", "exp": NOW + 60}),
        "jwt-long-lived": jwt(hs, {"sub": "bob", "exp": 9999999999, "jti": "x"}),
        "jwt-expired": jwt(hs, {"sub": "alice", "exp": NOW - 1}),
        "jwt-nbf-future": jwt(hs, {**good, "nbf": NOW + 31}),
        "jwt-nbf-leeway": jwt(hs, {**good, "nbf": NOW + 30}),
        "jwt-iat-future": jwt(hs, {**good, "iat": NOW + 31}),
        "jwt-empty-sub": jwt(hs, {"sub": "", "exp": NOW + 60}),
        "jwt-wrong-secret": jwt(hs, good, secret=b"other"),
        "jwt-alg-none": jwt({"alg": "none"}, good)[: -43],
        "jwt-alg-hs512": jwt({"alg": "HS512"}, good),
        "jwt-crit": jwt({"alg": "HS256", "crit": ["exp"]}, good),
        "jwt-crit-empty": jwt({"alg": "HS256", "crit": []}, good),
        "jwt-types-wrong": jwt(hs, {"sub": 1, "exp": "soon", "symbols": "AAPL"}),
        "jwt-exp-huge": jwt(hs, {"sub": "a", "exp": 18446744073709551615, "iat": 0}),
        "bearer": "Bearer " + jwt(hs, good),
        "bearer-lowercase": "bearer  " + jwt(hs, good) + " ",
        "bearer-empty": "Bearer ",
        "two-parts": "a.b",
        "four-parts": "a.b.c.d",
        "bad-base64": "!!!.***.===",
    }
    for name, text in tokens.items():
        write("token", name, text)
    # `header\0body`: re-signed by the entry point, so these reach the claims.
    raw = {
        "signed-minimal": (b'{"alg":"HS256"}', b'{"sub":"a","exp":9999999999}'),
        "signed-query": (b'{"alg":"HS256"}', b'{"sub":"a","exp":1700000200,"iat":1700000000,"jti":"q"}'),
        "signed-query-too-long": (b'{"alg":"HS256"}', b'{"sub":"a","exp":1700000400,"jti":"q"}'),
        "signed-nbf-iat": (b'{"alg":"HS256"}', b'{"sub":"a","exp":1700000060,"nbf":1700000030,"iat":1700000029}'),
        "signed-crit": (b'{"alg":"HS256","crit":null}', b'{"sub":"a","exp":9999999999}'),
        "signed-none": (b'{"alg":"none"}', b'{"sub":"a","exp":9999999999}'),
        "signed-symbols": (b'{"alg":"HS256"}', b'{"sub":"a","exp":9999999999,"symbols":["*","FX:*","AAPL"]}'),
        "signed-empty-sub": (b'{"alg":"HS256"}', b'{"sub":"","exp":9999999999}'),
        "signed-exp-now": (b'{"alg":"HS256"}', b'{"sub":"a","exp":1700000000}'),
        "signed-not-json": (b'{"alg":"HS256"}', b"sub=a"),
    }
    for name, (h, b) in raw.items():
        write("token", name, h + b"\0" + b)


# ---------------------------------------------------------------- upgrades

GOOD = (
    "GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nConnection: keep-alive, Upgrade\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://localhost:8080\r\nAuthorization: Bearer x.y.z\r\n\r\n"
)


def upgrade_seeds():
    cases = {
        "good": GOOD,
        "good-minimal": "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
        "good-mixed-case": GOOD.replace("websocket", "WebSocket").replace("Upgrade\r", "UPGRADE\r"),
        "good-query-token": GOOD.replace("/ws ", "/ws?token=a.b.c "),
        "http10": GOOD.replace("HTTP/1.1", "HTTP/1.0"),
        "post": GOOD.replace("GET", "POST"),
        "no-host": GOOD.replace("Host: localhost:8080\r\n", ""),
        "two-hosts": GOOD.replace("Host: localhost:8080\r\n", "Host: a\r\nHost: b\r\n"),
        "empty-host": GOOD.replace("Host: localhost:8080", "Host:"),
        "no-connection-upgrade": GOOD.replace("keep-alive, Upgrade", "keep-alive"),
        "no-upgrade-header": GOOD.replace("Upgrade: websocket\r\n", ""),
        "version-8": GOOD.replace("Version: 13", "Version: 8"),
        "two-versions": GOOD.replace("Version: 13\r\n", "Version: 13\r\nSec-WebSocket-Version: 13\r\n"),
        "key-short": GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
        "key-unpadded": GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
        "key-17-bytes": GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ==="),
        "key-not-base64": GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!!!!!!!!!!!!!!!!!!!!=="),
        "two-keys": GOOD.replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
        ),
        "incomplete": GOOD[:-2],
        "bare-lf": GOOD.replace("\r\n", "\n"),
        "header-no-colon": GOOD.replace("Host: localhost:8080", "Host localhost:8080"),
        "header-obs-fold": GOOD.replace("Upgrade: websocket", "Upgrade:\r\n websocket"),
        "header-value-8bit": GOOD.replace("Origin: http://localhost:8080", "Origin: http://\xe9"),
        "method-junk": GOOD.replace("GET", "G\x01T"),
        "http2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    }
    for name, text in cases.items():
        write("upgrade_request", name, text)
    many = GOOD.replace("\r\n\r\n", "\r\n" + "".join("X-H%d: v\r\n" % i for i in range(70)) + "\r\n")
    write("upgrade_request", "too-many-headers", many)


if __name__ == "__main__":
    frame_seeds()
    message_seeds()
    feed_seeds()
    token_seeds()
    upgrade_seeds()
    for t in sorted(os.listdir(CORPUS)):
        print(t, len(os.listdir(os.path.join(CORPUS, t))))
