// Stand-ins for what the client takes from the browser, driven by the tests: a clock
// whose timers run only when a test advances it, a WebSocket, an EventSource.
import assert from "node:assert/strict";

/** A clock whose timers run only when the test advances it. */
export class FakeClock {
  constructor(t = 1_700_000_000_000) {
    this.t = t;
    this.timers = new Map();
    this.ids = 0;
  }
  get options() {
    return { now: () => this.t, setTimeout: (f, ms) => this._set(f, ms), clearTimeout: (id) => this.timers.delete(id) };
  }
  _set(f, ms) {
    this.timers.set(++this.ids, { at: this.t + Math.max(0, ms), f });
    return this.ids;
  }
  /** Runs, in order, every timer due in the next `ms`, letting promises settle after each. */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const [id, next] = [...this.timers].sort(([i, a], [j, b]) => a.at - b.at || i - j)[0] ?? [];
      if (!next || next.at > end) break;
      this.timers.delete(id);
      this.t = next.at;
      next.f();
    }
    this.t = end;
    await settle();
  }
}

/** Lets every pending promise chain run (setImmediate comes after all microtasks). */
export const settle = () => new Promise((r) => setImmediate(r));

/** A stand-in for the browser's WebSocket, driven by the test. */
export class FakeSocket {
  static all = [];
  static clock = null;
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.raw = [];
    this.at = [];
    this.readyState = 0;
    FakeSocket.all.push(this);
  }
  open() {
    if (this.readyState !== 0) return;
    this.readyState = 1;
    this.onopen?.();
  }
  send(s) {
    assert.equal(this.readyState, 1, "sends only on an open socket");
    this.raw.push(s);
    this.sent.push(JSON.parse(s));
    this.at.push(FakeSocket.clock?.t ?? 0);
  }
  close(code) {
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: "" }));
  }
  serverSays(m) {
    this.open();
    this.onmessage({ data: JSON.stringify(m) });
  }
  serverCloses(code, reason = "") {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
  /** What a browser shows for an upgrade answered 401 or 403, or a network failure: 1006, never opened. */
  failsBeforeOpen() {
    this.readyState = 3;
    this.onclose({ code: 1006, reason: "" });
  }
}
/** A stand-in for the browser's EventSource, driven by the test. Once closed it dispatches nothing, as a real one. */
export class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = new Map();
    FakeEventSource.all.push(this);
  }
  addEventListener(type, f) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), f]);
  }
  close() {
    this.readyState = 2;
  }
  _dispatch(type, event) {
    if (this.readyState === 2) return;
    for (const f of this.listeners.get(type) ?? []) f(event);
  }
  /** An event from the server (the stream opens first if it has not). */
  serverSends(type, payload) {
    if (this.readyState === 0) {
      this.readyState = 1;
      this._dispatch("open", {});
    }
    this._dispatch(type, { type, data: JSON.stringify(payload), lastEventId: "" });
  }
  /** The connection dropped: the browser will reconnect by itself (unless closed). */
  lost() {
    this.readyState = 0;
    this._dispatch("error", { type: "error" });
  }
  /** The browser gave up (an HTTP error status, a wrong content type). */
  failed() {
    this.readyState = 2;
    for (const f of this.listeners.get("error") ?? []) f({ type: "error" });
  }
  get symbols() {
    return (new URL(this.url).searchParams.get("symbols") ?? "").split(",").filter(Boolean);
  }
  get candles() {
    return (new URL(this.url).searchParams.get("candles") ?? "").split(",").filter(Boolean);
  }
  get token() {
    return new URL(this.url).searchParams.get("token");
  }
}

