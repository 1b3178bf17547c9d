// The demo page's candle chart in real headless Chromium against the real tickcast binary: the
// bars it draws are GET /candles' bars, the forming bar moves with the feed's trades, a click on
// another interval reloads the history, a click on a symbol charts it; over WebSocket and SSE.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  ARTIFACTS, freePort, startServer, stop, until, metric, browser, feed, httpBars, closedBars,
} from "./harness.mjs";

const fields = ({ start, open, high, low, close, volume, closed }) => ({ start, open, high, low, close, volume, closed });

/** The bars the page last drew (window.tickcastChart.drawn), and which series. */
const drawn = (page) => page.evaluate(() => ({
  symbol: window.tickcastChart.symbol, interval: window.tickcastChart.interval, bars: window.tickcastChart.drawn,
  state: document.getElementById("chart").dataset.state,
}));

/** Whether the chart shows `symbol` at `interval` and draws exactly GET /candles' bars (the last as many as it draws). */
async function chartMatches(page, port, symbol, interval) {
  const shown = await drawn(page);
  if (shown.symbol !== symbol || shown.interval !== interval || shown.state !== "ready") return false;
  const http = (await httpBars(port, symbol, interval)).map(fields);
  return http.length > 0 && JSON.stringify(shown.bars) === JSON.stringify(http.slice(-shown.bars.length)) &&
    shown.bars.length === Math.min(http.length, 301);
}

/** A data: URL of what the canvas shows now. */
const pixels = (page) => page.evaluate(() => document.getElementById("chart").toDataURL());

async function setup(t) {
  const [port, feedPort] = [await freePort(), await freePort()];
  const server = await startServer({ port, feedPort });
  const publisher = await feed(feedPort);
  const b = await browser();
  t.after(async () => { await b.close(); await publisher.close(); await stop(server); });
  return { port, feedPort, publisher, browser: b };
}

test("the demo page charts the history of /candles, moves the forming bar, and reloads on another interval", async (t) => {
  const { port, publisher, browser: b } = await setup(t);
  let price = await closedBars(port, publisher, "AAPL", 4, 100, 0.5);
  publisher.send({ symbol: "NVDA", bid: 50, ask: 50.5 });

  const page = await b.newPage({ viewport: { width: 1100, height: 760 } });
  await page.goto(`http://127.0.0.1:${port}/?symbols=AAPL,NVDA&chart=AAPL&interval=1s`);
  await until(() => chartMatches(page, port, "AAPL", "1s"), "the chart draws /candles' 1 s bars");
  const first = await drawn(page);
  assert.ok(first.bars.filter((bar) => bar.closed).length >= 4, "the closed bars made before the page opened: full history on open");
  assert.equal(await page.getAttribute("#intervals button.active", "data-interval"), "1s");
  assert.equal(await page.textContent("#chart-symbol"), "AAPL");
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 3, "AAPL, NVDA and the series AAPL@1s");

  // Another interval: its history, and the old series let go of.
  await page.click('#intervals button[data-interval="1m"]');
  await until(() => chartMatches(page, port, "AAPL", "1m"), "the chart reloads with /candles' 1 m bars");
  assert.equal(await page.getAttribute("#intervals button.active", "data-interval"), "1m");
  await until(async () => (await metric(port, "tickcast_subscriptions")) === 3, "AAPL@1s unsubscribed, AAPL@1m subscribed");

  // The forming bar moves with each trade (a new minute may start in between: then it is the new bar).
  for (const move of [0.25, -1.5, 2.75]) {
    const before = await pixels(page);
    price += move;
    publisher.trade("AAPL", price);
    await until(async () => {
      const last = (await drawn(page)).bars.at(-1);
      return last && !last.closed && last.close === price;
    }, `the forming bar drawn at ${price}`);
    assert.notEqual(await pixels(page), before, "the canvas shows it");
    await until(() => chartMatches(page, port, "AAPL", "1m"), "still /candles' bars");
  }
  assert.match(await page.textContent("#ohlc"), new RegExp(`C ${String(price).replace(".", "\\.")}.*forming`));

  // Back to 1 s: the history again, now with the new trades.
  await page.click('#intervals button[data-interval="1s"]');
  await until(() => chartMatches(page, port, "AAPL", "1s"), "the 1 s history reloaded");
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, "demo-candles.png") });

  // A click on a symbol charts it: NVDA only quoted, so its bars are its mids.
  await page.click('tr[data-symbol="NVDA"] td.sym');
  await until(() => chartMatches(page, port, "NVDA", "1s"), "NVDA's bars");
  assert.ok((await drawn(page)).bars.every((bar) => bar.close === 50.25 && bar.volume === 0), "the quote mid, no volume");
});

test("over SSE the chart draws /candles' bars too, and its interval picker reopens the stream", async (t) => {
  const { port, publisher, browser: b } = await setup(t);
  let price = await closedBars(port, publisher, "AAPL", 2, 300);
  const page = await b.newPage();
  let websockets = 0;
  page.on("websocket", () => websockets++);
  await page.goto(`http://127.0.0.1:${port}/?symbols=AAPL&chart=AAPL&interval=1s&transport=sse`);
  await until(() => chartMatches(page, port, "AAPL", "1s"), "the chart draws /candles' bars over SSE");
  const streamed = () => page.evaluate(() => new URL(window.tickcastClient.es.url).searchParams.get("candles"));
  assert.equal(await streamed(), "AAPL@1s");
  publisher.trade("AAPL", ++price);
  await until(async () => (await drawn(page)).bars.at(-1)?.close === price, "a live bar over SSE");
  await page.click('#intervals button[data-interval="5m"]');
  await until(async () => (await streamed()) === "AAPL@5m", "the stream reopened for AAPL@5m");
  await until(() => chartMatches(page, port, "AAPL", "5m"), "the 5 m history");
  publisher.trade("AAPL", ++price);
  await until(async () => (await drawn(page)).bars.at(-1)?.close === price, "the forming 5 m bar moves");
  assert.equal(websockets, 0);
});
