/** End-to-end support: run the built server and CLI as real processes. */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../src/testing/ports.js";
export { freePort };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.join(ROOT, "bin/stint.js");

export function assertBuilt(): void {
  if (!existsSync(path.join(ROOT, "dist/cli/main.js")))
    throw new Error("dist/ is missing: run `npm run build` first (npm test does)");
}

export interface RunningProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first match of `pattern` in stdout+stderr. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function start(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): RunningProcess {
  const child = spawn(command, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group, so that kill() reaches what it starts too (`npm start` → sh → node).
    detached: true,
  });
  let output = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    listeners.forEach((l) => l());
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    output: () => output,
    waitFor(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = output.match(pattern);
          if (match) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(match);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern}; output so far:\n${output}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async kill(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid!, signal);
        } catch {
          child.kill(signal);
        }
        await exited;
      }
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `stint ARGS` (the built CLI) to completion, optionally feeding stdin. */
export function cli(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

export async function waitForHealth(url: string, timeoutMs: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return Date.now() - started;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > timeoutMs) throw new Error(`${url}/healthz did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The built server as `npm start` runs it, for browser tests: a free loopback port (or the one given), its own
 * data directory under `work`, no session proxies, short scheduler and outbox polls. Resolves once it listens.
 */
export async function startWebServer(options: {
  work: string;
  /** The port to listen on, when the test needed it before (e.g. for an identity provider's redirect URI). */
  port?: number;
  /** The host name in the URL (WebAuthn needs a name, `localhost`, never an IP address). */
  host?: string;
  env?: NodeJS.ProcessEnv;
}): Promise<{ server: RunningProcess; url: string }> {
  assertBuilt();
  if (!existsSync(path.join(ROOT, "dist/web/index.html"))) throw new Error("dist/web is missing: run `npm run build`");
  const port = options.port ?? (await freePort());
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  const server = start(process.execPath, [BIN, "server"], {
    env: {
      STINT_LISTEN: `127.0.0.1:${port}`,
      STINT_DATA_DIR: path.join(options.work, "data"),
      STINT_SSH_PROXY_LISTEN: "off",
      STINT_PG_PROXY_LISTEN: "off",
      STINT_MYSQL_PROXY_LISTEN: "off",
      STINT_SCHEDULER_POLL: "200ms",
      STINT_OUTBOX_POLL: "200ms",
      STINT_LOG_LEVEL: "warn",
      ...options.env,
    },
  });
  await server.waitFor(/Stint is listening/, 90_000);
  return { server, url };
}
