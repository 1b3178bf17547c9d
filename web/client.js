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
//   state         {state: "connecting" | "open" | "reconnecting" | "closed", inMs?, code?, reason?}
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
// server's 4401 at expiry leads to a normal reconnect). A connection that
// closes before it opened is probed with GET /snapshot and a fresh token: a
// 401/403 counts as a refusal (an `error` with the server's answer), and after
// 3 in a row the client stops (state `closed`, saying why) instead of
// retrying forever; a failed fetch or any other status is retried as usual.
//
// Options besides url, symbols and getToken: pingAfterMs (30000),
// pongTimeoutMs (10000); for tests: WebSocket, fetch, random, now,
// setTimeout, clearTimeout.

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

const SYMBOL = /^[A-Za-z0-9._:/-]{1,32}$/;
const utf8 = new TextEncoder();

/** Full-jitter exponential backoff: a random delay up to 1 s, 2 s, 4 s … 60 s. */
export function backoffDelay(attempt, random = Math.random) {
  return Math.floor(random() * Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt));
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
 * about 120 bytes at most).
 */
export function chunkSubscribe(symbols, since, maxBytes, nextId) {
  return chunkSymbols("subscribe", symbols, since, maxBytes, nextId);
}

/** `unsubscribe` messages for `symbols`, each at most `maxBytes` bytes serialized. */
export function chunkUnsubscribe(symbols, maxBytes, nextId) {
  return chunkSymbols("unsubscribe", symbols, null, maxBytes, nextId);
}

function chunkSymbols(type, symbols, since, maxBytes, nextId) {
  const chunks = [];
  let chunk = null;
  for (const symbol of symbols) {
    const seq = since && Object.hasOwn(since, symbol) ? since[symbol] : undefined;
    if (chunk === null || chunk.bytes + entryBytes(chunk, symbol, seq) > maxBytes) {
      chunk = emptyChunk(type, nextId(), since !== null && since !== undefined);
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

function emptyChunk(type, id, withSince) {
  const msg = { type, id, payload: withSince ? { symbols: [], since: {} } : { symbols: [] } };
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

/** The /snapshot URL next to a /ws URL (ws→http, wss→https), asking for no symbols. */
export function snapshotUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/[^/]*$/, "snapshot");
  u.search = "?symbols=";
  u.hash = "";
  return u.toString();
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
   * @param {string} o.url            ws:// or wss:// URL of /ws (without a token)
   * @param {string[]} [o.symbols]    symbols to subscribe to
   * @param {() => Promise<string|null>|string|null} [o.getToken]  called for a fresh token before
   *                                  every connect, every refresh and every refusal probe
   * @param {number} [o.pingAfterMs]  send a `ping` after this long without a message (30 s)
   * @param {number} [o.pongTimeoutMs] treat the connection as dead without a `pong` by then (10 s)
   */
  constructor({ url, symbols = [], getToken = null, pingAfterMs = 30000, pongTimeoutMs = 10000,
                WebSocket: WS = globalThis.WebSocket, fetch = (...a) => globalThis.fetch(...a),
                random = Math.random, now = () => Date.now(),
                setTimeout = (f, ms) => globalThis.setTimeout(f, ms), clearTimeout = (t) => globalThis.clearTimeout(t) }) {
    super();
    this.url = url;
    this.symbols = new Set(symbols);
    this.getToken = getToken;
    this.pingAfterMs = pingAfterMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.WS = WS;
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
    this.ws = null;
    this.opened = false;           // whether the current attempt's socket opened
    this.token = null;             // the token the current connection was opened with
    this.exp = null;               // when the connection's token expires (s since the epoch)
    this.refreshId = null;         // id of the `auth` message awaiting its answer
    this.refreshToken = null;
    this.refreshFailures = 0;
    this.refusals = 0;
    this.maxMessage = DEFAULT_MAX_MESSAGE;
    this.run = 0;                  // bumped by connect() and close(): stale async work checks it
    this.state = "idle";
    this.stopped = false;
    this.epoch = undefined;
    this.timers = { retry: null, silence: null, pong: null, refresh: null, pace: null };
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
    const run = ++this.run;
    this.stopped = false;
    this._clear("retry");
    this._setState("connecting");
    let url = this.url;
    this.token = null;
    if (this.getToken) {
      let token;
      try {
        token = await this.getToken();
      } catch (e) {
        return this._fail(`could not get a token: ${e.message || e}`);
      }
      if (!token) return this._fail("no token to connect with");
      const exp = tokenExpiry(token);
      if (exp !== null && exp * 1000 <= this.now()) return this._fail("token expired: sign in again");
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
      this.token = token;
    }
    if (this.stopped || run !== this.run) return;
    const ws = new this.WS(url);
    this.ws = ws;
    this.opened = false;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (e) => this._onMessage(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e.code, e.reason);
    ws.onerror = () => {};
  }

  /** Stops for good (no reconnect). */
  close() {
    this.run++;
    this.stopped = true;
    for (const t of Object.keys(this.timers)) this._clear(t);
    this.outbox = [];
    if (this.ws) this.ws.close(1000);
    this._setState("closed", { code: 1000, reason: "closed by the client" });
  }

  subscribe(symbols) {
    const fresh = this._valid(symbols).filter((s) => !this.symbols.has(s));
    for (const s of fresh) this.symbols.add(s);
    if (this._isOpen()) this._sendAll(chunkSubscribe(fresh, null, this.maxMessage, () => this.nextId++));
  }

  unsubscribe(symbols) {
    this._forget(symbols);
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
    return this.ws !== null && this.ws.readyState === 1 && this.state === "open";
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
      this.ws.send(this.outbox.shift());
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
      if (ws !== this.ws) return;
      this._send({ type: "ping", id: this.nextId++ });
      // No answer in time: the connection is dead even if TCP has not noticed.
      this._after("pong", this.pongTimeoutMs, () => ws === this.ws && ws.close(4000));
    });
  }

  _onOpen(ws) {
    if (ws !== this.ws) return;
    this.opened = true;
    this.refusals = 0;
  }

  _onMessage(ws, data) {
    if (ws !== this.ws) return;
    this._clear("pong");
    this._armSilence(ws);
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return;
    }
    switch (m.type) {
      case "tick":
        if (this.symbols.has(m.payload.symbol) && this.book.accept(m.payload)) this._emit("tick", m.payload);
        break;
      case "welcome":
        this._onWelcome(ws, m.payload || {});
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
      default:
        break;
    }
  }

  _onWelcome(ws, payload) {
    // A welcome means the socket is open even where no open event was seen.
    this._onOpen(ws);
    // seq numbers compare only within one epoch (a restarted server starts over).
    if (this.epoch !== undefined && payload.epoch !== this.epoch) this.book.clear();
    this.epoch = payload.epoch;
    this.attempt = 0;
    this.maxMessage = maxMessageOf(payload);
    this.budget.reset();
    this.refreshFailures = 0;
    this._setState("open");
    const symbols = this._valid([...this.symbols]);
    this._sendAll(chunkSubscribe(symbols, this.book.since(symbols), this.maxMessage, () => this.nextId++));
    if (this.getToken) this._scheduleRefresh(payload.exp ?? tokenExpiry(this.token));
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

  /** Arranges to send a fresh token before the connection's token (expiring at `expSec`) does. */
  _scheduleRefresh(expSec) {
    this._clear("refresh");
    this.exp = typeof expSec === "number" ? expSec : null;
    if (this.exp === null) return;
    this._after("refresh", refreshDelayMs(this.exp, this.now()), () => this._refresh());
  }

  async _refresh() {
    this.timers.refresh = null;
    const ws = this.ws;
    let token = null, problem = "no token";
    try {
      token = await this.getToken();
    } catch (e) {
      problem = e.message || String(e);
    }
    if (ws !== this.ws || this.stopped) return;
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

  _onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    for (const t of ["silence", "pong", "refresh", "pace"]) this._clear(t);
    this.outbox = [];
    this.refreshId = null;
    if (this.stopped) return;
    if (!shouldReconnect(code, this.getToken !== null)) {
      const why = code === 4401 ? "not authorized (token expired or refused)" : `server refused (${code}${reason ? ": " + reason : ""})`;
      return this._fail(why);
    }
    // Browsers show a refused upgrade (401/403) as 1006, like a network failure: ask the server.
    if (!this.opened && this.getToken) return this._probeThenRetry(code, reason);
    this._retry(code, reason);
  }

  _retry(code, reason) {
    const inMs = backoffDelay(this.attempt++, this.random);
    this._setState("reconnecting", { inMs, code, reason });
    this._after("retry", inMs, () => this.connect());
  }

  async _probeThenRetry(code, reason) {
    const run = this.run;
    const refusal = await this._probe();
    if (this.stopped || run !== this.run) return;
    if (refusal) {
      this.refusals++;
      this._emit("error", { code: "refused", ...refusal });
      if (this.refusals >= MAX_REFUSALS) return this._stop(`refused by the server (${refusal.status}): ${refusal.message}`);
    }
    this._retry(code, reason);
  }

  /**
   * GET /snapshot with a fresh token: {status, message} when the server refuses
   * it (401/403), null when the network failed or the answer was anything else.
   */
  async _probe() {
    try {
      const token = await this.getToken();
      if (!token) return null;
      const r = await this.fetch(snapshotUrl(this.url), { headers: { Authorization: "Bearer " + token }, signal: probeSignal() });
      if (r.status !== 401 && r.status !== 403) return null;
      const text = (await r.text()).trim();
      return { status: r.status, message: text || `HTTP ${r.status}` };
    } catch {
      return null;
    }
  }
}

if (typeof window !== "undefined") {
  window.Tickcast = { TickcastClient, Book, SendBudget, backoffDelay, shouldReconnect, tokenExpiry, isSymbol,
                      byteLength, maxMessageOf, chunkSubscribe, chunkUnsubscribe, refreshDelayMs,
                      refreshRetryDelayMs, snapshotUrl, refusedSymbols };
}
