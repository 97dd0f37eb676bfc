/**
 * End-to-end support: run the built server and CLI as real processes — one way to start a server node
 * (`startServerNode`: a clean environment, a free port, ready when /readyz answers), shared by the crash,
 * multinode, tamper and reliability tests, and an HTTP client that records every answer.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../src/testing/ports.js";
export { freePort };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.join(ROOT, "bin/stint.js");
const MIGRATIONS_DIR = path.join(ROOT, "migrations");

export function assertBuilt(): void {
  if (!existsSync(path.join(ROOT, "dist/cli/main.js")))
    throw new Error("dist/ is missing: run `npm run build` first (npm test does)");
}

let migratedDir: Promise<string> | undefined;

/**
 * An embedded data directory whose database has every migration applied and nothing else (no key, no
 * administrator), made once per set of migrations on this machine: each server a test starts on a copy of it
 * skips the seconds of CPU that creating and migrating PGlite's database takes. The server still runs its
 * migrations at start (none pending) and does everything else a first start does. Migrating anew is what the
 * quickstart, readme, crash and embedded-data-dir tests check.
 */
function migratedEmbeddedDb(): Promise<string> {
  migratedDir ??= (async () => {
    const hash = createHash("sha256");
    for (const name of (await readdir(MIGRATIONS_DIR)).sort())
      hash.update(name).update(await readFile(path.join(MIGRATIONS_DIR, name)));
    hash.update(await readFile(path.join(ROOT, "node_modules/@electric-sql/pglite/package.json"))).update("settled-1");
    const dir = path.join(tmpdir(), `stint-e2e-embedded-db-${hash.digest("hex").slice(0, 16)}`);
    if (existsSync(path.join(dir, "PG_VERSION"))) return dir;
    // Built under a private name and renamed: a concurrent test process never copies half a directory.
    const building = `${dir}.${process.pid}.${randomBytes(4).toString("hex")}`;
    const { PGlite } = await import("@electric-sql/pglite");
    const { migrate, storeOverPglite } = await import("../../src/lib/db.js");
    const store = storeOverPglite(await PGlite.create(building));
    try {
      await migrate(store.db, MIGRATIONS_DIR);
    } finally {
      await store.close();
    }
    // Started once more: that start writes the relation cache's init files (pg_internal.init) the migrations' DDL
    // left out of date, which every server started on a copy would otherwise rebuild at its own start.
    const settled = await PGlite.create(building);
    await settled.query("select count(*) from pg_class");
    await settled.close();
    await rename(building, dir).catch(() => rm(building, { recursive: true, force: true }));
    return dir;
  })();
  return migratedDir;
}

/**
 * Makes `dataDir` (a server's STINT_DATA_DIR, not created yet) start from a migrated embedded database, as
 * `migratedEmbeddedDb` says. Does nothing once it holds a database (a restarted server keeps its own).
 */
export async function seedDataDir(dataDir: string): Promise<void> {
  if (existsSync(path.join(dataDir, "db"))) return;
  const template = await migratedEmbeddedDb();
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await cp(template, path.join(dataDir, "db"), { recursive: true });
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
 * data directory under `work`, no session proxies, a short outbox poll. The scheduler polls every second: it wakes
 * at the next expiry anyway, and at 200 ms its passes were half of an idle server's CPU (3.3 s -> 1.8 s a 30 s).
 * Resolves once it listens.
 */
export async function startWebServer(options: {
  work: string;
  /** The port to listen on, when the test needed it before (e.g. for an identity provider's redirect URI). */
  port?: number;
  /** The host name in the URL (WebAuthn needs a name, `localhost`, never an IP address). */
  host?: string;
  env?: NodeJS.ProcessEnv;
  /** Let the server create and migrate its embedded database itself (by default it starts from `seedDataDir`). */
  migrate?: boolean;
}): Promise<{ server: RunningProcess; url: string }> {
  assertBuilt();
  if (!existsSync(path.join(ROOT, "dist/web/index.html"))) throw new Error("dist/web is missing: run `npm run build`");
  if (options.migrate !== true && !options.env?.STINT_DATABASE_URL) await seedDataDir(path.join(options.work, "data"));
  const port = options.port ?? (await freePort());
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  const server = start(process.execPath, [BIN, "server"], {
    env: {
      STINT_LISTEN: `127.0.0.1:${port}`,
      STINT_DATA_DIR: path.join(options.work, "data"),
      STINT_SSH_PROXY_LISTEN: "off",
      STINT_PG_PROXY_LISTEN: "off",
      STINT_MYSQL_PROXY_LISTEN: "off",
      STINT_SCHEDULER_POLL: "1s",
      STINT_OUTBOX_POLL: "200ms",
      STINT_LOG_LEVEL: "warn",
      ...options.env,
    },
  });
  await server.waitFor(/Stint is listening/, 90_000);
  return { server, url };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The parent's environment without any Stint setting (nor NODE_OPTIONS), plus `extra`. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith("STINT_") && key !== "NODE_OPTIONS") env[key] = value;
  return { ...env, ...extra };
}

/** A server's environment: `childEnv` with warn-level logs and no session proxies, unless `extra` says otherwise. */
export function serverEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return childEnv({
    STINT_LOG_LEVEL: "warn",
    STINT_SSH_PROXY_LISTEN: "off",
    STINT_PG_PROXY_LISTEN: "off",
    STINT_MYSQL_PROXY_LISTEN: "off",
    ...extra,
  });
}

/** One HTTP answer as a client saw it. */
export interface Answer {
  /** `METHOD /path`. */
  what: string;
  status: number;
  /** The error envelope's code, when there is one. */
  code?: string;
  retryAfter: string | null;
  ms: number;
  body: unknown;
}

/** Sends one request to `base` (30 s at most) and reads the whole answer. */
export async function call(base: string, method: string, url: string, auth?: string, body?: unknown): Promise<Answer> {
  const started = Date.now();
  const res = await fetch(`${base}${url}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(auth ? { authorization: auth } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  const code = (parsed as { error?: { code?: string } } | null)?.error?.code;
  return {
    what: `${method} ${url}`,
    status: res.status,
    ...(code ? { code } : {}),
    retryAfter: res.headers.get("retry-after"),
    ms: Date.now() - started,
    body: parsed,
  };
}

/** The JSON body of `res`, which must have status `expected` (else an error naming `what`, with the body). */
export async function expectJson<T>(res: Response, expected: number, what: string): Promise<T> {
  const text = await res.text();
  if (res.status !== expected) throw new Error(`${what}: HTTP ${res.status} (expected ${expected}): ${text}`);
  return JSON.parse(text) as T;
}

/** Signs in with a password; returns the `Bearer …` header value. */
export async function login(base: string, name: string, password: string): Promise<string> {
  const res = await call(base, "POST", "/v1/auth/login", undefined, { username: name, password });
  if (res.status !== 200) throw new Error(`login ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return `Bearer ${(res.body as { accessToken: string }).accessToken}`;
}

/**
 * Polls `probe` (every 100 ms; a throw counts as "not yet") until it returns something other than
 * undefined; after `timeoutMs` it throws, with `context()` (a server's output, say) in the message.
 */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  context?: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(
        `${what} did not happen within ${timeoutMs} ms${context ? `; server output:\n${context()}` : ""}`,
      );
    await sleep(100);
  }
}

/** A built server (`node bin/stint.js server`) running as a child process. */
export interface ServerNode {
  name: string;
  base: string;
  child: ChildProcess;
  /** What it wrote (stdout and stderr), its last 1,000,000 characters. */
  output(): string;
  /** How it exited, if it has. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves with how it exited, once it has. */
  whenExited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every line it wrote that speaks of an unhandled error or an uncaught exception. */
  unhandled(): string[];
  call(method: string, url: string, auth?: string, body?: unknown): Promise<Answer>;
  login(name: string, password: string): Promise<string>;
  /** SIGKILL (if still running); resolves once it has exited. */
  kill(): Promise<void>;
}

const UNHANDLED = /unhandled|uncaught/i;

/**
 * Starts the built server with `env` (over a clean environment: warn-level logs, no session
 * proxies unless `env` says otherwise) on a free port and waits until /readyz answers 200.
 */
export async function startServerNode(
  name: string,
  env: Record<string, string>,
  options: { readyTimeoutMs?: number } = {},
): Promise<ServerNode> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ["bin/stint.js", "server"], {
    cwd: ROOT,
    env: serverEnv({ ...env, STINT_LISTEN: `127.0.0.1:${port}` }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let partial = "";
  const unhandled: string[] = [];
  const collect = (chunk: Buffer) => {
    const text = chunk.toString("utf8");
    output = (output + text).slice(-1_000_000);
    const lines = (partial + text).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) if (UNHANDLED.test(line)) unhandled.push(line.slice(0, 2_000));
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const gone = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      if (UNHANDLED.test(partial)) unhandled.push(partial.slice(0, 2_000));
      resolve(exit);
    }),
  );
  const node: ServerNode = {
    name,
    base,
    child,
    output: () => output,
    exited: () => exit,
    whenExited: () => gone,
    unhandled: () => [...unhandled],
    call: (method, url, auth, body) => call(base, method, url, auth, body),
    login: (user, password) => login(base, user, password),
    async kill() {
      if (!exit) child.kill("SIGKILL");
      await gone;
    },
  };
  try {
    await waitFor(`readiness of node ${name}`, options.readyTimeoutMs ?? 60_000, async () => {
      if (exit) throw new Error(`node ${name} exited early`);
      const res = await fetch(`${base}/readyz`);
      await res.text();
      return res.ok ? true : undefined;
    });
  } catch (error) {
    await node.kill();
    throw new Error(`${(error as Error).message}:\n${output}`);
  }
  return node;
}
