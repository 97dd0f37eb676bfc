/**
 * Issue 13, finding 6 (disk edges), against the built server on a real small file system (a tmpfs the
 * test mounts; needs root, skipped with a warning otherwise): a read-only data directory fails to
 * start with a message that says so (not `ENOENT … mkdir`), and a full data directory answers
 * 503 STORAGE_FULL (not 500 INTERNAL) while /readyz answers 503 not ready.
 *
 * Needs the build (`npm run build`).
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertBuilt, BIN, freePort, serverEnv, start, type RunningProcess } from "../e2e/support.js";

const ADMIN_PASSWORD = "disk-edges-root-password";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's environment (a clean one: no session proxies, warn-level logs) with the first admin's password. */
const childEnv = (extra: Record<string, string>) =>
  serverEnv({ STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD, ...extra });

async function startServer(dataDir: string): Promise<{ process: RunningProcess; base: string }> {
  const port = await freePort();
  const process = start(globalThis.process.execPath, [BIN, "server"], {
    env: childEnv({ STINT_DATA_DIR: dataDir, STINT_LISTEN: `127.0.0.1:${port}` }),
  });
  return { process, base: `http://127.0.0.1:${port}` };
}

async function ready(base: string, p: RunningProcess): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`the server exited:\n${p.output()}`);
    if (
      await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    if (Date.now() > deadline) throw new Error(`not ready:\n${p.output()}`);
    await sleep(200);
  }
}

function exitOf(p: RunningProcess): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still running:\n${p.output()}`)), 60_000);
    p.child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

const mount = (...args: string[]) => spawnSync("mount", args).status === 0;

describe("disk edges of the embedded data directory (issue 13 finding 6)", () => {
  let mountPoint: string;
  let mounted = false;
  const running: RunningProcess[] = [];

  beforeAll(async () => {
    assertBuilt();
    mountPoint = await mkdtemp(path.join(tmpdir(), "stint-disk-"));
    mounted = mount("-t", "tmpfs", "-o", "size=160m", "tmpfs", mountPoint);
    if (!mounted) console.warn("skipped: cannot mount a tmpfs here (needs root)");
  });

  afterAll(async () => {
    for (const p of running) await p.kill("SIGKILL").catch(() => undefined);
    if (mounted) spawnSync("umount", ["-l", mountPoint]);
    await rm(mountPoint, { recursive: true, force: true });
  });

  it(
    "a read-only data directory is named as such; a full one answers 503 STORAGE_FULL and /readyz 503",
    { timeout: 300_000 },
    async () => {
      if (!mounted) return;
      const dataDir = path.join(mountPoint, "stint");
      const first = await startServer(dataDir);
      running.push(first.process);
      await ready(first.base, first.process);
      await first.process.kill("SIGTERM");

      // Read-only: the start fails and says the directory is not writable.
      expect(mount("-o", "remount,ro", mountPoint)).toBe(true);
      try {
        const readOnly = await startServer(dataDir);
        running.push(readOnly.process);
        expect(await exitOf(readOnly.process)).not.toBe(0);
        expect(readOnly.process.output()).toMatch(/is not writable \(EROFS: read-only file system\)/);
        expect(readOnly.process.output()).toContain(dataDir);
        expect(readOnly.process.output()).not.toMatch(/ENOENT/);
      } finally {
        expect(mount("-o", "remount,rw", mountPoint)).toBe(true);
      }

      // Full: writes answer STORAGE_FULL, /readyz is 503 with the disk check false.
      const server = await startServer(dataDir);
      running.push(server.process);
      await ready(server.base, server.process);
      const login = await fetch(`${server.base}/v1/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }),
      });
      const auth = `Bearer ${((await login.json()) as { accessToken: string }).accessToken}`;
      spawnSync("dd", ["if=/dev/zero", `of=${path.join(mountPoint, "filler")}`, "bs=1M"]);
      const answers: { status: number; code?: string }[] = [];
      // Until a few fail: a write fails once it needs a new page on disk.
      for (let i = 0; i < 400 && answers.filter((a) => a.status !== 201).length < 3; i++) {
        const res = await fetch(`${server.base}/v1/users`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: auth },
          body: JSON.stringify({ name: `full-${i}`, displayName: "x".repeat(200) }),
        });
        answers.push({ status: res.status, code: ((await res.json()) as { error?: { code: string } }).error?.code });
      }
      const failed = answers.filter((a) => a.status !== 201);
      expect(failed.length, JSON.stringify(answers)).toBeGreaterThan(0);
      for (const a of failed) expect(a, JSON.stringify(answers)).toMatchObject({ status: 503, code: "STORAGE_FULL" });
      const readiness = await fetch(`${server.base}/readyz`);
      expect(readiness.status).toBe(503);
      expect(((await readiness.json()) as { checks: { disk: boolean } }).checks.disk).toBe(false);
    },
  );
});
