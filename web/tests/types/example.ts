// Uses every declaration of client.d.ts as an app would; tests/types.test.mjs type-checks it
// with `tsc --strict --noEmit`. Each `@ts-expect-error` line is a misuse the types must refuse
// (tsc fails if one of them type-checks).
import {
  TickcastClient, TickcastDatafeed, CandleSeries, CandlesError, Book, SendBudget, MsgpackError,
  NO_RECONNECT, MAX_BACKOFF_MS, DEFAULT_MAX_MESSAGE, SEND_BURST, SEND_GAP_MS, MAX_REFUSALS, REFRESH_RETRIES,
  PROBE_TIMEOUT_MS, REFUSED_SYMBOL_CODES, REFUSED_SERIES_CODES, TRANSPORTS, ENCODINGS, MSGPACK_PROTOCOL,
  FALLBACK_AFTER, OPEN_TIMEOUT_MS, SSE_RETRY_MAX_MS, SSE_REOPEN_DELAY_MS, MAX_SSE_URL, SSE_EVENTS,
  MAX_SERVER_WAIT_MS, MSGPACK_MAX_DEPTH, CANDLE_LIMIT, CANDLE_INTERVALS, RESOLUTIONS,
  backoffDelay, retryAfterMs, wsProbeUrl, shouldReconnect, tokenExpiry, isSymbol, byteLength, maxMessageOf,
  chunkSubscribe, chunkUnsubscribe, refreshDelayMs, refreshRetryDelayMs, snapshotUrl, sseUrl, fitSseSymbols,
  fitSseCandles, wsProtocols, refusedSymbols, refusedSeries, isInterval, intervalMs, seriesName, parseSeriesName,
  chunkCandleSubscribe, chunkCandleUnsubscribe, candlesUrl, mergeBar, trimHistory, toChartBar,
  resolutionToInterval, intervalToResolution, decodeMsgpack,
} from "../../client.js";
import type {
  Tick, WelcomePayload, SubscribedPayload, UnsubscribedPayload, ErrorPayload, PongPayload, AuthenticatedPayload,
  ReconnectPayload, HistoryBar, CandleBar, CandlesPayload, CandlesResponse, ServerMessage, ClientMessage,
  ServerMessageType, SubscribeRequest, UnsubscribeRequest, StateDetail, ClientErrorDetail, UnsubscribedDetail,
  TickcastClientOptions, SubscribeCandlesOptions, FetchCandlesOptions, ChartBar, ChartSymbolInfo, PeriodParams,
  DatafeedConfiguration, TickcastDatafeedOptions, MsgpackValue, Transport, Encoding, ConnectionState, CandleSource,
  TickcastClientEventMap, CandleSeriesEventMap, Micros, ErrorCode, PingRequest, AuthRequest, TypedEventTarget,
} from "../../client.js";

// ---------------------------------------------------------------- the client

const options: TickcastClientOptions = {
  url: "wss://md.example.com/ws",
  symbols: ["AAPL", "FX:EUR/USD"],
  getToken: async () => (await fetch("/token")).text(),
  transport: "auto",
  encoding: "msgpack",
  intervalMs: 1000,
  pingAfterMs: 30000,
  pongTimeoutMs: 10000,
  openTimeoutMs: 10000,
  random: Math.random,
  now: () => Date.now(),
  setTimeout: (f, ms) => setTimeout(f, ms),
  clearTimeout: (id) => clearTimeout(id),
};
const client = new TickcastClient(options);
new TickcastClient({ url: "ws://127.0.0.1:8080/ws" });
new TickcastClient({ url: "ws://127.0.0.1:8080/ws", getToken: () => "a.b.c", WebSocket, EventSource, fetch });

client.addEventListener("tick", (e) => {
  const t: Tick = e.detail;
  const price: number | undefined = t.last ?? t.bid;
  const latency: number = Date.now() - t.pub / 1000;
  const snap: true | undefined = t.snapshot;
  console.log(t.symbol, t.seq, price, latency, snap, t.ask, t.volume, t.ts);
});
client.addEventListener("state", (e) => {
  const d: StateDetail = e.detail;
  if (d.state === "reconnecting") {
    const inMs: number | null = d.inMs;
    console.log(inMs, d.code, d.reason);
  } else if (d.state === "open") {
    const transport: "websocket" | "sse" | undefined = d.transport;
    console.log(transport);
  } else if (d.state === "closed") {
    console.log(d.code, d.reason);
  }
});
client.addEventListener("error", (e) => {
  const d: ClientErrorDetail = e.detail;
  console.warn(d.code, d.message);
  if (d.code === "refused" && "status" in d) console.warn(d.status);
});
client.addEventListener("unsubscribed", (e) => {
  const d: UnsubscribedDetail = e.detail;
  console.log(d.symbols, d.candles, d.reason);
});
client.addEventListener("something-else", (e: Event) => console.log(e.type));
const onTick = (e: CustomEvent<Tick>) => console.log(e.detail.seq);
client.addEventListener("tick", onTick);
client.removeEventListener("tick", onTick);

await client.connect();
client.subscribe(["NVDA"]);
client.unsubscribe(["AAPL"]);
const latest: Tick | undefined = client.latest("NVDA");
const state: ConnectionState = client.state;
const transport: "websocket" | "sse" = client.transport;
const encoding: Encoding = client.encoding;
const epoch: number | undefined = client.epoch;
const watching: Set<string> = client.symbols;
const ws = client.ws;
if (ws) ws.close(4000);
const es = client.es;
if (es) es.close();
console.log(latest, state, transport, encoding, epoch, watching, client.stopped, client.url, client.intervalMs, client.book.get("A"));

// ---------------------------------------------------------------- candles

const series: CandleSeries = client.subscribeCandles("AAPL", "1m", { limit: 300, maxBars: 500 });
const opts: SubscribeCandlesOptions = { limit: 10 };
client.subscribeCandles("FX:EUR/USD", "1s", opts);
client.subscribeCandles("MSFT", "5m");
series.addEventListener("reset", (e) => {
  const bars: CandleBar[] = e.detail.bars;
  const reason: "history" | "epoch" | "limit" = e.detail.reason;
  console.log(bars.length, reason);
});
series.addEventListener("bar", (e) => {
  const { bar, index, appended } = e.detail;
  const source: CandleSource = bar.source;
  const start: Micros = bar.start;
  console.log(bar.symbol, bar.interval, bar.seq, start, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades,
              source, bar.closed, index, appended);
});
series.addEventListener("error", (e) => console.warn(e.detail.message));
series.addEventListener("unsubscribed", (e) => console.log(e.detail.reason));
const held: readonly CandleBar[] = series.bars;
const newest: CandleBar | undefined = series.latest();
const closed: CandleBar[] = series.closedBars();
console.log(held, newest, closed, series.name, series.symbol, series.interval, series.limit, series.maxBars, series.lastSeq,
            series.ready, series.active);
const same: CandleSeries | undefined = client.candleSeries("AAPL", "1m");
const all: Map<string, CandleSeries> = client.candles;
console.log(same, all);
series.unsubscribe();
client.unsubscribeCandles("AAPL", "1m");

const fetchOptions: FetchCandlesOptions = { limit: 500, end: 1732400040000000, signal: AbortSignal.timeout(5000) };
const page: CandlesResponse = await client.fetchCandles("AAPL", "1m", fetchOptions);
const oldest: HistoryBar | undefined = page.bars[0];
if (oldest) await client.fetchCandles("AAPL", "1m", { end: oldest.start });
try {
  await client.fetchCandles("TSLA", "1h");
} catch (e) {
  if (e instanceof CandlesError) console.warn(e.status, e.message);
}
client.close();

// ---------------------------------------------------------------- the datafeed

const feedOptions: TickcastDatafeedOptions = { resolutions: ["1S", "1", "5", "60"], maxLimit: 1000, pricescale: 100, exchange: "X", defer: (f) => f() };
const datafeed = new TickcastDatafeed(client, feedOptions);
datafeed.onReady((config: DatafeedConfiguration) => console.log(config.supported_resolutions));
datafeed.searchSymbols("AA", "", "stock", (items) => console.log(items.length));
datafeed.resolveSymbol("AAPL", (info: ChartSymbolInfo) => {
  const period: PeriodParams = { from: 1732400000, to: 1732403600, countBack: 300, firstDataRequest: true };
  datafeed.getBars(info, "1", period, (bars: ChartBar[], meta) => {
    const noData: boolean = meta.noData;
    console.log(bars.map((b) => [b.time, b.open, b.high, b.low, b.close, b.volume]), noData);
  }, (reason: string) => console.warn(reason));
  datafeed.subscribeBars(info, "1", (bar: ChartBar) => console.log(bar.time), "guid", () => console.log("reset"));
  datafeed.subscribeBars(info, "1S", (bar) => console.log(bar.close), "guid-2");
  datafeed.unsubscribeBars("guid");
}, (reason) => console.warn(reason));

// ---------------------------------------------------------------- protocol messages

function handle(m: ServerMessage): string {
  switch (m.type) {
    case "welcome": { const w: WelcomePayload = m.payload; return `${w.session} ${w.epoch} ${w.heartbeat_ms} ${w.exp ?? ""}`; }
    case "subscribed": { const s: SubscribedPayload = m.payload; return [...s.symbols, ...s.unknown, ...(s.candles ?? [])].join(); }
    case "unsubscribed": { const u: UnsubscribedPayload = m.payload; return u.reason ?? ""; }
    case "tick": return m.payload.symbol;
    case "candles": { const c: CandlesPayload = m.payload; return `${c.symbol}@${c.interval} ${c.bars.length}`; }
    case "candle": return `${m.payload.symbol} ${m.payload.seq}`;
    case "pong": { const p: PongPayload = m.payload; return String(p.ts); }
    case "error": { const e: ErrorPayload = m.payload; return `${e.code} ${e.message} ${e.symbols ?? []}`; }
    case "authenticated": { const a: AuthenticatedPayload = m.payload; return a.sub; }
    case "reconnect": { const r: ReconnectPayload = m.payload; return String(r.after_ms); }
  }
}
const kinds: ServerMessageType[] = ["welcome", "tick", "candle"];
const outgoing: ClientMessage[] = [
  { type: "subscribe", id: 1, payload: { symbols: ["AAPL"], since: { AAPL: 1041 }, interval_ms: 1000 } },
  { type: "subscribe", id: 5, payload: { candles: ["AAPL@1m"], limit: 300, since: { "AAPL@1m": 57 } } },
  { type: "unsubscribe", id: 6, payload: { candles: ["AAPL@1m"] } },
  { type: "ping", id: 3 },
  { type: "auth", id: 4, payload: { token: "jwt" } },
];
const ping: PingRequest = { type: "ping", id: 7 };
const auth: AuthRequest = { type: "auth", payload: { token: "jwt" } };
const code: ErrorCode = "rate_limited";
const target: TypedEventTarget<CandleSeriesEventMap> = series;
target.addEventListener("bar", (e) => console.log(e.detail.appended));
console.log(handle, kinds, outgoing, ping, auth, code);

// ---------------------------------------------------------------- helpers and constants

let next = 1;
const subs: SubscribeRequest[] = chunkSubscribe(["A", "B"], { A: 3 }, DEFAULT_MAX_MESSAGE, () => next++, null);
const unsubs: UnsubscribeRequest[] = chunkUnsubscribe(["A"], 4096, () => next++);
const candleSubs: SubscribeRequest[] = chunkCandleSubscribe(["A@1m"], null, CANDLE_LIMIT, 4096, () => next++);
const candleUnsubs: UnsubscribeRequest[] = chunkCandleUnsubscribe(["A@1m"], 4096, () => next++);
const numbers: number[] = [
  backoffDelay(3), backoffDelay(1, () => 0.5), byteLength("É"), maxMessageOf({ max_message: 65536 }), refreshDelayMs(1, 0),
  MAX_BACKOFF_MS, SEND_BURST, SEND_GAP_MS, MAX_REFUSALS, REFRESH_RETRIES, PROBE_TIMEOUT_MS, FALLBACK_AFTER, OPEN_TIMEOUT_MS,
  SSE_RETRY_MAX_MS, SSE_REOPEN_DELAY_MS, MAX_SSE_URL, MAX_SERVER_WAIT_MS, MSGPACK_MAX_DEPTH,
];
const maybe: (number | null)[] = [retryAfterMs("5"), tokenExpiry("a.b.c"), refreshRetryDelayMs(1, 100, 0), intervalMs("5m")];
const strings: string[] = [
  wsProbeUrl("ws://h/ws"), snapshotUrl("ws://h/ws", ["A"]), sseUrl("ws://h/ws", ["A"], null, null, null, ["A@1m"], 300),
  seriesName("A", "1m"), candlesUrl("ws://h/ws", "A", "1m", { limit: 5, end: null }), MSGPACK_PROTOCOL,
  ...wsProtocols("json"), ...refusedSymbols({ code: "forbidden", symbols: ["A"] }), ...refusedSeries({ code: "forbidden", candles: ["A@1m"] }),
  ...SSE_EVENTS, ...CANDLE_INTERVALS, ...RESOLUTIONS,
];
const booleans: boolean[] = [shouldReconnect(1006, true), isSymbol("A"), isInterval("1m"), NO_RECONNECT.has(1008),
                             REFUSED_SYMBOL_CODES.has("forbidden"), REFUSED_SERIES_CODES.has("bad_request")];
const transports: readonly Transport[] = TRANSPORTS;
const encodings: readonly Encoding[] = ENCODINGS;
const fitted: { kept: string[]; dropped: string[] } = fitSseSymbols("ws://h/ws", ["A"], null, MAX_SSE_URL, null);
const fittedCandles = fitSseCandles("ws://h/ws", ["A"], ["A@1m"], "t", MAX_SSE_URL, null, 300);
const parsed = parseSeriesName("FX:EUR/USD@1s");
if (parsed) console.log(parsed.symbol, parsed.interval);
const bars: CandleBar[] = [];
const merged = mergeBar(bars, { symbol: "A", interval: "1m", seq: 1, start: 0, open: 1, high: 1, low: 1, close: 1, volume: 0, trades: 1, source: "trades", closed: false });
if (merged) console.log(merged.index, merged.appended);
const trimmed: CandleBar[] = trimHistory(bars, 10);
const chartBars: ChartBar[] = trimmed.map(toChartBar);
const resolutions: (string | null)[] = [resolutionToInterval("60"), intervalToResolution("1h")];

const book = new Book();
book.accept({ symbol: "A", seq: 1, ts: 0, pub: 0 });
const since: Record<string, number> = book.since(["A"]);
book.delete("A");
book.clear();
const budget = new SendBudget(SEND_BURST, SEND_GAP_MS);
const wait: number = budget.take(Date.now());
budget.reset();
const decoded: MsgpackValue = decodeMsgpack(new Uint8Array([0x80]), { bigInt: true });
try {
  decodeMsgpack(new ArrayBuffer(0));
} catch (e) {
  if (e instanceof MsgpackError) console.log(e.at);
}
const maps: [TickcastClientEventMap["tick"], CandleSeriesEventMap["bar"]["bar"]] | null = null;
console.log(subs, unsubs, candleSubs, candleUnsubs, numbers, maybe, strings, booleans, transports, encodings, fitted,
            fittedCandles, chartBars, resolutions, since, wait, decoded, maps);

// The demo page's globals.
if (typeof window !== "undefined" && window.Tickcast) new window.Tickcast.TickcastClient({ url: "ws://h/ws" });
if (typeof window !== "undefined") window.TICKCAST_GET_TOKEN = async () => "token";

// ---------------------------------------------------------------- misuse the types refuse

// @ts-expect-error url is required
new TickcastClient({ symbols: ["AAPL"] });
// @ts-expect-error not a transport
new TickcastClient({ url: "ws://h/ws", transport: "longpoll" });
// @ts-expect-error not an encoding
new TickcastClient({ url: "ws://h/ws", encoding: "cbor" });
// @ts-expect-error intervalMs is a number of ms
new TickcastClient({ url: "ws://h/ws", intervalMs: "1s" });
// @ts-expect-error a tick has no `price`
client.addEventListener("tick", (e) => console.log(e.detail.price));
// @ts-expect-error subscribe takes a list of symbols
client.subscribe("AAPL");
// @ts-expect-error the interval is a string such as "1m"
client.subscribeCandles("AAPL", 60);
// @ts-expect-error there is no `count` option: it is `limit`
client.subscribeCandles("AAPL", "1m", { count: 300 });
// @ts-expect-error a bar's start is a number (µs), not a Date
const startDate: Date = series.bars[0].start;
// @ts-expect-error bars are read-only to the app: the series merges them
series.bars.push(series.bars[0]);
// @ts-expect-error a `reset` event carries bars, not a single bar
series.addEventListener("reset", (e) => console.log(e.detail.bar));
// @ts-expect-error fetchCandles returns a Promise
const notAwaited: CandlesResponse = client.fetchCandles("AAPL", "1m");
// @ts-expect-error getBars wants periodParams
datafeed.getBars({ name: "AAPL" }, "1", (bars: ChartBar[]) => bars, () => {});
// @ts-expect-error a chart bar's time is ms, a number
const chartTime: string = toChartBar(series.bars[0]).time;
// @ts-expect-error a series is made by subscribeCandles, not by hand
new CandleSeries(client, "AAPL", "1m", 300, 301);
// @ts-expect-error not a server message type
const badKind: ServerMessageType = "trade";
console.log(startDate, notAwaited, chartTime, badKind);
