// Unit tests of the browser client's logic, in Node's built-in test runner.
import test from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, shouldReconnect, tokenExpiry, Book, TickcastClient, MAX_BACKOFF_MS } from "../client.js";

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

/** A stand-in for the browser's WebSocket, driven by the test. */
class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; this.sent = []; this.readyState = 1; FakeSocket.all.push(this); }
  send(s) { this.sent.push(JSON.parse(s)); }
  close(code) { this.readyState = 3; queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: "" })); }
  serverSays(m) { this.onmessage({ data: JSON.stringify(m) }); }
  serverCloses(code, reason = "") { this.readyState = 3; this.onclose({ code, reason }); }
}

const tick = (symbol, seq, extra = {}) => ({ type: "tick", payload: { symbol, seq, ts: 1, pub: 1, ...extra } });

test("resubscribes with since after a reconnect, and forgets seqs when the epoch changes", async () => {
  FakeSocket.all = [];
  const c = new TickcastClient({ url: "ws://x/ws", symbols: ["A", "B"], WebSocket: FakeSocket, random: () => 0 });
  const states = [];
  c.addEventListener("state", (e) => states.push(e.detail.state));
  await c.connect();
  const first = FakeSocket.all[0];
  first.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(first.sent[0].payload, { symbols: ["A", "B"], since: {} });
  first.serverSays(tick("A", 7));
  first.serverCloses(1001, "server shutting down");
  assert.equal(states.at(-1), "reconnecting");
  await new Promise((r) => setTimeout(r, 5));
  const second = FakeSocket.all[1];
  second.serverSays({ type: "welcome", payload: { epoch: 1 } });
  assert.deepEqual(second.sent[0].payload, { symbols: ["A", "B"], since: { A: 7 } }, "only what changed");
  second.serverCloses(1006);
  await new Promise((r) => setTimeout(r, 5));
  const third = FakeSocket.all[2];
  third.serverSays({ type: "welcome", payload: { epoch: 2 } });
  assert.deepEqual(third.sent[0].payload, { symbols: ["A", "B"], since: {} }, "a new epoch starts seq over");
  const got = [];
  c.addEventListener("tick", (e) => got.push(e.detail.seq));
  third.serverSays(tick("A", 1));
  assert.deepEqual(got, [1]);
  c.close();
});

test("never reconnects after codes that mean don't, and says why", async () => {
  for (const code of [1008, 1003, 1007, 1009]) {
    FakeSocket.all = [];
    const c = new TickcastClient({ url: "ws://x/ws", WebSocket: FakeSocket, random: () => 0 });
    const states = [];
    c.addEventListener("state", (e) => states.push(e.detail));
    await c.connect();
    FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
    FakeSocket.all[0].serverCloses(code, "no");
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(FakeSocket.all.length, 1, `no reconnect after ${code}`);
    assert.equal(states.at(-1).state, "closed");
    assert.match(states.at(-1).reason, new RegExp(String(code)));
  }
});

test("fetches a fresh token before every connect and stops on an expired one", async () => {
  FakeSocket.all = [];
  const now = Date.now();
  const make = (exp) => `h.${Buffer.from(JSON.stringify({ exp })).toString("base64url")}.s`;
  const tokens = [make(now / 1000 + 60), make(now / 1000 + 60), make(now / 1000 - 1)];
  let calls = 0;
  const c = new TickcastClient({ url: "ws://x/ws", WebSocket: FakeSocket, random: () => 0, getToken: async () => tokens[calls++] });
  const states = [];
  c.addEventListener("state", (e) => states.push(e.detail));
  await c.connect();
  assert.ok(FakeSocket.all[0].url.includes("token=" + encodeURIComponent(tokens[0])));
  FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
  FakeSocket.all[0].serverCloses(4401, "token expired");
  await new Promise((r) => setTimeout(r, 5));
  assert.ok(FakeSocket.all[1].url.includes(encodeURIComponent(tokens[1])), "a new token for the new connection");
  FakeSocket.all[1].serverCloses(1006);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(FakeSocket.all.length, 2, "the expired third token is never used");
  assert.equal(states.at(-1).state, "closed");
  assert.match(states.at(-1).reason, /expired/);
});

test("pings after silence and treats a missing pong as a dead connection", async () => {
  FakeSocket.all = [];
  const c = new TickcastClient({ url: "ws://x/ws", WebSocket: FakeSocket, random: () => 0, pingAfterMs: 20, pongTimeoutMs: 20 });
  const states = [];
  c.addEventListener("state", (e) => states.push(e.detail.state));
  await c.connect();
  FakeSocket.all[0].serverSays({ type: "welcome", payload: {} });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(FakeSocket.all[0].sent.at(-1).type, "ping");
  await new Promise((r) => setTimeout(r, 40));
  assert.ok(states.includes("reconnecting"), "no pong: reconnect");
  c.close();
});
