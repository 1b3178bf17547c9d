// TypeScript declarations of tickcast's browser client (client.js beside this file; protocol:
// docs/protocol.md). Served by tickcast at GET /client.d.ts, and shipped in the npm package
// `tickcast-client`:
//
//   import { TickcastClient, type Tick } from "tickcast-client";

// ---------------------------------------------------------------- protocol messages (§3, §4, §4c)

/** Epoch-relative times on the wire are in microseconds since the Unix epoch. */
export type Micros = number;

/** `welcome`: the first message of every connection (§4). */
export interface WelcomePayload {
  session: string;
  server?: string;
  heartbeat_ms: number;
  max_symbols?: number;
  /** The server's inbound message limit in bytes. */
  max_message?: number;
  /** The lineage of `seq` numbers: they compare only within one epoch. */
  epoch: number;
  node?: string;
  /** When the connection's token expires, seconds since the epoch (authenticated connections). */
  exp?: number;
}

/** The full current state of one symbol (`tick`, and each item of GET /snapshot). */
export interface Tick {
  symbol: string;
  /** From 1, one more per update of the symbol (within one epoch). */
  seq: number;
  bid?: number;
  ask?: number;
  last?: number;
  volume?: number;
  /** Feed time of the newest tick merged in. */
  ts: Micros;
  /** When the update left the server's coalescer. */
  pub: Micros;
  /** Only on snapshots (the state at subscribe time). */
  snapshot?: true;
}

export interface SubscribedPayload {
  symbols: string[];
  /** Requested symbols with no value yet. */
  unknown: string[];
  /** The candle series subscribed (`SYMBOL@INTERVAL`). */
  candles?: string[];
}

export interface UnsubscribedPayload {
  symbols: string[];
  candles?: string[];
  /** Present when the server ended them itself (e.g. "forbidden" after a token refresh). */
  reason?: string;
}

export type ErrorCode =
  | "bad_request" | "unknown_type" | "invalid_symbol" | "forbidden" | "too_many_symbols"
  | "unauthorized" | "rate_limited" | "unknown_symbol";

export interface ErrorPayload {
  code: ErrorCode | (string & {});
  message: string;
  /** The symbol at fault, when exactly one is. */
  symbol?: string;
  /** Every symbol (or series) at fault. */
  symbols?: string[];
}

export interface PongPayload {
  ts: Micros;
}

export interface AuthenticatedPayload {
  sub: string;
  exp: number;
}

export interface ReconnectPayload {
  after_ms: number;
  reason: string;
}

/** How a bar was made: from trades, or (for a symbol that never traded) the quote mid. */
export type CandleSource = "trades" | "mid";

/** One OHLCV bar as a history (`candles`, GET /candles) lists it (§4c). */
export interface HistoryBar {
  /** The seq of the bar's last change within its series. */
  seq: number;
  /** Start of the bar's interval, µs since the epoch (a multiple of the interval, UTC). */
  start: Micros;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  trades: number;
  source: CandleSource;
  /** False for the forming bar (its interval has not ended). */
  closed: boolean;
}

/** One bar with its series: a `candle` message's payload, and every bar a CandleSeries holds. */
export interface CandleBar extends HistoryBar {
  symbol: string;
  interval: string;
}

/** `candles`: a series' history (closed bars oldest first, then the forming one). */
export interface CandlesPayload {
  symbol: string;
  interval: string;
  bars: HistoryBar[];
  snapshot?: true;
}

/** GET /candles's answer: the last `limit` closed bars, oldest first, then the forming one. */
export interface CandlesResponse {
  symbol: string;
  interval: string;
  bars: HistoryBar[];
}

export interface SubscribeRequest {
  type: "subscribe";
  id?: number;
  payload: {
    symbols?: string[];
    /** Candle series, `SYMBOL@INTERVAL`. */
    candles?: string[];
    /** Bars of history per series (1 to --candle-keep; 300 by default). */
    limit?: number;
    /** The last seq held, per symbol or series: only what changed since comes. */
    since?: Record<string, number>;
    interval_ms?: number;
  };
}

export interface UnsubscribeRequest {
  type: "unsubscribe";
  id?: number;
  payload: { symbols?: string[]; candles?: string[] };
}

export interface PingRequest {
  type: "ping";
  id?: number;
}

export interface AuthRequest {
  type: "auth";
  id?: number;
  payload: { token: string };
}

/** What a client sends (§3). */
export type ClientMessage = SubscribeRequest | UnsubscribeRequest | PingRequest | AuthRequest;

/** What the server sends (§4, §4c), by type. */
export type ServerMessage =
  | { type: "welcome"; payload: WelcomePayload }
  | { type: "subscribed"; id?: number; payload: SubscribedPayload }
  | { type: "unsubscribed"; id?: number; payload: UnsubscribedPayload }
  | { type: "tick"; payload: Tick }
  | { type: "candles"; payload: CandlesPayload }
  | { type: "candle"; payload: CandleBar }
  | { type: "pong"; id?: number; payload: PongPayload }
  | { type: "error"; id?: number; payload: ErrorPayload }
  | { type: "authenticated"; id?: number; payload: AuthenticatedPayload }
  | { type: "reconnect"; payload: ReconnectPayload };

export type ServerMessageType = ServerMessage["type"];

// ---------------------------------------------------------------- constants

/** Close codes after which reconnecting cannot help. */
export const NO_RECONNECT: ReadonlySet<number>;
export const MAX_BACKOFF_MS: number;
/** The server's inbound message limit when its `welcome` does not say. */
export const DEFAULT_MAX_MESSAGE: number;
export const SEND_BURST: number;
export const SEND_GAP_MS: number;
/** Refused upgrades in a row after which the client stops. */
export const MAX_REFUSALS: number;
export const REFRESH_RETRIES: number;
export const PROBE_TIMEOUT_MS: number;
/** Error codes whose symbols the server did not subscribe. */
export const REFUSED_SYMBOL_CODES: ReadonlySet<string>;
/** Error codes whose candle series the server did not subscribe. */
export const REFUSED_SERIES_CODES: ReadonlySet<string>;
export type Transport = "auto" | "websocket" | "sse";
export type Encoding = "json" | "msgpack";
export const TRANSPORTS: readonly Transport[];
export const ENCODINGS: readonly Encoding[];
export const MSGPACK_PROTOCOL: "tickcast.msgpack";
export const FALLBACK_AFTER: number;
export const OPEN_TIMEOUT_MS: number;
export const SSE_RETRY_MAX_MS: number;
export const SSE_REOPEN_DELAY_MS: number;
export const MAX_SSE_URL: number;
/** Events of an SSE stream besides `error`. */
export const SSE_EVENTS: readonly string[];
export const MAX_SERVER_WAIT_MS: number;
export const MSGPACK_MAX_DEPTH: number;
/** Bars of history a candle subscription asks for when not told. */
export const CANDLE_LIMIT: number;
/** The intervals a server serves by default (`--candle-intervals`). */
export const CANDLE_INTERVALS: readonly string[];
/** The resolutions TickcastDatafeed offers by default. */
export const RESOLUTIONS: readonly string[];

// ---------------------------------------------------------------- pure helpers

export function backoffDelay(attempt: number, random?: () => number): number;
export function retryAfterMs(value: string | null | undefined): number | null;
export function wsProbeUrl(wsUrl: string): string;
export function shouldReconnect(code: number, canRefreshToken: boolean): boolean;
export function tokenExpiry(token: string): number | null;
export function isSymbol(s: unknown): s is string;
export function byteLength(s: string): number;
export function maxMessageOf(welcome: Partial<WelcomePayload> | null | undefined): number;
export function chunkSubscribe(
  symbols: readonly string[], since: Record<string, number> | null, maxBytes: number, nextId: () => number,
  intervalMs?: number | null,
): SubscribeRequest[];
export function chunkUnsubscribe(symbols: readonly string[], maxBytes: number, nextId: () => number): UnsubscribeRequest[];
export function refreshDelayMs(expSec: number, nowMs: number): number;
export function refreshRetryDelayMs(failures: number, expSec: number, nowMs: number): number | null;
export function snapshotUrl(wsUrl: string, symbols?: readonly string[]): string;
export function sseUrl(
  wsUrl: string, symbols: readonly string[], token?: string | null, lastEventId?: string | null,
  intervalMs?: number | null, candles?: readonly string[], limit?: number | null,
): string;
export function fitSseSymbols(
  wsUrl: string, symbols: readonly string[], token?: string | null, maxLength?: number, intervalMs?: number | null,
): { kept: string[]; dropped: string[] };
export function fitSseCandles(
  wsUrl: string, symbols: readonly string[], candles: readonly string[], token?: string | null, maxLength?: number,
  intervalMs?: number | null, limit?: number | null,
): { kept: string[]; dropped: string[] };
export function wsProtocols(encoding: Encoding): string[];
export function refusedSymbols(payload: Partial<ErrorPayload> | null | undefined): string[];
export function refusedSeries(payload: (Partial<ErrorPayload> & { candles?: string[] }) | null | undefined): string[];

export function isInterval(s: unknown): s is string;
/** An interval's length in ms ("5m" → 300000), or null. */
export function intervalMs(interval: string): number | null;
/** `SYMBOL@INTERVAL`. */
export function seriesName(symbol: string, interval: string): string;
export function parseSeriesName(name: string): { symbol: string; interval: string } | null;
export function chunkCandleSubscribe(
  names: readonly string[], since: Record<string, number> | null, limit: number | null, maxBytes: number, nextId: () => number,
): SubscribeRequest[];
export function chunkCandleUnsubscribe(names: readonly string[], maxBytes: number, nextId: () => number): UnsubscribeRequest[];
export function candlesUrl(wsUrl: string, symbol: string, interval: string, options?: { limit?: number | null; end?: Micros | null }): string;
/** Merges `bar` into `bars` (by start, oldest first) in place; null when nothing changed. */
export function mergeBar<B extends HistoryBar>(bars: B[], bar: B): { index: number; appended: boolean } | null;
/** The last `limit` closed bars of a history, and its forming bar. */
export function trimHistory<B extends HistoryBar>(bars: readonly B[], limit: number): B[];
/** A bar as a charting library takes it (`time` in ms). */
export function toChartBar(bar: HistoryBar): ChartBar;
export function resolutionToInterval(resolution: string): string | null;
export function intervalToResolution(interval: string): string | null;

// ---------------------------------------------------------------- MessagePack

export class MsgpackError extends Error {
  constructor(what: string, at: number);
  /** Byte offset of the fault. */
  at: number;
}

/** A value decodeMsgpack() returns. */
export type MsgpackValue =
  | null | boolean | number | bigint | string | Uint8Array | MsgpackValue[] | { [key: string]: MsgpackValue };

export function decodeMsgpack(bytes: Uint8Array | ArrayBuffer, options?: { bigInt?: boolean }): MsgpackValue;

// ---------------------------------------------------------------- building blocks

/** The latest tick per symbol; refuses anything not newer by seq. */
export class Book {
  constructor();
  readonly bySymbol: Map<string, Tick>;
  /** Takes a tick if it is newer than the one held; returns whether it did. */
  accept(tick: Tick): boolean;
  get(symbol: string): Tick | undefined;
  delete(symbol: string): void;
  clear(): void;
  /** `since` for a resubscribe: the seq held per symbol. */
  since(symbols: Iterable<string>): Record<string, number>;
}

/** A token bucket on the client's side of the server's inbound rate limit. */
export class SendBudget {
  constructor(burst?: number, gapMs?: number);
  burst: number;
  gapMs: number;
  tokens: number;
  reset(): void;
  /** 0 if a message may go now (spending a token), else the ms to wait. */
  take(nowMs: number): number;
}

/** A GET /candles answered with another status than 200 (0: no token to ask with). */
export class CandlesError extends Error {
  constructor(status: number, message: string);
  status: number;
}

// ---------------------------------------------------------------- events

/** An EventTarget whose events are CustomEvents typed per name (M: event name → detail). */
export interface TypedEventTarget<M> {
  addEventListener<K extends keyof M & string>(
    type: K, listener: (this: this, ev: CustomEvent<M[K]>) => unknown, options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof M & string>(
    type: K, listener: (this: this, ev: CustomEvent<M[K]>) => unknown, options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export type StateDetail =
  | { state: "connecting" }
  | { state: "open"; transport?: "websocket" | "sse" }
  /** `inMs` null: the browser itself resumes an SSE stream, on its own schedule. */
  | { state: "reconnecting"; inMs: number | null; code?: number; reason?: string }
  | { state: "closed"; code?: number; reason?: string };

export type ClientErrorDetail =
  /** An `error` from the server (symbols at fault in `symbols`). */
  | ErrorPayload
  /** The server refused our tokens at the upgrade (its answer). */
  | { code: "refused"; status: number; message: string }
  /** Said by the client itself. */
  | { code: "client"; message: string }
  /** Symbols or series the client could not subscribe or that the server ended. */
  | { code: string; message: string; symbols?: string[]; candles?: string[] };

export interface UnsubscribedDetail {
  symbols: string[];
  candles: string[];
  reason: string;
}

export interface TickcastClientEventMap {
  tick: Tick;
  state: StateDetail;
  error: ClientErrorDetail;
  unsubscribed: UnsubscribedDetail;
}

export interface CandleSeriesEventMap {
  /** The whole list replaced. */
  reset: { bars: CandleBar[]; reason: "history" | "epoch" | "limit" };
  /** One bar changed (at `index`) or was added (`appended`: the new newest). */
  bar: { bar: CandleBar; index: number; appended: boolean };
  /** The server refused the series (it is no longer subscribed). */
  error: ClientErrorDetail;
  /** The series ended: "client" (unsubscribed), or the server's reason. */
  unsubscribed: { reason: string };
}

// ---------------------------------------------------------------- the client

/** What the client needs of a WebSocket (the browser's, or a stand-in for tests). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  // The client sets these; `any` lets the browser's WebSocket (whose handlers take its own event types) fit.
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface EventSourceLike {
  readonly readyState: number;
  addEventListener(type: string, listener: (ev: MessageEvent | Event) => unknown): void;
  close(): void;
}

export type FetchLike = (input: string, init?: { headers?: Record<string, string>; signal?: AbortSignal }) => Promise<{
  status: number;
  headers?: { get(name: string): string | null } | Headers;
  text(): Promise<string>;
  json(): Promise<any>;
}>;

export interface TickcastClientOptions {
  /** ws:// or wss:// URL of /ws (without a token); /sse, /snapshot and /candles are next to it. */
  url: string;
  /** Symbols to subscribe to. */
  symbols?: Iterable<string>;
  /** A fresh token before every connect, refresh, refusal probe and /candles request (one-time tokens are fine). */
  getToken?: (() => Promise<string | null> | string | null) | null;
  /** "auto" (default): WebSocket, falling back to SSE when it cannot get through. */
  transport?: Transport;
  /** What the WebSocket carries (SSE is always JSON). Default "json". */
  encoding?: Encoding;
  /** At most one update per symbol per this many ms (`interval_ms`); null: every update. */
  intervalMs?: number | null;
  /** Ping after this long without a message (30000; WebSocket only). */
  pingAfterMs?: number;
  /** The connection is dead without a pong by then (10000). */
  pongTimeoutMs?: number;
  /** A connection not open (SSE: welcomed) by then has failed (10000). */
  openTimeoutMs?: number;
  // For tests: stand-ins for the browser's.
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  EventSource?: new (url: string) => EventSourceLike;
  fetch?: FetchLike;
  random?: () => number;
  now?: () => number;
  setTimeout?: (f: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
}

export interface SubscribeCandlesOptions {
  /** Closed bars of history (1 to the server's --candle-keep; default 300). */
  limit?: number;
  /** The most bars the series keeps: maxBars − 1 closed ones and the forming one (default limit + 1). */
  maxBars?: number;
}

export interface FetchCandlesOptions {
  /** How many closed bars, the forming one coming on top (default: the server's 300; at most --candle-keep). */
  limit?: number | null;
  /** Only bars starting before this (µs since the epoch): to page back. */
  end?: Micros | null;
  signal?: AbortSignal;
}

/** One candle series (symbol and interval): history and live bars merged, oldest first. */
export class CandleSeries extends EventTarget implements TypedEventTarget<CandleSeriesEventMap> {
  private constructor(client: TickcastClient, symbol: string, interval: string, limit: number, maxBars: number);
  readonly client: TickcastClient;
  readonly symbol: string;
  readonly interval: string;
  /** `SYMBOL@INTERVAL`. */
  readonly name: string;
  readonly limit: number;
  readonly maxBars: number;
  /** The bars, oldest first; the last may be forming (`closed: false`). */
  readonly bars: readonly CandleBar[];
  /** The highest seq merged (0: none): where a reconnect resumes. */
  readonly lastSeq: number;
  /** Whether the history has arrived. */
  readonly ready: boolean;
  /** False once unsubscribed or ended by the server. */
  readonly active: boolean;
  /** The newest bar (the forming one while there is one). */
  latest(): CandleBar | undefined;
  /** The closed bars. */
  closedBars(): CandleBar[];
  /** Lets go of this series (client.unsubscribeCandles(symbol, interval)). */
  unsubscribe(): void;

  addEventListener<K extends keyof CandleSeriesEventMap>(
    type: K, listener: (this: CandleSeries, ev: CustomEvent<CandleSeriesEventMap[K]>) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof CandleSeriesEventMap>(
    type: K, listener: (this: CandleSeries, ev: CustomEvent<CandleSeriesEventMap[K]>) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** One connection to tickcast, kept alive, holding the latest state of every subscribed symbol. */
export class TickcastClient extends EventTarget implements TypedEventTarget<TickcastClientEventMap> {
  constructor(options: TickcastClientOptions);
  readonly url: string;
  /** The watch-list. */
  readonly symbols: Set<string>;
  /** The candle series followed, by name (`SYMBOL@INTERVAL`). */
  readonly candles: Map<string, CandleSeries>;
  readonly book: Book;
  /** The transport of the current (or next) connection. */
  readonly transport: "websocket" | "sse";
  readonly encoding: Encoding;
  readonly intervalMs: number | null;
  readonly state: ConnectionState;
  /** The epoch of the last welcome. */
  readonly epoch: number | undefined;
  /** Stopped for good (close(), or a refusal it cannot get past). */
  readonly stopped: boolean;
  /** The current WebSocket, or null. */
  readonly ws: WebSocketLike | null;
  /** The current EventSource, or null. */
  readonly es: EventSourceLike | null;

  /** Opens the connection (with a fresh token first, when there is a callback). */
  connect(): Promise<void>;
  /** Stops for good (no reconnect). */
  close(): void;
  subscribe(symbols: readonly string[]): void;
  unsubscribe(symbols: readonly string[]): void;
  /** The latest tick held for `symbol`. */
  latest(symbol: string): Tick | undefined;

  /** Follows the candles of `symbol` at `interval`; the same series again returns the same object. */
  subscribeCandles(symbol: string, interval: string, options?: SubscribeCandlesOptions): CandleSeries;
  /** Lets go of a series; the last holder's unsubscribe ends it. */
  unsubscribeCandles(symbol: string, interval: string): void;
  /** The series followed for `symbol` at `interval`. */
  candleSeries(symbol: string, interval: string): CandleSeries | undefined;
  /** GET /candles (authenticated as /snapshot is); rejects with a CandlesError. */
  fetchCandles(symbol: string, interval: string, options?: FetchCandlesOptions): Promise<CandlesResponse>;

  addEventListener<K extends keyof TickcastClientEventMap>(
    type: K, listener: (this: TickcastClient, ev: CustomEvent<TickcastClientEventMap[K]>) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof TickcastClientEventMap>(
    type: K, listener: (this: TickcastClient, ev: CustomEvent<TickcastClientEventMap[K]>) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

// ---------------------------------------------------------------- a charting library's datafeed

/** A bar as TradingView's Charting Library takes it. */
export interface ChartBar {
  /** The bar's start, ms since the epoch. */
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

/** The part of the library's LibrarySymbolInfo the datafeed reads and fills. */
export interface ChartSymbolInfo {
  name: string;
  ticker?: string;
  full_name?: string;
  description?: string;
  type?: string;
  session?: string;
  timezone?: string;
  exchange?: string;
  listed_exchange?: string;
  format?: "price" | "volume";
  minmov?: number;
  pricescale?: number;
  has_intraday?: boolean;
  has_seconds?: boolean;
  has_daily?: boolean;
  seconds_multipliers?: string[];
  intraday_multipliers?: string[];
  supported_resolutions?: string[];
  volume_precision?: number;
  data_status?: "streaming" | "endofday" | "delayed_streaming";
  [key: string]: unknown;
}

export interface DatafeedConfiguration {
  supported_resolutions: string[];
  supports_time: boolean;
  supports_marks: boolean;
  supports_timescale_marks: boolean;
  exchanges: unknown[];
  symbols_types: unknown[];
}

export interface PeriodParams {
  /** Seconds since the epoch, leftmost requested. */
  from: number;
  /** Seconds since the epoch, rightmost requested (not inclusive). */
  to: number;
  /** How many bars the chart wants (takes precedence over `from`). */
  countBack: number;
  /** The chart's first request for this symbol and resolution. */
  firstDataRequest: boolean;
}

export interface TickcastDatafeedOptions {
  /** Offered resolutions (default RESOLUTIONS: "1S", "1", "5", "60"). */
  resolutions?: string[];
  /** The most bars one getBars asks for (the server's --candle-keep; 1000). */
  maxLimit?: number;
  /** 10^decimals of prices in the symbol info (100). */
  pricescale?: number;
  exchange?: string;
  /** How callbacks are deferred (the library wants them asynchronous; default setTimeout 0). */
  defer?: (f: () => void) => void;
}

/** TradingView's Charting Library datafeed (IBasicDataFeed) over a TickcastClient. */
export class TickcastDatafeed {
  constructor(client: TickcastClient, options?: TickcastDatafeedOptions);
  readonly client: TickcastClient;
  onReady(callback: (configuration: DatafeedConfiguration) => void): void;
  searchSymbols(userInput: string, exchange: string, symbolType: string, onResult: (items: unknown[]) => void): void;
  resolveSymbol(symbolName: string, onResolve: (info: ChartSymbolInfo) => void, onError: (reason: string) => void, extension?: unknown): void;
  getBars(
    symbolInfo: ChartSymbolInfo, resolution: string, periodParams: PeriodParams,
    onResult: (bars: ChartBar[], meta: { noData: boolean }) => void, onError: (reason: string) => void,
  ): void;
  subscribeBars(
    symbolInfo: ChartSymbolInfo, resolution: string, onTick: (bar: ChartBar) => void, listenerGuid: string,
    onResetCacheNeededCallback?: () => void,
  ): void;
  unsubscribeBars(listenerGuid: string): void;
}

declare global {
  interface Window {
    /** Everything above, for pages that load /client.js as a module elsewhere. */
    Tickcast?: typeof import("./client.js");
    /** An embedding app's token source for the demo page. */
    TICKCAST_GET_TOKEN?: () => Promise<string | null> | string | null;
  }
}
