// The client's candles (protocol §4c) in Node against the real tickcast binary: a CandleSeries
// equals GET /candles through history, live bars, a blip (resumed with `since`) and a restart
// (a new epoch); fetchCandles with one-time tokens; the charting-library datafeed feeding a fake
// chart that records what it receives. Node 20 has no WebSocket of its own: `ws` stands in.
import test from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import WebSocket from "ws";
import { freePort, startServer, stop, until, metric, SECRET, feed, httpBars, closedBars } from "./harness.mjs";
import { TickcastClient, TickcastDatafeed, CandlesError, trimHistory, toChartBar } from "../client.js";

/** ws's WebSocket, recording what the client sends (every instance into `sent`). */
class RecordingWebSocket extends WebSocket {
  static sent = [];
  send(data, ...rest) {
    RecordingWebSocket.sent.push(JSON.parse(data));
    return super.send(data, ...rest);
  }
}

const strip = ({ symbol: _s, interval: _i, ...bar }) => bar;

/** Whether the series holds what GET /candles says, trimmed to its limit (closed bars and the forming one). */
async function seriesMatches(port, series) {
  const want = trimHistory(await httpBars(port, series.symbol, series.interval), series.limit);
  return JSON.stringify(series.bars.map(strip)) === JSON.stringify(want);
}

/** Resolves with the detail of the next `type` event of `target`. */
const next = (target, type) => new Promise((r) => target.addEventListener(type, (e) => r(e.detail), { once: true }));

function client(port, options = {}) {
  return new TickcastClient({ url: `ws://127.0.0.1:${port}/ws`, WebSocket: RecordingWebSocket, random: () => 0, ...options });
}

test("a CandleSeries equals GET /candles: history, live bars, a blip resumed with since, a restart's new epoch", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  let server = await startServer({ port, feedPort });
  let publisher = await feed(feedPort);
  const c = client(port);
  t.after(async () => { c.close(); await publisher.close(); await stop(server); });
  let price = await closedBars(port, publisher, "AAPL", 3, 100);

  const series = c.subscribeCandles("AAPL", "1s", { limit: 2 });
  const resets = [];
  series.addEventListener("reset", (e) => resets.push(e.detail.reason));
  const history = next(series, "reset");
  await c.connect();
  assert.equal((await history).reason, "history");
  assert.deepEqual(RecordingWebSocket.sent.at(-1).payload, { candles: ["AAPL@1s"], limit: 2 });
  await until(() => seriesMatches(port, series), "the history equals /candles (the last 2 closed bars, and any forming one)");
  assert.ok(series.closedBars().length === 2 && series.closedBars().every((b) => b.symbol === "AAPL" && b.interval === "1s"));
  assert.equal(await metric(port, "tickcast_subscriptions"), 1, "one series subscribed");

  // Live: the forming bar moves, and closes.
  publisher.trade("AAPL", price);
  await until(() => series.latest()?.close === price, "the forming bar takes the trade");
  publisher.trade("AAPL", price + 0.5);
  await until(() => series.latest()?.close === price + 0.5 && series.latest().high >= price + 0.5, "and the next one");
  price++;
  await until(() => seriesMatches(port, series), "live bars equal /candles");

  // A blip: the client reconnects and resumes from the last seq it holds.
  const held = series.lastSeq;
  const sentBefore = RecordingWebSocket.sent.length;
  c.ws.close(4000);
  await until(() => RecordingWebSocket.sent.slice(sentBefore).some((m) => m.payload?.candles), "resubscribed after the blip");
  const resubscribe = RecordingWebSocket.sent.slice(sentBefore).find((m) => m.payload?.candles);
  assert.ok(resubscribe.payload.since["AAPL@1s"] >= held, "since: the last seq held");
  price = await closedBars(port, publisher, "AAPL", 1, price);
  await until(() => seriesMatches(port, series), "after the blip, still /candles");
  assert.deepEqual(resets, ["history"], "a resume merges: no reset");

  // A restart: a new epoch, whose history starts over.
  await publisher.close();
  await stop(server);
  server = await startServer({ port, feedPort });
  publisher = await feed(feedPort);
  const epoch = next(series, "reset");
  publisher.trade("AAPL", 500);
  assert.equal((await epoch).reason, "epoch");
  await until(() => seriesMatches(port, series), "the new server's bars only");
  assert.ok(series.bars.every((b) => b.close >= 500), "nothing of the old epoch left");
  publisher.trade("AAPL", 501);
  await until(() => series.latest()?.close === 501, "live after the restart");
});

/** An HS256 token with `claims` (sub, exp and a one-time jti added). */
function signWith(claims) {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "alice", iat: now, exp: now + 60, jti: crypto.randomUUID(), ...claims })}`;
  return `${input}.${crypto.createHmac("sha256", SECRET).update(input).digest("base64url")}`;
}

test("fetchCandles asks with a fresh one-time token each time, pages back with end, and says why it was refused", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort, env: { TICKCAST_AUTH_SECRET: SECRET } });
  const publisher = await feed(feedPort);
  t.after(async () => { await publisher.close(); await stop(server); });
  const bearer = () => ({ Authorization: `Bearer ${signWith({})}` });
  publisher.send({ symbol: "FX:EUR/USD", bid: 1.1, ask: 1.2 });
  publisher.trade("AAPL", 100);
  await until(async () => (await httpBars(port, "AAPL", "1m", bearer())).length === 1, "AAPL has a bar");

  let issued = 0;
  const c = client(port, { getToken: () => { issued++; return signWith({}); } });
  const first = await c.fetchCandles("AAPL", "1m");
  const second = await c.fetchCandles("AAPL", "1m", { limit: 1 });
  assert.equal(issued, 2, "a fresh token each time (a jti is spent once)");
  assert.deepEqual(first, { symbol: "AAPL", interval: "1m", bars: await httpBars(port, "AAPL", "1m", bearer()) });
  assert.deepEqual(second.bars, first.bars.slice(-1));
  assert.deepEqual((await c.fetchCandles("AAPL", "1m", { end: first.bars[0].start })).bars, [], "nothing before the oldest bar");
  assert.equal((await c.fetchCandles("FX:EUR/USD", "1s")).bars[0].source, "mid", "a symbol that only quoted: its mids");

  const narrow = client(port, { getToken: () => signWith({ symbols: ["FX:*"] }) });
  await assert.rejects(narrow.fetchCandles("AAPL", "1m"), (e) => e instanceof CandlesError && e.status === 403 && /AAPL/.test(e.message));
  await assert.rejects(c.fetchCandles("AAPL", "2m"), (e) => e instanceof CandlesError && e.status === 400 && /2m/.test(e.message));
  const anonymous = client(port);
  await assert.rejects(anonymous.fetchCandles("AAPL", "1m"), (e) => e instanceof CandlesError && e.status === 401);
});

/** A stand-in for a charting library: calls the datafeed as the library would and records what it gets. */
class FakeChart {
  constructor(datafeed) {
    this.datafeed = datafeed;
    this.ticks = [];
    this.resets = 0;
  }
  async ready() {
    return new Promise((r) => this.datafeed.onReady(r));
  }
  async resolve(symbol) {
    return new Promise((resolve, reject) => this.datafeed.resolveSymbol(symbol, resolve, reject));
  }
  async getBars(info, resolution, periodParams) {
    return new Promise((resolve, reject) => this.datafeed.getBars(info, resolution, periodParams, (bars, meta) => resolve({ bars, meta }), reject));
  }
  subscribe(info, resolution, guid) {
    this.datafeed.subscribeBars(info, resolution, (bar) => this.ticks.push(bar), guid, () => this.resets++);
  }
}

test("the datafeed feeds a chart: history from /candles, live bars in time order, paging back, unsubscribing", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort });
  const publisher = await feed(feedPort);
  const c = client(port);
  t.after(async () => { c.close(); await publisher.close(); await stop(server); });
  let price = await closedBars(port, publisher, "NVDA", 3, 200);
  await c.connect();

  const chart = new FakeChart(new TickcastDatafeed(c));
  const config = await chart.ready();
  assert.deepEqual(config.supported_resolutions, ["1S", "1", "5", "60"]);
  const info = await chart.resolve("NVDA");
  assert.equal(info.ticker, "NVDA");
  assert.ok(info.has_seconds);

  const now = Math.floor(Date.now() / 1000);
  const first = await chart.getBars(info, "1S", { from: now - 300, to: now, countBack: 300, firstDataRequest: true });
  const http = await httpBars(port, "NVDA", "1s");
  assert.deepEqual(first.bars, http.map(toChartBar), "/candles' bars, as the library takes them");
  assert.equal(first.meta.noData, false);
  assert.ok(first.bars.every((b, i) => i === 0 || b.time > first.bars[i - 1].time), "in time order");
  const oldest = first.bars[0].time / 1000;
  const back = await chart.getBars(info, "1S", { from: oldest - 60, to: oldest, countBack: 10, firstDataRequest: false });
  assert.deepEqual(back, { bars: [], meta: { noData: true } }, "nothing before the oldest: no more history");
  const minutes = await chart.getBars(info, "1", { from: now - 3600, to: now, countBack: 50, firstDataRequest: true });
  assert.deepEqual(minutes.bars, (await httpBars(port, "NVDA", "1m")).map(toChartBar));

  chart.subscribe(info, "1S", "chart-1");
  await until(() => chart.ticks.length >= 1, "the newest bar at once");
  for (let i = 0; i < 3; i++) {
    publisher.trade("NVDA", price + i / 10);
    await until(() => chart.ticks.at(-1)?.close === price + i / 10, `the forming bar moves to ${price + i / 10}`);
  }
  price = await closedBars(port, publisher, "NVDA", 1, price + 1);
  await until(async () => {
    const last = (await httpBars(port, "NVDA", "1s")).at(-1);
    return JSON.stringify(chart.ticks.at(-1)) === JSON.stringify(toChartBar(last));
  }, "the chart's newest bar is /candles' newest");
  assert.ok(chart.ticks.every((b, i) => i === 0 || b.time >= chart.ticks[i - 1].time), "never a bar older than the last");
  assert.equal(chart.resets, 0);
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 1, "the series subscribed");

  c.subscribeCandles("NVDA", "1s"); // another holder (e.g. a second chart): the series stays
  chart.datafeed.unsubscribeBars("chart-1");
  const seen = chart.ticks.length;
  publisher.trade("NVDA", price + 5);
  await until(() => c.candleSeries("NVDA", "1s").latest()?.close === price + 5, "the series still runs");
  assert.equal(chart.ticks.length, seen, "the unsubscribed chart hears nothing more");
  c.unsubscribeCandles("NVDA", "1s");
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 0, "the last holder gone: unsubscribed on the server");
});

test("the server serves the client and its types: GET /client.js and GET /client.d.ts are web/'s files", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort });
  t.after(() => stop(server));
  for (const [file, type] of [["client.js", /^text\/javascript/], ["client.d.ts", /^application\/typescript/]]) {
    const r = await fetch(`http://127.0.0.1:${port}/${file}`);
    assert.equal(r.status, 200, file);
    assert.match(r.headers.get("content-type"), type, file);
    assert.equal(await r.text(), fs.readFileSync(new URL(`../${file}`, import.meta.url), "utf8"), `${file}: the binary embeds web/${file} (cargo build after changing it)`);
  }
});
