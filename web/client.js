// tickcast browser client: one connection, kept alive, holding the latest
// state of every subscribed symbol. Dependency-free ES module; with a plain
// <script> tag (no type=module) use window.Tickcast after loading
// /client.js as a module elsewhere, or import it:
//
//   import { TickcastClient } from "/client.js";          // or, from npm pack: "tickcast-client"
//   const client = new TickcastClient({ url: "ws://host/ws", symbols: ["AAPL"],
//                                       getToken: async () => fetchTokenFromYourBackend() });
//   client.addEventListener("tick", (e) => render(e.detail));
//   client.addEventListener("state", (e) => badge(e.detail));
//   client.connect();
//
// Events (CustomEvent, data in `detail`):
//   tick          the tick payload, only when newer than what the client holds
//   state         {state: "connecting" | "open" | "reconnecting" | "closed", inMs?, code?, reason?, transport?}
//                 (`transport` on "open": "websocket" or "sse"; `inMs` is null while the browser
//                 itself resumes an SSE stream, on its own schedule)
//   error         {code, message, symbol?, symbols?} from the server; {code: "refused", status, message}
//                 when the server refuses our tokens at the upgrade; {code: "client", message}
//   unsubscribed  {symbols, candles, reason}: the server ended these subscriptions itself (e.g. a
//                 refreshed token no longer entitles them); the client has forgotten them
//
// Candles (protocol §4c): client.subscribeCandles(symbol, interval, {limit}) returns a
// CandleSeries: the history (`limit` closed bars, oldest first, and the forming one) and every
// live `candle` merged into one ordered list of bars (`series.bars`; a bar with the same `start`
// is replaced, a new one appended, the oldest dropped past the limit), with events `reset`
// {bars, reason} and `bar` {bar, index, appended}. After a reconnect it resubscribes with `since`
// = the last seq it holds and merges what changed; a new epoch (a restarted server) starts it
// over (`reset` with reason "epoch"). Under SSE the series go into the stream's URL
// (`?candles=AAPL@1m&limit=300`). fetchCandles(symbol, interval, {limit, end}) asks GET /candles
// (authenticated as the refusal probe is); TickcastDatafeed adapts both to TradingView's Charting
// Library datafeed. Types of everything: client.d.ts beside this file (GET /client.d.ts).
//
// Staying within the server's limits: subscribes (and the resubscribe after a
// reconnect) are split into messages of at most the `max_message` bytes the
// server's `welcome` announces (4096 when it does not), and outgoing messages
// are paced (15 at once, then one per 150 ms) under its default rate limit of
// 10/s with a burst of 20. Symbols the server refuses (`invalid_symbol`,
// `forbidden`, `unknown_symbol`) or ends are dropped from the watch-list, so
// a reconnect does not ask for them again.
//
// With a `getToken` callback: a fresh token for every connect (query tokens
// are one-time), and a fresh one sent in an `auth` message before the
// connection's token expires (at 80% of its remaining life or 30 s before
// expiry, whichever comes first; retried twice on failure, after which the
// server's 4401 at expiry leads to a normal reconnect). A WebSocket that
// closes before it opened is probed with a plain GET of the /ws URL (with a
// fresh token, when there is a callback), which the server answers as it would
// the upgrade without taking anything (a browser cannot read the answer to a
// refused upgrade): 503/429 with Retry-After (a reconnect storm meeting
// --max-handshake-rate, a full or draining node) waits that long with the
// backoff on top; a 401/403 counts as a refusal (an `error` with the server's
// answer), and after 3 in a row the client stops (state `closed`, saying why)
// instead of retrying forever; a failed fetch or any other status is retried
// as usual. (Under SSE the probe is GET /snapshot, with a callback only.)
//
// Deploys: before the server closes a connection on purpose (a drain on
// SIGTERM, or --max-connection-age) it sends `reconnect` {after_ms, reason};
// the client then comes back after exactly after_ms (spread across clients by
// the server), not after its backoff. Under SSE a refused stream's `close`
// event carries retry_after_ms, waited for like Retry-After.
//
// Transports (option `transport`):
//   "auto" (default)  WebSocket first. When an attempt fails before it opens and the probe
//                     (GET /snapshot, as above, with or without a token) answers 200, the server
//                     is up but the WebSocket does not get through (a proxy refusing upgrades);
//                     after 2 such attempts in a row the client switches to Server-Sent Events
//                     for good (until close()). A connection that is not open within
//                     `openTimeoutMs` (10 s) counts as failed before it opened.
//   "websocket"       WebSocket only.
//   "sse"             Server-Sent Events only: an EventSource on the /sse next to `url`
//                     (ws→http, wss→https, …/ws→…/sse) with the symbols, and the token as
//                     `?token=`. Same events, same seq filter. The symbol set is part of the
//                     URL, so subscribe()/unsubscribe() reopen the stream (100 ms after the last
//                     change); the URL is kept under 8000 bytes (what proxies commonly accept):
//                     symbols beyond that get an `error` `too_many_symbols` and are dropped. A
//                     token cannot be refreshed on a stream: with `getToken` the stream is reopened
//                     with a fresh token when a refresh would be due. Reconnects use the backoff
//                     above, with a fresh token; only without `getToken` does the browser resume a
//                     lost stream by itself (once, sending Last-Event-ID, so that only the symbols
//                     that changed come again). EventSource cannot send headers, so with auth on,
//                     and after any reconnect the client makes itself, the server sends every
//                     symbol's snapshot again (the seq filter drops what the client already holds).
//                     The server's keep-alives are comments, which EventSource does not show: a
//                     silently dead stream is not noticed (no ping/pong as over WebSocket).
//
// Rates (option `intervalMs`): at most one update per symbol per that many ms, for a mobile page
// or a dashboard that repaints once a second. The server conflates on the way out (`interval_ms`
// in every subscribe, `?interval_ms=` on an SSE stream): the latest value always arrives, only
// the ones in between are skipped. It must be from the server's coalescing window (100 ms by
// default) to 3,600,000; a value outside gets an `error` `bad_request` and nothing subscribed.
//
// Encodings (option `encoding`, WebSocket only; SSE is always JSON):
//   "json" (default)  text frames of JSON.
//   "msgpack"         asks for the subprotocol `tickcast.msgpack`: every server message comes as a
//                     binary frame holding a MessagePack map, decoded by decodeMsgpack() below
//                     (requests stay JSON text). Integers beyond 2^53 become the nearest Number,
//                     as JSON.parse would make of the same digits.
//
// Options besides url, symbols and getToken: transport ("auto"), encoding ("json"),
// pingAfterMs (30000), pongTimeoutMs (10000), openTimeoutMs (10000); for tests:
// WebSocket, EventSource, fetch, random, now, setTimeout, clearTimeout.

/** Close codes after which reconnecting cannot help. */
export const NO_RECONNECT = new Set([1003, 1007, 1008, 1009]);
export const MAX_BACKOFF_MS = 60000;
/** The server's inbound message limit when its `welcome` does not say (servers before v1.1). */
export const DEFAULT_MAX_MESSAGE = 4096;
/** At most this many messages at once, then one per SEND_GAP_MS: under the server's default
 *  10/s with a burst of 20, leaving room for pings and token refreshes. */
export const SEND_BURST = 15;
export const SEND_GAP_MS = 150;
/** Refused upgrades in a row after which the client stops. */
export const MAX_REFUSALS = 3;
/** Failed token refreshes retried before leaving it to the server's 4401 at expiry. */
export const REFRESH_RETRIES = 2;
/** How long a refusal probe may take before it counts as a network failure. */
export const PROBE_TIMEOUT_MS = 10000;
/** Error codes whose symbols the server did not subscribe. */
export const REFUSED_SYMBOL_CODES = new Set(["invalid_symbol", "forbidden", "unknown_symbol"]);
/** Values of the `transport` and `encoding` options. */
export const TRANSPORTS = ["auto", "websocket", "sse"];
export const ENCODINGS = ["json", "msgpack"];
/** The WebSocket subprotocol that asks the server for MessagePack. */
export const MSGPACK_PROTOCOL = "tickcast.msgpack";
/** Under "auto": WebSocket attempts in a row that fail before opening while HTTP gets through,
 *  after which the client switches to SSE (two, so that a server restarting between the
 *  attempt and the probe does not send a client to SSE for good). */
export const FALLBACK_AFTER = 2;
/** A connection not open (WebSocket) or welcomed (SSE) by then has failed. */
export const OPEN_TIMEOUT_MS = 10000;
/** The longest `retry:` the server gives an SSE stream: how long the browser may wait before it
 *  resumes a lost stream by itself. */
export const SSE_RETRY_MAX_MS = 5000;
/** subscribe()/unsubscribe() under SSE reopen the stream this long after the last change. */
export const SSE_REOPEN_DELAY_MS = 100;
/** The longest /sse URL the client makes: proxies commonly refuse request lines over 8 KiB. */
export const MAX_SSE_URL = 8000;
/** Events of an SSE stream besides `error` (which EventSource also fires for a lost connection). */
export const SSE_EVENTS = ["welcome", "subscribed", "unsubscribed", "tick", "candles", "candle", "pong", "close", "mark", "reconnect"];
/** The longest wait the client takes from the server (`reconnect`'s after_ms, `Retry-After`). */
export const MAX_SERVER_WAIT_MS = 600000;

const SYMBOL = /^[A-Za-z0-9._:/-]{1,32}$/;
const utf8 = new TextEncoder();

/** Full-jitter exponential backoff: a random delay up to 1 s, 2 s, 4 s … 60 s. */
export function backoffDelay(attempt, random = Math.random) {
  return Math.floor(random() * Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt));
}

/** `Retry-After` (whole seconds) in ms, at most MAX_SERVER_WAIT_MS; null if absent or not a number. */
export function retryAfterMs(value) {
  if (typeof value !== "string" || !/^\s*\d{1,9}\s*$/.test(value)) return null;
  return Math.min(Number(value) * 1000, MAX_SERVER_WAIT_MS);
}

/** The plain-HTTP URL of the WebSocket endpoint (ws→http, wss→https), without query: what a
 *  failed upgrade is probed with. */
export function wsProbeUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** Whether to reconnect after a close with `code`; `canRefreshToken`: a token callback exists. */
export function shouldReconnect(code, canRefreshToken) {
  if (NO_RECONNECT.has(code)) return false;
  if (code === 4401) return canRefreshToken;
  return true;
}

/** Seconds since the epoch at which a JWT expires, or null if it cannot be read. */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = typeof atob === "function" ? atob(part) : Buffer.from(part, "base64").toString("binary");
    const exp = JSON.parse(json).exp;
    return typeof exp === "number" ? exp : null;
  } catch {
    return null;
  }
}

/** Whether `s` is a symbol by the protocol's rule (1 to 32 of A-Z a-z 0-9 . _ : / -). */
export function isSymbol(s) {
  return typeof s === "string" && SYMBOL.test(s);
}

/** Bytes of `s` in UTF-8: what the server's message limit counts. */
export function byteLength(s) {
  return utf8.encode(s).length;
}

/** The server's inbound message limit from its `welcome` payload. */
export function maxMessageOf(welcome) {
  const n = welcome && welcome.max_message;
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_MAX_MESSAGE;
}

/**
 * `subscribe` messages for `symbols`, each at most `maxBytes` bytes serialized.
 * `since` ({symbol: seq}, or null for none) goes into the message carrying the
 * symbol; `nextId()` numbers the messages. A symbol always fits alone when it
 * is valid and `maxBytes` is anything sensible (a message of one symbol is
 * about 120 bytes at most). With `intervalMs`, every message asks for at most
 * one update per symbol per that many ms (`interval_ms`).
 */
export function chunkSubscribe(symbols, since, maxBytes, nextId, intervalMs = null) {
  return chunkSymbols("subscribe", symbols, since, maxBytes, nextId, intervalMs);
}

/** `unsubscribe` messages for `symbols`, each at most `maxBytes` bytes serialized. */
export function chunkUnsubscribe(symbols, maxBytes, nextId) {
  return chunkSymbols("unsubscribe", symbols, null, maxBytes, nextId);
}

function chunkSymbols(type, symbols, since, maxBytes, nextId, intervalMs = null, key = "symbols", extra = null) {
  const chunks = [];
  let chunk = null;
  for (const symbol of symbols) {
    const seq = since && Object.hasOwn(since, symbol) ? since[symbol] : undefined;
    if (chunk === null || chunk.bytes + entryBytes(chunk, symbol, seq) > maxBytes) {
      chunk = emptyChunk(type, nextId(), since !== null && since !== undefined, intervalMs, key, extra);
      chunks.push(chunk);
    }
    chunk.bytes += entryBytes(chunk, symbol, seq);
    chunk.msg.payload[key].push(symbol);
    if (seq !== undefined) {
      chunk.msg.payload.since[symbol] = seq;
      chunk.sinceCount++;
    }
  }
  return chunks.map((c) => c.msg);
}

function emptyChunk(type, id, withSince, intervalMs, key, extra) {
  const payload = { [key]: [] };
  if (withSince) payload.since = {};
  if (intervalMs !== null && intervalMs !== undefined) payload.interval_ms = intervalMs;
  if (extra) Object.assign(payload, extra);
  const msg = { type, id, payload };
  return { msg, key, bytes: byteLength(JSON.stringify(msg)), sinceCount: 0 };
}

/** What one more symbol adds to a chunk's serialized size: its quoted name in
 *  `symbols` and, with a seq, `"name":seq` in `since`, each with a comma unless first. */
function entryBytes(chunk, symbol, seq) {
  const name = byteLength(JSON.stringify(symbol));
  let bytes = name + (chunk.msg.payload[chunk.key].length > 0 ? 1 : 0);
  if (seq !== undefined) bytes += name + 1 + byteLength(JSON.stringify(seq)) + (chunk.sinceCount > 0 ? 1 : 0);
  return bytes;
}

/**
 * A token bucket on the client's side of the server's inbound rate limit: full
 * (`burst`) on a new connection, as the server's is, one more token every `gapMs`.
 */
export class SendBudget {
  constructor(burst = SEND_BURST, gapMs = SEND_GAP_MS) {
    this.burst = burst;
    this.gapMs = gapMs;
    this.reset();
  }
  reset() {
    this.tokens = this.burst;
    this.at = null;
  }
  /** 0 if a message may go at `nowMs` (and spends a token for it), else the ms to wait. */
  take(nowMs) {
    if (this.at !== null) this.tokens = Math.min(this.burst, this.tokens + (nowMs - this.at) / this.gapMs);
    this.at = nowMs;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.tokens) * this.gapMs));
  }
}

/**
 * When to refresh a token expiring at `expSec` (seconds since the epoch), in ms
 * from `nowMs`: at 80% of its remaining life or 30 s before it expires,
 * whichever comes first, but never sooner than 1 s from now.
 */
export function refreshDelayMs(expSec, nowMs) {
  const left = expSec * 1000 - nowMs;
  return Math.max(1000, Math.floor(Math.min(0.8 * left, left - 30000)));
}

/**
 * When to retry the `failures`-th failed refresh (1, 2 …) of a token expiring
 * at `expSec`: after 1 s, 2 s … but within the first half of the time left;
 * null when less than 1 s is left (the server's 4401 at expiry takes over).
 */
export function refreshRetryDelayMs(failures, expSec, nowMs) {
  const left = expSec * 1000 - nowMs;
  if (!(left > 1000)) return null;
  return Math.floor(Math.min(1000 * 2 ** (failures - 1), left / 2));
}

/** The http(s) URL of `name` next to a /ws URL (ws→http, wss→https, last path segment
 *  replaced), without query or fragment. */
function httpUrlNextTo(wsUrl, name) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/[^/]*$/, name);
  u.search = "";
  u.hash = "";
  return u.toString();
}

/** `?symbols=A,B`, each name percent-encoded (the server decodes, then splits at commas). */
function symbolsQuery(symbols) {
  return "?symbols=" + symbols.map(encodeURIComponent).join(",");
}

/** The /snapshot URL next to a /ws URL, asking for `symbols` (none by default: the cheapest probe). */
export function snapshotUrl(wsUrl, symbols = []) {
  return httpUrlNextTo(wsUrl, "snapshot") + symbolsQuery(symbols);
}

/**
 * The /sse URL next to a /ws URL for `symbols`, with `token` as `?token=` when given, and
 * `lastEventId` (a mark the stream sent) to resume from: only what changed since comes again.
 * `candles`: candle series (`SYMBOL@INTERVAL`) streamed too, their history `limit` bars long
 * (`symbols` is left out when empty and there are series).
 */
export function sseUrl(wsUrl, symbols, token = null, lastEventId = null, intervalMs = null, candles = [], limit = null) {
  let url = httpUrlNextTo(wsUrl, "sse");
  if (symbols.length > 0 || candles.length === 0) url += symbolsQuery(symbols);
  if (candles.length > 0) {
    url += (symbols.length > 0 ? "&" : "?") + "candles=" + candles.map(encodeURIComponent).join(",");
    if (limit !== null && limit !== undefined) url += "&limit=" + limit;
  }
  if (token) url += "&token=" + encodeURIComponent(token);
  if (intervalMs !== null && intervalMs !== undefined) url += "&interval_ms=" + intervalMs;
  if (lastEventId) url += "&lastEventId=" + encodeURIComponent(lastEventId);
  return url;
}

/**
 * The leading `symbols` whose /sse URL (with `token`) stays within `maxLength`
 * characters, and the rest: {kept, dropped}.
 */
export function fitSseSymbols(wsUrl, symbols, token = null, maxLength = MAX_SSE_URL, intervalMs = null) {
  let length = sseUrl(wsUrl, [], token, null, intervalMs).length;
  let n = 0;
  for (; n < symbols.length; n++) {
    length += encodeURIComponent(symbols[n]).length + (n > 0 ? 1 : 0);
    if (length > maxLength) break;
  }
  return { kept: symbols.slice(0, n), dropped: symbols.slice(n) };
}

/**
 * The leading candle series `candles` (`SYMBOL@INTERVAL`) that still fit in an /sse URL
 * (within `maxLength` characters) beside `symbols` (those fitSseSymbols kept), with their
 * `limit`, and the rest: {kept, dropped}.
 */
export function fitSseCandles(wsUrl, symbols, candles, token = null, maxLength = MAX_SSE_URL, intervalMs = null, limit = null) {
  if (candles.length === 0) return { kept: [], dropped: [] };
  let length = sseUrl(wsUrl, symbols, token, null, intervalMs, [candles[0]], limit).length - encodeURIComponent(candles[0]).length;
  let n = 0;
  for (; n < candles.length; n++) {
    length += encodeURIComponent(candles[n]).length + (n > 0 ? 1 : 0);
    if (length > maxLength) break;
  }
  return { kept: candles.slice(0, n), dropped: candles.slice(n) };
}

/** Arguments of `new WebSocket(url, …)` beyond the URL for an encoding: JSON asks for nothing
 *  (servers before v1.1 refuse a subprotocol they do not know). */
export function wsProtocols(encoding) {
  return encoding === "msgpack" ? [MSGPACK_PROTOCOL] : [];
}

/** Gives up on a probe that hangs (a black-holed network) so that the client retries. */
function probeSignal() {
  return typeof AbortSignal !== "undefined" && AbortSignal.timeout ? AbortSignal.timeout(PROBE_TIMEOUT_MS) : undefined;
}

/** Symbols an `error` payload says were not subscribed, or [] for other errors. */
export function refusedSymbols(payload) {
  if (!payload || !REFUSED_SYMBOL_CODES.has(payload.code)) return [];
  if (Array.isArray(payload.symbols)) return payload.symbols;
  return typeof payload.symbol === "string" ? [payload.symbol] : [];
}

/** Error codes whose candle series the server did not subscribe. */
export const REFUSED_SERIES_CODES = new Set([...REFUSED_SYMBOL_CODES, "bad_request"]);

/** Candle series (`SYMBOL@INTERVAL`) an `error` payload says were not subscribed, or []. */
export function refusedSeries(payload) {
  if (!payload || !REFUSED_SERIES_CODES.has(payload.code)) return [];
  const named = [
    ...(Array.isArray(payload.candles) ? payload.candles : []),
    ...(Array.isArray(payload.symbols) ? payload.symbols : []),
    ...(typeof payload.symbol === "string" ? [payload.symbol] : []),
  ];
  return [...new Set(named.filter((n) => typeof n === "string" && n.includes("@")))];
}

// ---------------------------------------------------------------- MessagePack

/** Thrown for bytes decodeMsgpack() does not take: cut off, trailing, invalid, or of a type it does not read. */
export class MsgpackError extends Error {
  constructor(what, at) {
    super(`msgpack: ${what} at byte ${at}`);
    this.name = "MsgpackError";
    this.at = at;
  }
}

/** A GET /candles the server did not answer with 200: its `status` and its message (0: no token to ask with). */
export class CandlesError extends Error {
  constructor(status, message) {
    super(status ? `GET /candles: ${status} ${message}` : `GET /candles: ${message}`);
    this.name = "CandlesError";
    this.status = status;
  }
}

/** How deep maps and arrays may nest (the server's messages are 3 deep): a bound on recursion. */
export const MSGPACK_MAX_DEPTH = 64;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes one MessagePack value filling all of `bytes` (a Uint8Array or
 * ArrayBuffer), as a JSON decoder would give the same message: maps → plain
 * objects (keys str, or int keys as strings), arrays, str, nil → null, bool,
 * ints, float 32/64 → Number, bin → a Uint8Array (a copy). A 64-bit int
 * beyond ±(2^53 − 1) becomes the nearest Number (what JSON.parse makes of
 * its digits), or a BigInt with `{bigInt: true}`. Ext types (and 0xc1) are
 * refused: MsgpackError.
 */
export function decodeMsgpack(bytes, { bigInt = false } = {}) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const r = { u8, view: new DataView(u8.buffer, u8.byteOffset, u8.byteLength), pos: 0, bigInt };
  const value = readValue(r, 0);
  if (r.pos !== u8.length) throw new MsgpackError(`${u8.length - r.pos} bytes after the value`, r.pos);
  return value;
}

function readValue(r, depth) {
  const at = r.pos;
  const b = readUint(r, 1);
  if (b <= 0x7f) return b;                                  // positive fixint
  if (b >= 0xe0) return b - 0x100;                          // negative fixint
  if (b <= 0x8f) return readMap(r, b & 0x0f, depth, at);    // fixmap
  if (b <= 0x9f) return readArray(r, b & 0x0f, depth, at);  // fixarray
  if (b <= 0xbf) return readStr(r, b & 0x1f);               // fixstr
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return readBin(r, readUint(r, 1));
    case 0xc5: return readBin(r, readUint(r, 2));
    case 0xc6: return readBin(r, readUint(r, 4));
    case 0xca: return r.view.getFloat32(advance(r, 4));
    case 0xcb: return r.view.getFloat64(advance(r, 8));
    case 0xcc: return readUint(r, 1);
    case 0xcd: return readUint(r, 2);
    case 0xce: return readUint(r, 4);
    case 0xcf: return readInt64(r, false);
    case 0xd0: return r.view.getInt8(advance(r, 1));
    case 0xd1: return r.view.getInt16(advance(r, 2));
    case 0xd2: return r.view.getInt32(advance(r, 4));
    case 0xd3: return readInt64(r, true);
    case 0xd9: return readStr(r, readUint(r, 1));
    case 0xda: return readStr(r, readUint(r, 2));
    case 0xdb: return readStr(r, readUint(r, 4));
    case 0xdc: return readArray(r, readUint(r, 2), depth, at);
    case 0xdd: return readArray(r, readUint(r, 4), depth, at);
    case 0xde: return readMap(r, readUint(r, 2), depth, at);
    case 0xdf: return readMap(r, readUint(r, 4), depth, at);
    default:
      throw new MsgpackError(b === 0xc1 ? "0xc1 (never used)" : `ext type 0x${b.toString(16)} (not supported)`, at);
  }
}

/** The position of the next `n` bytes, which must be there; moves past them. */
function advance(r, n) {
  if (r.pos + n > r.u8.length) throw new MsgpackError(`cut off (${n} bytes wanted, ${r.u8.length - r.pos} left)`, r.pos);
  const at = r.pos;
  r.pos += n;
  return at;
}

function readUint(r, n) {
  const at = advance(r, n);
  return n === 1 ? r.u8[at] : n === 2 ? r.view.getUint16(at) : r.view.getUint32(at);
}

function readInt64(r, signed) {
  const at = advance(r, 8);
  const hi = signed ? r.view.getInt32(at) : r.view.getUint32(at);
  const lo = r.view.getUint32(at + 4);
  // hi · 2^32 is exact and the sum rounds once: the nearest Number to the true value.
  const n = hi * 4294967296 + lo;
  if (!r.bigInt || Number.isSafeInteger(n)) return n;
  return (BigInt(hi) << 32n) + BigInt(lo);
}

function readStr(r, n) {
  const at = advance(r, n);
  try {
    return strictUtf8.decode(r.u8.subarray(at, at + n));
  } catch {
    throw new MsgpackError("a str that is not UTF-8", at);
  }
}

function readBin(r, n) {
  const at = advance(r, n);
  return r.u8.slice(at, at + n);
}

/** Every item takes at least a byte: a length beyond what is left is refused before any allocation. */
function checkItems(r, items, depth, at) {
  if (depth >= MSGPACK_MAX_DEPTH) throw new MsgpackError(`nested deeper than ${MSGPACK_MAX_DEPTH}`, at);
  if (items > r.u8.length - r.pos) throw new MsgpackError(`cut off (${items} items announced, ${r.u8.length - r.pos} bytes left)`, at);
}

function readArray(r, n, depth, at) {
  checkItems(r, n, depth, at);
  const out = [];
  for (let i = 0; i < n; i++) out.push(readValue(r, depth + 1));
  return out;
}

function readMap(r, n, depth, at) {
  checkItems(r, 2 * n, depth, at);
  const out = {};
  for (let i = 0; i < n; i++) {
    const keyAt = r.pos;
    const key = readValue(r, depth + 1);
    if (typeof key !== "string" && typeof key !== "number") throw new MsgpackError(`a map key of type ${key === null ? "nil" : typeof key}`, keyAt);
    const value = readValue(r, depth + 1);
    // As JSON.parse does: "__proto__" is an own property, never the object's prototype.
    if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    else out[key] = value;
  }
  return out;
}

/** The latest state per symbol; refuses anything not newer (by seq) than what it holds. */
export class Book {
  constructor() {
    this.bySymbol = new Map();
  }
  /** Takes a tick payload if it is newer; returns whether it did. */
  accept(tick) {
    const held = this.bySymbol.get(tick.symbol);
    if (held && tick.seq <= held.seq) return false;
    this.bySymbol.set(tick.symbol, tick);
    return true;
  }
  get(symbol) {
    return this.bySymbol.get(symbol);
  }
  delete(symbol) {
    this.bySymbol.delete(symbol);
  }
  clear() {
    this.bySymbol.clear();
  }
  /** `since` for a resubscribe: the seq held per symbol. */
  since(symbols) {
    const since = {};
    for (const s of symbols) {
      const held = this.bySymbol.get(s);
      if (held) since[s] = held.seq;
    }
    return since;
  }
}

// ---------------------------------------------------------------- candles

/** Bars of history a candle subscription asks for when not told (the server's default too). */
export const CANDLE_LIMIT = 300;
/** The intervals a server serves by default (`--candle-intervals`). */
export const CANDLE_INTERVALS = ["1s", "1m", "5m", "1h"];
const INTERVAL = /^([1-9][0-9]{0,5})(s|m|h|d)$/;
const INTERVAL_UNIT_MS = { s: 1000, m: 60000, h: 3600000, d: 86400000 };

/** Whether `s` is written as an interval is (`1s`, `1m`, `5m`, `1h`, `1d` …); the server says which it serves. */
export function isInterval(s) {
  return typeof s === "string" && INTERVAL.test(s);
}

/** An interval's length in ms (`"5m"` → 300000), or null for what is not an interval. */
export function intervalMs(interval) {
  const m = typeof interval === "string" ? INTERVAL.exec(interval) : null;
  return m ? Number(m[1]) * INTERVAL_UNIT_MS[m[2]] : null;
}

/** The protocol's name of a candle series: `SYMBOL@INTERVAL` (`@` is not a symbol character). */
export function seriesName(symbol, interval) {
  return `${symbol}@${interval}`;
}

/** `{symbol, interval}` of a series name, or null when it is not `SYMBOL@INTERVAL`. */
export function parseSeriesName(name) {
  if (typeof name !== "string") return null;
  const at = name.lastIndexOf("@");
  if (at < 0) return null;
  const symbol = name.slice(0, at), interval = name.slice(at + 1);
  return isSymbol(symbol) && isInterval(interval) ? { symbol, interval } : null;
}

/**
 * `subscribe` messages for candle series (`SYMBOL@INTERVAL`), each at most `maxBytes` bytes,
 * each asking for `limit` bars of history; `since` ({name: seq}, or null) goes into the
 * message carrying the series, as for symbols.
 */
export function chunkCandleSubscribe(names, since, limit, maxBytes, nextId) {
  return chunkSymbols("subscribe", names, since, maxBytes, nextId, null, "candles", limit === null || limit === undefined ? null : { limit });
}

/** `unsubscribe` messages for candle series, each at most `maxBytes` bytes. */
export function chunkCandleUnsubscribe(names, maxBytes, nextId) {
  return chunkSymbols("unsubscribe", names, null, maxBytes, nextId, null, "candles");
}

/** The /candles URL next to a /ws URL: the last `limit` closed bars of `symbol` at `interval` (and the forming one),
 *  those starting before `end` (µs) when given. */
export function candlesUrl(wsUrl, symbol, interval, { limit = null, end = null } = {}) {
  let url = httpUrlNextTo(wsUrl, "candles") + "?symbol=" + encodeURIComponent(symbol) + "&interval=" + encodeURIComponent(interval);
  if (limit !== null && limit !== undefined) url += "&limit=" + limit;
  if (end !== null && end !== undefined) url += "&end=" + end;
  return url;
}

/** The index of the first bar in `bars` (by `start`, ascending) whose start is at least `start`. */
function barIndex(bars, start) {
  let lo = 0, hi = bars.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (bars[mid].start < start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Merges one bar into `bars` (ordered by `start`, oldest first) in place: replaces the bar
 * with the same `start` unless the one held is as new or newer by `seq`, else inserts it in
 * order. Returns {index, appended} when it changed `bars`, else null.
 */
export function mergeBar(bars, bar) {
  const i = barIndex(bars, bar.start);
  if (i < bars.length && bars[i].start === bar.start) {
    if (bars[i].seq >= bar.seq) return null;
    bars[i] = bar;
    return { index: i, appended: false };
  }
  bars.splice(i, 0, bar);
  return { index: i, appended: i === bars.length - 1 };
}

/** The last `limit` closed bars of a history and its forming bar (`closed: false`), if any. */
export function trimHistory(bars, limit) {
  const sorted = [...bars].sort((a, b) => a.start - b.start);
  const forming = sorted.length && !sorted.at(-1).closed ? sorted.pop() : null;
  const closed = sorted.slice(Math.max(0, sorted.length - limit));
  return forming ? [...closed, forming] : closed;
}

/** A bar as a charting library takes it: `time` in ms since the epoch (the bar's start). */
export function toChartBar(bar) {
  return { time: Math.floor(bar.start / 1000), open: bar.open, high: bar.high, low: bar.low, close: bar.close, volume: bar.volume };
}

/**
 * One candle series (symbol and interval) kept by a TickcastClient: its history and the
 * live changes merged into one list of bars, oldest first (`bars`), holding the last `limit`
 * closed bars and the forming one (with `maxBars`: maxBars − 1 closed bars and the forming
 * one). Made by client.subscribeCandles().
 *
 * Events (CustomEvent, data in `detail`):
 *   reset         {bars, reason}: the whole list replaced: the history arrived ("history"), the
 *                 server restarted with a new epoch and the history is another ("epoch"), or a
 *                 larger `limit` was asked for ("limit")
 *   bar           {bar, index, appended}: one bar changed (replaced at `index`) or was added
 *                 (`appended`: at the end, a new newest bar); after a reconnect, every bar that
 *                 changed meanwhile, in order
 *   error         {code, message, ...}: the server refused the series (it is no longer subscribed)
 *   unsubscribed  {reason}: the series ended (the server's reason, e.g. "forbidden", or "client")
 */
export class CandleSeries extends EventTarget {
  constructor(client, symbol, interval, limit, maxBars) {
    super();
    this.client = client;
    this.symbol = symbol;
    this.interval = interval;
    this.name = seriesName(symbol, interval);
    this.limit = limit;
    this.maxBars = maxBars;
    /** @type {object[]} the bars, oldest first; the last one may be forming (`closed: false`) */
    this.bars = [];
    /** The highest `seq` merged: where a resubscribe resumes (`since`); 0 for none. */
    this.lastSeq = 0;
    /** Whether the history has arrived. */
    this.ready = false;
    /** Whether the series is subscribed (false after unsubscribe, or once the server ended it). */
    this.active = true;
    this.holds = 1;
    this.needsReset = "history"; // why the next history replaces the bars instead of merging into them, or null
    this.epochStale = false;  // the bars are of another epoch: live bars wait for the new history
  }

  /** The newest bar (the forming one while there is one), or undefined. */
  latest() {
    return this.bars.at(-1);
  }

  /** The closed bars (all but a forming last one). */
  closedBars() {
    return this.bars.length && !this.bars.at(-1).closed ? this.bars.slice(0, -1) : this.bars.slice();
  }

  /** Lets go of this series (as client.unsubscribeCandles(symbol, interval)). */
  unsubscribe() {
    this.client.unsubscribeCandles(this.symbol, this.interval);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** A history (`candles`): replaces the bars when a reset is due, else merges them in. */
  _history(bars) {
    if (this.needsReset) {
      this.bars = trimHistory(bars, this.limit);
      this._bound();
      this.lastSeq = this.bars.reduce((m, b) => Math.max(m, b.seq), 0);
      this.epochStale = false;
      this.ready = true;
      const reason = this.needsReset;
      this.needsReset = null;
      return this._emit("reset", { bars: this.bars, reason });
    }
    this.ready = true;
    for (const bar of [...bars].sort((a, b) => a.start - b.start)) this._live(bar, true);
  }

  /** A live bar (`candle`), or one of a history merged in (`merging`: by each bar's seq alone). */
  _live(bar, merging = false) {
    if (this.epochStale) return;
    // Live bars come in seq order: one not above the last is a repeat.
    if (!merging && bar.seq <= this.lastSeq) return;
    this.lastSeq = Math.max(this.lastSeq, bar.seq);
    const merged = mergeBar(this.bars, bar);
    if (!merged) return;
    const dropped = this._bound();
    // Older than anything held while the list is full: trimmed away at once, no news.
    if (merged.index < dropped) return;
    this._emit("bar", { bar, index: merged.index - dropped, appended: merged.appended });
  }

  /** Drops the oldest bars beyond maxBars (closed ones beyond maxBars − 1: room for the forming
   *  one, so by default the last `limit` closed bars stay); returns how many. */
  _bound() {
    const forming = this.bars.length > 0 && !this.bars.at(-1).closed ? 1 : 0;
    const over = this.bars.length - forming - Math.max(1, this.maxBars - 1);
    if (over > 0) this.bars.splice(0, over);
    return Math.max(0, over);
  }

  /** A new epoch: seqs start over; the bars stay shown until the new history replaces them. */
  _newEpoch() {
    this.lastSeq = 0;
    this.needsReset = "epoch";
    this.epochStale = true;
  }

  _end(reason) {
    this.active = false;
    this._emit("unsubscribed", { reason });
  }
}

// ---------------------------------------------------------------- a charting library's datafeed

/** The resolutions TickcastDatafeed offers by default: 1s, 1m, 5m and 1h bars (CANDLE_INTERVALS). */
export const RESOLUTIONS = ["1S", "1", "5", "60"];

/**
 * A charting library's resolution ("1S", "15S", "1", "5", "60", "240", "1D") as a tickcast
 * interval ("1s", "15s", "1m", "5m", "1h", "4h", "1d"); null for one it has no name for.
 */
export function resolutionToInterval(resolution) {
  const r = String(resolution);
  let m;
  if ((m = /^([1-9][0-9]*)S$/.exec(r))) return `${m[1]}s`;
  if ((m = /^([1-9][0-9]*)$/.exec(r))) {
    const minutes = Number(m[1]);
    return minutes % 60 === 0 ? `${minutes / 60}h` : `${minutes}m`;
  }
  if ((m = /^([1-9][0-9]*)?D$/.exec(r))) return `${m[1] ?? 1}d`;
  return null;
}

/** The charting library's resolution for a tickcast interval ("1m" → "1", "1h" → "60", "1s" → "1S"). */
export function intervalToResolution(interval) {
  const m = typeof interval === "string" ? INTERVAL.exec(interval) : null;
  if (!m) return null;
  const n = Number(m[1]);
  return { s: `${n}S`, m: `${n}`, h: `${n * 60}`, d: `${n}D` }[m[2]];
}

/**
 * A datafeed in the shape of TradingView's Charting Library (IBasicDataFeed) over a
 * TickcastClient: history from GET /candles (getBars), live bars from a candle
 * subscription (subscribeBars). Bars are {time (ms), open, high, low, close, volume}.
 *
 *   const datafeed = new TickcastDatafeed(client);
 *   new TradingView.widget({ datafeed, symbol: "AAPL", interval: "1", ... });
 */
export class TickcastDatafeed {
  /**
   * @param {TickcastClient} client
   * @param {object} [o]
   * @param {string[]} [o.resolutions]  offered resolutions (default: those of RESOLUTIONS)
   * @param {number} [o.maxLimit]       bars one getBars asks for at most (the server's --candle-keep, 1000)
   * @param {number} [o.pricescale]     symbol info: 10^decimals of prices (100)
   * @param {(setTimeout: (f: () => void) => void)} [o.defer]  how callbacks are deferred (the library wants them async)
   */
  constructor(client, { resolutions = RESOLUTIONS, maxLimit = 1000, pricescale = 100, exchange = "tickcast",
                        defer = (f) => setTimeout(f, 0) } = {}) {
    this.client = client;
    this.resolutions = resolutions;
    this.maxLimit = maxLimit;
    this.pricescale = pricescale;
    this.exchange = exchange;
    this.defer = defer;
    this.listeners = new Map();   // listenerGuid → {series, onBar, onReset}
  }

  onReady(callback) {
    this.defer(() => callback({
      supported_resolutions: this.resolutions,
      supports_time: false,
      supports_marks: false,
      supports_timescale_marks: false,
      exchanges: [],
      symbols_types: [],
    }));
  }

  searchSymbols(_userInput, _exchange, _symbolType, onResult) {
    this.defer(() => onResult([]));
  }

  resolveSymbol(symbolName, onResolve, onError) {
    const symbol = String(symbolName).replace(/^[^:]*::/, "");
    if (!isSymbol(symbol)) return this.defer(() => onError(`not a symbol: ${symbolName}`));
    const seconds = this.resolutions.filter((r) => /S$/.test(r)).map((r) => r.slice(0, -1));
    const minutes = this.resolutions.filter((r) => /^[0-9]+$/.test(r));
    this.defer(() => onResolve({
      name: symbol,
      ticker: symbol,
      full_name: symbol,
      description: symbol,
      type: "stock",
      session: "24x7",
      timezone: "Etc/UTC",
      exchange: this.exchange,
      listed_exchange: this.exchange,
      format: "price",
      minmov: 1,
      pricescale: this.pricescale,
      has_intraday: true,
      has_seconds: seconds.length > 0,
      seconds_multipliers: seconds,
      intraday_multipliers: minutes,
      has_daily: this.resolutions.some((r) => /D$/.test(r)),
      supported_resolutions: this.resolutions,
      volume_precision: 0,
      data_status: "streaming",
    }));
  }

  /** The tickcast symbol and interval of a symbol info and resolution, or an error message. */
  _series(symbolInfo, resolution) {
    const symbol = symbolInfo?.ticker || symbolInfo?.name;
    const interval = resolutionToInterval(resolution);
    if (!isSymbol(symbol)) return { error: `not a symbol: ${symbol}` };
    if (interval === null || !this.resolutions.includes(String(resolution))) return { error: `resolution not supported: ${resolution}` };
    return { symbol, interval };
  }

  /**
   * History for the chart: `countBack` bars (at least one, at most `maxLimit`) before `to`
   * (seconds; the first request: up to now, the forming bar included), oldest first;
   * `{noData: true}` when there are none (no more history).
   */
  getBars(symbolInfo, resolution, periodParams, onResult, onError) {
    const s = this._series(symbolInfo, resolution);
    if (s.error) return this.defer(() => onError(s.error));
    const { from, to, countBack, firstDataRequest } = periodParams;
    const span = intervalMs(s.interval);
    // Enough bars for both what `from`…`to` covers and countBack: the library takes the larger.
    const wanted = Math.max(countBack || 0, Math.ceil(((to - from) * 1000) / span), 1);
    const limit = Math.min(wanted, this.maxLimit);
    const end = firstDataRequest ? null : Math.round(to * 1e6);
    this.client.fetchCandles(s.symbol, s.interval, { limit, end }).then(
      (r) => {
        const bars = r.bars.map(toChartBar);
        onResult(bars, { noData: bars.length === 0 });
      },
      (e) => onError(e.message || String(e)),
    );
  }

  /**
   * Live bars: the forming bar as it changes and each new one, through `onTick`, never one
   * older than the last it gave; `onResetCacheNeeded` when the history changed under the
   * chart (the server restarted with a new epoch, or an older bar changed).
   */
  subscribeBars(symbolInfo, resolution, onTick, listenerGuid, onResetCacheNeeded) {
    const s = this._series(symbolInfo, resolution);
    if (s.error) return;
    this.unsubscribeBars(listenerGuid);
    const series = this.client.subscribeCandles(s.symbol, s.interval, { limit: 2 });
    let lastTime = -Infinity;
    let seenHistory = series.ready;
    const give = (bar) => {
      const b = toChartBar(bar);
      if (b.time < lastTime) {
        if (onResetCacheNeeded) onResetCacheNeeded();
        return;
      }
      lastTime = b.time;
      onTick(b);
    };
    const onBar = (e) => give(e.detail.bar);
    const onReset = (e) => {
      // A longer history of the same bars changes nothing the chart holds; a new epoch may.
      if (seenHistory && e.detail.reason === "epoch" && onResetCacheNeeded) {
        lastTime = -Infinity;
        onResetCacheNeeded();
      }
      seenHistory = true;
      const last = e.detail.bars.at(-1);
      if (last) give(last);
    };
    series.addEventListener("bar", onBar);
    series.addEventListener("reset", onReset);
    this.listeners.set(listenerGuid, { series, onBar, onReset });
    if (series.ready && series.latest()) give(series.latest());
  }

  unsubscribeBars(listenerGuid) {
    const l = this.listeners.get(listenerGuid);
    if (!l) return;
    this.listeners.delete(listenerGuid);
    l.series.removeEventListener("bar", l.onBar);
    l.series.removeEventListener("reset", l.onReset);
    l.series.unsubscribe();
  }
}

export class TickcastClient extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.url            ws:// or wss:// URL of /ws (without a token); /sse and /snapshot are next to it
   * @param {string[]} [o.symbols]    symbols to subscribe to
   * @param {() => Promise<string|null>|string|null} [o.getToken]  called for a fresh token before
   *                                  every connect, every refresh and every refusal probe
   * @param {"auto"|"websocket"|"sse"} [o.transport]  "auto": WebSocket, falling back to SSE when it cannot get through
   * @param {"json"|"msgpack"} [o.encoding]  what the WebSocket carries (SSE is JSON)
   * @param {number|null} [o.intervalMs] at most one update per symbol per this many ms (`interval_ms`;
   *                                  from the server's coalescing window, 100 by default, to 3,600,000);
   *                                  null (default): every update
   * @param {number} [o.pingAfterMs]  send a `ping` after this long without a message (30 s; WebSocket only)
   * @param {number} [o.pongTimeoutMs] treat the connection as dead without a `pong` by then (10 s)
   * @param {number} [o.openTimeoutMs] a connection not open (SSE: welcomed) by then has failed (10 s)
   */
  constructor({ url, symbols = [], getToken = null, transport = "auto", encoding = "json", intervalMs = null,
                pingAfterMs = 30000, pongTimeoutMs = 10000, openTimeoutMs = OPEN_TIMEOUT_MS,
                WebSocket: WS = globalThis.WebSocket, EventSource: ES = globalThis.EventSource,
                fetch = (...a) => globalThis.fetch(...a),
                random = Math.random, now = () => Date.now(),
                setTimeout = (f, ms) => globalThis.setTimeout(f, ms), clearTimeout = (t) => globalThis.clearTimeout(t) }) {
    super();
    if (!TRANSPORTS.includes(transport)) throw new TypeError(`transport must be one of ${TRANSPORTS.join(", ")}, not ${transport}`);
    if (!ENCODINGS.includes(encoding)) throw new TypeError(`encoding must be one of ${ENCODINGS.join(", ")}, not ${encoding}`);
    if (intervalMs !== null && !(Number.isInteger(intervalMs) && intervalMs > 0)) {
      throw new TypeError(`intervalMs must be a positive integer (ms) or null, not ${intervalMs}`);
    }
    this.url = url;
    this.symbols = new Set(symbols);
    this.getToken = getToken;
    this.transportOption = transport;
    this.transport = transport === "sse" ? "sse" : "websocket"; // of the current (or next) connection
    this.encoding = encoding;
    this.intervalMs = intervalMs;
    this.pingAfterMs = pingAfterMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.openTimeoutMs = openTimeoutMs;
    this.WS = WS;
    this.ES = ES;
    this.fetch = fetch;
    this.random = random;
    this.now = now;
    this.setTimeout = setTimeout;
    this.clearTimeout = clearTimeout;
    this.book = new Book();
    this.budget = new SendBudget();
    this.outbox = [];              // serialized messages waiting for the budget
    this.attempt = 0;
    this.nextId = 1;
    this.conn = null;              // the WebSocket or EventSource of the current attempt
    this.opened = false;           // whether it opened (SSE: was welcomed)
    this.streamSymbols = [];       // the symbols in the current SSE stream's URL
    this.streamCandles = [];       // the candle series in it
    this.candles = new Map();      // series name (SYMBOL@INTERVAL) → CandleSeries
    this.noStream = false;         // under SSE with nothing to watch: no stream, until a subscribe()
    this.browserResumes = false;   // an SSE stream the browser is reconnecting by itself
    this.blocked = 0;              // WebSocket attempts in a row that failed while HTTP got through
    this.token = null;             // the token the current connection was opened with
    this.exp = null;               // when the connection's token expires (s since the epoch)
    this.refreshId = null;         // id of the `auth` message awaiting its answer
    this.refreshToken = null;
    this.refreshFailures = 0;
    this.refusals = 0;
    this.serverWait = null;        // {ms, exact}: the wait the server asked for before the next attempt
    this.maxMessage = DEFAULT_MAX_MESSAGE;
    this.run = 0;                  // bumped by connect(), close() and reopens: stale async work checks it
    this.state = "idle";
    this.stopped = false;
    this.epoch = undefined;
    this.mark = null;              // the last SSE mark {id, symbols}: where a reopened stream resumes
    this.timers = { retry: null, silence: null, pong: null, refresh: null, pace: null, open: null, reopen: null };
  }

  /** The current connection's WebSocket, or null (none, or SSE). */
  get ws() {
    return this.transport === "websocket" ? this.conn : null;
  }

  /** The current connection's EventSource, or null (none, or WebSocket). */
  get es() {
    return this.transport === "sse" ? this.conn : null;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, ...extra });
  }

  _clear(name) {
    if (this.timers[name] !== null) this.clearTimeout(this.timers[name]);
    this.timers[name] = null;
  }

  _after(name, ms, f) {
    this._clear(name);
    this.timers[name] = this.setTimeout(f, ms);
  }

  /** Opens the connection (getting a fresh token first, when there is a callback). */
  async connect() {
    this.stopped = false;
    this._clear("retry");
    this._setState("connecting");
    await this._open(++this.run);
  }

  /** Gets a token (when there is a callback) and opens a connection of the current transport. */
  async _open(run) {
    this.token = null;
    let token = null;
    if (this.getToken) {
      try {
        token = await this.getToken();
      } catch (e) {
        return this._fail(`could not get a token: ${e.message || e}`);
      }
      if (!token) return this._fail("no token to connect with");
      const exp = tokenExpiry(token);
      if (exp !== null && exp * 1000 <= this.now()) return this._fail("token expired: sign in again");
    }
    if (this.stopped || run !== this.run) return;
    this.token = token;
    if (this.transport === "sse") this._openSse(token);
    else this._openWs(token);
  }

  _openWs(token) {
    const url = token ? this.url + (this.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : this.url;
    const protocols = wsProtocols(this.encoding);
    const ws = protocols.length ? new this.WS(url, protocols) : new this.WS(url);
    if (this.encoding === "msgpack") ws.binaryType = "arraybuffer";
    this._adopt(ws);
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (e) => this._onFrame(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e.code, e.reason);
    ws.onerror = () => {};
  }

  _openSse(token) {
    const { kept, dropped } = fitSseSymbols(this.url, [...this.symbols], token, MAX_SSE_URL, this.intervalMs);
    if (dropped.length) {
      this._forget(dropped);
      this._emit("error", { code: "too_many_symbols", symbols: dropped,
                            message: `not streamed: ${dropped.length} symbols beyond what an SSE URL holds (${MAX_SSE_URL} bytes)` });
    }
    this.streamSymbols = kept;
    const limit = this._streamLimit();
    const fit = fitSseCandles(this.url, kept, [...this.candles.keys()], token, MAX_SSE_URL, this.intervalMs, limit);
    for (const name of fit.dropped) {
      const series = this.candles.get(name);
      this.candles.delete(name);
      series._emit("error", { code: "too_many_symbols", message: `not streamed: ${name} is beyond what an SSE URL holds (${MAX_SSE_URL} bytes)` });
      series._end("too_many_symbols");
    }
    this.streamCandles = fit.kept;
    // The server needs at least one symbol or series per stream: with none, hold no stream until a subscribe().
    this.noStream = kept.length === 0 && fit.kept.length === 0;
    if (this.noStream) {
      if (this.conn) this.conn.close();
      this.conn = null;
      return this._setState("open", { transport: "sse" });
    }
    // A mark says "everything of the marked stream's symbols up to here": it resumes a
    // stream of those symbols (or fewer), not one that adds any.
    // A series whose history must come whole (new, or a larger limit) cannot resume either.
    const resumable = this.mark && kept.every((sym) => this.mark.symbols.has(sym)) &&
      fit.kept.every((name) => this.mark.symbols.has(name) && !this.candles.get(name).needsReset);
    const es = new this.ES(sseUrl(this.url, kept, token, resumable ? this.mark.id : null, this.intervalMs, fit.kept, limit));
    this._adopt(es);
    for (const type of SSE_EVENTS) es.addEventListener(type, (e) => this._onSseEvent(es, type, e.data));
    // A server `error` event has data; EventSource's own (the connection failed or was lost) has none.
    es.addEventListener("error", (e) => (typeof e.data === "string" ? this._onSseEvent(es, "error", e.data) : this._onSseLost(es)));
  }

  /** Makes `conn` the current connection, which must open in time. */
  _adopt(conn) {
    // connect() while connected: the old connection goes (an EventSource would otherwise
    // stream, and reconnect, unheard).
    if (this.conn) this.conn.close();
    this.conn = conn;
    this.opened = false;
    this.browserResumes = false;
    this._after("open", this.openTimeoutMs, () => this._abandon(conn, "no answer in time"));
  }

  /** Gives up on a connection as if it had closed with 1006. */
  _abandon(conn, reason) {
    if (conn !== this.conn) return;
    conn.close();
    this._onClose(conn, 1006, reason);
  }

  /** Stops for good (no reconnect). */
  close() {
    this.run++;
    this.stopped = true;
    for (const t of Object.keys(this.timers)) this._clear(t);
    this.outbox = [];
    if (this.conn) this.conn.close(1000);
    this.conn = null;
    // A later connect() starts over with the transport asked for.
    this.transport = this.transportOption === "sse" ? "sse" : "websocket";
    this.blocked = 0;
    this.serverWait = null;
    this._setState("closed", { code: 1000, reason: "closed by the client" });
  }

  subscribe(symbols) {
    const fresh = this._valid(symbols).filter((s) => !this.symbols.has(s));
    for (const s of fresh) this.symbols.add(s);
    if (this.transport === "sse") {
      if (fresh.length) this._reopenSoon();
      return;
    }
    if (this._isOpen()) this._sendAll(chunkSubscribe(fresh, null, this.maxMessage, () => this.nextId++, this.intervalMs));
  }

  unsubscribe(symbols) {
    const held = symbols.some((s) => this.symbols.has(s));
    this._forget(symbols);
    if (this.transport === "sse") {
      if (held) this._reopenSoon();
      return;
    }
    // The server holds only valid symbols; a long invalid one could even pass its size limit.
    const valid = symbols.filter(isSymbol);
    if (this._isOpen()) this._sendAll(chunkUnsubscribe(valid, this.maxMessage, () => this.nextId++));
  }

  /** The latest tick held for `symbol`. */
  latest(symbol) {
    return this.book.get(symbol);
  }

  /**
   * Follows the candles of `symbol` at `interval` ("1s", "1m", "5m", "1h": what the server
   * serves): the history (`limit` closed bars, and the forming one), then every change, merged
   * into one CandleSeries; resumed after a reconnect from the last `seq` held (a new epoch
   * starts it over). Asking again for a series already followed returns the same object (and
   * needs as many unsubscribes); a larger `limit` reloads its history.
   * @param {string} symbol
   * @param {string} interval
   * @param {{limit?: number, maxBars?: number}} [o]  `maxBars`: the most bars kept, the forming one
   *                                  included (default limit + 1)
   * @returns {CandleSeries}
   */
  subscribeCandles(symbol, interval, { limit = CANDLE_LIMIT, maxBars = null } = {}) {
    if (!isSymbol(symbol)) throw new TypeError(`not a symbol (1 to 32 characters from A-Z a-z 0-9 . _ : / -): ${symbol}`);
    if (!isInterval(interval)) throw new TypeError(`not an interval (like 1s, 1m, 5m, 1h): ${interval}`);
    if (!(Number.isInteger(limit) && limit >= 1)) throw new TypeError(`limit must be a positive integer, not ${limit}`);
    if (maxBars !== null && !(Number.isInteger(maxBars) && maxBars >= 1)) throw new TypeError(`maxBars must be a positive integer, not ${maxBars}`);
    const name = seriesName(symbol, interval);
    let series = this.candles.get(name);
    if (series) {
      series.holds++;
      if (maxBars !== null) series.maxBars = Math.max(series.maxBars, maxBars);
      if (limit <= series.limit) return series;
      series.limit = limit;
      series.maxBars = Math.max(series.maxBars, limit + 1);
      if (series.needsReset === null) series.needsReset = "limit";
    } else {
      series = new CandleSeries(this, symbol, interval, limit, Math.max(maxBars ?? 0, limit + 1));
      this.candles.set(name, series);
    }
    if (this.transport === "sse") this._reopenSoon();
    else if (this._isOpen()) this._sendAll(chunkCandleSubscribe([name], null, limit, this.maxMessage, () => this.nextId++));
    return series;
  }

  /** Lets go of a series subscribeCandles() returned; the last holder's unsubscribe ends it. */
  unsubscribeCandles(symbol, interval) {
    const name = seriesName(symbol, interval);
    const series = this.candles.get(name);
    if (!series || --series.holds > 0) return;
    this.candles.delete(name);
    series._end("client");
    if (this.transport === "sse") return this._reopenSoon();
    if (this._isOpen()) this._sendAll(chunkCandleUnsubscribe([name], this.maxMessage, () => this.nextId++));
  }

  /** The series followed for `symbol` at `interval`, or undefined. */
  candleSeries(symbol, interval) {
    return this.candles.get(seriesName(symbol, interval));
  }

  /**
   * Bars from GET /candles (with a fresh token from `getToken`, as a header, when there is
   * one): the last `limit` closed bars of `symbol` at `interval`, oldest first, then the
   * forming one; with `end` (µs since the epoch) only bars that start before it, to page back.
   * Rejects with a CandlesError (its `status` and the server's message) on another answer.
   * @returns {Promise<{symbol: string, interval: string, bars: object[]}>}
   */
  async fetchCandles(symbol, interval, { limit = null, end = null, signal = undefined } = {}) {
    const headers = await this._authHeaders();
    const r = await this.fetch(candlesUrl(this.url, symbol, interval, { limit, end }), { headers, signal });
    if (r.status !== 200) throw new CandlesError(r.status, ((await r.text()) || "").trim() || `HTTP ${r.status}`);
    return r.json();
  }

  /** Headers that authenticate an HTTP request (/snapshot, /candles) with a fresh token, when there is a callback. */
  async _authHeaders() {
    if (!this.getToken) return {};
    const token = await this.getToken();
    if (!token) throw new CandlesError(0, "no token to ask with");
    return { Authorization: "Bearer " + token };
  }

  /** The history length an SSE stream asks for: the largest its series want. */
  _streamLimit() {
    let limit = null;
    for (const s of this.candles.values()) limit = Math.max(limit ?? 0, s.limit);
    return limit;
  }

  /** The valid symbols of `symbols`; the others are refused here, as the server would. */
  _valid(symbols) {
    const invalid = symbols.filter((s) => !isSymbol(s));
    if (invalid.length) {
      this._forget(invalid);
      this._emit("error", { code: "invalid_symbol", symbols: invalid,
                            message: `not a symbol (1 to 32 characters from A-Z a-z 0-9 . _ : / -): ${invalid.join(", ")}` });
    }
    return symbols.filter(isSymbol);
  }

  /** Drops symbols from the watch-list and the book, so no resubscribe asks for them again. */
  _forget(symbols) {
    for (const s of symbols) {
      this.symbols.delete(s);
      this.book.delete(s);
    }
  }

  _isOpen() {
    return this.transport === "websocket" && this.conn !== null && this.conn.readyState === 1 && this.state === "open";
  }

  _sendAll(messages) {
    for (const m of messages) this._send(m);
  }

  /** Queues a message for the open connection (what is not sent is covered by the
   *  resubscribe after the next welcome) and sends what the budget allows. */
  _send(msg) {
    if (!this._isOpen()) return;
    const text = JSON.stringify(msg);
    // Past the limit the server closes with 1009, after which we could not reconnect
    // (subscribes are split to fit; this catches e.g. an `auth` with a huge token).
    if (byteLength(text) > this.maxMessage) {
      return this._emit("error", { code: "client", message: `not sent: a ${msg.type} message over the server's ${this.maxMessage} bytes` });
    }
    this.outbox.push(text);
    if (this.timers.pace === null) this._flush();
  }

  _flush() {
    this.timers.pace = null;
    while (this.outbox.length && this._isOpen()) {
      const wait = this.budget.take(this.now());
      if (wait > 0) return this._after("pace", wait, () => this._flush());
      this.conn.send(this.outbox.shift());
    }
  }

  _fail(reason) {
    this._emit("error", { code: "client", message: reason });
    this._stop(reason);
  }

  _stop(reason) {
    this.stopped = true;
    this._setState("closed", { reason });
  }

  _armSilence(ws) {
    this._after("silence", this.pingAfterMs, () => {
      if (ws !== this.conn) return;
      this._send({ type: "ping", id: this.nextId++ });
      // No answer in time: the connection is dead even if TCP has not noticed.
      this._after("pong", this.pongTimeoutMs, () => ws === this.conn && ws.close(4000));
    });
  }

  _onOpen(conn) {
    if (conn !== this.conn) return;
    this.opened = true;
    this.serverWait = null;
    this.browserResumes = false;
    this.refusals = 0;
    this.blocked = 0;
    this._clear("open");
  }

  /** A WebSocket frame: JSON text, or a MessagePack binary frame. */
  _onFrame(ws, data) {
    if (ws !== this.conn) return;
    // Any frame shows the connection alive.
    this._clear("pong");
    this._armSilence(ws);
    let m;
    try {
      m = typeof data === "string" ? JSON.parse(data) : decodeMsgpack(ArrayBuffer.isView(data) ? data : new Uint8Array(data));
    } catch (e) {
      return this._emit("error", { code: "client", message: `an unreadable message from the server: ${e.message}` });
    }
    this._onMessage(ws, m);
  }

  /** An SSE event: its data is the payload of the WebSocket message of the same type. */
  _onSseEvent(es, type, data) {
    if (es !== this.conn) return;
    let payload;
    try {
      payload = JSON.parse(data);
    } catch (e) {
      return this._emit("error", { code: "client", message: `an unreadable ${type} event from the server: ${e.message}` });
    }
    if (type === "mark") {
      if (typeof payload?.id === "string") this.mark = { id: payload.id, symbols: new Set([...this.streamSymbols, ...this.streamCandles]) };
      return;
    }
    // The server ends the stream: like a WebSocket close, and EventSource must not reconnect by itself.
    if (type === "close") {
      es.close();
      // "Come back later" (1013) says how long, as the browser's own retry would wait.
      if (Number.isInteger(payload?.retry_after_ms) && payload.retry_after_ms >= 0) {
        this.serverWait = { ms: Math.min(payload.retry_after_ms, MAX_SERVER_WAIT_MS), exact: false };
      }
      return this._onClose(es, Number.isInteger(payload?.code) ? payload.code : 1006, payload?.reason ?? "");
    }
    this._onMessage(es, { type, payload });
  }

  /**
   * EventSource lost its connection or could not make one. It would reconnect by itself
   * with the same URL — whose one-time token is spent — and its own fixed delay: the client
   * lets it do so only once, when the URL holds no token and the stream had worked (it then
   * sends Last-Event-ID, and only what changed comes again); otherwise it closes the stream
   * and reconnects with backoff and a fresh token.
   */
  _onSseLost(es) {
    if (es !== this.conn) return;
    if (es.readyState === 0 && this.token === null && this.opened && !this.browserResumes) {
      this.opened = false;
      this.browserResumes = true;
      this._after("open", SSE_RETRY_MAX_MS + this.openTimeoutMs, () => this._abandon(es, "the stream did not come back"));
      return this._setState("reconnecting", { inMs: null, code: 1006, reason: "stream lost: the browser resumes it" });
    }
    this._abandon(es, "");
  }

  _onMessage(conn, m) {
    if (conn !== this.conn || !m || typeof m !== "object") return;
    switch (m.type) {
      case "tick":
        if (m.payload && this.symbols.has(m.payload.symbol) && this.book.accept(m.payload)) this._emit("tick", m.payload);
        break;
      case "candles":
        this._onCandles(m.payload);
        break;
      case "candle":
        if (m.payload) this.candles.get(seriesName(m.payload.symbol, m.payload.interval))?._live(m.payload);
        break;
      case "welcome":
        this._onWelcome(conn, m.payload || {});
        break;
      case "authenticated":
        if (m.id === this.refreshId) this._onRefreshed(m.payload || {});
        break;
      case "unsubscribed":
        this._onUnsubscribed(m.payload || {});
        break;
      case "error":
        this._onError(m);
        break;
      case "reconnect":
        // The server is about to close (a drain, or the connection's age) and says when to
        // come back: spread across clients, so they do not all land on the next node at once.
        if (Number.isInteger(m.payload?.after_ms) && m.payload.after_ms >= 0) {
          this.serverWait = { ms: Math.min(m.payload.after_ms, MAX_SERVER_WAIT_MS), exact: true };
        }
        break;
      default:
        break;
    }
  }

  _onWelcome(conn, payload) {
    // A welcome means the connection is open even where no open event was seen.
    this._onOpen(conn);
    // seq numbers compare only within one epoch (a restarted server starts over).
    if (this.epoch !== undefined && payload.epoch !== this.epoch) {
      this.book.clear();
      for (const series of this.candles.values()) series._newEpoch();
    }
    this.epoch = payload.epoch;
    this.attempt = 0;
    this.maxMessage = maxMessageOf(payload);
    this.budget.reset();
    this.refreshFailures = 0;
    this._setState("open", { transport: this.transport });
    if (this.transport === "websocket") {
      const symbols = this._valid([...this.symbols]);
      this._sendAll(chunkSubscribe(symbols, this.book.since(symbols), this.maxMessage, () => this.nextId++, this.intervalMs));
      this._resubscribeCandles();
    } else if (this.streamSymbols.join(",") !== [...this.symbols].join(",") || this.streamCandles.join(",") !== [...this.candles.keys()].join(",")) {
      this._reopenSoon(); // the watch-list changed while the stream was opening
    }
    if (this.getToken) this._scheduleRefresh(payload.exp ?? tokenExpiry(this.token));
  }

  /** After a welcome: every series again, per limit, with the last seq held where it can resume. */
  _resubscribeCandles() {
    const byLimit = new Map();
    for (const [name, series] of this.candles) {
      if (!byLimit.has(series.limit)) byLimit.set(series.limit, { names: [], since: {} });
      const group = byLimit.get(series.limit);
      group.names.push(name);
      if (series.needsReset === null && series.lastSeq > 0) group.since[name] = series.lastSeq;
    }
    for (const [limit, { names, since }] of byLimit) {
      this._sendAll(chunkCandleSubscribe(names, Object.keys(since).length ? since : null, limit, this.maxMessage, () => this.nextId++));
    }
  }

  /** A history of one series: its bars (without symbol and interval) completed and merged. */
  _onCandles(payload) {
    const series = payload && this.candles.get(seriesName(payload.symbol, payload.interval));
    if (!series || !Array.isArray(payload.bars)) return;
    series._history(payload.bars.map((b) => ({ symbol: payload.symbol, interval: payload.interval, ...b })));
  }

  /** Under SSE: opens the stream anew soon, with the watch-list as it is by then. */
  _reopenSoon() {
    if (this.stopped || (this.conn === null && !this.noStream)) return; // the next connect takes the current list
    this._after("reopen", SSE_REOPEN_DELAY_MS, () => this._reopen());
  }

  /** Under SSE: replaces the stream (new symbols, or a fresh token), staying `open` unless that fails. */
  _reopen() {
    this.timers.reopen = null;
    const old = this.conn;
    if (this.stopped || this.transport !== "sse" || (old === null && !this.noStream)) return;
    this.conn = null;
    if (old) old.close();
    for (const t of ["refresh", "open"]) this._clear(t);
    return this._open(++this.run);
  }

  /** The server ended subscriptions itself (a reply to our own unsubscribe has no reason). */
  _onUnsubscribed(payload) {
    if (!payload.reason) return;
    const symbols = Array.isArray(payload.symbols) ? payload.symbols : [];
    const candles = Array.isArray(payload.candles) ? payload.candles : [];
    this._forget(symbols);
    this._endSeries(candles, payload.reason, null);
    this._emit("unsubscribed", { symbols, candles, reason: payload.reason });
    const all = [...symbols, ...candles];
    const message = payload.reason === "forbidden"
      ? `no longer entitled to ${all.join(", ")}`
      : `the server ended ${all.join(", ")} (${payload.reason})`;
    this._emit("error", { code: payload.reason, symbols, candles, message });
  }

  /** Series the server ended or refused: forgotten here, each told why (`error`, when given, first). */
  _endSeries(names, reason, error) {
    for (const name of names) {
      const series = this.candles.get(name);
      if (!series) continue;
      this.candles.delete(name);
      if (error) series._emit("error", error);
      series._end(reason);
    }
  }

  _onError(m) {
    if (this.refreshId !== null && m.id === this.refreshId) return this._refreshFailed(m.payload);
    const series = refusedSeries(m.payload).filter((name) => this.candles.has(name));
    if (series.length) this._endSeries(series, m.payload.code, m.payload);
    const refused = refusedSymbols(m.payload).filter((s) => !series.includes(s));
    this._forget(refused);
    this._emit("error", refused.length ? { ...m.payload, symbols: refused } : m.payload);
  }

  /** Arranges a fresh token before the connection's token (expiring at `expSec`) expires:
   *  sent in an `auth` message over WebSocket; under SSE, which has no way to send one, the
   *  stream is reopened with it. */
  _scheduleRefresh(expSec) {
    this._clear("refresh");
    this.exp = typeof expSec === "number" ? expSec : null;
    if (this.exp === null) return;
    this._after("refresh", refreshDelayMs(this.exp, this.now()), () => (this.transport === "sse" ? this._reopen() : this._refresh()));
  }

  async _refresh() {
    this.timers.refresh = null;
    const ws = this.conn;
    let token = null, problem = "no token";
    try {
      token = await this.getToken();
    } catch (e) {
      problem = e.message || String(e);
    }
    if (ws !== this.conn || this.stopped) return;
    if (!token) return this._refreshFailed({ code: "client", message: `could not refresh the token: ${problem}` });
    this.refreshId = this.nextId++;
    this.refreshToken = token;
    this._send({ type: "auth", id: this.refreshId, payload: { token } });
  }

  _onRefreshed(payload) {
    this.refreshId = null;
    this.refreshFailures = 0;
    this._scheduleRefresh(payload.exp ?? tokenExpiry(this.refreshToken));
  }

  /** Says why, and tries again while the token in use is still valid. */
  _refreshFailed(detail) {
    this.refreshId = null;
    this._emit("error", detail);
    this.refreshFailures++;
    if (this.refreshFailures > REFRESH_RETRIES) return;
    const wait = refreshRetryDelayMs(this.refreshFailures, this.exp, this.now());
    if (wait !== null) this._after("refresh", wait, () => this._refresh());
  }

  _onClose(conn, code, reason) {
    if (conn !== this.conn) return;
    this.conn = null;
    for (const t of ["silence", "pong", "refresh", "pace", "open", "reopen"]) this._clear(t);
    this.outbox = [];
    this.refreshId = null;
    if (this.stopped) return;
    if (!shouldReconnect(code, this.getToken !== null)) {
      const why = code === 4401 ? "not authorized (token expired or refused)" : `server refused (${code}${reason ? ": " + reason : ""})`;
      return this._fail(why);
    }
    // Browsers show a refused upgrade (503 busy, 401/403), like a proxy refusing it, as 1006,
    // like a network failure (EventSource shows nothing at all): ask the server over plain HTTP.
    if (!this.opened && (this.getToken || this.transport === "websocket")) return this._probeThenRetry(code, reason);
    this._retry(code, reason);
  }

  /** Reconnects after the wait the server asked for (`reconnect`: exactly that; `Retry-After`:
   *  that, with the backoff on top), or after the backoff alone. */
  _retry(code, reason) {
    const asked = this.serverWait;
    this.serverWait = null;
    let inMs;
    if (asked?.exact) {
      this.attempt = 0;
      inMs = asked.ms;
    } else {
      inMs = (asked?.ms ?? 0) + backoffDelay(this.attempt++, this.random);
    }
    this._setState("reconnecting", { inMs, code, reason });
    this._after("retry", inMs, () => this.connect());
  }

  /** Whether a WebSocket that cannot get through may be replaced by SSE. */
  _mayFallBack() {
    return this.transportOption === "auto" && this.transport === "websocket";
  }

  async _probeThenRetry(code, reason) {
    const run = this.run;
    const answer = await this._probe();
    if (this.stopped || run !== this.run) return;
    if (answer?.busy) {
      // The server is up and asks for patience (a reconnect storm, full, or shutting down):
      // nothing is blocking the WebSocket, so this is no reason to fall back to SSE.
      this.blocked = 0;
      if (answer.retryAfterMs !== null) this.serverWait = { ms: answer.retryAfterMs, exact: false };
      return this._retry(code, reason);
    }
    if (answer?.refused && this.getToken) {
      this.refusals++;
      this._emit("error", { code: "refused", status: answer.status, message: answer.message });
      if (this.refusals >= MAX_REFUSALS) return this._stop(`refused by the server (${answer.status}): ${answer.message}`);
    }
    if (this._mayFallBack()) {
      // HTTP gets through (426: the server would let us in) but the WebSocket did not:
      // count it, in a row.
      this.blocked = answer?.status === 426 || answer?.status === 200 ? this.blocked + 1 : 0;
      if (this.blocked >= FALLBACK_AFTER) return this._fallBack(code, reason);
    }
    this._retry(code, reason);
  }

  /** Switches to SSE at once: another attempt at the WebSocket would fail the same way. */
  _fallBack(code, reason) {
    this.transport = "sse";
    this.blocked = 0;
    this._setState("reconnecting", { inMs: 0, code, reason: `the WebSocket does not get through: switching to SSE${reason ? " (" + reason + ")" : ""}` });
    this._after("retry", 0, () => this.connect());
  }

  /**
   * Asks the server over plain HTTP how it would answer (with a fresh token when there is a
   * callback): under WebSocket a plain GET of the /ws URL, which the server answers as it
   * would the upgrade, taking nothing (426: it would let us in); under SSE GET /snapshot of
   * the stream's symbols (one the token does not allow refuses the whole stream). Null when
   * the network failed, else {status}; for 503/429 {status, busy: true, retryAfterMs}; for
   * 401/403 {status, refused: true, message} with the server's answer.
   */
  async _probe() {
    try {
      const headers = await this._authHeaders(); // throws without a token: null, as a failed fetch
      const url = this.transport === "sse" ? snapshotUrl(this.url, this.streamSymbols) : wsProbeUrl(this.url);
      const r = await this.fetch(url, { headers, signal: probeSignal() });
      if (r.status === 503 || r.status === 429) {
        return { status: r.status, busy: true, retryAfterMs: retryAfterMs(r.headers?.get?.("retry-after") ?? null) };
      }
      if (r.status !== 401 && r.status !== 403) return { status: r.status };
      const text = (await r.text()).trim();
      return { status: r.status, refused: true, message: text || `HTTP ${r.status}` };
    } catch {
      return null;
    }
  }
}

if (typeof window !== "undefined") {
  window.Tickcast = { TickcastClient, Book, SendBudget, backoffDelay, shouldReconnect, tokenExpiry, isSymbol,
                      byteLength, maxMessageOf, chunkSubscribe, chunkUnsubscribe, refreshDelayMs,
                      refreshRetryDelayMs, snapshotUrl, sseUrl, fitSseSymbols, wsProtocols, refusedSymbols,
                      decodeMsgpack, MsgpackError, retryAfterMs, wsProbeUrl, CandleSeries, CandlesError,
                      TickcastDatafeed, isInterval, intervalMs, seriesName, parseSeriesName, chunkCandleSubscribe,
                      chunkCandleUnsubscribe, candlesUrl, mergeBar, trimHistory, toChartBar, resolutionToInterval,
                      intervalToResolution, refusedSeries, fitSseCandles };
}
