// Unit tests of the client's candles (protocol §4c): the pure helpers, CandleSeries merging
// history and live bars, resume and epochs, both transports, GET /candles and the
// charting-library datafeed, all on fakes (tests/fakes.mjs): no test waits on real time.
import test from "node:test";
import assert from "node:assert/strict";
import {
  TickcastClient, CandleSeries, CandlesError, TickcastDatafeed, isInterval, intervalMs, seriesName, parseSeriesName,
  chunkCandleSubscribe, chunkCandleUnsubscribe, candlesUrl, sseUrl, fitSseCandles, mergeBar, trimHistory, toChartBar,
  resolutionToInterval, intervalToResolution, refusedSeries, byteLength, SSE_EVENTS, CANDLE_LIMIT, MAX_SSE_URL,
  SSE_REOPEN_DELAY_MS, RESOLUTIONS,
} from "../client.js";
import { FakeClock, FakeSocket, FakeEventSource } from "./fakes.mjs";

const MIN = 60_000_000; // a minute in µs
const T0 = 1_732_400_040_000_000;

/** A bar of a history (no symbol, no interval), at the `i`-th minute from T0. */
const hbar = (i, seq, extra = {}) => ({ seq, start: T0 + i * MIN, open: 100 + i, high: 101 + i, low: 99 + i, close: 100.5 + i,
                                        volume: 10 * i, trades: i + 1, source: "trades", closed: true, ...extra });
/** The same bar as a `candle` payload. */
const cbar = (i, seq, extra = {}) => ({ symbol: "AAPL", interval: "1m", ...hbar(i, seq, extra) });
const candles = (bars, symbol = "AAPL", interval = "1m") => ({ type: "candles", payload: { symbol, interval, bars, snapshot: true } });
const candle = (bar) => ({ type: "candle", payload: bar });
const bytesOf = (msg) => byteLength(JSON.stringify(msg));

// ---------------------------------------------------------------- pure helpers

test("intervals, series names and their parts", () => {
  for (const i of ["1s", "1m", "5m", "1h", "15s", "4h", "1d"]) assert.ok(isInterval(i), i);
  for (const i of ["", "m", "0m", "1M", "1 m", "1ms", "01m", 5, null, "1m@"]) assert.ok(!isInterval(i), String(i));
  assert.deepEqual(["1s", "1m", "5m", "1h", "1d", "x"].map(intervalMs), [1000, 60000, 300000, 3600000, 86400000, null]);
  assert.equal(seriesName("FX:EUR/USD", "1s"), "FX:EUR/USD@1s");
  assert.deepEqual(parseSeriesName("FX:EUR/USD@1s"), { symbol: "FX:EUR/USD", interval: "1s" });
  assert.deepEqual(parseSeriesName("AAPL@5m"), { symbol: "AAPL", interval: "5m" });
  for (const bad of ["AAPL", "AAPL@", "@1m", "A A@1m", "AAPL@1x", 7]) assert.equal(parseSeriesName(bad), null, String(bad));
});

test("candle subscribes: `candles`, `limit` and `since` as §4c writes them, split under max_message", () => {
  let id = 5;
  assert.deepEqual(chunkCandleSubscribe(["AAPL@1m", "FX:EUR/USD@1s"], { "AAPL@1m": 57 }, 300, 4096, () => id++), [
    { type: "subscribe", id: 5, payload: { candles: ["AAPL@1m", "FX:EUR/USD@1s"], since: { "AAPL@1m": 57 }, limit: 300 } },
  ]);
  assert.deepEqual(chunkCandleSubscribe(["AAPL@1m"], null, 300, 4096, () => 1)[0].payload, { candles: ["AAPL@1m"], limit: 300 },
                   "no `symbols` (an empty list is bad_request), no since");
  assert.deepEqual(chunkCandleUnsubscribe(["AAPL@1m"], 4096, () => 6), [{ type: "unsubscribe", id: 6, payload: { candles: ["AAPL@1m"] } }]);
  const names = Array.from({ length: 400 }, (_, i) => `SYM${String(i).padStart(4, "0")}.LONGER.NAME@1m`);
  const since = Object.fromEntries(names.filter((_, i) => i % 2).map((n, i) => [n, 1000 + i]));
  const messages = chunkCandleSubscribe(names, since, 1000, 1500, () => id++);
  assert.ok(messages.length > 1 && messages.every((m) => bytesOf(m) <= 1500 && m.payload.limit === 1000));
  assert.deepEqual(messages.flatMap((m) => m.payload.candles), names);
  for (const m of messages) for (const n of m.payload.candles) assert.equal(m.payload.since[n], since[n]);
});

test("URLs: /candles, and /sse with series (with or without symbols)", () => {
  assert.equal(candlesUrl("wss://md.example.com/feed/ws?x=1", "FX:EUR/USD", "1m", { limit: 500, end: T0 }),
               `https://md.example.com/feed/candles?symbol=FX%3AEUR%2FUSD&interval=1m&limit=500&end=${T0}`);
  assert.equal(candlesUrl("ws://h/ws", "AAPL", "1s"), "http://h/candles?symbol=AAPL&interval=1s");
  assert.equal(sseUrl("ws://h/ws", [], null, null, null, ["AAPL@1m"], 300), "http://h/sse?candles=AAPL%401m&limit=300");
  assert.equal(sseUrl("ws://h/ws", ["MSFT"], "t", "1-2", null, ["AAPL@1m", "FX:EUR/USD@5m"], 50),
               "http://h/sse?symbols=MSFT&candles=AAPL%401m,FX%3AEUR%2FUSD%405m&limit=50&token=t&lastEventId=1-2");
  assert.equal(sseUrl("ws://h/ws", ["A"]), "http://h/sse?symbols=A", "as before without series");
  assert.ok(SSE_EVENTS.includes("candles") && SSE_EVENTS.includes("candle"));
  const series = Array.from({ length: 600 }, (_, i) => `SERIES.${String(i).padStart(5, "0")}@1m`);
  const { kept, dropped } = fitSseCandles("ws://127.0.0.1:8080/ws", ["AAPL"], series, "t".repeat(300), MAX_SSE_URL, null, 300);
  assert.ok(kept.length > 50 && dropped.length > 0);
  assert.deepEqual([...kept, ...dropped], series);
  assert.ok(sseUrl("ws://127.0.0.1:8080/ws", ["AAPL"], "t".repeat(300), null, null, kept, 300).length <= MAX_SSE_URL);
  assert.ok(sseUrl("ws://127.0.0.1:8080/ws", ["AAPL"], "t".repeat(300), null, null, series.slice(0, kept.length + 1), 300).length > MAX_SSE_URL);
  assert.deepEqual(fitSseCandles("ws://x/ws", [], []), { kept: [], dropped: [] });
});

test("mergeBar replaces by start unless it holds a newer seq, inserts in order; trimHistory keeps limit closed + forming", () => {
  const bars = [hbar(0, 3), hbar(2, 9)];
  assert.deepEqual(mergeBar(bars, hbar(2, 10, { close: 1 })), { index: 1, appended: false });
  assert.equal(bars[1].close, 1);
  assert.equal(mergeBar(bars, hbar(2, 10, { close: 2 })), null, "same seq: nothing new");
  assert.equal(mergeBar(bars, hbar(2, 4, { close: 3 })), null, "older seq");
  assert.deepEqual(mergeBar(bars, hbar(1, 5)), { index: 1, appended: false }, "a gap filled in order");
  assert.deepEqual(mergeBar(bars, hbar(3, 11)), { index: 3, appended: true });
  assert.deepEqual(bars.map((b) => b.start), [0, 1, 2, 3].map((i) => T0 + i * MIN));
  const history = [hbar(0, 1), hbar(1, 2), hbar(2, 3), hbar(3, 4), hbar(4, 6, { closed: false })];
  assert.deepEqual(trimHistory(history, 2).map((b) => b.seq), [3, 4, 6]);
  assert.deepEqual(trimHistory(history.slice(0, 4), 2).map((b) => b.seq), [3, 4]);
  assert.deepEqual(trimHistory([], 2), []);
  assert.deepEqual(toChartBar(hbar(1, 2)), { time: (T0 + MIN) / 1000, open: 101, high: 102, low: 100, close: 101.5, volume: 10 });
});

test("resolutions of a charting library ↔ tickcast intervals", () => {
  assert.deepEqual(RESOLUTIONS.map(resolutionToInterval), ["1s", "1m", "5m", "1h"]);
  assert.deepEqual(["15S", "15", "240", "1D", "D", "W", "", "0"].map(resolutionToInterval), ["15s", "15m", "4h", "1d", "1d", null, null, null]);
  assert.deepEqual(["1s", "1m", "5m", "1h", "4h", "1d", "x"].map(intervalToResolution), ["1S", "1", "5", "60", "240", "1D", null]);
});

test("refusedSeries: the series an error names", () => {
  assert.deepEqual(refusedSeries({ code: "forbidden", symbol: "TSLA@1m", symbols: ["TSLA@1m", "TSLA"] }), ["TSLA@1m"]);
  assert.deepEqual(refusedSeries({ code: "bad_request", symbols: ["AAPL@2m"], message: "interval" }), ["AAPL@2m"]);
  assert.deepEqual(refusedSeries({ code: "invalid_symbol", candles: ["A A@1m"] }), ["A A@1m"]);
  assert.deepEqual(refusedSeries({ code: "rate_limited", symbols: ["AAPL@1m"] }), []);
  assert.deepEqual(refusedSeries(null), []);
});

// ---------------------------------------------------------------- the client, with fakes

function setup(options = {}, clock = new FakeClock()) {
  FakeSocket.all = [];
  FakeSocket.clock = clock;
  FakeEventSource.all = [];
  const c = new TickcastClient({ url: "ws://x/ws", WebSocket: FakeSocket, EventSource: FakeEventSource, random: () => 0,
                                 pingAfterMs: 3_600_000, openTimeoutMs: 3_600_000,
                                 fetch: async () => { throw new TypeError("Failed to fetch"); }, ...clock.options, ...options });
  const events = { error: [], unsubscribed: [] };
  for (const type of Object.keys(events)) c.addEventListener(type, (e) => events[type].push(e.detail));
  return { c, clock, events, socket: (i) => FakeSocket.all.at(i), es: (i) => FakeEventSource.all.at(i) };
}

/** Records a series' events: [type, detail] in order. */
function record(series) {
  const log = [];
  for (const type of ["reset", "bar", "error", "unsubscribed"]) series.addEventListener(type, (e) => log.push([type, e.detail]));
  return log;
}

const welcome = (epoch = 1) => ({ type: "welcome", payload: { epoch } });
const starts = (series) => series.bars.map((b) => (b.start - T0) / MIN);

test("subscribeCandles: history then live bars in one ordered series, bounded to limit closed + forming", async () => {
  const { c } = setup();
  const series = c.subscribeCandles("AAPL", "1m", { limit: 3 });
  assert.ok(series instanceof CandleSeries);
  assert.equal(series.name, "AAPL@1m");
  const log = record(series);
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays(welcome());
  assert.deepEqual(ws.sent.map((m) => m.payload), [{ candles: ["AAPL@1m"], limit: 3 }], "no symbols, no subscribe of symbols");
  ws.serverSays({ type: "subscribed", id: ws.sent[0].id, payload: { symbols: [], unknown: [], candles: ["AAPL@1m"] } });
  ws.serverSays(candles([hbar(0, 1), hbar(1, 2), hbar(2, 4), hbar(3, 5), hbar(4, 7, { closed: false })]));
  assert.equal(log.length, 1);
  assert.equal(log[0][0], "reset");
  assert.equal(log[0][1].reason, "history");
  assert.deepEqual(starts(series), [1, 2, 3, 4], "the last 3 closed bars and the forming one");
  assert.deepEqual(series.bars[0], cbar(1, 2), "history bars get their symbol and interval");
  assert.ok(series.ready);
  assert.equal(series.lastSeq, 7);
  assert.deepEqual(series.latest(), cbar(4, 7, { closed: false }));
  assert.equal(series.closedBars().length, 3);

  ws.serverSays(candle(cbar(4, 8, { closed: false, close: 200 })));
  assert.deepEqual(log.at(-1), ["bar", { bar: cbar(4, 8, { closed: false, close: 200 }), index: 3, appended: false }]);
  ws.serverSays(candle(cbar(4, 8, { closed: false, close: 201 })));
  ws.serverSays(candle(cbar(3, 6, { close: 5 })));
  assert.equal(log.length, 2, "a repeated or older seq changes nothing");
  ws.serverSays(candle(cbar(4, 9)));
  ws.serverSays(candle(cbar(5, 10, { closed: false })));
  assert.deepEqual(log.slice(-2).map(([t, d]) => [t, d.index, d.appended, d.bar.seq]), [["bar", 2, false, 9], ["bar", 3, true, 10]],
                   "the oldest closed bar leaves as another closes: indexes are of the list after the change");
  assert.deepEqual(starts(series), [2, 3, 4, 5]);
  ws.serverSays(candle(cbar(1, 11)));
  assert.deepEqual(starts(series), [2, 3, 4, 5], "older than anything held while full: not kept");
  ws.serverSays(candle({ ...cbar(7, 12), symbol: "MSFT" }));
  ws.serverSays(candles([hbar(9, 1)], "AAPL", "5m"));
  assert.deepEqual(starts(series), [2, 3, 4, 5], "other series are not this one");
  c.close();
});

test("a reconnect resumes with since (merging what changed); a new epoch starts the series over", async () => {
  const { c, clock } = setup();
  const series = c.subscribeCandles("AAPL", "1m", { limit: 10 });
  const other = c.subscribeCandles("FX:EUR/USD", "1s");
  const log = record(series);
  await c.connect();
  FakeSocket.all[0].serverSays(welcome(1));
  assert.deepEqual(FakeSocket.all[0].sent.map((m) => m.payload), [
    { candles: ["AAPL@1m"], limit: 10 }, { candles: ["FX:EUR/USD@1s"], limit: CANDLE_LIMIT }], "one subscribe per limit");
  FakeSocket.all[0].serverSays(candles([hbar(0, 1), hbar(1, 3, { closed: false })]));
  FakeSocket.all[0].serverSays(candle(cbar(1, 4, { closed: false })));
  FakeSocket.all[0].serverCloses(1006);
  await clock.advance(1000);

  const second = FakeSocket.all[1];
  second.serverSays(welcome(1));
  assert.deepEqual(second.sent.map((m) => m.payload), [
    { candles: ["AAPL@1m"], since: { "AAPL@1m": 4 }, limit: 10 }, { candles: ["FX:EUR/USD@1s"], limit: CANDLE_LIMIT }],
    "since: the last seq held; none for a series with nothing held yet");
  // Only what changed: bar 1 closed, bar 2 formed meanwhile.
  second.serverSays(candles([hbar(1, 6), hbar(2, 8, { closed: false })]));
  assert.deepEqual(log.slice(2).map(([t, d]) => [t, d.bar?.seq, d.appended]), [["bar", 6, false], ["bar", 8, true]], "merged, no reset");
  assert.deepEqual(starts(series), [0, 1, 2]);
  second.serverCloses(1006);
  await clock.advance(1000);

  // The server restarted: another epoch, whose seqs start over.
  const third = FakeSocket.all[2];
  third.serverSays(welcome(2));
  assert.deepEqual(third.sent[0].payload, { candles: ["AAPL@1m"], limit: 10 }, "no since across epochs");
  assert.deepEqual(starts(series), [0, 1, 2], "the bars stay shown until the new history comes");
  const seen = log.length;
  third.serverSays(candle(cbar(2, 1, { closed: false })));
  assert.equal(log.length, seen, "no live bar before the new history");
  third.serverSays(candles([hbar(2, 1, { closed: false })]));
  assert.deepEqual(log.at(-1)[0], "reset");
  assert.equal(log.at(-1)[1].reason, "epoch");
  assert.deepEqual(starts(series), [2]);
  assert.equal(series.lastSeq, 1);
  third.serverSays(candle(cbar(2, 2, { closed: false })));
  assert.equal(log.at(-1)[1].bar.seq, 2, "seq 2 of the new epoch is news");
  assert.equal(other.ready, false);
  c.close();
});

test("subscribe and unsubscribe while open; the same series is shared; a larger limit reloads it; bad arguments throw", async () => {
  const { c } = setup();
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays(welcome());
  const a = c.subscribeCandles("AAPL", "1m", { limit: 5 });
  assert.deepEqual(ws.sent.at(-1).payload, { candles: ["AAPL@1m"], limit: 5 });
  ws.serverSays(candles([hbar(0, 1), hbar(1, 2, { closed: false })]));
  const sent = ws.sent.length;
  const b = c.subscribeCandles("AAPL", "1m", { limit: 2 });
  assert.equal(a, b, "one series per symbol and interval");
  assert.equal(ws.sent.length, sent, "nothing to ask for");
  assert.equal(c.candleSeries("AAPL", "1m"), a);
  const log = record(a);
  c.subscribeCandles("AAPL", "1m", { limit: 50 });
  assert.deepEqual(ws.sent.at(-1).payload, { candles: ["AAPL@1m"], limit: 50 }, "the longer history, whole");
  ws.serverSays(candles([hbar(-3, 1), hbar(0, 1), hbar(1, 2, { closed: false })]));
  assert.deepEqual(log.map(([t, d]) => [t, d.reason]), [["reset", "limit"]]);
  assert.equal(a.maxBars, 51);
  c.unsubscribeCandles("AAPL", "1m");
  c.unsubscribeCandles("AAPL", "1m");
  assert.equal(ws.sent.at(-1).type, "subscribe", "still held once");
  a.unsubscribe();
  assert.deepEqual(ws.sent.at(-1), { type: "unsubscribe", id: ws.sent.at(-1).id, payload: { candles: ["AAPL@1m"] } });
  assert.equal(a.active, false);
  assert.deepEqual(log.at(-1), ["unsubscribed", { reason: "client" }]);
  assert.equal(c.candleSeries("AAPL", "1m"), undefined);
  c.unsubscribeCandles("AAPL", "1m");
  ws.serverSays(candle(cbar(1, 3)));
  assert.equal(a.bars.at(-1).seq, 2, "no bars after the unsubscribe");
  assert.throws(() => c.subscribeCandles("A A", "1m"), TypeError);
  assert.throws(() => c.subscribeCandles("AAPL", "1 minute"), TypeError);
  assert.throws(() => c.subscribeCandles("AAPL", "1m", { limit: 0 }), TypeError);
  assert.throws(() => c.subscribeCandles("AAPL", "1m", { limit: 2.5 }), TypeError);
  c.close();
});

test("series the server refuses or ends are dropped and told why; not asked for again", async () => {
  const { c, clock, events } = setup({ symbols: ["AAPL"] });
  const bad = c.subscribeCandles("AAPL", "2m");
  const ok = c.subscribeCandles("AAPL", "1m");
  const gone = c.subscribeCandles("TSLA", "1m");
  const [badLog, goneLog] = [record(bad), record(gone)];
  await c.connect();
  const ws = FakeSocket.all[0];
  ws.serverSays(welcome());
  ws.serverSays({ type: "error", id: 2, payload: { code: "bad_request", symbol: "AAPL@2m", symbols: ["AAPL@2m"], message: "interval 2m is not served (1s, 1m, 5m, 1h)" } });
  assert.deepEqual(badLog.map(([t]) => t), ["error", "unsubscribed"]);
  assert.equal(badLog[0][1].code, "bad_request");
  assert.equal(bad.active, false);
  assert.equal(events.error.at(-1).code, "bad_request", "the client says it too");
  assert.deepEqual([...c.symbols], ["AAPL"], "the symbol AAPL is not touched");
  ws.serverSays({ type: "unsubscribed", id: 9, payload: { symbols: [], candles: ["TSLA@1m"], reason: "forbidden" } });
  assert.deepEqual(goneLog.map(([t, d]) => [t, d.reason]), [["unsubscribed", "forbidden"]]);
  assert.deepEqual(events.unsubscribed.at(-1), { symbols: [], candles: ["TSLA@1m"], reason: "forbidden" });
  assert.match(events.error.at(-1).message, /TSLA@1m/);
  ws.serverCloses(1006);
  await clock.advance(1000);
  FakeSocket.all[1].serverSays(welcome());
  assert.deepEqual(FakeSocket.all[1].sent.map((m) => m.payload.candles).filter(Boolean), [["AAPL@1m"]]);
  assert.ok(ok.active);
  c.close();
});

test("sse: series go into the stream's URL, candles and candle events arrive, changes reopen it", async () => {
  const { c, clock, es } = setup({ transport: "sse" });
  const series = c.subscribeCandles("AAPL", "1m", { limit: 2 });
  const log = record(series);
  await c.connect();
  assert.equal(es(0).url, "http://x/sse?candles=AAPL%401m&limit=2", "a stream of series alone");
  es(0).serverSends("welcome", { epoch: 1 });
  es(0).serverSends("candles", { symbol: "AAPL", interval: "1m", bars: [hbar(0, 1), hbar(1, 2), hbar(2, 3), hbar(3, 5, { closed: false })], snapshot: true });
  es(0).serverSends("candle", cbar(3, 6, { closed: false }));
  assert.deepEqual(log.map(([t]) => t), ["reset", "bar"]);
  assert.deepEqual(starts(series), [1, 2, 3]);
  es(0).serverSends("mark", { id: "1-40" });
  const fx = c.subscribeCandles("FX:EUR/USD", "1s", { limit: 5 });
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.deepEqual(es(1).candles, ["AAPL@1m", "FX:EUR/USD@1s"]);
  assert.equal(new URL(es(1).url).searchParams.get("limit"), "5", "the largest limit a series wants");
  assert.equal(new URL(es(1).url).searchParams.get("lastEventId"), null, "a new series: everything again");
  es(1).serverSends("welcome", { epoch: 1 });
  // The whole history again for AAPL@1m, limited by the stream's 5: merged (same epoch), trimmed to the series' own.
  es(1).serverSends("candles", { symbol: "AAPL", interval: "1m", bars: [hbar(0, 1), hbar(1, 2), hbar(2, 3), hbar(3, 7, { closed: false })], snapshot: true });
  assert.deepEqual(starts(series), [1, 2, 3]);
  assert.equal(series.latest().seq, 7);
  es(1).serverSends("candles", { symbol: "FX:EUR/USD", interval: "1s", bars: [], snapshot: true });
  assert.ok(fx.ready);
  assert.deepEqual(fx.bars, []);
  es(1).serverSends("mark", { id: "1-50" });
  c.unsubscribeCandles("FX:EUR/USD", "1s");
  c.subscribe(["MSFT"]);
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.deepEqual([es(2).symbols, es(2).candles], [["MSFT"], ["AAPL@1m"]]);
  assert.equal(new URL(es(2).url).searchParams.get("lastEventId"), null, "MSFT is new");
  es(2).serverSends("welcome", { epoch: 1 });
  es(2).serverSends("mark", { id: "1-60" });
  c.unsubscribe(["MSFT"]);
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.equal(new URL(es(3).url).searchParams.get("lastEventId"), "1-60", "fewer: resumes");
  es(3).serverSends("welcome", { epoch: 1 });
  c.subscribeCandles("AAPL", "1m", { limit: 20 });
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.equal(new URL(es(4).url).searchParams.get("lastEventId"), null, "a longer history cannot resume");
  assert.equal(new URL(es(4).url).searchParams.get("limit"), "20");
  c.unsubscribeCandles("AAPL", "1m");
  c.unsubscribeCandles("AAPL", "1m");
  await clock.advance(SSE_REOPEN_DELAY_MS);
  assert.equal(es(4).readyState, 2, "nothing left to watch: no stream");
  assert.equal(FakeEventSource.all.length, 5);
  c.close();
});

/** A fetch that answers from `respond(url, init)` ({status, body}) and records its calls. */
function fakeFetch(respond) {
  const calls = [];
  const f = async (url, init = {}) => {
    calls.push({ url, headers: init.headers ?? {} });
    const { status = 200, body = "" } = respond(url, init);
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return { status, headers: new Map(), text: async () => text, json: async () => JSON.parse(text) };
  };
  f.calls = calls;
  return f;
}

test("fetchCandles: GET /candles next to url, with a fresh token as a header; other answers reject with the server's words", async () => {
  let n = 0;
  const fetch = fakeFetch((url) => (url.includes("TSLA") ? { status: 403, body: "not entitled to `TSLA`\n" }
    : { body: { symbol: "AAPL", interval: "1m", bars: [hbar(0, 1)] } }));
  const { c } = setup({ url: "wss://md.example.com/ws", fetch, getToken: async () => `token-${++n}` });
  const r = await c.fetchCandles("AAPL", "1m", { limit: 500, end: T0 });
  assert.deepEqual(r, { symbol: "AAPL", interval: "1m", bars: [hbar(0, 1)] });
  assert.deepEqual(fetch.calls[0], { url: `https://md.example.com/candles?symbol=AAPL&interval=1m&limit=500&end=${T0}`,
                                     headers: { Authorization: "Bearer token-1" } });
  await assert.rejects(c.fetchCandles("TSLA", "1m"), (e) => e instanceof CandlesError && e.status === 403 && /not entitled to `TSLA`$/.test(e.message));
  assert.equal(fetch.calls[1].headers.Authorization, "Bearer token-2", "one-time tokens: a fresh one each time");
  const anon = setup({ fetch }).c;
  await anon.fetchCandles("AAPL", "5m");
  assert.deepEqual(fetch.calls[2], { url: "http://x/candles?symbol=AAPL&interval=5m", headers: {} });
});

// ---------------------------------------------------------------- the datafeed

const AAPL = { name: "AAPL", ticker: "AAPL" };

test("datafeed: configuration, symbol info, getBars from /candles in the library's bar format", async () => {
  const fetch = fakeFetch((url) => {
    const q = new URL(url).searchParams;
    if (q.get("symbol") === "EMPTY") return { body: { symbol: "EMPTY", interval: q.get("interval"), bars: [] } };
    if (q.get("symbol") === "TSLA") return { status: 403, body: "not entitled to `TSLA`" };
    return { body: { symbol: "AAPL", interval: q.get("interval"), bars: [hbar(0, 1), hbar(1, 2, { closed: false })] } };
  });
  const { c } = setup({ fetch });
  const feed = new TickcastDatafeed(c, { defer: (f) => f(), maxLimit: 1000 });
  let config;
  feed.onReady((x) => { config = x; });
  assert.deepEqual(config.supported_resolutions, ["1S", "1", "5", "60"]);
  let info;
  feed.resolveSymbol("AAPL", (x) => { info = x; }, assert.fail);
  assert.equal(info.ticker, "AAPL");
  assert.equal(info.has_seconds, true);
  assert.deepEqual(info.seconds_multipliers, ["1"]);
  assert.deepEqual(info.intraday_multipliers, ["1", "5", "60"]);
  let why;
  feed.resolveSymbol("not a symbol", assert.fail, (e) => { why = e; });
  assert.match(why, /not a symbol/);

  const getBars = (symbolInfo, resolution, periodParams) => new Promise((resolve) => {
    feed.getBars(symbolInfo, resolution, periodParams, (bars, meta) => resolve({ bars, meta }), (error) => resolve({ error }));
  });
  const now = Math.floor(T0 / 1e6) + 300;
  const first = await getBars(AAPL, "1", { from: now - 3600, to: now, countBack: 300, firstDataRequest: true });
  assert.deepEqual(first.bars, [toChartBar(hbar(0, 1)), toChartBar(hbar(1, 2))]);
  assert.deepEqual(first.meta, { noData: false });
  assert.equal(fetch.calls.at(-1).url, "http://x/candles?symbol=AAPL&interval=1m&limit=300", "the first request: up to now");
  await getBars(AAPL, "5", { from: now - 36000 * 5, to: now, countBack: 10, firstDataRequest: false });
  assert.equal(fetch.calls.at(-1).url, `http://x/candles?symbol=AAPL&interval=5m&limit=600&end=${now * 1e6}`, "from…to wants 600 bars");
  await getBars(AAPL, "1S", { from: now - 7200, to: now, countBack: 2000, firstDataRequest: false });
  assert.match(fetch.calls.at(-1).url, /interval=1s&limit=1000&/, "capped at maxLimit");
  const empty = await getBars({ name: "EMPTY" }, "60", { from: now - 3600, to: now, countBack: 5, firstDataRequest: false });
  assert.deepEqual(empty, { bars: [], meta: { noData: true } });
  assert.match((await getBars(AAPL, "3", { from: 0, to: now, countBack: 5, firstDataRequest: true })).error, /resolution not supported: 3/);
  assert.match((await getBars({ name: "TSLA" }, "1", { from: 0, to: now, countBack: 5, firstDataRequest: true })).error, /403/);
});

test("datafeed: subscribeBars gives the forming bar and new ones in time order, asks for a reset on a new epoch, unsubscribeBars ends it", async () => {
  const { c, clock } = setup();
  const feed = new TickcastDatafeed(c, { defer: (f) => f() });
  await c.connect();
  FakeSocket.all[0].serverSays(welcome(1));
  const ticks = [];
  let resets = 0;
  feed.subscribeBars(AAPL, "1", (bar) => ticks.push(bar), "guid-1", () => resets++);
  const ws = FakeSocket.all[0];
  assert.deepEqual(ws.sent.at(-1).payload, { candles: ["AAPL@1m"], limit: 2 }, "the latest bars are all it needs");
  ws.serverSays(candles([hbar(0, 1), hbar(1, 2, { closed: false })]));
  ws.serverSays(candle(cbar(1, 3, { closed: false, close: 150 })));
  ws.serverSays(candle(cbar(1, 4)));
  ws.serverSays(candle(cbar(2, 5, { closed: false })));
  assert.deepEqual(ticks.map((b) => [(b.time * 1000 - T0) / MIN, b.close]), [[1, 101.5], [1, 150], [1, 101.5], [2, 102.5]]);
  assert.equal(resets, 0);
  // A second chart on the same series shares it, and starts from its newest bar.
  const other = [];
  feed.subscribeBars(AAPL, "1", (bar) => other.push(bar), "guid-2", () => {});
  assert.deepEqual(other, [toChartBar(cbar(2, 5, { closed: false }))]);
  ws.serverCloses(1006);
  await clock.advance(1000);
  const ws2 = FakeSocket.all[1];
  ws2.serverSays(welcome(2));
  ws2.serverSays(candles([hbar(7, 1, { closed: false })]));
  assert.equal(resets, 1, "a new epoch: the chart reloads its history");
  assert.equal(ticks.at(-1).time, (T0 + 7 * MIN) / 1000);
  feed.unsubscribeBars("guid-1");
  assert.equal(ws2.sent.filter((m) => m.type === "unsubscribe").length, 0, "guid-2 still holds it");
  feed.unsubscribeBars("guid-2");
  assert.deepEqual(ws2.sent.at(-1).payload, { candles: ["AAPL@1m"] });
  const before = ticks.length;
  ws2.serverSays(candle(cbar(7, 2, { closed: false })));
  assert.equal(ticks.length, before);
  feed.unsubscribeBars("unknown");
  c.close();
});
