// Runs the TypeScript compiler of web/node_modules (a devDependency, pinned): what the type and
// package tests share. Not a test file itself (the runner picks *.test.mjs).
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const TSC = path.join(WEB, "node_modules/typescript/bin/tsc");
export const run = promisify(execFile);

/** Runs tsc with `args` in `cwd`; resolves to {code, out} (its diagnostics). */
export async function tsc(args, cwd = WEB) {
  try {
    const { stdout, stderr } = await run(process.execPath, [TSC, ...args], { cwd, maxBuffer: 16 << 20 });
    return { code: 0, out: stdout + stderr };
  } catch (e) {
    return { code: typeof e.code === "number" ? e.code : 1, out: (e.stdout ?? "") + (e.stderr ?? "") + (e.stdout || e.stderr ? "" : String(e)) };
  }
}
