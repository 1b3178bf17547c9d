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
//   tick   the tick payload, only when newer than what the client holds
//   state  {state: "connecting" | "open" | "reconnecting" | "closed", inMs?, code?, reason?}
//   error  {code, message, symbol?} from the server, or {code: "client", message}

/** Close codes after which reconnecting cannot help. */
export const NO_RECONNECT = new Set([1003, 1007, 1008, 1009]);
export const MAX_BACKOFF_MS = 60000;

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
   * @param {() => Promise<string|null>|string|null} [o.getToken]  called before every connect
   * @param {number} [o.pingAfterMs]  send a `ping` after this long without a message (30 s)
   * @param {number} [o.pongTimeoutMs] treat the connection as dead without a `pong` by then (10 s)
   */
  constructor({ url, symbols = [], getToken = null, pingAfterMs = 30000, pongTimeoutMs = 10000,
                WebSocket: WS = globalThis.WebSocket, random = Math.random, now = () => Date.now() }) {
    super();
    this.url = url;
    this.symbols = new Set(symbols);
    this.getToken = getToken;
    this.pingAfterMs = pingAfterMs;
    this.pongTimeoutMs = pongTimeoutMs;
    this.WS = WS;
    this.random = random;
    this.now = now;
    this.book = new Book();
    this.attempt = 0;
    this.nextId = 1;
    this.ws = null;
    this.state = "idle";
    this.stopped = false;
    this.epoch = undefined;
    this.timers = { retry: null, silence: null, pong: null };
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, ...extra });
  }

  _clear(name) {
    if (this.timers[name] !== null) clearTimeout(this.timers[name]);
    this.timers[name] = null;
  }

  /** Opens the connection (getting a fresh token first, when there is a callback). */
  async connect() {
    this.stopped = false;
    this._clear("retry");
    this._setState("connecting");
    let url = this.url;
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
    }
    if (this.stopped) return;
    const ws = new this.WS(url);
    this.ws = ws;
    ws.onmessage = (e) => this._onMessage(ws, e.data);
    ws.onclose = (e) => this._onClose(ws, e.code, e.reason);
    ws.onerror = () => {};
  }

  /** Stops for good (no reconnect). */
  close() {
    this.stopped = true;
    for (const t of Object.keys(this.timers)) this._clear(t);
    if (this.ws) this.ws.close(1000);
    this._setState("closed", { code: 1000, reason: "closed by the client" });
  }

  subscribe(symbols) {
    const fresh = symbols.filter((s) => !this.symbols.has(s));
    for (const s of symbols) this.symbols.add(s);
    if (fresh.length) this._send({ type: "subscribe", id: this.nextId++, payload: { symbols: fresh } });
  }

  unsubscribe(symbols) {
    for (const s of symbols) {
      this.symbols.delete(s);
      this.book.delete(s);
    }
    if (symbols.length) this._send({ type: "unsubscribe", id: this.nextId++, payload: { symbols } });
  }

  /** The latest tick held for `symbol`. */
  latest(symbol) {
    return this.book.get(symbol);
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === 1 && this.state === "open") this.ws.send(JSON.stringify(msg));
  }

  _fail(reason) {
    this.stopped = true;
    this._emit("error", { code: "client", message: reason });
    this._setState("closed", { reason });
  }

  _armSilence(ws) {
    this._clear("silence");
    this.timers.silence = setTimeout(() => {
      if (ws !== this.ws) return;
      ws.send(JSON.stringify({ type: "ping", id: this.nextId++ }));
      this._clear("pong");
      // No answer in time: the connection is dead even if TCP has not noticed.
      this.timers.pong = setTimeout(() => ws === this.ws && ws.close(4000), this.pongTimeoutMs);
    }, this.pingAfterMs);
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
      case "welcome": {
        // seq numbers compare only within one epoch (a restarted server starts over).
        if (this.epoch !== undefined && m.payload.epoch !== this.epoch) this.book.clear();
        this.epoch = m.payload.epoch;
        this.attempt = 0;
        this._setState("open");
        const symbols = [...this.symbols];
        if (symbols.length) {
          ws.send(JSON.stringify({ type: "subscribe", id: this.nextId++,
                                   payload: { symbols, since: this.book.since(symbols) } }));
        }
        break;
      }
      case "error":
        this._emit("error", m.payload);
        break;
      default:
        break;
    }
  }

  _onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._clear("silence");
    this._clear("pong");
    if (this.stopped) return;
    if (!shouldReconnect(code, this.getToken !== null)) {
      const why = code === 4401 ? "not authorized (token expired or refused)" : `server refused (${code}${reason ? ": " + reason : ""})`;
      return this._fail(why);
    }
    const inMs = backoffDelay(this.attempt++, this.random);
    this._setState("reconnecting", { inMs, code, reason });
    this.timers.retry = setTimeout(() => this.connect(), inMs);
  }
}

if (typeof window !== "undefined") window.Tickcast = { TickcastClient, Book, backoffDelay, shouldReconnect, tokenExpiry };
