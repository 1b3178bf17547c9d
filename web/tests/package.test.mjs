// web/ as the npm package `tickcast-client`: `npm pack` makes a tarball of client.js,
// client.d.ts and README.md (no tests), which a scratch project installs (offline: the package
// has no dependencies), imports from an ES module, and type-checks a TypeScript file against,
// with Node's module resolution and with a bundler's.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { WEB, run, tsc } from "./tsc.mjs";

const npm = (args, cwd) => run("npm", [...args, "--no-audit", "--no-fund", "--loglevel=error"], { cwd, maxBuffer: 16 << 20 });

const APP_TS = `import { TickcastClient, TickcastDatafeed, CandleSeries, type Tick, type CandleBar, type ChartBar } from "tickcast-client";

const client = new TickcastClient({ url: "ws://127.0.0.1:8080/ws", symbols: ["AAPL"] });
client.addEventListener("tick", (e) => {
  const t: Tick = e.detail;
  console.log(t.symbol, t.seq, t.bid);
});
const series: CandleSeries = client.subscribeCandles("AAPL", "1m", { limit: 100 });
series.addEventListener("bar", (e) => {
  const bar: CandleBar = e.detail.bar;
  console.log(bar.start, bar.close, bar.closed);
});
const feed = new TickcastDatafeed(client);
feed.subscribeBars({ name: "AAPL" }, "1", (bar: ChartBar) => console.log(bar.time), "guid");
// @ts-expect-error the types are loaded, not \`any\`: a tick has no price
client.addEventListener("tick", (e) => console.log(e.detail.price));
export {};
`;

const APP_MJS = `import { TickcastClient, CandleSeries, TickcastDatafeed, decodeMsgpack } from "tickcast-client";
import pkg from "tickcast-client/package.json" with { type: "json" };
const client = new TickcastClient({ url: "ws://127.0.0.1:1/ws", symbols: ["AAPL"] });
const series = client.subscribeCandles("AAPL", "1m");
console.log(JSON.stringify({
  name: pkg.name, version: pkg.version, client: client instanceof EventTarget, series: series instanceof CandleSeries,
  datafeed: typeof TickcastDatafeed, decoded: decodeMsgpack(new Uint8Array([0x81, 0xa1, 0x61, 0x01])),
  resolved: import.meta.resolve("tickcast-client"),
}));
`;

test("npm pack makes tickcast-client; a scratch project installs it, imports it and type-checks against it", async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "tickcast-pack-"));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const packDir = path.join(tmp, "pack");
  fs.mkdirSync(packDir);

  const { stdout } = await npm(["pack", "--json", "--pack-destination", packDir], WEB);
  const [packed] = JSON.parse(stdout);
  const pkg = JSON.parse(fs.readFileSync(path.join(WEB, "package.json"), "utf8"));
  assert.equal(packed.name, "tickcast-client");
  assert.equal(packed.version, pkg.version);
  assert.deepEqual(packed.files.map((f) => f.path).sort(), ["README.md", "client.d.ts", "client.js", "package.json"],
                   "what ships: the client, its types, a README; no tests, no demo page");
  assert.deepEqual(pkg.exports["."], { types: "./client.d.ts", default: "./client.js" });
  assert.equal(pkg.type, "module");
  assert.equal(pkg.dependencies, undefined, "no runtime dependencies");
  const tarball = path.join(packDir, packed.filename);
  assert.ok(fs.existsSync(tarball));

  const app = path.join(tmp, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "scratch-app", private: true, type: "module" }));
  await npm(["install", "--offline", "--ignore-scripts", tarball], app);
  const installed = path.join(app, "node_modules/tickcast-client");
  assert.equal(fs.readFileSync(path.join(installed, "client.js"), "utf8"), fs.readFileSync(path.join(WEB, "client.js"), "utf8"));
  assert.equal(fs.readFileSync(path.join(installed, "client.d.ts"), "utf8"), fs.readFileSync(path.join(WEB, "client.d.ts"), "utf8"));
  assert.ok(!fs.existsSync(path.join(installed, "tests")));

  // An ES module imports it by name.
  fs.writeFileSync(path.join(app, "main.mjs"), APP_MJS);
  const out = JSON.parse((await run(process.execPath, ["main.mjs"], { cwd: app })).stdout);
  assert.deepEqual(out, { name: "tickcast-client", version: pkg.version, client: true, series: true, datafeed: "function",
                          decoded: { a: 1 }, resolved: new URL(`file://${path.join(installed, "client.js")}`).href });

  // TypeScript finds the types through "exports", as Node resolves modules and as a bundler does.
  fs.writeFileSync(path.join(app, "app.ts"), APP_TS);
  for (const [module, resolution] of [["nodenext", "nodenext"], ["esnext", "bundler"]]) {
    const { code, out: diagnostics } = await tsc(["--strict", "--noEmit", "--target", "es2022", "--lib", "es2022,dom",
                                                 "--module", module, "--moduleResolution", resolution, "app.ts"], app);
    assert.equal(code, 0, `${resolution}: ${diagnostics}`);
  }
  // And the same file without the expect-error line fails: the types are really checked.
  fs.writeFileSync(path.join(app, "app.ts"), APP_TS.replace(/\/\/ @ts-expect-error.*\n/, ""));
  const { code, out: diagnostics } = await tsc(["--strict", "--noEmit", "--target", "es2022", "--lib", "es2022,dom",
                                               "--module", "nodenext", "--moduleResolution", "nodenext", "app.ts"], app);
  assert.notEqual(code, 0);
  assert.match(diagnostics, /Property 'price' does not exist on type 'Tick'/);
});
