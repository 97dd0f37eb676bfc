/**
 * Runs the CLI in this process with captured output: what a user would see on stdout and stderr, and the exit
 * code. `fetch` defaults to the real one (a server listening on a port), `now` to the wall clock.
 */
import { PassThrough } from "node:stream";
import type { CliContext } from "../cli/context.js";
import { runCli } from "../cli/program.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  env: Readonly<Record<string, string | undefined>>;
  /** What the user types or pipes in (stdin ends after it). */
  input?: string;
  fetch?: typeof fetch;
  now?: () => number;
  /** Whether stdin is a terminal (default: as a PassThrough is, not one). */
  isTTY?: boolean;
}

export async function runCliCaptured(argv: string[], options: CliRunOptions): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const stdin = new PassThrough();
  stdin.end(options.input ?? "");
  const ctx: CliContext = {
    stdin: options.isTTY === undefined ? stdin : Object.assign(stdin, { isTTY: options.isTTY }),
    stdout: { write: (chunk) => out.push(String(chunk)) > 0 },
    stderr: { write: (chunk) => err.push(String(chunk)) > 0 },
    env: options.env,
    fetch: options.fetch ?? globalThis.fetch,
    now: options.now ?? (() => Date.now()),
    version: "0.0.0-test",
  };
  const code = await runCli(argv, ctx);
  return { code, stdout: out.join(""), stderr: err.join("") };
}
