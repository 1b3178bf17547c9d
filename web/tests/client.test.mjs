// Unit tests of the browser client's logic, in Node's built-in test runner.
// The client gets a fake WebSocket, fetch and clock through its constructor:
// no test waits on real time.
import test from "node:test";
import assert from "node:assert/strict";
import {
  backoffDelay, shouldReconnect, tokenExpiry, Book, TickcastClient, MAX_BACKOFF_MS, chunkSubscribe,
  chunkUnsubscribe, byteLength, maxMessageOf, refreshDelayMs, refreshRetryDelayMs, snapshotUrl, refusedSymbols,
  isSymbol, SendBudget, SEND_BURST, decodeMsgpack, MsgpackError, MSGPACK_MAX_DEPTH, sseUrl, fitSseSymbols,
  wsProtocols, MAX_SSE_URL, FALLBACK_AFTER, SSE_REOPEN_DELAY_MS, SSE_RETRY_MAX_MS, retryAfterMs, wsProbeUrl,
  MAX_SERVER_WAIT_MS,
} from "../client.js";
import { encode } from "@msgpack/msgpack";
import { FakeClock, FakeSocket, FakeEventSource } from "./fakes.mjs";

test("backoff is full jitter under 1 s, 2 s, 4 s … capped at 60 s", () => {
  for (const [attempt, cap] of [[0, 1000], [1, 2000], [2, 4000], [5, 32000], [6, 60000], [20, 60000]]) {
    assert.equal(backoffDelay(attempt, () => 0.999999), cap - 1);
    assert.equal(backoffDelay(attempt, () => 0), 0);
  }
  const samples = Array.from({ length: 2000 }, () => backoffDelay(3));
  assert.ok(samples.every((d) => d >= 0 && d < 8000));
  assert.ok(new Set(samples).size > 100, "spread out, not a fixed step");
  assert.equal(MAX_BACKOFF_MS, 60000);
});

test("reconnect policy", () => {
  for (const code of [1000, 1001, 1006, 4000, 4008, 4429]) assert.equal(shouldReconnect(code, false), true, String(code));
  for (const code of [1003, 1007, 1008, 1009]) assert.equal(shouldReconnect(code, true), false, String(code));
  assert.equal(shouldReconnect(4401, false), false, "4401 without a way to get a new token");
  assert.equal(shouldReconnect(4401, true), true, "4401 with a token callback: get a fresh one");
});

test("seq filter keeps only newer ticks per symbol", () => {
  const b = new Book();
  assert.ok(b.accept({ symbol: "A", seq: 5, bid: 1 }));
  assert.ok(!b.accept({ symbol: "A", seq: 5, bid: 2 }), "same seq");
  assert.ok(!b.accept({ symbol: "A", seq: 4, bid: 3 }), "older");
  assert.ok(b.accept({ symbol: "A", seq: 6, bid: 4 }));
  assert.ok(b.accept({ symbol: "B", seq: 1 }));
  assert.equal(b.get("A").bid, 4);
  assert.deepEqual(b.since(["A", "B", "C"]), { A: 6, B: 1 });
});

test("token expiry is read from the JWT", () => {
  const body = Buffer.from(JSON.stringify({ sub: "a", exp: 1700000000 })).toString("base64url");
  assert.equal(tokenExpiry(`x.${body}.y`), 1700000000);
  assert.equal(tokenExpiry("garbage"), null);
});

// ---------------------------------------------------------------- pure helpers

/** `n` distinct symbols of `len` characters (valid by the protocol's rule). */
const names = (n, len = 8) => Array.from({ length: n }, (_, i) => ("S" + String(i).padStart(5, "0")).padEnd(len, "X"));
const bytesOf = (msg) => byteLength(JSON.stringify(msg));

/** Checks that `messages` subscribe exactly `symbols`, in order, each `since` beside its symbol. */
function assertCovers(messages, symbols, since) {
  assert.deepEqual(messages.flatMap((m) => m.payload.symbols), symbols, "every symbol once, in order");
  for (const m of messages) {
    for (const [s, seq] of Object.entries(m.payload.since ?? {})) {
      assert.ok(m.payload.symbols.includes(s), `${s}'s since travels with ${s}`);
      assert.equal(seq, since[s]);
    }
    for (const s of m.payload.symbols) if (since && s in since) assert.equal(m.payload.since[s], since[s], `since of ${s}`);
  }
}

test("chunkSubscribe: every message within the limit, all symbols, each since with its symbol", () => {
  for (const len of [4, 12, 32]) {
    const symbols = names(300, len);
    const since = Object.fromEntries(symbols.filter((_, i) => i % 3).map((s, i) => [s, 1 + i * 7919]));
    for (const max of [4096, 1000, 300]) {
      let id = 41;
      const messages = chunkSubscribe(symbols, since, max, () => id++);
      assert.ok(messages.every((m) => bytesOf(m) <= max), `len ${len}, max ${max}: ${Math.max(...messages.map(bytesOf))} bytes`);
      assertCovers(messages, symbols, since);
      assert.deepEqual(messages.map((m) => m.id), messages.map((_, i) => 41 + i), "numbered by nextId");
      assert.ok(messages.every((m) => m.type === "subscribe"));
      // Not wasteful: every message but the last is too full for its successor's first symbol.
      for (let i = 0; i + 1 < messages.length; i++) {
        const next = messages[i + 1].payload.symbols[0];
        const grown = structuredClone(messages[i]);
        grown.payload.symbols.push(next);
        if (next in since) grown.payload.since[next] = since[next];
        assert.ok(bytesOf(grown) > max, "filled before starting another");
      }
    }
  }
});

test("chunkSubscribe counts UTF-8 bytes, not characters, and omits since when not given", () => {
  const symbols = Array.from({ length: 200 }, (_, i) => `É€${i}`);
  let id = 1;
  const messages = chunkSubscribe(symbols, null, 512, () => id++);
  assert.ok(messages.every((m) => bytesOf(m) <= 512 && !("since" in m.payload)));
  assert.deepEqual(messages.flatMap((m) => m.payload.symbols), symbols);
  assert.ok(messages.some((m) => bytesOf(m) > 480), "packed up to the limit");
  assert.deepEqual(chunkSubscribe([], {}, 4096, () => id++), [], "nothing to send, no message");
  const un = chunkUnsubscribe(names(500, 32), 1024, () => id++);
  assert.ok(un.length > 1 && un.every((m) => m.type === "unsubscribe" && bytesOf(m) <= 1024 && !("since" in m.payload)));
});

test("max_message from the welcome, 4096 without it", () => {
  assert.equal(maxMessageOf({ max_message: 65536 }), 65536);
  assert.equal(maxMessageOf({}), 4096);
  assert.equal(maxMessageOf({ max_message: "x" }), 4096);
  assert.equal(maxMessageOf(undefined), 4096);
});

test("refresh is due at 80% of the remaining life or 30 s before expiry, whichever is first, at least 1 s out", () => {
  const now = 1_700_000_000_000;
  assert.equal(refreshDelayMs(now / 1000 + 300, now), 240000, "300 s token: 80%");
  assert.equal(refreshDelayMs(now / 1000 + 3600, now), 2880000, "1 h token: 80%");
  assert.equal(refreshDelayMs(now / 1000 + 60, now), 30000, "60 s token: 30 s before");
  assert.equal(refreshDelayMs(now / 1000 + 8, now), 1000, "8 s token: as soon as allowed");
  assert.equal(refreshDelayMs(now / 1000 - 5, now), 1000, "never in the past");
  assert.equal(refreshRetryDelayMs(1, now / 1000 + 60, now), 1000);
  assert.equal(refreshRetryDelayMs(2, now / 1000 + 60, now), 2000);
  assert.equal(refreshRetryDelayMs(2, now / 1000 + 3, now), 1500, "within the first half of what is left");
  assert.equal(refreshRetryDelayMs(1, now / 1000 + 0.5, now), null, "too late: the 4401 at expiry takes over");
});

test("snapshot URL next to the WebSocket URL, refused symbols of an error, symbol rule", () => {
  assert.equal(snapshotUrl("ws://127.0.0.1:8080/ws"), "http://127.0.0.1:8080/snapshot?symbols=");
  assert.equal(snapshotUrl("wss://md.example.com/feed/ws?x=1#h"), "https://md.example.com/feed/snapshot?symbols=");
  assert.deepEqual(refusedSymbols({ code: "forbidden", symbols: ["A", "B"], message: "…" }), ["A", "B"]);
  assert.deepEqual(refusedSymbols({ code: "forbidden", symbol: "A" }), ["A"], "older servers name one symbol");
  assert.deepEqual(refusedSymbols({ code: "unknown_symbol", symbols: ["Z"] }), ["Z"]);
  assert.deepEqual(refusedSymbols({ code: "rate_limited" }), []);
  assert.ok(isSymbol("FX:EUR/USD") && isSymbol("BRK.B") && !isSymbol("") && !isSymbol("a b") && !isSymbol("X".repeat(33)));
});

test("send budget: a burst, then one message per gap", () => {
  const b = new SendBudget(3, 150);
  assert.deepEqual([b.take(0), b.take(0), b.take(0)], [0, 0, 0]);
  assert.equal(b.take(0), 150);
  assert.ok([50, 51].includes(b.take(100)), "the rest of the gap");
  assert.equal(b.take(150), 0);
  b.reset();
  assert.equal(b.take(150), 0, "full again on a new connection");
});

// ---------------------------------------------------------------- the client, with fakes (tests/fakes.mjs)

const tick = (symbol, seq, extra = {}) => ({ type: "tick", payload: { symbol, seq, ts: 1, pub: 1, ...extra } });
const jwt = (claims) => `h.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.s`;

/** A client on fakes, recording its events; it pings only when a test asks for it. */
function setup(options = {}, clock = new FakeClock()) {
  FakeSocket.all = [];
  FakeSocket.clock = clock;
  // A failed upgrade is probed over HTTP: unless a test gives a fetch, the network is down.
  const c = new TickcastClient({ url: "ws://x/ws", WebSocket: FakeSocket, random: () => 0, pingAfterMs: 3_600_000, openTimeoutMs: 3_600_000,
                                 fetch: async () => { throw new TypeError("Failed to fetch"); },
                                 ...clock.options, ...options });
  const events = { state: [], error: [], unsubscribed: [], tick: [] };
  for (const type of Object.keys(events)) c.addEventListener(type, (e) => events[type].push(e.detail));
  return { c, clock, events, socket: (i) => FakeSocket.all.at(i) };
}

/** A token source handing out a new one-time token on each call, living `ttl` seconds. */
function tokenSource(clock, ttl) {
  const issued = [];
  const getToken = async () => {
    const t = jwt({ sub: "alice", exp: Math.floor(clock.t / 1000) + ttl, jti: `j${issued.length}` });
    issued.push(t);
    return t;
  };
  return { issued, getToken };
}

/** The server's inbound rate limit (a token bucket, full at connect): how many of these send times it would refuse. */
function refusedByServer(times, rate = 10, burst = 20) {
  let tokens = burst, last = times[0], refused = 0;
  for (const t of times) {
    tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
    last = t;
    if (tokens >= 1) tokens -= 1;
    else refused++;
  }
  return refused;
}

test("chunkSubscribe with intervalMs: every message carries interval_ms and stays within the limit", () => {
  const symbols = names(300, 16);
  let id = 1;
  const since = { [symbols[5]]: 42 };
  const messages = chunkSubscribe(symbols, since, 1024, () => id++, 250);
  assert.ok(messages.length > 1);
  assert.ok(messages.every((m) => m.payload.interval_ms === 250 && bytesOf(m) <= 1024));
  assertCovers(messages, symbols, since);
  assert.ok(chunkSubscribe(symbols, null, 1024, () => id++).every((m) => !("interval_ms" in m.payload)), "none when not asked for");
});

test("intervalMs goes into every subscribe, the resubscribe after a reconnect too; a bad one is refused here", async () => {
  const { c, clock } = setup({ symbols: ["A", "B"], intervalMs: 1000 });
  await c.connect();
  const first = FakeSocket.all[0];
  first.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(first.sent[0].payload, { symbols: ["A", "B"], since: {}, interval_ms: 1000 });
  c.subscribe(["C"]);
  assert.deepEqual(first.sent.at(-1).payload, { symbols: ["C"], interval_ms: 1000 });
  first.serverCloses(1006);
  await clock.advance(0);
  const second = FakeSocket.all[1];
  second.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.equal(second.sent[0].payload.interval_ms, 1000);
  c.close();
  for (const bad of [0, -5, 2.5, "250", NaN]) {
    assert.throws(() => new TickcastClient({ url: "ws://x/ws", intervalMs: bad }), TypeError, `intervalMs ${bad}`);
  }
});

test("resubscribes with since after a reconnect, and forgets seqs when the epoch changes", async () => {
  const { c, clock, events } = setup({ symbols: ["A", "B"] });
  await c.connect();
  const first = FakeSocket.all[0];
  first.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(first.sent[0].payload, { symbols: ["A", "B"], since: {} });
  first.serverSays(tick("A", 7));
  first.serverCloses(1001, "server shutting down");
  assert.equal(events.state.at(-1).state, "reconnecting");
  await clock.advance(0);
  const second = FakeSocket.all[1];
  second.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(second.sent[0].payload, { symbols: ["A", "B"], since: { A: 7 } }, "only what changed");
  second.serverCloses(1006);
  await clock.advance(0);
  const third = FakeSocket.all[2];
  third.serverSays({ type: "welcome", payload: { epoch: 2 } });
  assert.deepEqual(third.sent[0].payload, { symbols: ["A", "B"], since: {} }, "a new epoch starts seq over");
  third.serverSays(tick("A", 1));
  assert.deepEqual(events.tick.map((t) => t.seq), [7, 1]);
  c.close();
});

test("a resubscribe of 300 symbols with since comes in messages within max_message", async () => {
  const symbols = names(300, 12);
  for (const maxMessage of [undefined, 4096, 1500]) {
    const { c, clock } = setup({ symbols });
    await c.connect();
    const welcome = { type: "welcome", payload: { epoch: 1, ...(maxMessage && { max_message: maxMessage }) } };
    FakeSocket.all[0].serverSays(welcome);
    symbols.forEach((s, i) => FakeSocket.all[0].serverSays(tick(s, 1000 + i)));
    FakeSocket.all[0].serverCloses(1006);
    await clock.advance(0);
    const again = FakeSocket.all[1];
    again.serverSays(welcome);
    await clock.advance(10000);
    const limit = maxMessage ?? 4096;
    assert.ok(again.sent.length > 1, "split");
    assert.ok(again.raw.every((s) => Buffer.byteLength(s) <= limit), `every message ≤ ${limit} bytes`);
    assertCovers(again.sent, symbols, Object.fromEntries(symbols.map((s, i) => [s, 1000 + i])));
    assert.equal(Object.keys(Object.assign({}, ...again.sent.map((m) => m.payload.since))).length, 300);
    c.close();
  }
});

test("1024 symbols are paced within the server's rate limit", async () => {
  // 32-character names with since need more than a burst of messages.
  const symbols = names(1024, 32);
  const { c, clock } = setup({ symbols });
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1, max_message: 4096 } });
  symbols.forEach((s, i) => ws.serverSays(tick(s, 100000 + i)));
  ws.serverCloses(1001);
  await clock.advance(0);
  const again = FakeSocket.all[1];
  again.serverSays({ type: "welcome", payload: { epoch: 1, max_message: 4096 } });
  assert.equal(again.sent.length, SEND_BURST, "a burst at once, the rest paced");
  await clock.advance(10000);
  assert.ok(again.sent.length > SEND_BURST && again.sent.length < 30, `${again.sent.length} messages`);
  assertCovers(again.sent, symbols, Object.fromEntries(symbols.map((s, i) => [s, 100000 + i])));
  assert.equal(refusedByServer(again.at), 0, "the server's bucket (10/s, burst 20) never runs dry");
  const others = Array(5).fill(again.at[0]);
  assert.equal(refusedByServer([...others, ...again.at]), 0, "with room for 5 other messages (pings, refreshes)");
  c.close();
});

test("subscribe() and unsubscribe() with many symbols are split too; invalid symbols are refused here", async () => {
  const { c, clock, events } = setup({ symbols: ["A"] });
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1, max_message: 2048 } });
  const many = names(400, 20);
  c.subscribe([...many, "not a symbol", "A"]);
  await clock.advance(5000);
  const subs = ws.sent.filter((m) => m.type === "subscribe").slice(1);
  assert.ok(subs.length > 1 && ws.raw.every((s) => Buffer.byteLength(s) <= 2048));
  assert.deepEqual(subs.flatMap((m) => m.payload.symbols), many, "only new, valid symbols");
  assert.equal(events.error.at(-1).code, "invalid_symbol");
  assert.deepEqual(events.error.at(-1).symbols, ["not a symbol"]);
  assert.ok(!c.symbols.has("not a symbol"));
  c.unsubscribe(many);
  await clock.advance(5000);
  const unsubs = ws.sent.filter((m) => m.type === "unsubscribe");
  assert.ok(unsubs.length > 1);
  assert.deepEqual(unsubs.flatMap((m) => m.payload.symbols), many);
  assert.deepEqual([...c.symbols], ["A"]);
  assert.equal(refusedByServer(ws.at), 0);
  c.close();
});

test("refused symbols in subscribe errors are dropped from the watch-list", async () => {
  const { c, clock, events } = setup({ symbols: ["A", "B", "C", "D", "E"] });
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1 } });
  const id = ws.sent[0].id;
  ws.serverSays({ type: "subscribed", id, payload: { symbols: ["A", "C"], unknown: ["C"] } });
  ws.serverSays({ type: "error", id, payload: { code: "forbidden", symbols: ["B"], symbol: "B", message: "not entitled to B" } });
  ws.serverSays({ type: "error", id, payload: { code: "unknown_symbol", symbols: ["D"], symbol: "D", message: "no such symbol" } });
  ws.serverSays({ type: "error", id, payload: { code: "invalid_symbol", symbol: "E", message: "older server, one symbol" } });
  ws.serverSays({ type: "error", id: 99, payload: { code: "rate_limited", message: "slow down" } });
  assert.deepEqual(events.error.map((e) => e.code), ["forbidden", "unknown_symbol", "invalid_symbol", "rate_limited"]);
  assert.deepEqual(events.error.map((e) => e.symbols), [["B"], ["D"], ["E"], undefined]);
  assert.equal(events.error[0].message, "not entitled to B");
  assert.deepEqual([...c.symbols], ["A", "C"], "C has no value yet but is subscribed: kept");
  ws.serverCloses(1006);
  await clock.advance(1000);
  FakeSocket.all[1].serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(FakeSocket.all[1].sent[0].payload.symbols, ["A", "C"], "refused symbols are not asked for again");
  c.close();
});

test("`unsubscribed` with a reason drops the symbols and says so", async () => {
  const { c, clock, events } = setup({ symbols: ["AAPL", "TSLA", "NVDA"] });
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1 } });
  ws.serverSays(tick("TSLA", 3));
  ws.serverSays(tick("AAPL", 4));
  c.unsubscribe(["NVDA"]);
  ws.serverSays({ type: "unsubscribed", id: ws.sent.at(-1).id, payload: { symbols: ["NVDA"] } });
  assert.deepEqual(events.unsubscribed, [], "the reply to our own unsubscribe is no news");
  ws.serverSays({ type: "unsubscribed", id: 7, payload: { symbols: ["TSLA"], reason: "forbidden" } });
  assert.deepEqual(events.unsubscribed, [{ symbols: ["TSLA"], candles: [], reason: "forbidden" }]);
  assert.equal(events.error.at(-1).code, "forbidden");
  assert.deepEqual(events.error.at(-1).symbols, ["TSLA"]);
  assert.match(events.error.at(-1).message, /TSLA/);
  assert.deepEqual([...c.symbols], ["AAPL"]);
  assert.equal(c.latest("TSLA"), undefined);
  ws.serverSays(tick("TSLA", 4));
  assert.equal(events.tick.filter((t) => t.symbol === "TSLA").length, 1, "late ticks of a dropped symbol are ignored");
  ws.serverCloses(1006);
  await clock.advance(1000);
  FakeSocket.all[1].serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(FakeSocket.all[1].sent[0].payload, { symbols: ["AAPL"], since: { AAPL: 4 } });
  c.close();
});

test("never reconnects after codes that mean don't, and says why", async () => {
  for (const code of [1008, 1003, 1007, 1009]) {
    const { c, clock, events } = setup();
    await c.connect();
    FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
    FakeSocket.all[0].serverCloses(code, "no");
    await clock.advance(120000);
    assert.equal(FakeSocket.all.length, 1, `no reconnect after ${code}`);
    assert.equal(events.state.at(-1).state, "closed");
    assert.match(events.state.at(-1).reason, new RegExp(String(code)));
  }
});

test("fetches a fresh token before every connect and stops on an expired one", async () => {
  const clock = new FakeClock();
  const now = clock.t / 1000;
  const tokens = [jwt({ exp: now + 60 }), jwt({ exp: now + 60 }), jwt({ exp: now - 1 })];
  let calls = 0;
  const fetch = async () => { throw new TypeError("Failed to fetch"); };
  const { c, events } = setup({ getToken: async () => tokens[calls++], fetch }, clock);
  await c.connect();
  assert.ok(FakeSocket.all[0].url.includes("token=" + encodeURIComponent(tokens[0])));
  FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
  FakeSocket.all[0].serverCloses(4401, "token expired");
  await clock.advance(0);
  assert.ok(FakeSocket.all[1].url.includes(encodeURIComponent(tokens[1])), "a new token for the new connection");
  FakeSocket.all[1].serverSays({ type: "welcome", payload: {} });
  FakeSocket.all[1].serverCloses(1006);
  await clock.advance(0);
  assert.equal(FakeSocket.all.length, 2, "the expired third token is never used");
  assert.equal(events.state.at(-1).state, "closed");
  assert.match(events.state.at(-1).reason, /expired/);
});

test("pings after silence and treats a missing pong as a dead connection", async () => {
  const { c, clock, events } = setup({ pingAfterMs: 20000, pongTimeoutMs: 5000 });
  await c.connect();
  FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
  await clock.advance(19999);
  assert.equal(FakeSocket.all[0].sent.length, 0);
  await clock.advance(1);
  assert.equal(FakeSocket.all[0].sent.at(-1).type, "ping");
  await clock.advance(4999);
  assert.equal(events.state.at(-1).state, "open");
  await clock.advance(1);
  assert.ok(events.state.some((e) => e.state === "reconnecting"), "no pong: reconnect");
  assert.equal(FakeSocket.all.length, 2);
  c.close();
});

// ---------------------------------------------------------------- token refresh

test("refreshes the token before it expires, with a fresh one each time", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 300);
  const { c, events } = setup({ getToken, symbols: ["A"] }, clock);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1 } });       // no exp: read from the token
  const auths = () => ws.sent.filter((m) => m.type === "auth");
  await clock.advance(239999);
  assert.equal(auths().length, 0, "not before 80% of the token's life");
  await clock.advance(1);
  assert.equal(auths().length, 1);
  assert.equal(issued.length, 2, "a fresh token from getToken");
  assert.equal(auths()[0].payload.token, issued[1]);
  assert.notEqual(issued[1], issued[0], "never the token of the connect (one-time jti)");

  // The server's answer carries the new exp: the next refresh is computed from it.
  const exp = Math.floor(clock.t / 1000) + 100;
  ws.serverSays({ type: "authenticated", id: auths()[0].id, payload: { sub: "alice", exp } });
  await clock.advance(69999);
  assert.equal(auths().length, 1, "100 s left: refresh 30 s before");
  await clock.advance(1);
  assert.equal(auths().length, 2);
  assert.equal(auths()[1].payload.token, issued[2]);
  assert.equal(FakeSocket.all.length, 1, "one connection throughout");
  assert.deepEqual(events.error, []);

  // A refresh to a short-lived token: the next one comes as soon as allowed.
  ws.serverSays({ type: "authenticated", id: auths()[1].id, payload: { sub: "alice", exp: Math.floor(clock.t / 1000) + 8 } });
  await clock.advance(1000);
  assert.equal(auths().length, 3);

  // On close the refresh timer goes with the connection.
  ws.serverCloses(1001);
  assert.ok(![...clock.timers.values()].some((t) => t.at > clock.t + 1000), "only the reconnect is pending");
  c.close();
  assert.equal(clock.timers.size, 0);
});

test("the welcome's exp wins over the token's", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 300);
  const { c } = setup({ getToken }, clock);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1, exp: Math.floor(clock.t / 1000) + 60 } });
  await clock.advance(30000);
  assert.equal(ws.sent.filter((m) => m.type === "auth").length, 1, "30 s before the server's exp");
  c.close();
});

test("a refused refresh is said and retried twice before expiry; then 4401 leads to a reconnect with a fresh token", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 60);
  const { c, events } = setup({ getToken }, clock);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1 } });
  const auths = () => ws.sent.filter((m) => m.type === "auth");
  const refuse = () => ws.serverSays({ type: "error", id: auths().at(-1).id, payload: { code: "unauthorized", message: "token refused: replayed" } });
  await clock.advance(30000);
  assert.equal(auths().length, 1);
  refuse();
  assert.equal(events.error.at(-1).code, "unauthorized");
  await clock.advance(1000);
  assert.equal(auths().length, 2, "retried after 1 s");
  refuse();
  await clock.advance(2000);
  assert.equal(auths().length, 3, "retried after 2 s");
  assert.deepEqual(new Set(auths().map((m) => m.payload.token)).size, 3, "a fresh token each time");
  refuse();
  await clock.advance(26000);
  assert.equal(auths().length, 3, "then no more: the server will close at expiry");
  assert.equal(events.error.length, 3);
  ws.serverCloses(4401, "token expired");
  await clock.advance(1000);
  assert.equal(FakeSocket.all.length, 2, "the normal reconnect path");
  assert.ok(FakeSocket.all[1].url.includes(encodeURIComponent(issued.at(-1))));
  c.close();
});

test("a token callback that fails during a refresh is retried like a refused refresh", async () => {
  const clock = new FakeClock();
  let fail = false;
  const source = tokenSource(clock, 60);
  const getToken = async () => { if (fail) throw new Error("backend down"); return source.getToken(); };
  const { c, events } = setup({ getToken }, clock);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1 } });
  fail = true;
  await clock.advance(30000);
  assert.match(events.error.at(-1).message, /backend down/);
  fail = false;
  await clock.advance(1000);
  assert.equal(ws.sent.filter((m) => m.type === "auth").length, 1, "the retry got a token");
  c.close();
});

// ---------------------------------------------------------------- refused upgrades

/** A fake fetch answering `status` with `body`, or throwing for status null; records its calls. */
function fakeFetch(status, body = "") {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, auth: init.headers.Authorization });
    if (status === null) throw new TypeError("Failed to fetch");
    return { status, text: async () => body };
  };
  return { calls, fetch };
}

/** Makes each new socket fail before opening, `n` times, advancing past each backoff. */
async function failBeforeOpen(clock, n) {
  for (let i = 0; i < n; i++) {
    const before = FakeSocket.all.length;
    FakeSocket.all.at(-1).failsBeforeOpen();
    await clock.advance(MAX_BACKOFF_MS);
    if (FakeSocket.all.length === before) return i + 1;
  }
  return n;
}

test("three refused upgrades in a row: the client stops, saying why", async () => {
  for (const status of [401, 403]) {
    const clock = new FakeClock();
    const { issued, getToken } = tokenSource(clock, 60);
    const { calls, fetch } = fakeFetch(status, "unauthorized: bad signature\n");
    const { c, events } = setup({ getToken, fetch }, clock);
    await c.connect();
    await failBeforeOpen(clock, 3);
    assert.equal(FakeSocket.all.length, 3, "three attempts, no fourth");
    assert.equal(calls.length, 3);
    assert.equal(calls[0].url, "http://x/ws", "the upgrade's URL, as plain HTTP");
    assert.ok(calls.every((k) => k.auth.startsWith("Bearer ")));
    assert.equal(new Set([...calls.map((k) => k.auth.slice(7)), ...FakeSocket.all.map((s) => s.url)]).size, 6, "a fresh token each time");
    assert.equal(issued.length, 6);
    assert.deepEqual(events.error.map((e) => [e.code, e.status, e.message]), Array(3).fill(["refused", status, "unauthorized: bad signature"]));
    assert.equal(events.state.at(-1).state, "closed");
    assert.match(events.state.at(-1).reason, new RegExp(`refused by the server \\(${status}\\): unauthorized: bad signature`));
    await clock.advance(10 * MAX_BACKOFF_MS);
    assert.equal(FakeSocket.all.length, 3);
    assert.equal(clock.timers.size, 0, "nothing left to run");
  }
});

test("a probe that fails to fetch, or gets any other status, means: retry (WebSocket only)", async () => {
  for (const status of [null, 200, 503]) {
    const clock = new FakeClock();
    const { getToken } = tokenSource(clock, 60);
    const { calls, fetch } = fakeFetch(status, "[]");
    const { c, events } = setup({ getToken, fetch, transport: "websocket" }, clock);
    await c.connect();
    assert.equal(await failBeforeOpen(clock, 6), 6);
    assert.equal(FakeSocket.all.length, 7, `status ${status}: still trying`);
    assert.equal(calls.length, 6);
    assert.deepEqual(events.error, []);
    assert.equal(events.state.at(-1).state, "connecting");
    c.close();
  }
});

test("refusals count only in a row: an open connection starts the count over", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 60);
  const { fetch } = fakeFetch(401, "no");
  const { c, events } = setup({ getToken, fetch }, clock);
  await c.connect();
  await failBeforeOpen(clock, 2);
  FakeSocket.all.at(-1).open();
  FakeSocket.all.at(-1).serverCloses(1006);
  await clock.advance(MAX_BACKOFF_MS);
  await failBeforeOpen(clock, 2);
  assert.equal(events.error.length, 4);
  assert.notEqual(events.state.at(-1).state, "closed");
  c.close();
});

test("without a token callback a 401 probe changes nothing: no token to blame, retry", async () => {
  const { fetch, calls } = fakeFetch(401);
  const { c, clock, events } = setup({ fetch, transport: "websocket" });
  await c.connect();
  assert.equal(await failBeforeOpen(clock, 5), 5);
  assert.equal(calls.length, 5, "each failure probed (for a Retry-After)");
  assert.ok(calls.every((k) => k.url === "http://x/ws" && k.auth === undefined));
  assert.deepEqual(events.error, []);
  assert.equal(events.state.at(-1).state, "connecting");
  c.close();
});

test("close() during a probe: nothing more happens", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 60);
  let answer;
  const fetch = () => new Promise((r) => { answer = r; });
  const { c, events } = setup({ getToken, fetch }, clock);
  await c.connect();
  FakeSocket.all[0].failsBeforeOpen();
  await clock.advance(0);
  c.close();
  answer({ status: 401, text: async () => "no" });
  await clock.advance(MAX_BACKOFF_MS);
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(events.error, []);
  assert.equal(events.state.at(-1).state, "closed");
});

test("a message the server would close the connection for (over max_message) is not sent, and said so", async () => {
  const clock = new FakeClock();
  const huge = jwt({ sub: "alice", exp: clock.t / 1000 + 60, symbols: names(400, 20) });
  let calls = 0;
  const getToken = async () => (calls++ === 0 ? jwt({ sub: "alice", exp: clock.t / 1000 + 60 }) : huge);
  const { c, events } = setup({ getToken }, clock);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays({ type: "welcome", payload: { epoch: 1, max_message: 4096 } });
  await clock.advance(30000);
  assert.equal(ws.sent.filter((m) => m.type === "auth").length, 0);
  assert.match(events.error.at(-1).message, /auth message over the server's 4096 bytes/);
  assert.equal(ws.readyState, 1, "the connection lives on (until the token expires)");
  c.close();
});

// ---------------------------------------------------------------- MessagePack decoder

/** Bytes from hex, for encodings written by hand (what @msgpack/msgpack never makes). */
const hex = (h) => Uint8Array.from(h.replace(/\s/g, "").match(/../g) ?? [], (b) => parseInt(b, 16));

test("decodeMsgpack reads what @msgpack/msgpack writes: every int width at its edges", () => {
  const ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1,
                -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1)];
  const firstBytes = new Set();
  for (const n of ints) {
    const bytes = encode(n);
    firstBytes.add(bytes[0] >= 0xe0 ? "negfix" : bytes[0] <= 0x7f ? "posfix" : bytes[0].toString(16));
    assert.equal(decodeMsgpack(bytes), n, `${n} (${Buffer.from(bytes).toString("hex")})`);
  }
  // uint8/16/32/64 and int8/16/32/64 all met, besides both fixints.
  assert.deepEqual([...firstBytes].sort(), ["cc", "cd", "ce", "cf", "d0", "d1", "d2", "d3", "negfix", "posfix"]);
});

test("decodeMsgpack: 64-bit ints beyond 2^53 become the nearest Number, or exact BigInts when asked", () => {
  const big = [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 64n - 1n, 2n ** 64n - 2049n, -(2n ** 53n) - 1n, -(2n ** 63n), 12345678901234567891n];
  for (const v of big) {
    const bytes = encode(v, { useBigInt64: true });
    assert.ok(bytes[0] === 0xcf || bytes[0] === 0xd3, `${v}: a 64-bit int`);
    assert.equal(decodeMsgpack(bytes), Number(v), `${v} as the nearest Number`);
    assert.equal(decodeMsgpack(bytes), JSON.parse(String(v)), `${v}: what JSON.parse makes of its digits`);
    assert.equal(decodeMsgpack(bytes, { bigInt: true }), v, `${v} exactly`);
  }
  // Safe values stay Numbers even with bigInt: the JSON path's types.
  assert.equal(decodeMsgpack(encode(2n ** 53n - 1n, { useBigInt64: true }), { bigInt: true }), 2 ** 53 - 1);
  assert.equal(decodeMsgpack(hex("d3 ffffffffffffffff"), { bigInt: true }), -1);
  assert.equal(decodeMsgpack(hex("cf 0000000000000000")), 0);
});

test("decodeMsgpack: floats, nil, bools, str and bin of every width, arrays and maps of every width", () => {
  for (const f of [1.5, -0.1, 189.12, 1e300, -Infinity, Number.MIN_VALUE]) assert.equal(decodeMsgpack(encode(f)), f);
  assert.ok(Number.isNaN(decodeMsgpack(encode(NaN))));
  assert.ok(Object.is(decodeMsgpack(hex("cb 8000000000000000")), -0), "-0 (which @msgpack/msgpack writes as the int 0)");
  const f32 = encode(3.14, { forceFloat32: true });
  assert.equal(f32[0], 0xca);
  assert.equal(decodeMsgpack(f32), Math.fround(3.14));
  assert.equal(decodeMsgpack(encode(null)), null);
  assert.equal(decodeMsgpack(encode(true)), true);
  assert.equal(decodeMsgpack(encode(false)), false);
  for (const len of [0, 31, 32, 255, 256, 65535, 65536]) {
    const str = "é€𝄞x".repeat(Math.ceil(len / 4)).slice(0, len);
    assert.equal(decodeMsgpack(encode(str)), str, `str of ${len} code units`);
    const bin = Uint8Array.from({ length: len }, (_, i) => i * 7);
    const out = decodeMsgpack(encode(bin));
    assert.ok(out instanceof Uint8Array && Buffer.from(out).equals(Buffer.from(bin)), `bin of ${len}`);
    const arr = Array.from({ length: Math.min(len, 70000) }, (_, i) => i % 3 ? i : `s${i}`);
    assert.deepEqual(decodeMsgpack(encode(arr)), arr, `array of ${len}`);
    const map = Object.fromEntries(arr.map((v, i) => [`k${i}`, v]));
    assert.deepEqual(decodeMsgpack(encode(map)), map, `map of ${len}`);
  }
  // The first byte of each width, so that the loop above is known to have met them all.
  assert.deepEqual([encode("x".repeat(40))[0], encode("x".repeat(300))[0], encode("x".repeat(70000))[0]], [0xd9, 0xda, 0xdb]);
  assert.deepEqual([0, 300, 70000].map((n) => encode(new Uint8Array(n))[0]), [0xc4, 0xc5, 0xc6]);
  assert.deepEqual([15, 16, 70000].map((n) => encode(new Array(n).fill(0))[0]), [0x9f, 0xdc, 0xdd]);
});

test("decodeMsgpack: a server message, nested, equals its JSON", () => {
  const msg = { type: "tick", payload: { symbol: "FX:EUR/USD", seq: 1042, bid: 1.0842, ask: 1.0843, last: -3, volume: 1200,
                                         ts: 1732400000123456, pub: 1732400000129012, snapshot: true } };
  assert.deepEqual(decodeMsgpack(encode(msg)), JSON.parse(JSON.stringify(msg)));
  const welcome = { type: "welcome", payload: { session: "9f1c", heartbeat_ms: 30000, epoch: 1732400000000000, nested: [[{ a: [null, false] }]] } };
  assert.deepEqual(decodeMsgpack(encode(welcome)), welcome);
  // From an ArrayBuffer (what a browser hands over), and from a view into a larger buffer.
  const bytes = encode(msg);
  assert.deepEqual(decodeMsgpack(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)), msg);
  const padded = new Uint8Array(bytes.length + 8);
  padded.set(bytes, 4);
  assert.deepEqual(decodeMsgpack(padded.subarray(4, 4 + bytes.length)), msg);
});

test("decodeMsgpack refuses cleanly: ext types, 0xc1, cut-off input, trailing bytes, bad UTF-8, odd keys, deep nesting", () => {
  const refuse = (bytes, pattern, what) => assert.throws(() => decodeMsgpack(bytes), (e) => e instanceof MsgpackError && pattern.test(e.message), what);
  refuse(hex("c1"), /never used/, "0xc1");
  for (const ext of ["c7 01 05 00", "c8 0001 05 00", "c9 00000001 05 00", "d4 05 00", "d5 05 0000", "d6 05 00000000", "d7 05 0000000000000000", "d8 05 " + "00".repeat(16)]) {
    refuse(hex(ext), /ext type/, ext);
  }
  refuse(encode(-1).subarray(0, 0), /cut off/, "nothing at all");
  const whole = encode({ type: "tick", payload: { symbol: "AAPL", seq: 2 ** 40, bid: 1.5, s: "x".repeat(300), b: new Uint8Array(3) } });
  for (let n = 0; n < whole.length; n++) refuse(whole.subarray(0, n), /cut off/, `cut after ${n} of ${whole.length} bytes`);
  refuse(hex("c0 c0"), /1 bytes after the value/, "two values");
  refuse(hex("a2 c3 28"), /not UTF-8/, "an invalid UTF-8 sequence");
  refuse(hex("81 c0 01"), /map key of type nil/, "nil key");
  refuse(hex("81 80 01"), /map key of type object/, "map key");
  refuse(hex("dd ffffffff 00"), /cut off \(4294967295 items/, "an array claiming more items than bytes");
  refuse(hex("df 7fffffff 00"), /cut off/, "a map claiming more entries than bytes");
  refuse(new Uint8Array(100000).fill(0x91), /nested deeper than 64/, "deep arrays: refused, no stack overflow");
  assert.deepEqual(decodeMsgpack(new Uint8Array([...new Uint8Array(MSGPACK_MAX_DEPTH - 1).fill(0x91), 0x90])).flat(Infinity), [], "64 levels of arrays are fine");
  // Int keys are names, as in a JS object; "__proto__" is a key like any other, as with JSON.parse.
  assert.deepEqual(decodeMsgpack(hex("82 01 a1 61 a3 6b6579 02")), { 1: "a", key: 2 });
  const proto = decodeMsgpack(hex("81 a9 5f5f70726f746f5f5f 81 a1 78 01"));
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ["__proto__"]);
  assert.equal({}.x, undefined);
});

// ---------------------------------------------------------------- transports: URLs

test("SSE URL next to the WebSocket URL, with symbols and token; snapshot URL with symbols; subprotocols", () => {
  assert.equal(sseUrl("ws://127.0.0.1:8080/ws", ["AAPL", "FX:EUR/USD"]), "http://127.0.0.1:8080/sse?symbols=AAPL,FX%3AEUR%2FUSD");
  assert.equal(sseUrl("wss://md.example.com/feed/ws?x=1#h", ["A"], "a.b+/c"), "https://md.example.com/feed/sse?symbols=A&token=a.b%2B%2Fc");
  assert.equal(snapshotUrl("ws://x/ws", ["A", "B/C"]), "http://x/snapshot?symbols=A,B%2FC");
  assert.equal(sseUrl("ws://h/ws", ["A"], "t", "1-2", 1000), "http://h/sse?symbols=A&token=t&interval_ms=1000&lastEventId=1-2");
  assert.deepEqual(wsProtocols("msgpack"), ["tickcast.msgpack"]);
  assert.deepEqual(wsProtocols("json"), [], "JSON asks for no subprotocol: servers before v1.1 would refuse one");
});

test("fitSseSymbols keeps the leading symbols whose URL fits", () => {
  const symbols = names(1024, 32);
  const token = "t".repeat(400);
  const { kept, dropped } = fitSseSymbols("ws://127.0.0.1:8080/ws", symbols, token);
  assert.ok(kept.length > 100 && dropped.length > 0);
  assert.deepEqual([...kept, ...dropped], symbols);
  assert.ok(sseUrl("ws://127.0.0.1:8080/ws", kept, token).length <= MAX_SSE_URL);
  assert.ok(sseUrl("ws://127.0.0.1:8080/ws", symbols.slice(0, kept.length + 1), token).length > MAX_SSE_URL, "as many as fit");
  assert.deepEqual(fitSseSymbols("ws://x/ws", ["A", "B"]), { kept: ["A", "B"], dropped: [] });
  assert.throws(() => new TickcastClient({ url: "ws://x/ws", transport: "longpoll" }), /transport must be one of auto, websocket, sse/);
  assert.throws(() => new TickcastClient({ url: "ws://x/ws", encoding: "cbor" }), /encoding must be one of json, msgpack/);
});

// ---------------------------------------------------------------- transports: the client, with fakes

/** A client on fakes with both transports injected. */
function setupTransports(options = {}, clock = new FakeClock()) {
  FakeEventSource.all = [];
  const s = setup({ EventSource: FakeEventSource, ...options }, clock);
  return { ...s, es: (i) => FakeEventSource.all.at(i) };
}

const sseWelcome = (extra = {}) => ({ session: "s", heartbeat_ms: 15000, epoch: 1, ...extra });
const payloadOf = (t) => t.payload;

test("transport sse: an EventSource on /sse with the symbols and a fresh token; ticks through the seq filter", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 300);
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["AAPL", "FX:EUR/USD"], getToken }, clock);
  await c.connect();
  assert.equal(FakeSocket.all.length, 0, "no WebSocket at all");
  const s = es(0);
  assert.equal(s.url, `http://x/sse?symbols=AAPL,FX%3AEUR%2FUSD&token=${encodeURIComponent(issued[0])}`);
  s.serverSends("welcome", sseWelcome());
  assert.deepEqual(events.state.at(-1), { state: "open", transport: "sse" });
  assert.equal(c.es, s);
  assert.equal(c.ws, null);
  s.serverSends("subscribed", { symbols: ["AAPL", "FX:EUR/USD"], unknown: [] });
  s.serverSends("tick", payloadOf(tick("AAPL", 5, { bid: 1, snapshot: true })));
  s.serverSends("tick", payloadOf(tick("AAPL", 5, { bid: 1 })));
  s.serverSends("tick", payloadOf(tick("AAPL", 6, { bid: 2 })));
  s.serverSends("tick", payloadOf(tick("MSFT", 1)));
  assert.deepEqual(events.tick.map((t) => [t.symbol, t.seq]), [["AAPL", 5], ["AAPL", 6]], "older, equal and unwatched ticks are dropped");
  assert.equal(c.latest("AAPL").bid, 2);
  // The server's own `error` event (with data) is an error for the app, not a lost connection.
  s.serverSends("error", { code: "unknown_symbol", symbols: ["FX:EUR/USD"], message: "no value" });
  assert.equal(events.error.at(-1).code, "unknown_symbol");
  assert.deepEqual([...c.symbols], ["AAPL"]);
  assert.equal(s.readyState, 1, "still streaming");
  c.close();
  assert.equal(s.readyState, 2);
});

test("sse: the server's close event is a close code: 1008 stops, 4401 with getToken reconnects with a fresh token", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 300);
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["A"], getToken }, clock);
  await c.connect();
  es(0).serverSends("welcome", sseWelcome());
  es(0).serverSends("close", { code: 4401, reason: "token expired" });
  assert.equal(es(0).readyState, 2, "closed at once: the browser must not reconnect with the spent token");
  assert.equal(events.state.at(-1).state, "reconnecting");
  await clock.advance(1000);
  assert.equal(FakeEventSource.all.length, 2);
  assert.equal(es(1).token, issued.at(-1));
  assert.notEqual(es(1).token, es(0).token);
  es(1).serverSends("welcome", sseWelcome());
  es(1).serverSends("close", { code: 1008, reason: "too many protocol errors" });
  await clock.advance(120000);
  assert.equal(FakeEventSource.all.length, 2, "no reconnect after 1008");
  assert.equal(events.state.at(-1).state, "closed");
  assert.match(events.state.at(-1).reason, /1008: too many protocol errors/);
});

test("sse without a token: a lost stream is resumed by the browser once (Last-Event-ID), then the client takes over", async () => {
  const { c, clock, events, es } = setupTransports({ transport: "sse", symbols: ["A"] });
  await c.connect();
  const s = es(0);
  assert.equal(s.url, "http://x/sse?symbols=A");
  s.serverSends("welcome", sseWelcome());
  s.serverSends("tick", payloadOf(tick("A", 3)));
  s.lost();
  assert.equal(s.readyState, 0, "left to the browser's reconnect");
  assert.deepEqual(events.state.at(-1), { state: "reconnecting", inMs: null, code: 1006, reason: "stream lost: the browser resumes it" });
  s.serverSends("welcome", sseWelcome());
  assert.equal(events.state.at(-1).state, "open");
  s.serverSends("tick", payloadOf(tick("A", 3, { snapshot: true })));
  s.serverSends("tick", payloadOf(tick("A", 4, { snapshot: true })));
  assert.deepEqual(events.tick.map((t) => t.seq), [3, 4]);
  assert.equal(FakeEventSource.all.length, 1, "the same EventSource throughout");

  // Lost again, and the browser's retry fails too: the client closes it and reconnects with backoff.
  s.lost();
  s.lost();
  assert.equal(s.readyState, 2);
  assert.equal(events.state.at(-1).state, "reconnecting");
  assert.equal(typeof events.state.at(-1).inMs, "number");
  await clock.advance(1000);
  assert.equal(FakeEventSource.all.length, 2);
  // A resume that never comes back is given up too.
  es(1).serverSends("welcome", sseWelcome());
  es(1).lost();
  await clock.advance(SSE_RETRY_MAX_MS + 3_600_000);
  assert.equal(es(1).readyState, 2, "abandoned after the longest retry plus the open timeout");
  assert.equal(FakeEventSource.all.length, 3);
  c.close();
});

test("sse: a stream the browser gave up on (HTTP error), or any loss with a token, is reconnected by the client", async () => {
  const { c, clock, events, es } = setupTransports({ transport: "sse", symbols: ["A"] });
  await c.connect();
  es(0).failed();
  assert.equal(events.state.at(-1).state, "reconnecting");
  await clock.advance(1000);
  assert.equal(FakeEventSource.all.length, 2);
  c.close();

  const { getToken } = tokenSource(clock, 300);
  const t = setupTransports({ transport: "sse", symbols: ["A"], getToken, fetch: fakeFetch(200).fetch }, clock);
  await t.c.connect();
  t.es(0).serverSends("welcome", sseWelcome());
  t.es(0).lost();
  assert.equal(t.es(0).readyState, 2, "its URL's one-time token is spent: the browser must not retry with it");
  await clock.advance(1000);
  assert.equal(FakeEventSource.all.length, 2);
  assert.notEqual(t.es(1).token, t.es(0).token);
  t.c.close();
});

test("sse: a stream that fails before its welcome is probed for a refusal, with the stream's symbols", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 60);
  const { calls, fetch } = fakeFetch(403, "not entitled to `TSLA`");
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["AAPL", "TSLA"], getToken, fetch }, clock);
  await c.connect();
  for (let i = 0; i < 3; i++) {
    es(i).failed();
    await clock.advance(MAX_BACKOFF_MS);
  }
  assert.equal(calls[0].url, "http://x/snapshot?symbols=AAPL,TSLA");
  assert.deepEqual(events.error.map((e) => e.code), ["refused", "refused", "refused"]);
  assert.equal(events.state.at(-1).state, "closed");
  assert.match(events.state.at(-1).reason, /refused by the server \(403\): not entitled to `TSLA`/);
  assert.equal(FakeEventSource.all.length, 3);
});

test("sse: subscribe() and unsubscribe() reopen the stream once, after the changes settle", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 300);
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["A"], getToken }, clock);
  await c.connect();
  es(0).serverSends("welcome", sseWelcome());
  es(0).serverSends("tick", payloadOf(tick("A", 7, { snapshot: true })));
  c.subscribe(["B"]);
  await clock.advance(SSE_REOPEN_DELAY_MS / 2);
  c.subscribe(["C", "A"]);
  c.unsubscribe(["B"]);
  await clock.advance(SSE_REOPEN_DELAY_MS - 1);
  assert.equal(FakeEventSource.all.length, 1, "not before the changes settle");
  await clock.advance(1);
  assert.equal(FakeEventSource.all.length, 2, "one reopen for three changes");
  assert.equal(es(0).readyState, 2);
  assert.deepEqual(es(1).symbols, ["A", "C"]);
  assert.equal(es(1).token, issued.at(-1), "a fresh token");
  assert.ok(!events.state.slice(-1).some((e) => e.state !== "open"), "no connecting/reconnecting for a reopen");
  es(1).serverSends("welcome", sseWelcome());
  es(1).serverSends("tick", payloadOf(tick("A", 7, { snapshot: true })));
  es(1).serverSends("tick", payloadOf(tick("C", 1, { snapshot: true })));
  assert.deepEqual(events.tick.map((t) => [t.symbol, t.seq]), [["A", 7], ["C", 1]], "A's snapshot again is no news");
  c.subscribe(["A"]);
  c.unsubscribe(["Z"]);
  await clock.advance(1000);
  assert.equal(FakeEventSource.all.length, 2, "no change, no reopen");
  // With nothing left to watch no stream is held; a subscribe opens one again.
  c.unsubscribe(["A", "C"]);
  await clock.advance(1000);
  assert.equal(es(1).readyState, 2);
  assert.equal(FakeEventSource.all.length, 2);
  assert.equal(events.state.at(-1).state, "open");
  c.subscribe(["D"]);
  await clock.advance(1000);
  assert.deepEqual(es(2).symbols, ["D"]);
  c.close();
});

test("sse: a watch-list changed while the stream opens is taken up after the welcome", async () => {
  const { c, clock, es } = setupTransports({ transport: "sse", symbols: ["A"] });
  await c.connect();
  c.subscribe(["B"]);
  await clock.advance(SSE_REOPEN_DELAY_MS);
  // Reopened before the welcome: fine too. Either way the stream ends up with both.
  es(-1).serverSends("welcome", sseWelcome());
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.deepEqual(es(-1).symbols, ["A", "B"]);
  c.close();
});

test("sse: symbols beyond what a URL holds are refused with too_many_symbols", async () => {
  const symbols = names(600, 32);
  const { c, events, es } = setupTransports({ transport: "sse", symbols });
  await c.connect();
  assert.ok(es(0).url.length <= MAX_SSE_URL);
  const kept = es(0).symbols;
  assert.deepEqual(kept, symbols.slice(0, kept.length));
  assert.equal(events.error.at(-1).code, "too_many_symbols");
  assert.deepEqual(events.error.at(-1).symbols, symbols.slice(kept.length));
  assert.equal(c.symbols.size, kept.length);
  c.close();
});

test("sse with getToken: the stream is reopened with a fresh token when a refresh would be due", async () => {
  const clock = new FakeClock();
  const { issued, getToken } = tokenSource(clock, 300);
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["A"], getToken }, clock);
  await c.connect();
  es(0).serverSends("welcome", sseWelcome({ exp: Math.floor(clock.t / 1000) + 300 }));
  await clock.advance(239999);
  assert.equal(FakeEventSource.all.length, 1);
  await clock.advance(1);
  assert.equal(FakeEventSource.all.length, 2, "at 80% of the token's life");
  assert.equal(es(0).readyState, 2);
  assert.equal(es(1).token, issued.at(-1));
  assert.equal(events.state.at(-1).state, "open", "no reconnecting for a planned reopen");
  c.close();
});

test("auto: two WebSocket attempts that fail before opening while HTTP answers 200 switch to SSE for good", async () => {
  const clock = new FakeClock();
  const { calls, fetch } = fakeFetch(200, "[]");
  const { c, events, es } = setupTransports({ symbols: ["A"], fetch }, clock);
  await c.connect();
  assert.equal(FakeSocket.all.length, 1, "WebSocket first");
  await failBeforeOpen(clock, FALLBACK_AFTER);
  assert.equal(calls.length, FALLBACK_AFTER, "each failure probed, without a token");
  assert.equal(calls[0].auth, undefined);
  assert.equal(FakeSocket.all.length, FALLBACK_AFTER, "no third WebSocket");
  assert.equal(FakeEventSource.all.length, 1);
  assert.equal(es(0).url, "http://x/sse?symbols=A");
  assert.match(events.state.find((e) => e.reason?.includes("SSE")).reason, /does not get through: switching to SSE/);
  es(0).serverSends("welcome", sseWelcome());
  assert.deepEqual(events.state.at(-1), { state: "open", transport: "sse" });
  assert.equal(c.transport, "sse");
  // A later loss reconnects over SSE (no probing: nothing to fall back to).
  es(0).failed();
  await clock.advance(MAX_BACKOFF_MS);
  assert.equal(FakeEventSource.all.length, 2);
  assert.equal(FakeSocket.all.length, FALLBACK_AFTER);
  assert.equal(calls.length, FALLBACK_AFTER);
  // close() and connect() start over with the WebSocket.
  c.close();
  await c.connect();
  assert.equal(FakeSocket.all.length, FALLBACK_AFTER + 1);
  c.close();
});

test("auto: a server that is down (probe fails) or refuses (401) is no reason to switch; the count is in a row", async () => {
  for (const status of [null, 401, 503]) {
    const { fetch } = fakeFetch(status);
    const { c, clock, events } = setupTransports({ fetch, symbols: ["A"] }, new FakeClock());
    await c.connect();
    await failBeforeOpen(clock, 5);
    assert.equal(FakeEventSource.all.length, 0, `status ${status}: stays on the WebSocket`);
    assert.equal(c.transport, "websocket");
    assert.ok(!events.state.some((e) => e.state === "open"));
    c.close();
  }
  // 200, then a network failure, then 200: never two in a row.
  const answers = [200, null, 200, null, 200];
  const fetch = async () => {
    const status = answers.shift();
    if (status === null) throw new TypeError("Failed to fetch");
    return { status, text: async () => "" };
  };
  const { c, clock } = setupTransports({ fetch, symbols: ["A"] }, new FakeClock());
  await c.connect();
  await failBeforeOpen(clock, 5);
  assert.equal(FakeEventSource.all.length, 0);
  // An open WebSocket in between starts the count over too.
  answers.push(200, 200);
  FakeSocket.all.at(-1).open();
  FakeSocket.all.at(-1).serverCloses(1006);
  await clock.advance(MAX_BACKOFF_MS);
  await failBeforeOpen(clock, 1);
  assert.equal(FakeEventSource.all.length, 0, "an opened WebSocket's close is not a failure to get through");
  await failBeforeOpen(clock, 1);
  assert.equal(FakeEventSource.all.length, 1, "then two in a row");
  c.close();
});

test("auto with getToken: refusals still count and stop; a refusal is never a reason to switch", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 60);
  const { fetch } = fakeFetch(401, "unauthorized: bad signature");
  const { c, events } = setupTransports({ getToken, fetch, symbols: ["A"] }, clock);
  await c.connect();
  await failBeforeOpen(clock, 3);
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(events.state.at(-1).state, "closed");
});

test("websocket forced: never an EventSource, whatever the probe says", async () => {
  const { fetch, calls } = fakeFetch(200);
  const { c, clock } = setupTransports({ transport: "websocket", fetch, symbols: ["A"] });
  await c.connect();
  await failBeforeOpen(clock, 5);
  assert.equal(FakeEventSource.all.length, 0);
  assert.equal(calls.length, 5, "probed for a Retry-After, never a reason to switch");
  c.close();
});

test("a WebSocket that does not open within openTimeoutMs counts as failed before opening", async () => {
  const clock = new FakeClock();
  const { fetch, calls } = fakeFetch(200);
  const { c, events } = setupTransports({ fetch, openTimeoutMs: 5000 }, clock);
  await c.connect();
  await clock.advance(4999);
  assert.equal(FakeSocket.all[0].readyState, 0);
  await clock.advance(1);
  assert.equal(FakeSocket.all[0].readyState, 3, "closed");
  assert.equal(calls.length, 1, "probed");
  assert.equal(events.state.find((e) => e.state === "reconnecting").reason, "no answer in time");
  await clock.advance(1000);
  assert.equal(FakeSocket.all.length, 2);
  FakeSocket.all[1].serverSays({ type: "welcome", payload: { epoch: 1 } });
  await clock.advance(60000);
  assert.equal(FakeSocket.all.length, 2, "an open socket is not timed out");
  c.close();
});

// ---------------------------------------------------------------- MessagePack over the WebSocket

test("encoding msgpack: asks for tickcast.msgpack, takes binary frames, sends JSON text", async () => {
  const { c, events } = setup({ encoding: "msgpack", symbols: ["AAPL"] });
  await c.connect();
  const ws = FakeSocket.all[0];
  assert.deepEqual(ws.protocols, ["tickcast.msgpack"]);
  assert.equal(ws.binaryType, "arraybuffer");
  const frame = (m) => {
    const b = encode(m);
    return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
  };
  ws.open();
  ws.onmessage({ data: frame({ type: "welcome", payload: { epoch: 1, max_message: 4096 } }) });
  assert.deepEqual(events.state.at(-1), { state: "open", transport: "websocket" });
  assert.equal(typeof ws.raw[0], "string", "requests stay JSON text");
  assert.deepEqual(ws.sent[0].payload.symbols, ["AAPL"]);
  ws.onmessage({ data: frame(tick("AAPL", 2 ** 40, { bid: 189.1, ts: 1732400000123456 })) });
  ws.onmessage({ data: frame(tick("AAPL", 2 ** 40 - 1)) });
  assert.deepEqual(events.tick.map((t) => t.seq), [2 ** 40]);
  assert.equal(c.latest("AAPL").bid, 189.1);
  // A text frame is still read (as JSON); an unreadable binary one is said, and the connection lives on.
  ws.onmessage({ data: JSON.stringify(tick("AAPL", 2 ** 40 + 1)) });
  ws.onmessage({ data: new Uint8Array([0xc1]).buffer });
  assert.deepEqual(events.tick.map((t) => t.seq), [2 ** 40, 2 ** 40 + 1]);
  assert.match(events.error.at(-1).message, /unreadable message from the server: msgpack: 0xc1/);
  assert.equal(ws.readyState, 1);
  c.close();
});

test("encoding json asks for no subprotocol", async () => {
  const { c } = setup();
  await c.connect();
  assert.equal(FakeSocket.all[0].protocols, undefined);
  c.close();
});

test("connect() while connected closes the old connection, of either transport", async () => {
  for (const transport of ["websocket", "sse"]) {
    const { c, es } = setupTransports({ transport, symbols: ["A"] });
    await c.connect();
    await c.connect();
    const old = transport === "sse" ? es(0) : FakeSocket.all[0];
    assert.ok(old.readyState >= 2, `${transport}: the first connection is closed`);
    c.close();
  }
});

test("sse: a reconnect resumes from the last mark; a stream that adds symbols starts over", async () => {
  const clock = new FakeClock();
  const { getToken } = tokenSource(clock, 300);
  const { c, es } = setupTransports({ transport: "sse", symbols: ["A", "B"], getToken }, clock);
  await c.connect();
  es(0).serverSends("welcome", sseWelcome());
  es(0).serverSends("mark", { id: "1-42" });
  assert.equal(new URL(es(0).url).searchParams.get("lastEventId"), null, "nothing to resume from yet");
  es(0).serverSends("close", { code: 4401, reason: "token expired" });
  await clock.advance(1000);
  assert.equal(new URL(es(1).url).searchParams.get("lastEventId"), "1-42", "the same symbols: resume");
  es(1).serverSends("welcome", sseWelcome());
  c.unsubscribe(["B"]);
  await clock.advance(200);
  assert.deepEqual(es(2).symbols, ["A"]);
  assert.equal(new URL(es(2).url).searchParams.get("lastEventId"), "1-42", "fewer symbols: still resumable");
  es(2).serverSends("welcome", sseWelcome());
  c.subscribe(["C"]);
  await clock.advance(200);
  assert.deepEqual(es(3).symbols, ["A", "C"]);
  assert.equal(new URL(es(3).url).searchParams.get("lastEventId"), null, "C was never streamed: snapshots of all");
  c.close();
});

// ---------------------------------------------------------------- deploys and storms

test("retryAfterMs reads whole seconds, capped; wsProbeUrl is the upgrade's URL over HTTP", () => {
  for (const [v, ms] of [["7", 7000], [" 12 ", 12000], ["0", 0], ["99999999", MAX_SERVER_WAIT_MS]]) assert.equal(retryAfterMs(v), ms, v);
  for (const v of [null, undefined, "", "1e3", "-1", "2.5", "Wed, 21 Oct 2015 07:28:00 GMT"]) assert.equal(retryAfterMs(v), null, String(v));
  assert.equal(wsProbeUrl("wss://h:8443/feed/ws?token=abc#x"), "https://h:8443/feed/ws");
  assert.equal(wsProbeUrl("ws://x/ws"), "http://x/ws");
});

test("a reconnect message: the client comes back after exactly after_ms, not its backoff", async () => {
  const { c, clock, events, socket } = setup({ random: () => 0.999 });
  await c.connect();
  socket(0).serverSays({ type: "welcome", payload: { epoch: 1 } });
  socket(0).serverSays({ type: "reconnect", payload: { after_ms: 1234, reason: "server shutting down" } });
  socket(0).serverCloses(1001, "server shutting down");
  assert.deepEqual(events.state.at(-1), { state: "reconnecting", inMs: 1234, code: 1001, reason: "server shutting down" });
  await clock.advance(1233);
  assert.equal(FakeSocket.all.length, 1);
  await clock.advance(1);
  assert.equal(FakeSocket.all.length, 2);
  // The advice is for one reconnect: a later plain loss goes back to the backoff.
  socket(1).serverSays({ type: "welcome", payload: { epoch: 1 } });
  socket(1).serverCloses(1006);
  assert.equal(events.state.at(-1).inMs, 999, "backoff (first step, random 0.999)");
  // A wait beyond reason is capped; a malformed one is ignored.
  await clock.advance(999);
  socket(2).serverSays({ type: "welcome", payload: { epoch: 1 } });
  socket(2).serverSays({ type: "reconnect", payload: { after_ms: 1e12, reason: "x" } });
  socket(2).serverCloses(1001);
  assert.equal(events.state.at(-1).inMs, MAX_SERVER_WAIT_MS);
  await clock.advance(MAX_SERVER_WAIT_MS);
  socket(3).serverSays({ type: "welcome", payload: { epoch: 1 } });
  socket(3).serverSays({ type: "reconnect", payload: { after_ms: "soon" } });
  socket(3).serverCloses(1001);
  assert.equal(events.state.at(-1).inMs, 999);
  c.close();
});

/** A fake fetch answering 503 with `Retry-After: seconds`; records the URLs asked. */
function busyFetch(seconds) {
  const urls = [];
  const fetch = async (url) => {
    urls.push(url);
    return { status: 503, headers: { get: (h) => (h.toLowerCase() === "retry-after" ? String(seconds) : null) },
             text: async () => "too many new connections" };
  };
  return { urls, fetch };
}

test("a refused upgrade probed busy (503, Retry-After): that wait plus the backoff, and no switch to SSE", async () => {
  const clock = new FakeClock();
  const { urls, fetch } = busyFetch(7);
  const { c, events } = setupTransports({ fetch, symbols: ["A"], random: () => 0.5 }, clock);
  await c.connect();
  FakeSocket.all[0].failsBeforeOpen();
  await clock.advance(0);
  assert.deepEqual(urls, ["http://x/ws"]);
  assert.equal(events.state.at(-1).inMs, 7000 + 500, "Retry-After, then half of the first backoff step");
  await clock.advance(7499);
  assert.equal(FakeSocket.all.length, 1, "not before");
  await clock.advance(1);
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(await failBeforeOpen(clock, 4), 4);
  assert.equal(FakeEventSource.all.length, 0, "a busy server is not a proxy blocking the WebSocket");
  assert.deepEqual(events.error, []);
  c.close();
});

test("SSE: a reconnect event is waited for exactly; a refused stream's retry_after_ms with the backoff on top", async () => {
  const clock = new FakeClock();
  const { c, events, es } = setupTransports({ transport: "sse", symbols: ["A"], random: () => 0.5 }, clock);
  await c.connect();
  es(0).serverSends("welcome", sseWelcome());
  es(0).serverSends("reconnect", { after_ms: 2500, reason: "server shutting down" });
  es(0).serverSends("close", { code: 1001, reason: "server shutting down" });
  assert.equal(events.state.at(-1).inMs, 2500);
  await clock.advance(2500);
  assert.equal(FakeEventSource.all.length, 2);
  es(1).serverSends("close", { code: 1013, reason: "too many new connections", retry_after_ms: 4000 });
  assert.equal(events.state.at(-1).inMs, 4000 + 500);
  await clock.advance(4500);
  assert.equal(FakeEventSource.all.length, 3);
  c.close();
});
