/**
 * Issue 13, finding 5: two servers on one embedded data directory. Each PGlite keeps its own copy of
 * the database in memory and writes its own files, so one silently loses the other's writes (and
 * both write their own audit seq N). The built server (`node bin/stint.js server`) must hold an
 * exclusive lock on the directory: a second server refuses to start naming the directory and the
 * holder; the first keeps serving and loses nothing; a lock left by a SIGKILLed server is taken over.
 * A port already in use says another Stint may be running and how to pick another port.
 *
 * Needs the build (`npm run build`).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertBuilt, BIN, freePort, serverEnv, start, type RunningProcess } from "../e2e/support.js";

const ADMIN_PASSWORD = "data-dir-lock-root-password";
const READY_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's environment (a clean one: no session proxies, warn-level logs) with the first admin's password. */
const childEnv = (extra: Record<string, string>) =>
  serverEnv({ STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD, ...extra });

interface Server {
  process: RunningProcess;
  base: string;
  port: number;
}

/** The exit code of a server expected to refuse to start; fails if it is still running after a minute. */
function exitOf(p: RunningProcess, timeoutMs = 60_000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the server did not refuse to start; it is still running:\n${p.output()}`)),
      timeoutMs,
    );
    p.child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function ready(base: string, p: RunningProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (p.child.exitCode !== null || p.child.signalCode !== null)
      throw new Error(`the server exited (${p.child.exitCode ?? p.child.signalCode}):\n${p.output()}`);
    const ok = await fetch(`${base}/readyz`).then(
      async (res) => (await res.text(), res.ok),
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`not ready within ${READY_TIMEOUT_MS} ms:\n${p.output()}`);
    await sleep(100);
  }
}

async function startServer(dataDir: string, port?: number): Promise<Server> {
  const listenPort = port ?? (await freePort());
  const process = start(globalThis.process.execPath, [BIN, "server"], {
    env: childEnv({ STINT_DATA_DIR: dataDir, STINT_LISTEN: `127.0.0.1:${listenPort}` }),
  });
  return { process, base: `http://127.0.0.1:${listenPort}`, port: listenPort };
}

async function login(base: string): Promise<string> {
  const res = await fetch(`${base}/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
  });
  expect(res.status).toBe(200);
  return `Bearer ${((await res.json()) as { accessToken: string }).accessToken}`;
}

async function createUser(base: string, auth: string, name: string): Promise<void> {
  const res = await fetch(`${base}/v1/users`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: auth },
    body: JSON.stringify({ name }),
  });
  expect(res.status, await res.text()).toBe(201);
}

async function userNames(base: string, auth: string): Promise<string[]> {
  const res = await fetch(`${base}/v1/users`, { headers: { authorization: auth } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { items: { name: string }[] }).items.map((u) => u.name);
}

async function verifies(base: string, auth: string): Promise<boolean> {
  const res = await fetch(`${base}/v1/audit/verify`, { headers: { authorization: auth } });
  return ((await res.json()) as { ok: boolean }).ok;
}

describe("one embedded data directory, one server (issue 13 finding 5)", () => {
  let dataDir: string;
  const running: RunningProcess[] = [];

  beforeAll(async () => {
    assertBuilt();
    dataDir = await mkdtemp(path.join(tmpdir(), "stint-datadir-lock-"));
  });

  afterAll(async () => {
    for (const p of running) await p.kill("SIGKILL").catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  });

  it(
    "refuses a second server on the same directory, names the holder, and the first loses nothing",
    { timeout: 180_000 },
    async () => {
      const first = await startServer(dataDir);
      running.push(first.process);
      await ready(first.base, first.process);
      const auth = await login(first.base);
      await createUser(first.base, auth, "written-before");

      const second = await startServer(dataDir);
      running.push(second.process);
      const code = await exitOf(second.process);
      expect(code, second.process.output()).not.toBe(0);
      const message = second.process.output();
      expect(message).toContain(path.join(dataDir, "db"));
      expect(message).toContain(`pid ${first.process.child.pid}`);
      expect(message).toContain(`127.0.0.1:${first.port}`);
      expect(message).toMatch(/in use by another Stint server/);

      // The first still serves and writes; after a restart everything it acknowledged is there.
      await createUser(first.base, auth, "written-after");
      expect(await userNames(first.base, auth)).toEqual(expect.arrayContaining(["written-before", "written-after"]));
      await first.process.kill("SIGTERM");
      const again = await startServer(dataDir);
      running.push(again.process);
      await ready(again.base, again.process);
      const auth2 = await login(again.base);
      expect(await userNames(again.base, auth2)).toEqual(expect.arrayContaining(["written-before", "written-after"]));
      expect(await verifies(again.base, auth2)).toBe(true);

      // A SIGKILLed server leaves its lock behind: the next start takes it over.
      await createUser(again.base, auth2, "written-before-kill");
      await again.process.kill("SIGKILL");
      const afterKill = await startServer(dataDir);
      running.push(afterKill.process);
      await ready(afterKill.base, afterKill.process);
      const auth3 = await login(afterKill.base);
      expect(await userNames(afterKill.base, auth3)).toEqual(
        expect.arrayContaining(["written-before", "written-after", "written-before-kill"]),
      );

      // A port in use: the message says another Stint may be running there and how to pick another port.
      const otherDir = await mkdtemp(path.join(tmpdir(), "stint-datadir-port-"));
      try {
        const clash = await startServer(otherDir, afterKill.port);
        running.push(clash.process);
        expect(await exitOf(clash.process)).not.toBe(0);
        expect(clash.process.output()).toContain(`cannot listen on 127.0.0.1:${afterKill.port}`);
        expect(clash.process.output()).toMatch(/another Stint server .* may be running/);
        expect(clash.process.output()).toContain("STINT_LISTEN");
      } finally {
        await rm(otherDir, { recursive: true, force: true });
      }
      await afterKill.process.kill("SIGTERM");
    },
  );
});
