/**
 * Crash test, on both engines: the built server (`node bin/stint.js server`)
 * is killed with SIGKILL while 1,000 user creations are in flight. After a
 * restart on the same data, every user that exists has exactly one audit
 * event, no audit event lacks its user, every acknowledged (201) creation
 * survived, and the audit chain verifies.
 *
 * Needs the build (`npm test` runs `npm run build` before vitest).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPgDatabase, ENGINES } from "../../src/testing/engines.js";
import { assertBuilt, expectJson, login, startServerNode, type ServerNode } from "./support.js";

const ADMIN_PASSWORD = "crash-test-root-password";
const TOTAL = 1000;
const CONCURRENCY = 64;
/** SIGKILL as soon as this many creations have been acknowledged. */
const KILL_AFTER = 100;
/** A first embedded start (initdb, migrations, bootstrap) takes 15-20 s on a loaded machine, over 45 s on a very busy one. */
const READY_TIMEOUT_MS = 90_000;

interface AuditEventDto {
  seq: number;
  action: string;
  subject: string | null;
  outcome: string;
}

describe.each(ENGINES)("crash during concurrent user creation on %s", (engine) => {
  const nodes: ServerNode[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(() => assertBuilt());

  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.kill();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  }, 30_000);

  async function start(env: Record<string, string>): Promise<ServerNode> {
    const node = await startServerNode(engine, env, { readyTimeoutMs: READY_TIMEOUT_MS });
    nodes.push(node);
    return node;
  }

  it("keeps users and their audit events together, and the chain verifies", { timeout: 240_000 }, async () => {
    const started = Date.now();
    const dataDir = await mkdtemp(path.join(tmpdir(), `stint-crash-${engine}-`));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const env: Record<string, string> = {
      STINT_DATA_DIR: dataDir,
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_LOG_LEVEL: "warn",
    };
    if (engine === "postgres") {
      const database = await createPgDatabase();
      cleanups.push(database.drop);
      env.STINT_DATABASE_URL = database.url;
    }

    // 1. Start, sign in, and fire the creations CONCURRENCY at a time.
    const first = await start(env);
    const booted = Date.now() - started;
    const auth = await login(first.base, "admin", ADMIN_PASSWORD);

    const acknowledged = new Set<string>(); // answered 201: committed before the answer
    const sent = new Set<string>(); // every request that left (whatever became of it)
    const unexpected: string[] = []; // non-201 answers, or network errors before the kill
    let killed = false;
    let next = 0;
    const kill = () => {
      if (killed) return;
      killed = true;
      first.child.kill("SIGKILL");
    };

    async function worker() {
      while (!killed && next < TOTAL) {
        const name = `crash-u${String(next++).padStart(4, "0")}`;
        sent.add(name);
        try {
          const res = await fetch(`${first.base}/v1/users`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: auth },
            body: JSON.stringify({ name }),
          });
          const text = await res.text();
          if (res.status === 201) {
            acknowledged.add(name);
            if (acknowledged.size >= KILL_AFTER) kill();
          } else unexpected.push(`${name}: HTTP ${res.status} ${text}`);
        } catch (error) {
          // After the kill, requests in flight fail with a reset connection: that is the point.
          if (!killed) unexpected.push(`${name}: ${(error as Error).message}`);
        }
      }
    }
    const fired = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const death = await first.whenExited();
    const firing = Date.now() - fired;

    expect(unexpected, first.output()).toEqual([]);
    expect(killed).toBe(true);
    expect(death.signal).toBe("SIGKILL");
    expect(acknowledged.size).toBeGreaterThanOrEqual(KILL_AFTER);
    // Requests were in flight when the server died (the other workers' ones) …
    expect(sent.size).toBeGreaterThan(acknowledged.size);
    // … and none is sent after the kill, so some were never sent at all.
    expect(sent.size).toBeLessThan(TOTAL);

    // 2. Restart on the same data directory / database.
    const restarting = Date.now();
    const second = await start(env);
    const restart = Date.now() - restarting;
    expect(second.child.pid).toBeDefined();
    expect(second.child.pid).not.toBe(first.child.pid);
    const auth2 = await login(second.base, "admin", ADMIN_PASSWORD);
    const get = async <T>(url: string, what: string) =>
      expectJson<T>(await fetch(`${second.base}${url}`, { headers: { authorization: auth2 } }), 200, what);

    const users = await get<{ items: { name: string }[] }>("/v1/users", "list users");
    const existing = new Set(users.items.map((u) => u.name).filter((n) => n.startsWith("crash-u")));

    const events: AuditEventDto[] = [];
    for (let afterSeq = 0; ;) {
      const page = await get<{ items: AuditEventDto[]; nextAfterSeq: number | null }>(
        `/v1/audit/events?afterSeq=${afterSeq}&limit=1000`,
        "read audit events",
      );
      events.push(...page.items);
      if (page.nextAfterSeq === null) break;
      afterSeq = page.nextAfterSeq;
    }
    const verify = await get<{ ok: boolean; count: number; headSeq?: number; problem?: string }>(
      "/v1/audit/verify",
      "verify",
    );

    // (a) every acknowledged creation survived the crash.
    expect([...acknowledged].filter((n) => !existing.has(n))).toEqual([]);
    // Only names that were sent exist; at least the acknowledged ones, and never all 1,000
    // (the kill comes at the 100th acknowledgement, with at most CONCURRENCY others in flight).
    expect([...existing].filter((n) => !sent.has(n))).toEqual([]);
    expect(existing.size).toBeGreaterThanOrEqual(acknowledged.size);
    expect(existing.size).toBeGreaterThan(0);
    expect(existing.size).toBeLessThan(TOTAL);

    // (b) every existing crash-u* user has exactly one successful user.create event …
    const creations = events.filter((e) => e.action === "user.create" && e.subject?.startsWith("user:crash-u"));
    const perName = new Map<string, AuditEventDto[]>();
    for (const e of creations) {
      const name = e.subject!.slice("user:".length);
      perName.set(name, [...(perName.get(name) ?? []), e]);
    }
    const withoutEvent = [...existing].filter((n) => perName.get(n)?.length !== 1);
    expect(withoutEvent, "users without exactly one user.create event").toEqual([]);
    expect(creations.filter((e) => e.outcome !== "success")).toEqual([]);
    // (c) … and no user.create event names a user that does not exist.
    expect(
      [...perName.keys()].filter((n) => !existing.has(n)),
      "events without their user",
    ).toEqual([]);
    expect(creations.length).toBe(existing.size);

    // (d) the chain verifies and covers every event.
    expect(verify, JSON.stringify(verify)).toMatchObject({ ok: true, count: events.length });
    expect(verify.headSeq).toBe(events.at(-1)?.seq);

    // Reported in the test output, to see how far the crash got.
    console.info(
      `[crash ${engine}] sent ${sent.size}, acknowledged ${acknowledged.size}, existing after restart ` +
        `${existing.size}, audit events ${events.length}; first start ${booted} ms, firing ${firing} ms, ` +
        `restart ${restart} ms, total ${Date.now() - started} ms`,
    );
  });
});
