/**
 * Runs the CLI in this process with captured output: what a user would see on stdout and stderr, and the exit
 * code. `fetch` defaults to the real one (a server listening on a port), `now` to the wall clock.
 */
import { PassThrough } from "node:stream";
import type { CliContext } from "../cli/context.js";
import { saveCredentials } from "../cli/credentials.js";
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
  /** Told each chunk as it is written, for a command that runs until stopped (`stint db proxy`). */
  onWrite?: (stream: "stdout" | "stderr", chunk: string) => void;
}

export async function runCliCaptured(argv: string[], options: CliRunOptions): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const stdin = new PassThrough();
  stdin.end(options.input ?? "");
  const ctx: CliContext = {
    stdin: options.isTTY === undefined ? stdin : Object.assign(stdin, { isTTY: options.isTTY }),
    stdout: { write: (chunk) => (options.onWrite?.("stdout", String(chunk)), out.push(String(chunk)) > 0) },
    stderr: { write: (chunk) => (options.onWrite?.("stderr", String(chunk)), err.push(String(chunk)) > 0) },
    env: options.env,
    fetch: options.fetch ?? globalThis.fetch,
    now: options.now ?? (() => Date.now()),
    version: "0.0.0-test",
  };
  const code = await runCli(argv, ctx);
  return { code, stdout: out.join(""), stderr: err.join("") };
}

/**
 * A profile in `configDir` signed in as `name`, as `stint login` leaves it: the access token valid 10 minutes and the
 * refresh token 12 hours from `now`.
 */
export async function saveSignedIn(
  configDir: string,
  signIn: { name: string; now: number; id?: string; server?: string },
): Promise<void> {
  const at = (offsetMs: number) => new Date(signIn.now + offsetMs).toISOString();
  await saveCredentials(
    { STINT_CONFIG_DIR: configDir },
    {
      version: 1,
      server: signIn.server ?? "http://127.0.0.1:8420",
      principal: { id: signIn.id ?? "0190b6a0-0000-7000-8000-000000000001", name: signIn.name },
      accessToken: "access-1",
      accessTokenExpiresAt: at(600_000),
      refreshToken: "refresh-1",
      refreshTokenExpiresAt: at(43_200_000),
      savedAt: at(0),
    },
  );
}
