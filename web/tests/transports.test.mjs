// The transports and encodings in real headless Chromium against the real
// tickcast binary: Server-Sent Events (a plain EventSource, and client.js
// forced to SSE or falling back to it behind a proxy that refuses WebSocket
// upgrades), MessagePack over the WebSocket, and the demo page over https/wss.
import test from "node:test";
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import net from "node:net";
import {
  SYMBOLS, freePort, startServer, stop, publish, snapshot, metric, until, browser, table, matches, quotes,
  selfSignedCert, startProxy,
} from "./harness.mjs";

/** Starts a server with a feed and publishes `ticks`; everything started is stopped when `t` ends. */
async function serverWithTicks(t, ticks, options = {}) {
  const [port, feedPort] = [await freePort(), await freePort()];
  const ctx = { port, feedPort, server: await startServer({ port, feedPort, ...options }) };
  const b = await browser();
  ctx.browser = b;
  t.after(async () => { await b.close(); await stop(ctx.server); });
  await publish(port, feedPort, ticks, undefined, options.ca);
  return ctx;
}

/** What the client holds per symbol equals /snapshot's payloads, field for field (the seq too). */
async function clientMatches(page, snap) {
  if (snap.length === 0) return false;
  const held = await page.evaluate((symbols) => symbols.map((s) => window.tickcastClient.latest(s) ?? null), snap.map((p) => p.symbol));
  return snap.every((p, i) => {
    if (!held[i]) return false;
    const { snapshot: _s, ...fields } = held[i];
    return isDeepStrictEqual(fields, p);
  });
}

// ---------------------------------------------------------------- a plain EventSource

/** Opens an EventSource on `url` in the page, recording every event in window.rec (`conn` counts welcomes). */
function openEventSource(page, url) {
  return page.evaluate((url) => {
    const rec = { welcomes: [], ticks: [], lost: 0 };
    window.rec = rec;
    const es = new EventSource(url);
    window.es = es;
    es.addEventListener("welcome", (e) => rec.welcomes.push(JSON.parse(e.data)));
    es.addEventListener("tick", (e) => rec.ticks.push({ ...JSON.parse(e.data), conn: rec.welcomes.length, lastEventId: e.lastEventId }));
    es.addEventListener("error", (e) => { if (!e.data) rec.lost++; });
  }, url);
}

const recorded = (page) => page.evaluate(() => window.rec);

/** The latest tick per symbol the page's EventSource has seen. */
function latestOf(rec) {
  const latest = {};
  for (const t of rec.ticks) latest[t.symbol] = t;
  return latest;
}

function streamMatches(rec, snap) {
  const latest = latestOf(rec);
  return snap.every((p) => latest[p.symbol] && latest[p.symbol].seq === p.seq && latest[p.symbol].bid === p.bid && latest[p.symbol].ask === p.ask);
}

/** The request head of the last `GET /sse` that reached the proxy. */
const lastSseHead = (proxy) => proxy.heads.filter((h) => h.startsWith("GET /sse")).at(-1);
const lastEventIdOf = (head) => /^last-event-id:\s*(.*)$/im.exec(head)?.[1].trim();

const sseQuery = `/sse?symbols=${SYMBOLS.map(encodeURIComponent).join(",")}`;

test("a plain EventSource shows /snapshot's prices; after a restart (new epoch) it gets every snapshot again", async (t) => {
  const ctx = await serverWithTicks(t, quotes(100));
  const proxy = await startProxy(ctx.port);
  t.after(() => proxy.close());
  const page = await ctx.browser.newPage();
  await page.goto(`http://127.0.0.1:${proxy.port}/healthz`);
  await openEventSource(page, sseQuery);
  const snap = await snapshot(ctx.port, SYMBOLS);
  await until(async () => streamMatches(await recorded(page), snap), "the stream shows /snapshot's prices");
  const first = (await recorded(page)).welcomes[0];
  assert.ok(first.heartbeat_ms <= 15000, `keep-alive every ${first.heartbeat_ms} ms`);

  // Kill the server; the browser's reconnect waits at the proxy until the new server has prices.
  proxy.hold();
  await stop(ctx.server);
  ctx.server = await startServer({ port: ctx.port, feedPort: ctx.feedPort });
  await publish(ctx.port, ctx.feedPort, quotes(200));
  await until(() => proxy.held() > 0, "the browser reconnects by itself", 20000);
  assert.match(lastEventIdOf(lastSseHead(proxy)), new RegExp(`^${first.epoch}-\\d+$`), "it sends the last event id it saw");
  proxy.release();

  await until(async () => (await recorded(page)).welcomes.length === 2, "welcomed again");
  const rec = await recorded(page);
  assert.notEqual(rec.welcomes[1].epoch, first.epoch, "a restarted server is a new epoch");
  const after = await snapshot(ctx.port, SYMBOLS);
  await until(async () => streamMatches(await recorded(page), after), "the stream shows the new server's prices");
  const again = (await recorded(page)).ticks.filter((x) => x.conn === 2 && x.snapshot).map((x) => x.symbol);
  assert.deepEqual(again.sort(), [...SYMBOLS].sort(), "an id of another epoch: every symbol's snapshot");
});

test("resume within one epoch: after a drop, Last-Event-ID brings back only the symbols that changed", async (t) => {
  const ctx = await serverWithTicks(t, quotes(100));
  const proxy = await startProxy(ctx.port);
  t.after(() => proxy.close());
  const page = await ctx.browser.newPage();
  await page.goto(`http://127.0.0.1:${proxy.port}/healthz`);
  await openEventSource(page, sseQuery);
  await until(async () => streamMatches(await recorded(page), await snapshot(ctx.port, SYMBOLS)), "the stream shows /snapshot's prices");
  const epoch = (await recorded(page)).welcomes[0].epoch;

  // A network blip: the connection drops, and the browser's reconnect waits while only AAPL changes.
  proxy.hold();
  proxy.cut();
  await until(() => proxy.held() > 0, "the browser reconnects by itself", 20000);
  const id = lastEventIdOf(lastSseHead(proxy));
  assert.match(id, new RegExp(`^${epoch}-\\d+$`), "it sends the last event id it saw");
  await publish(ctx.port, ctx.feedPort, [{ symbol: "AAPL", bid: 150.25, ask: 150.5 }]);
  proxy.release();

  await until(async () => (await recorded(page)).welcomes.length === 2, "welcomed again");
  assert.equal((await recorded(page)).welcomes[1].epoch, epoch, "the same epoch");
  await until(async () => latestOf(await recorded(page)).AAPL.bid === 150.25, "AAPL's new price");
  // A live tick after the resume: the server sends snapshots first, so all of them are in by then.
  await publish(ctx.port, ctx.feedPort, [{ symbol: "NVDA", bid: 77.25, ask: 77.5 }]);
  await until(async () => (await recorded(page)).ticks.some((x) => x.conn === 2 && x.symbol === "NVDA" && !x.snapshot), "a live NVDA tick");
  const resumed = (await recorded(page)).ticks.filter((x) => x.conn === 2 && x.snapshot);
  assert.deepEqual(resumed.map((x) => [x.symbol, x.bid]), [["AAPL", 150.25]], "only what changed while away");
  assert.ok(streamMatches(await recorded(page), await snapshot(ctx.port, SYMBOLS)), "and the page holds every current price");

  // The same id from another client (Node's fetch) resumes the same way: AAPL and NVDA changed since.
  assert.deepEqual((await snapshotsOfStream(ctx.port, id)).sort(), ["AAPL", "NVDA"]);
  assert.deepEqual((await snapshotsOfStream(ctx.port, `${epoch + 1}-1`)).sort(), [...SYMBOLS].sort(), "another epoch's id: all");
});

/** The symbols an /sse stream of SYMBOLS sends snapshots of before its first `id`, asked with `lastEventId`. */
async function snapshotsOfStream(port, lastEventId) {
  const abort = new AbortController();
  const r = await fetch(`http://127.0.0.1:${port}${sseQuery}`, { headers: { "Last-Event-ID": lastEventId }, signal: abort.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/event-stream/);
  const symbols = [];
  let text = "";
  const deadline = setTimeout(() => abort.abort(), 10000);
  try {
    for await (const chunk of r.body) {
      text += Buffer.from(chunk).toString();
      const events = text.split("\n\n");
      text = events.pop();
      for (const e of events) {
        const data = /^data: (.*)$/m.exec(e)?.[1];
        if (/^event: tick$/m.test(e)) symbols.push(JSON.parse(data).symbol);
        if (/^id: /m.test(e)) return symbols;
      }
    }
  } finally {
    clearTimeout(deadline);
    abort.abort();
  }
  throw new Error("the stream ended before its first id");
}

// ---------------------------------------------------------------- client.js over SSE

test("client.js forced to SSE: the demo page shows /snapshot's prices, and adding or removing a symbol reopens the stream", async (t) => {
  const ctx = await serverWithTicks(t, [...quotes(100), { symbol: "NFLX", bid: 700.25, ask: 700.5 }]);
  const page = await ctx.browser.newPage();
  let websockets = 0;
  page.on("websocket", () => websockets++);
  await page.goto(`http://127.0.0.1:${ctx.port}/?symbols=${SYMBOLS.join(",")}&transport=sse`);
  const snap = await snapshot(ctx.port, SYMBOLS);
  await until(async () => matches(await table(page), snap) && (await clientMatches(page, snap)), "the client holds exactly /snapshot's ticks");
  assert.equal(await page.textContent("#badge"), "open");
  assert.equal(await page.textContent("#transport"), "SSE");
  assert.ok(await page.evaluate(() => window.tickcastClient.es instanceof EventSource));

  await page.fill("#symbol", "NFLX");
  await page.click("#add button");
  await until(async () => (await table(page)).NFLX?.bid === "700.25", "NFLX shows its price");
  await page.click('tr[data-symbol="NVDA"] button.remove');
  const streamed = () => page.evaluate(() => window.tickcastClient.es && new URL(window.tickcastClient.es.url).searchParams.get("symbols"));
  await until(async () => (await streamed()) === "AAPL,FX:EUR/USD,NFLX", "the stream reopened for AAPL, FX:EUR/USD and NFLX");

  await publish(ctx.port, ctx.feedPort, [{ symbol: "AAPL", bid: 101.25, ask: 101.5 }, { symbol: "NVDA", bid: 9, ask: 9.5 }]);
  await until(async () => (await table(page)).AAPL.bid === "101.25", "a live tick");
  assert.equal((await table(page)).NVDA, undefined);
  assert.equal(await page.textContent("#badge"), "open");
  assert.equal(websockets, 0, "no WebSocket at all");
});

test("auto: behind a proxy that refuses WebSocket upgrades, the demo page falls back to SSE and shows the prices", async (t) => {
  const ctx = await serverWithTicks(t, quotes(100));
  const proxy = await startProxy(ctx.port, { refuseUpgrades: true });
  t.after(() => proxy.close());
  const page = await ctx.browser.newPage();
  await page.goto(`http://127.0.0.1:${proxy.port}/?symbols=${SYMBOLS.join(",")}`);
  const snap = await snapshot(ctx.port, SYMBOLS);
  await until(async () => matches(await table(page), snap), "the table matches /snapshot", 20000);
  assert.equal(await page.textContent("#transport"), "SSE");
  assert.equal(proxy.upgradesRefused, 2, "two WebSocket attempts, then SSE");
  assert.equal(await metric(ctx.port, 'tickcast_connections_total{result="accepted"}'), 1, "one stream");
  await publish(ctx.port, ctx.feedPort, [{ symbol: "NVDA", bid: 55.25, ask: 55.5 }]);
  await until(async () => (await table(page)).NVDA.bid === "55.25", "a live tick over SSE");
});

// ---------------------------------------------------------------- per-client rates

/** Sends `n` ticks of `symbol` to the feed, one every `gapMs`, bids 200.01, 200.02, …; resolves with the last bid. */
async function tickStream(feedPort, symbol, n, gapMs) {
  const sock = net.connect(feedPort, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  let bid = 0;
  for (let i = 1; i <= n; i++) {
    bid = Math.round((200 + i / 100) * 100) / 100;
    sock.write(JSON.stringify({ symbol, bid, ask: bid + 0.5 }) + "\n");
    await new Promise((r) => setTimeout(r, gapMs));
  }
  sock.end();
  return bid;
}

for (const transport of ["websocket", "sse"]) {
  test(`client.js with intervalMs over ${transport}: at most one update per interval, and the latest always arrives`, async (t) => {
    const ctx = await serverWithTicks(t, quotes(100));
    const page = await ctx.browser.newPage();
    await page.goto(`http://127.0.0.1:${ctx.port}/?symbols=${SYMBOLS.join(",")}&transport=${transport}&interval_ms=500`);
    await until(async () => matches(await table(page), await snapshot(ctx.port, SYMBOLS)), "the table matches /snapshot");
    await page.evaluate(() => {
      window.arrivals = [];
      window.tickcastClient.addEventListener("tick", (e) => {
        if (e.detail.symbol === "AAPL" && !e.detail.snapshot) window.arrivals.push({ at: performance.now(), bid: e.detail.bid, seq: e.detail.seq });
      });
    });
    // 40 updates 40 ms apart (the coalescing window is 10 ms here: every one is released).
    const last = await tickStream(ctx.feedPort, "AAPL", 40, 40);
    await until(async () => (await page.evaluate(() => window.tickcastClient.latest("AAPL").bid)) === last, "the last update arrives");
    const arrivals = await page.evaluate(() => window.arrivals);
    assert.ok(arrivals.length >= 2 && arrivals.length <= 6, `${arrivals.length} updates for 40 sent over 1.6 s at one per 500 ms`);
    for (let i = 1; i < arrivals.length; i++) {
      assert.ok(arrivals[i].at - arrivals[i - 1].at >= 300, `updates ${i - 1} and ${i} came ${arrivals[i].at - arrivals[i - 1].at} ms apart`);
      assert.ok(arrivals[i].seq > arrivals[i - 1].seq, "seq keeps growing");
    }
    assert.equal(arrivals.at(-1).bid, last);
    const stream = await page.evaluate(() => window.tickcastClient.es && new URL(window.tickcastClient.es.url).searchParams.get("interval_ms"));
    assert.equal(stream, transport === "sse" ? "500" : null);
  });
}

// ---------------------------------------------------------------- MessagePack

test("encoding msgpack: binary frames from the server, decoded to what /snapshot says", async (t) => {
  const ctx = await serverWithTicks(t, [...quotes(100), { symbol: "AAPL", last: 100.75, volume: 1200 }]);
  const page = await ctx.browser.newPage();
  const frames = { binary: 0, text: 0 };
  page.on("websocket", (ws) => {
    ws.on("framereceived", (f) => { frames[typeof f.payload === "string" ? "text" : "binary"]++; });
  });
  await page.goto(`http://127.0.0.1:${ctx.port}/?symbols=${SYMBOLS.join(",")}&encoding=msgpack`);
  await until(async () => {
    const snap = await snapshot(ctx.port, SYMBOLS);
    return snap[0]?.volume === 1200 && matches(await table(page), snap) && (await clientMatches(page, snap));
  }, "the client holds exactly /snapshot's ticks");
  assert.equal(await page.textContent("#transport"), "WebSocket · MessagePack");
  assert.equal(await page.evaluate(() => window.tickcastClient.ws.protocol), "tickcast.msgpack");
  const aapl = await page.evaluate(() => window.tickcastClient.latest("AAPL"));
  assert.equal(aapl.volume, 1200);
  assert.equal(aapl.last, 100.75);

  await publish(ctx.port, ctx.feedPort, [{ symbol: "FX:EUR/USD", bid: 1.08425, ask: 1.0843 }]);
  await until(async () => (await table(page))["FX:EUR/USD"].bid === "1.08425", "a live tick");
  await until(async () => clientMatches(page, await snapshot(ctx.port, SYMBOLS)), "still exactly /snapshot's ticks");
  assert.ok(frames.binary >= SYMBOLS.length + 2, `${frames.binary} binary frames`);
  assert.equal(frames.text, 0, "no text frame from the server");
  assert.equal(await page.textContent("#message"), "", "no error");
});

// ---------------------------------------------------------------- TLS

test("the demo page over https gets its prices over wss", async (t) => {
  const tls = selfSignedCert(t);
  const ctx = await serverWithTicks(t, quotes(100), { args: ["--tls-cert", tls.cert, "--tls-key", tls.key], ca: tls.pem });
  const context = await ctx.browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await page.goto(`https://127.0.0.1:${ctx.port}/?symbols=${SYMBOLS.join(",")}`);
  const snap = await snapshot(ctx.port, SYMBOLS, undefined, tls.pem);
  await until(async () => matches(await table(page), snap), "the table matches /snapshot");
  assert.deepEqual(sockets, [`wss://127.0.0.1:${ctx.port}/ws`]);
  assert.equal(await page.textContent("#transport"), "WebSocket · JSON");
  await publish(ctx.port, ctx.feedPort, [{ symbol: "AAPL", bid: 123.25, ask: 123.5 }], undefined, tls.pem);
  await until(async () => (await table(page)).AAPL.bid === "123.25", "a live tick over wss");
});
