/**
 * Issue 13, finding 1: losing store connections must not kill the server. The built server runs on a
 * throwaway database of the machine's PostgreSQL under a light load of reads and writes while every
 * backend of its database is terminated (pg_terminate_backend) again and again — the connections of
 * queries in flight, idle pooled ones and the LISTEN connection. The process stays up; a request in
 * flight either succeeds or gets 503 STORE_UNAVAILABLE with Retry-After; afterwards requests succeed,
 * every acknowledged write is there, and the scheduler, the outbox runner and LISTEN/NOTIFY work again
 * (the outbox polls only every minute here, so a prompt provisioning shows the NOTIFY wake-up).
 * And in the store itself: right after a statement loses its connection, the next statement gets a
 * live one (the pool's idle connections died with it, their notices still unread).
 *
 * Needs the build (`npm run build`).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { sql } from "kysely";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policySpec } from "../../src/contract/catalog.js";
import { isStoreUnavailable, openStore } from "../../src/lib/db.js";
import { newId } from "../../src/lib/ids.js";
import { createPgDatabase, PG_ADMIN_URL } from "../../src/testing/engines.js";
import { assertBuilt } from "../e2e/support.js";
import {
  queryOnce,
  sleep,
  startServerNode,
  successOrStoreUnavailable,
  terminateBackends,
  waitFor as waitForCondition,
  type Answer,
  type ServerNode,
} from "./support.js";

const ADMIN_PASSWORD = "store-outage-root-password";
const ALICE_PASSWORD = "drill-password-for-the-requester";
const TERMINATIONS = 6;

let node: ServerNode;
let database: { url: string; drop: () => Promise<void> };
let dataDir: string;

const call = (method: string, url: string, auth?: string, body?: unknown) => node.call(method, url, auth, body);
const login = (name: string, password: string) => node.login(name, password);
const waitFor = <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>) =>
  waitForCondition(what, timeoutMs, probe, () => node.output());

/** A role on an internal target that anyone eligible activates without approval, MFA or a long reason. */
async function seedRole(roleName: string, principal: string): Promise<void> {
  const db = new pg.Client({ connectionString: database.url });
  await db.connect();
  try {
    const now = new Date();
    const target = newId();
    await db.query(
      "insert into targets (id, name, kind, config, labels, created_at, updated_at) values ($1, $2, 'internal', '{}', '{}', $3, $3)",
      [target, `${roleName}-target`, now],
    );
    const policy = newId();
    const spec = policySpec.parse({ mfa: { required: false, maxAge: "10m" }, justification: { minLength: 1 } });
    await db.query("insert into policies (id, name, spec, created_at, updated_at) values ($1, $2, $3, $4, $4)", [
      policy,
      `${roleName}-policy`,
      JSON.stringify(spec),
      now,
    ]);
    const role = newId();
    await db.query(
      `insert into roles (id, name, target_id, policy_id, entitlement, risk, owners, created_at, updated_at)
       values ($1, $2, $3, $4, '{}', 'low', '{}', $5, $5)`,
      [role, roleName, target, policy, now],
    );
    await db.query(
      `insert into eligibilities (id, role_id, principal_id, starts_at, ends_at, granted_by, created_at)
       select $1, $2, id, $3, null, 'test', $3 from principals where name = $4`,
      [newId(), role, new Date("2000-01-01T00:00:00Z"), principal],
    );
  } finally {
    await db.end();
  }
}

async function grantState(requestId: string): Promise<string | undefined> {
  const rows = await queryOnce<{ state: string }>(database.url, "select state from grants where request_id = $1", [
    requestId,
  ]);
  return rows[0]?.state;
}

/** Activates `role` as alice for `duration`: the grant must reach `active` through the outbox. */
async function activate(alice: string, role: string, duration: string): Promise<string> {
  const res = await call("POST", "/v1/activation-requests", alice, { role, reason: "store outage drill", duration });
  if (res.status !== 201) throw new Error(`activate ${role}: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { id: string }).id;
}

beforeAll(async () => {
  assertBuilt();
  database = await createPgDatabase();
  dataDir = await mkdtemp(path.join(tmpdir(), "stint-store-outage-"));
  node = await startServerNode("outage", {
    STINT_DATA_DIR: dataDir,
    STINT_DATABASE_URL: database.url,
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    // Only a NOTIFY makes the outbox run a job promptly: the poll would take a minute.
    STINT_OUTBOX_POLL: "60s",
  });
}, 120_000);

afterAll(async () => {
  await node?.kill();
  await database?.drop().catch(() => undefined);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("store connection loss (issue 13 finding 1)", () => {
  it("rides through repeated pg_terminate_backend of every backend: no exit, 503 STORE_UNAVAILABLE or success, then everything works", async () => {
    const admin = await login("admin", ADMIN_PASSWORD);
    const created = await call("POST", "/v1/users", admin, { name: "alice", password: ALICE_PASSWORD });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await seedRole("outage-before", "alice");
    await seedRole("outage-after", "alice");
    const alice = await login("alice", ALICE_PASSWORD);

    // Baseline: the outbox provisions promptly (NOTIFY) before any connection is lost.
    const first = await activate(alice, "outage-before", "1h");
    await waitFor("provisioning before the outage", 5_000, async () =>
      (await grantState(first)) === "active" ? true : undefined,
    );

    // Light load: reads and writes, four at a time, while the backends are terminated.
    const answers: Answer[] = [];
    const failures: string[] = [];
    const acknowledged: string[] = [];
    let loading = true;
    let next = 0;
    async function worker() {
      while (loading) {
        const n = next++;
        try {
          if (n % 2 === 0) answers.push(await call("GET", "/v1/users", admin));
          else {
            const name = `load-${n}`;
            const answer = await call("POST", "/v1/users", admin, { name });
            answers.push(answer);
            if (answer.status === 201) acknowledged.push(name);
          }
        } catch (error) {
          failures.push(`request ${n}: ${(error as Error).message}`);
        }
      }
    }
    const load = Promise.all(Array.from({ length: 4 }, worker));
    let terminated = 0;
    const databaseName = new URL(database.url).pathname.slice(1);
    for (let i = 0; i < TERMINATIONS; i++) {
      await sleep(400);
      terminated += await terminateBackends(PG_ADMIN_URL, databaseName);
    }
    await sleep(400);
    loading = false;
    await load;

    expect(node.exited(), `the server exited:\n${node.output()}`).toBeUndefined();
    expect(terminated).toBeGreaterThan(TERMINATIONS);
    expect(failures).toEqual([]);
    const unexpected = answers.filter((a) => !successOrStoreUnavailable(a));
    expect(unexpected).toEqual([]);
    // The outage was felt: some requests in flight lost their connection and said so.
    expect(answers.filter((a) => a.code === "STORE_UNAVAILABLE").length).toBeGreaterThan(0);
    expect(answers.filter((a) => a.status < 300).length).toBeGreaterThan(0);

    // Afterwards: requests succeed again, and every acknowledged write is there.
    const listed = await waitFor("a successful read after the outage", 10_000, async () => {
      const res = await call("GET", "/v1/users?limit=1000", admin);
      return res.status === 200 ? res : undefined;
    });
    const names = new Set(
      ((listed.body as { items?: { name: string }[] }).items ?? (listed.body as { name: string }[])).map((u) => u.name),
    );
    for (const name of acknowledged) expect(names.has(name), `${name} was acknowledged but is gone`).toBe(true);

    // The LISTEN connection came back (provisioning is prompt with a minute's poll), and the
    // scheduler ends a short activation, whose revocation the outbox then runs.
    await sleep(1_500);
    const second = await activate(alice, "outage-after", "5s");
    await waitFor("provisioning after the outage (NOTIFY)", 5_000, async () =>
      (await grantState(second)) === "active" ? true : undefined,
    );
    await waitFor("expiry and revocation after the outage", 15_000, async () =>
      (await grantState(second)) === "revoked" ? true : undefined,
    );
    expect(node.exited()).toBeUndefined();
  });

  it("after a statement loses its connection, the very next statement gets a live one", async () => {
    const own = await createPgDatabase();
    const store = await openStore({ databaseUrl: own.url, poolSize: 5 });
    const name = new URL(own.url).pathname.slice(1);
    try {
      for (let round = 1; round <= 5; round++) {
        // Idle pooled connections, and one statement in flight when every backend is terminated.
        await Promise.all(Array.from({ length: 4 }, () => sql`select pg_sleep(0.01)`.execute(store.db)));
        // When it fails, the next statement goes at once, as the outbox runner records a failed attempt.
        const inFlight = sql`select pg_sleep(30)`.execute(store.db).then(
          () => ({ error: new Error("the statement survived its backend"), next: undefined }),
          async (error: unknown) => ({
            error,
            next: await sql<{ one: number }>`select 1 as one`.execute(store.db).catch((e: unknown) => e),
          }),
        );
        await waitFor("the statement to run", 5_000, async () => {
          const rows = await queryOnce(
            PG_ADMIN_URL,
            "select 1 from pg_stat_activity where datname = $1 and query = 'select pg_sleep(30)'",
            [name],
          );
          return rows.length > 0 || undefined;
        });
        expect(await terminateBackends(PG_ADMIN_URL, name)).toBeGreaterThanOrEqual(2);
        const { error, next } = await inFlight;
        expect(isStoreUnavailable(error), String(error)).toBe(true);
        expect(next, `round ${round}: ${String(next)}`).toEqual({ rows: [{ one: 1 }] });
      }
    } finally {
      await store.close();
      await own.drop();
    }
  });
});
