// What the browser tests share: the real tickcast binary on free loopback
// ports, its TCP feed and HTTP endpoints, tokens, and headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core). Not a test file
// itself (the runner picks *.test.mjs).
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createInterface } from "node:readline";
import net from "node:net";
import https from "node:https";
import fs from "node:fs";
import os from "node:os";
import crypto from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = process.env.TICKCAST_BIN || path.join(ROOT, "target/debug/tickcast");
export const ARTIFACTS = path.join(ROOT, "target/artifacts");
export const SECRET = "browser-test-secret";
export const SYMBOLS = ["AAPL", "NVDA", "FX:EUR/USD"];

export async function freePort() {
  const srv = net.createServer().listen(0, "127.0.0.1");
  await new Promise((r) => srv.once("listening", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Starts tickcast with a TCP feed (and `args`); resolves once it listens. */
export async function startServer({ port, feedPort, env = {}, args = [] }) {
  const child = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--feed", `tcp://127.0.0.1:${feedPort}`, "--coalesce", "10ms", ...args],
                      { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  const lines = createInterface({ input: child.stderr });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tickcast did not start")), 15000);
    lines.on("line", (l) => { if (/listening on https?:\/\//.test(l)) { clearTimeout(timer); resolve(); } });
    child.once("exit", (code) => reject(new Error(`tickcast exited with ${code}`)));
  });
  return child;
}

export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
}

/** Publishes NDJSON ticks to the feed and waits until /snapshot (asked with `headers()`) shows them;
 *  `ca`: the server's certificate, when it serves https. */
export async function publish(port, feedPort, ticks, headers = () => ({}), ca = null) {
  const sock = net.connect(feedPort, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  sock.write(ticks.map((t) => JSON.stringify(t)).join("\n") + "\n");
  sock.end();
  const want = new Map(ticks.map((t) => [t.symbol, t]));
  await until(async () => {
    const snap = await snapshot(port, [...want.keys()], headers, ca);
    return snap.length === want.size && snap.every((p) => want.get(p.symbol).bid === undefined || p.bid === want.get(p.symbol).bid);
  }, "the feed's ticks reach the server");
}

/** /snapshot of `symbols`; `headers()` is called for each request (a token's jti is accepted once);
 *  over https, trusting only `ca`, when given. */
export async function snapshot(port, symbols, headers = () => ({}), ca = null) {
  const query = `/snapshot?symbols=${symbols.map(encodeURIComponent).join(",")}`;
  if (ca) return JSON.parse(await httpsGet(`https://127.0.0.1:${port}${query}`, ca));
  const r = await fetch(`http://127.0.0.1:${port}${query}`, { headers: headers() });
  assert.equal(r.status, 200);
  return r.json();
}

/** The body of a 200 answer over https, trusting `ca` (a self-signed certificate). */
async function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { body += d; });
      res.on("end", () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: ${res.statusCode} ${body}`))));
    }).on("error", reject);
  });
}

export async function metric(port, series) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  // Every tickcast series carries node="…": look it up without that label.
  const withoutNode = (l) => l.replace(/\{node="[^"]*"\}/, "").replace(/node="[^"]*",?/, "");
  const line = text.split("\n").map(withoutNode).find((l) => l.startsWith(series + " "));
  return Number(line.split(" ")[1]);
}

export async function until(cond, what, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** An HS256 token signed here (as an embedding app's backend would), living `ttlSec` seconds. */
export function sign(ttlSec, secret = SECRET, sub = "alice") {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, iat: now, exp: now + ttlSec, jti: crypto.randomUUID() })}`;
  return `${input}.${crypto.createHmac("sha256", secret).update(input).digest("base64url")}`;
}

export function token(ttl, sub = "alice") {
  return execFileSync(BIN, ["token", "--sub", sub, "--ttl", ttl], { env: { ...process.env, TICKCAST_AUTH_SECRET: SECRET } }).toString().trim();
}

export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** The page's table as {symbol: {bid, ask, last}}. */
export async function table(page) {
  return page.$$eval("#rows tr", (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.symbol, {
    bid: tr.querySelector(".bid").textContent, ask: tr.querySelector(".ask").textContent,
    last: tr.querySelector(".last").textContent, stale: tr.classList.contains("stale") }])));
}

export function matches(rows, snap) {
  return snap.every((p) => rows[p.symbol] && rows[p.symbol].bid === String(p.bid) && rows[p.symbol].ask === String(p.ask) && !rows[p.symbol].stale);
}

// ---------------------------------------------------------------- candles (§4c)

/** A feed publisher kept connected: `trade(symbol, last)` sends a trade (volume a running total). */
export async function feed(feedPort) {
  const sock = net.connect(feedPort, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  const volume = new Map();
  return {
    send: (tick) => sock.write(JSON.stringify(tick) + "\n"),
    trade(symbol, last) {
      volume.set(symbol, (volume.get(symbol) ?? 1000) + 100);
      sock.write(JSON.stringify({ symbol, last, volume: volume.get(symbol) }) + "\n");
    },
    close: () => new Promise((r) => sock.end(r)),
  };
}

/** GET /candles' bars (as many as the server keeps), with `headers`. */
export async function httpBars(port, symbol, interval, headers = {}) {
  const r = await fetch(`http://127.0.0.1:${port}/candles?symbol=${encodeURIComponent(symbol)}&interval=${interval}&limit=1000`, { headers });
  assert.equal(r.status, 200, await r.clone().text());
  const body = await r.json();
  assert.deepEqual([body.symbol, body.interval], [symbol, interval]);
  return body.bars;
}

/**
 * Makes `n` closed 1 s bars of `symbol` at closing prices from `price` up (with `wiggle`, each
 * bar trades below and above first): the trades of one bar, then waits (on /candles) until it
 * has closed, then the next. Returns the next price.
 */
export async function closedBars(port, publisher, symbol, n, price, wiggle = 0) {
  for (let i = 0; i < n; i++, price++) {
    if (wiggle) {
      publisher.trade(symbol, price - wiggle);
      publisher.trade(symbol, price + 2 * wiggle);
    }
    publisher.trade(symbol, price);
    await until(async () => (await httpBars(port, symbol, "1s")).some((b) => b.close === price && b.closed), `a closed 1 s bar at ${price}`);
  }
  return price;
}

export const quotes = (base) => SYMBOLS.map((s, i) => ({ symbol: s, bid: base + i, ask: base + i + 0.5 }));


/** A self-signed certificate for 127.0.0.1 made with the openssl CLI: {cert, key} paths and the
 *  certificate's PEM; the directory goes when `t` (a test context) ends. */
export function selfSignedCert(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tickcast-tls-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cert = path.join(dir, "cert.pem"), key = path.join(dir, "key.pem");
  // Node's crypto makes keys but not X.509 certificates: the openssl CLI (Debian: `openssl`) does.
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                           "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                           "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
  return { cert, key, pem: fs.readFileSync(cert) };
}

/**
 * A TCP proxy on a free loopback port in front of `upstreamPort`, for what a browser cannot be
 * made to do: `cut()` drops every connection (a network blip), `hold()` keeps new connections
 * waiting until `release()`, `refuseUpgrades` answers WebSocket upgrades 403 (a proxy that
 * does not pass them). `heads` holds the request head of each connection's first request.
 */
export async function startProxy(upstreamPort, { refuseUpgrades = false } = {}) {
  const live = new Set();
  let held = [];
  let holding = false;
  const proxy = { heads: [], upgradesRefused: 0 };
  const pass = (client, first) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    live.add(client).add(upstream);
    const end = () => { client.destroy(); upstream.destroy(); live.delete(client); live.delete(upstream); };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    upstream.write(first);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const server = net.createServer((client) => {
    let head = Buffer.alloc(0);
    const onData = (chunk) => {
      head = Buffer.concat([head, chunk]);
      if (!head.includes("\r\n\r\n")) return;
      client.off("data", onData);
      client.pause();
      const text = head.toString("latin1");
      proxy.heads.push(text.slice(0, text.indexOf("\r\n\r\n")));
      if (refuseUpgrades && /^upgrade:\s*websocket/im.test(text)) {
        proxy.upgradesRefused++;
        return client.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      }
      if (holding) held.push(() => pass(client, head));
      else pass(client, head);
    };
    client.on("data", onData);
    client.on("error", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  proxy.port = server.address().port;
  proxy.cut = () => { for (const s of live) s.destroy(); live.clear(); };
  proxy.hold = () => { holding = true; };
  proxy.held = () => held.length;
  proxy.release = () => { holding = false; const h = held; held = []; for (const go of h) go(); };
  proxy.close = async () => { proxy.cut(); await new Promise((r) => server.close(r)); };
  return proxy;
}
