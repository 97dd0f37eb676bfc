#!/usr/bin/env node
/**
 * Builds what `npm test` needs from dist/ (the server for the CLI and child-process tests, the web app for the
 * browser tests) only when it is missing or older than what it is built from. `npm ci` and `npm install` build
 * already (the `prepare` script): building a second time cost ~45 s of a CI run on the 2-core machine.
 * A part is stale when any file it is built from (or the build's own configuration) is newer than its output.
 */
import { spawnSync } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SHARED = ["package.json", "package-lock.json", "tsconfig.json"];

const PARTS = [
  {
    name: "server",
    output: "dist/cli/main.js",
    inputs: ["src", "tsconfig.build.json", ...SHARED],
    // What tsconfig.build.json leaves out.
    skip: (file) => file.endsWith(".test.ts") || file.split(path.sep).includes("testing"),
    command: [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
  },
  {
    name: "web app",
    output: "dist/web/index.html",
    // The app imports src/contract, which imports from src/lib: any source of src may be in the bundle.
    inputs: ["web", "src", ...SHARED],
    skip: (file) => /\.test\.tsx?$/.test(file) || file.split(path.sep).includes("testing"),
    command: [path.join(ROOT, "node_modules/vite/bin/vite.js"), "build", "web"],
  },
];

/** The newest modification time among `input` (a file, or a directory's files) that `skip` keeps. */
async function newest(input, skip) {
  const where = path.join(ROOT, input);
  const info = await stat(where).catch(() => null);
  if (!info) return { time: 0, file: input };
  if (!info.isDirectory()) return { time: info.mtimeMs, file: input };
  let found = { time: 0, file: input };
  for (const file of await readdir(where, { recursive: true })) {
    if (skip(file)) continue;
    const entry = await stat(path.join(where, file));
    if (entry.isFile() && entry.mtimeMs > found.time) found = { time: entry.mtimeMs, file: path.join(input, file) };
  }
  return found;
}

/** Why `part` must be built, or null when its output is newer than everything it is built from. */
async function staleness(part) {
  const built = await stat(path.join(ROOT, part.output)).catch(() => null);
  if (!built) return `${part.output} is missing`;
  for (const input of part.inputs) {
    const latest = await newest(input, part.skip);
    if (latest.time > built.mtimeMs) return `${latest.file} is newer than ${part.output}`;
  }
  return null;
}

for (const part of PARTS) {
  const why = await staleness(part);
  if (!why) {
    console.log(`build-if-stale: the ${part.name} in dist/ is up to date`);
    continue;
  }
  console.log(`build-if-stale: building the ${part.name} (${why})`);
  const run = spawnSync(process.execPath, part.command, { cwd: ROOT, stdio: "inherit" });
  if (run.status !== 0) {
    console.error(`build-if-stale: building the ${part.name} failed (exit ${run.status ?? run.signal})`);
    process.exit(1);
  }
}
