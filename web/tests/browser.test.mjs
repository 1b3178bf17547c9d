// The demo page and the client library in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core) against the real tickcast binary.
import test from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import {
  ARTIFACTS, SECRET, SYMBOLS, freePort, startServer, stop, publish, snapshot, metric, until, sign, token, browser,
  table, matches, quotes,
} from "./harness.mjs";

test("the demo page shows the server's prices, adds symbols, and survives a restart", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  let server = await startServer({ port, feedPort });
  const b = await browser();
  t.after(async () => { await b.close(); await stop(server); });
  await publish(port, feedPort, [...quotes(100), { symbol: "NFLX", bid: 700.25, ask: 700.5 }]);

  const page = await b.newPage({ viewport: { width: 1100, height: 640 } });
  const snap = await snapshot(port, SYMBOLS);
  await page.goto(`http://127.0.0.1:${port}/?symbols=${SYMBOLS.join(",")}`);
  // Within 2 s of the page having loaded, it shows exactly what /snapshot says.
  await until(async () => matches(await table(page), snap), "the table matches /snapshot within 2 s", 2000);
  assert.equal(await page.textContent("#badge"), "open");

  // Adding a symbol in the UI subscribes to it and shows its price.
  await page.fill("#symbol", "NFLX");
  await page.click("#add button");
  await until(async () => (await table(page)).NFLX?.bid === "700.25", "NFLX shows its price");
  // AAPL, NVDA, FX:EUR/USD, NFLX, and the chart's series AAPL@1m.
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 5, "NFLX subscribed on the server");

  // Removing one unsubscribes it.
  await page.click('tr[data-symbol="NVDA"] button.remove');
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 4, "NVDA unsubscribed on the server");
  assert.equal((await table(page)).NVDA, undefined);

  // Live ticks flash.
  await publish(port, feedPort, [{ symbol: "AAPL", bid: 101, ask: 101.5 }]);
  await until(async () => (await table(page)).AAPL.bid === "101", "a live tick");
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, "demo-page.png") });

  // Kill the server: the badge counts down to a reconnect.
  await stop(server);
  await until(async () => (await page.textContent("#badge")).startsWith("reconnecting"), "badge shows reconnecting");
  server = await startServer({ port, feedPort });
  await publish(port, feedPort, quotes(200));
  await until(async () => (await page.textContent("#badge")) === "open", "badge back to open", 20000);
  const after = await snapshot(port, SYMBOLS);
  const shown = SYMBOLS.filter((s) => s !== "NVDA");
  const afterShown = after.filter((p) => shown.includes(p.symbol));
  await until(async () => matches(await table(page), afterShown), "no stale row after the restart", 10000);
  assert.equal((await table(page)).NVDA, undefined, "a removed symbol stays removed");
});

test("with auth on, a token callback works and an expired token ends in a clear message", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort, env: { TICKCAST_AUTH_SECRET: SECRET } });
  const b = await browser();
  t.after(async () => { await b.close(); await stop(server); });
  const bearer = () => ({ Authorization: `Bearer ${sign(60)}` });
  const sock = net.connect(feedPort, "127.0.0.1");
  await new Promise((r) => sock.once("connect", r));
  sock.end(quotes(300).map((q) => JSON.stringify(q)).join("\n") + "\n");
  await until(async () => (await snapshot(port, SYMBOLS, bearer)).length === SYMBOLS.length, "ticks reach the server");

  const ok = await b.newPage();
  let issued = 0;
  await ok.exposeFunction("TICKCAST_GET_TOKEN", () => { issued++; return token("60s"); });
  await ok.goto(`http://127.0.0.1:${port}/?symbols=${SYMBOLS.join(",")}`);
  const snap = await snapshot(port, SYMBOLS, bearer);
  await until(async () => matches(await table(ok), snap), "prices with a token from the callback");
  assert.equal(issued, 1);

  const expired = await b.newPage();
  await expired.exposeFunction("TICKCAST_GET_TOKEN", async () => {
    const t = token("1s");
    await new Promise((r) => setTimeout(r, 2100));
    return t;
  });
  const attemptsBefore = await metric(port, 'tickcast_connections_total{result="unauthorized"}') + await metric(port, 'tickcast_connections_total{result="accepted"}');
  await expired.goto(`http://127.0.0.1:${port}/?symbols=${SYMBOLS.join(",")}`);
  await until(async () => (await expired.textContent("#badge")).startsWith("closed"), "the page gives up", 10000);
  assert.match(await expired.textContent("#badge"), /expired/);
  assert.match(await expired.textContent("#message"), /expired/);
  await new Promise((r) => setTimeout(r, 1500));
  const attemptsAfter = await metric(port, 'tickcast_connections_total{result="unauthorized"}') + await metric(port, 'tickcast_connections_total{result="accepted"}');
  assert.equal(attemptsAfter, attemptsBefore, "no reconnect loop: not a single upgrade attempt");
  assert.match(await expired.textContent("#badge"), /closed/);
});

/** `n` symbols of 16 characters: 300 of them pass the server's 4096-byte message limit even without `since`. */
const longSymbols = (n) => Array.from({ length: n }, (_, i) => `LONG.SYMBOL.${String(i).padStart(4, "0")}`);

test("a page holding 300 symbols survives a blip and a restart, and resubscribes all of them", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  let server = await startServer({ port, feedPort });
  const b = await browser();
  t.after(async () => { await b.close(); await stop(server); });
  const symbols = longSymbols(300);
  const last = symbols.at(-1);
  const quotesOf = (base) => symbols.map((s, i) => ({ symbol: s, bid: base + i, ask: base + i + 0.5 }));
  await publish(port, feedPort, quotesOf(100));

  const page = await b.newPage();
  await page.goto(`http://127.0.0.1:${port}/?symbols=${symbols.join(",")}`);
  // The 300 symbols, and the chart's series of the first.
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 301, "all 300 subscribed at the first connect");
  await until(async () => matches(await table(page), await snapshot(port, symbols)), "all 300 shown");

  // A blip (the connection drops, the server stays): the resubscribe carries since for all 300.
  await page.evaluate(() => window.tickcastClient.ws.close(4000));
  await until(async () => (await metric(port, 'tickcast_connections_total{result="accepted"}')) === 2, "reconnected after the blip");
  await until(async () => (await metric(port, "tickcast_connections")) === 1 && (await metric(port, "tickcast_subscriptions")) === 301,
              "all 300 resubscribed after the blip");
  await publish(port, feedPort, [{ symbol: last, bid: 7.25, ask: 7.5 }]);
  await until(async () => (await table(page))[last].bid === "7.25", "ticks for the last symbol after the blip");

  // A restart: a new epoch, so no since, and still more than one message's worth of symbols.
  await stop(server);
  await until(async () => (await page.textContent("#badge")).startsWith("reconnecting"), "badge shows reconnecting");
  server = await startServer({ port, feedPort });
  await publish(port, feedPort, quotesOf(500));
  await until(async () => (await page.textContent("#badge")) === "open", "badge back to open", 30000);
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 301, "all 300 resubscribed after the restart");
  await until(async () => matches(await table(page), await snapshot(port, symbols)), "no stale row after the restart");
  await publish(port, feedPort, [{ symbol: last, bid: 9.25, ask: 9.5 }]);
  await until(async () => (await table(page))[last].bid === "9.25", "ticks for the last symbol after the restart");
  assert.equal(Object.keys(await table(page)).length, 300, "no symbol dropped");
});

test("with tokens living 8 s, the page refreshes them and stays on one connection past two expiries", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort, env: { TICKCAST_AUTH_SECRET: SECRET } });
  const b = await browser();
  t.after(async () => { await b.close(); await stop(server); });
  const bearer = () => ({ Authorization: `Bearer ${sign(60)}` });
  await publish(port, feedPort, quotes(100), bearer);

  const page = await b.newPage();
  let issued = 0;
  await page.exposeFunction("TICKCAST_GET_TOKEN", () => { issued++; return sign(8); });
  const start = Date.now();
  await page.goto(`http://127.0.0.1:${port}/?symbols=${SYMBOLS.join(",")}`);
  await until(async () => (await page.textContent("#badge")) === "open", "connected");
  const oneConnection = async () => {
    assert.equal(await metric(port, 'tickcast_connections_total{result="accepted"}'), 1, "a single upgrade");
    assert.equal(await metric(port, 'tickcast_disconnects_total{reason="auth"}'), 0, "never closed for an expired token");
    assert.equal(await page.textContent("#badge"), "open");
    return true;
  };
  // The first token expires 8 s after it was issued, its successor's successor by 16 s: wait past both.
  await until(async () => (await oneConnection()) && Date.now() > start + 18000, "two expiries passed", 30000);
  assert.ok(issued >= 3, `${issued} tokens: refreshed before each expiry`);
  assert.equal(await page.textContent("#message"), "", "no error");
  await publish(port, feedPort, [{ symbol: "AAPL", bid: 123.5, ask: 124 }], bearer);
  await until(async () => (await table(page)).AAPL.bid === "123.5", "still getting ticks");
  await oneConnection();
});

test("a token callback whose tokens the server refuses: the page stops after 3 refusals and says why", async (t) => {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort, env: { TICKCAST_AUTH_SECRET: SECRET } });
  const b = await browser();
  t.after(async () => { await b.close(); await stop(server); });

  const page = await b.newPage();
  await page.exposeFunction("TICKCAST_GET_TOKEN", () => sign(60, "not-the-secret"));
  await page.goto(`http://127.0.0.1:${port}/?symbols=${SYMBOLS.join(",")}`);
  await until(async () => (await page.textContent("#badge")).startsWith("closed"), "the page gives up", 30000);
  assert.match(await page.textContent("#badge"), /refused by the server \(401\)/);
  assert.match(await page.textContent("#message"), /unauthorized/, "the server's own words");
  const unauthorized = await metric(port, 'tickcast_connections_total{result="unauthorized"}');
  assert.ok(unauthorized >= 1 && unauthorized <= 4, `${unauthorized} upgrade attempts`);
  assert.equal(await metric(port, 'tickcast_connections_total{result="accepted"}'), 0);
  // Stopped for good: nothing is scheduled that could try again.
  assert.ok(await page.evaluate(() => window.tickcastClient.stopped && Object.values(window.tickcastClient.timers).every((x) => x === null)));
});
