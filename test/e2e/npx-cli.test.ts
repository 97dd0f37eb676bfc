/**
 * The README's first CLI command after `npm start` is `npx stint setup …`, run in the checkout. npm runs a
 * project's own bin by installing the project into its npx cache as a link, which runs the project's `prepare`
 * script: with `prepare` building unconditionally, that first `npx stint` rebuilt the server and the web app
 * (~25 s on the 2-core machine, for nothing: `npm install` had built them). `prepare` builds only what is stale.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertBuilt } from "./support.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BUILT = ["dist/cli/main.js", "dist/web/index.html"];

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number; output: string }>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, output }));
  });
}

describe("npx stint in the checkout", () => {
  let cache: string;

  beforeAll(async () => {
    assertBuilt();
    // What `npm install` leaves: everything built from the sources as they are.
    const built = await run(process.execPath, ["scripts/build-if-stale.mjs"]);
    expect(built.code, built.output).toBe(0);
    cache = mkdtempSync(path.join(tmpdir(), "stint-npx-cache-"));
  }, 300_000);

  afterAll(() => {
    if (cache) rmSync(cache, { recursive: true, force: true });
  });

  it("runs the CLI on its first use without building the project again", async () => {
    const before = BUILT.map((file) => statSync(path.join(ROOT, file)).mtimeMs);
    // A fresh npm cache: npx's first use of the project's bin, as on a new machine.
    const ran = await run("npm", ["exec", "--yes", "--", "stint", "--help"], { npm_config_cache: cache });
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).toMatch(/stint check: does not hold the role/);
    expect(ran.output).not.toMatch(/vite build|tsc -p/);
    expect(BUILT.map((file) => statSync(path.join(ROOT, file)).mtimeMs)).toEqual(before);
  }, 300_000);
});
