// The TypeScript declarations (client.d.ts): `tsc --strict --noEmit` on tests/types/example.ts,
// which uses every declaration and holds `@ts-expect-error` lines for misuse the types must
// refuse (tsc fails on one that type-checks); and the declarations name exactly what client.js
// exports.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { WEB, tsc } from "./tsc.mjs";

test("tsc --strict --noEmit accepts the example, and each misuse in it is an error", async () => {
  const { code, out } = await tsc(["--strict", "--noEmit", "-p", "tests/types/tsconfig.json"]);
  assert.equal(code, 0, out);
  const example = fs.readFileSync(path.join(WEB, "tests/types/example.ts"), "utf8");
  assert.ok((example.match(/@ts-expect-error/g) ?? []).length >= 10, "misuse is tried");
});

test("without its @ts-expect-error lines the example fails exactly there", async (t) => {
  const dir = fs.mkdtempSync(path.join(WEB, "tests/types/.probe-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lines = fs.readFileSync(path.join(WEB, "tests/types/example.ts"), "utf8").split("\n");
  const expected = [];
  const probe = lines.map((l, i) => {
    if (!l.includes("// @ts-expect-error")) return l.replaceAll("../../client.js", "../../../client.js");
    expected.push(i + 2); // the line after the directive, 1-based
    return "//";
  });
  fs.writeFileSync(path.join(dir, "example.ts"), probe.join("\n"));
  fs.copyFileSync(path.join(WEB, "tests/types/tsconfig.json"), path.join(dir, "tsconfig.json"));
  const { code, out } = await tsc(["--strict", "--noEmit", "-p", path.join(dir, "tsconfig.json")]);
  assert.notEqual(code, 0);
  const failing = [...new Set([...out.matchAll(/example\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])))];
  assert.deepEqual(failing, expected, out);
});

test("client.d.ts declares exactly the values client.js exports, and the example imports them all", async () => {
  const runtime = Object.keys(await import("../client.js")).sort();
  const ts = createRequire(import.meta.url)(path.join(WEB, "node_modules/typescript"));
  const file = path.join(WEB, "client.d.ts");
  const program = ts.createProgram([file], { strict: true, noEmit: true, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"], types: [] });
  const checker = program.getTypeChecker();
  const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)));
  const values = exports.filter((s) => s.flags & ts.SymbolFlags.Value).map((s) => s.name).sort();
  assert.deepEqual(values, runtime, "declared values = runtime exports");
  const example = fs.readFileSync(path.join(WEB, "tests/types/example.ts"), "utf8");
  const imported = new Set([...example.matchAll(/import (?:type )?\{([^}]*)\} from "..\/..\/client.js"/g)]
    .flatMap((m) => m[1].split(",").map((s) => s.trim()).filter(Boolean)));
  const types = exports.filter((s) => !(s.flags & ts.SymbolFlags.Value)).map((s) => s.name);
  const missing = [...runtime, ...types.filter((n) => !["WebSocketLike", "EventSourceLike", "FetchLike"].includes(n))]
    .filter((n) => !imported.has(n));
  assert.deepEqual(missing, [], "the example uses every declaration");
});
