// tickcast browser client: one connection, kept alive, holding the latest
// state of every subscribed symbol. Dependency-free ES module; with a plain
// <script> tag (no type=module) use window.Tickcast after loading
// /client.js as a module elsewhere, or import it:
//
//   import { TickcastClient } from "/client.js";
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
//   unsubscribed  {symbols, reason}: the server ended these subscriptions itself (e.g. a refreshed
//                 token no longer entitles them); the client has forgotten them
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
export const SSE_EVENTS = ["welcome", "subscribed", "unsubscribed", "tick", "pong", "close", "mark", "reconnect"];
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

function chunkSymbols(type, symbols, since, maxBytes, nextId, intervalMs = null) {
  const chunks = [];
  let chunk = null;
  for (const symbol of symbols) {
    const seq = since && Object.hasOwn(since, symbol) ? since[symbol] : undefined;
    if (chunk === null || chunk.bytes + entryBytes(chunk, symbol, seq) > maxBytes) {
      chunk = emptyChunk(type, nextId(), since !== null && since !== undefined, intervalMs);
      chunks.push(chunk);
    }
    chunk.bytes += entryBytes(chunk, symbol, seq);
    chunk.msg.payload.symbols.push(symbol);
    if (seq !== undefined) {
      chunk.msg.payload.since[symbol] = seq;
      chunk.sinceCount++;
    }
  }
  return chunks.map((c) => c.msg);
}

function emptyChunk(type, id, withSince, intervalMs) {
  const msg = { type, id, payload: withSince ? { symbols: [], since: {} } : { symbols: [] } };
  if (intervalMs !== null && intervalMs !== undefined) msg.payload.interval_ms = intervalMs;
  return { msg, bytes: byteLength(JSON.stringify(msg)), sinceCount: 0 };
}

/** What one more symbol adds to a chunk's serialized size: its quoted name in
 *  `symbols` and, with a seq, `"name":seq` in `since`, each with a comma unless first. */
function entryBytes(chunk, symbol, seq) {
  const name = byteLength(JSON.stringify(symbol));
  let bytes = name + (chunk.msg.payload.symbols.length > 0 ? 1 : 0);
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
 */
export function sseUrl(wsUrl, symbols, token = null, lastEventId = null, intervalMs = null) {
  let url = httpUrlNextTo(wsUrl, "sse") + symbolsQuery(symbols);
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

// ---------------------------------------------------------------- MessagePack

/** Thrown for bytes decodeMsgpack() does not take: cut off, trailing, invalid, or of a type it does not read. */
export class MsgpackError extends Error {
  constructor(what, at) {
    super(`msgpack: ${what} at byte ${at}`);
    this.name = "MsgpackError";
    this.at = at;
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
    // The server needs at least one symbol per stream: with none, hold no stream until a subscribe().
    this.noStream = kept.length === 0;
    if (this.noStream) {
      if (this.conn) this.conn.close();
      this.conn = null;
      return this._setState("open", { transport: "sse" });
    }
    // A mark says "everything of the marked stream's symbols up to here": it resumes a
    // stream of those symbols (or fewer), not one that adds any.
    const resumable = this.mark && kept.every((sym) => this.mark.symbols.has(sym));
    const es = new this.ES(sseUrl(this.url, kept, token, resumable ? this.mark.id : null, this.intervalMs));
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
      if (typeof payload?.id === "string") this.mark = { id: payload.id, symbols: new Set(this.streamSymbols) };
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
    if (this.epoch !== undefined && payload.epoch !== this.epoch) this.book.clear();
    this.epoch = payload.epoch;
    this.attempt = 0;
    this.maxMessage = maxMessageOf(payload);
    this.budget.reset();
    this.refreshFailures = 0;
    this._setState("open", { transport: this.transport });
    if (this.transport === "websocket") {
      const symbols = this._valid([...this.symbols]);
      this._sendAll(chunkSubscribe(symbols, this.book.since(symbols), this.maxMessage, () => this.nextId++, this.intervalMs));
    } else if (this.streamSymbols.join(",") !== [...this.symbols].join(",")) {
      this._reopenSoon(); // the watch-list changed while the stream was opening
    }
    if (this.getToken) this._scheduleRefresh(payload.exp ?? tokenExpiry(this.token));
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
    this._forget(symbols);
    this._emit("unsubscribed", { symbols, reason: payload.reason });
    const message = payload.reason === "forbidden"
      ? `no longer entitled to ${symbols.join(", ")}`
      : `the server ended ${symbols.join(", ")} (${payload.reason})`;
    this._emit("error", { code: payload.reason, symbols, message });
  }

  _onError(m) {
    if (this.refreshId !== null && m.id === this.refreshId) return this._refreshFailed(m.payload);
    const refused = refusedSymbols(m.payload);
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
      let headers = {};
      if (this.getToken) {
        const token = await this.getToken();
        if (!token) return null;
        headers = { Authorization: "Bearer " + token };
      }
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
                      decodeMsgpack, MsgpackError, retryAfterMs, wsProbeUrl };
}
