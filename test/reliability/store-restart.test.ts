/**
 * Issue 13, finding 1 (restart): the store's PostgreSQL cluster is stopped (fast shutdown) and
 * started again on the same port and data directory, twice, while the built server runs a light
 * mixed load: short activations of auto-approved roles on internal targets, and reads. The process
 * stays up; every answer is a success, a 4xx of the workload's own making (a role still active), or
 * 503 STORE_UNAVAILABLE with Retry-After, within a bound; after each restart requests succeed again
 * within seconds; every acknowledged (201) activation exists and ends by its expiry plus the time
 * the store was down; LISTEN reconnects (the outbox polls only every minute here, so a provisioning
 * within about a second of its request shows the NOTIFY wake-up); and the audit chain verifies.
 *
 * Needs the build (`npm run build`), root and Debian's postgresql-15 (a throwaway cluster).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { selfServicePolicy } from "../../src/testing/targets-harness.js";
import { assertBuilt } from "../e2e/support.js";
import {
  postgresTarget,
  queryOnce,
  sleep,
  startServerNode,
  startStoreCluster,
  successOrStoreUnavailable,
  waitFor as waitForCondition,
  type Answer,
  type ServerNode,
  type StoreCluster,
} from "./support.js";

const ADMIN_PASSWORD = "store-restart-root-password";
const ALICE_PASSWORD = "drill-password-for-the-requester";
const ROLES = 8;
const DURATION_S = 5;
const DOWN_MS = 3_000;
/** No request may take longer than this, outage or not (the pool's connect timeout is 5 s). */
const ANSWER_BOUND_MS = 8_000;
/** The target: a database on the machine's PostgreSQL (not the store's cluster, which restarts). */
const target = postgresTarget({
  prefix: "stint_rs",
  users: ["alice"],
  roles: [...Array.from({ length: ROLES }, (_, i) => `restart-${i}`), "restart-after"],
});

let store: StoreCluster;
let node: ServerNode;
let dataDir: string;
/** The read load runs while true (afterAll stops it too, should an assertion throw first). */
let loading = false;

const call = (method: string, url: string, auth?: string, body?: unknown) => node.call(method, url, auth, body);
const login = (name: string, password: string) => node.login(name, password);
const query = <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
  queryOnce<R>(store.databaseUrl, text, values);
const waitFor = <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>) =>
  waitForCondition(what, timeoutMs, probe, () => node.output());

/** A real PostgreSQL target and roles anyone eligible activates without approval or MFA. */
async function seedRoles(admin: string): Promise<void> {
  await target.create();
  const applied = await call("POST", "/v1/config/apply", admin, {
    yaml: `
apiVersion: stint/v1
policies:${selfServicePolicy("restart-self")}
${target.yaml("restart-self")}`,
  });
  if (applied.status >= 300) throw new Error(`apply: ${applied.status} ${JSON.stringify(applied.body)}`);
}

async function grantState(requestId: string): Promise<string | undefined> {
  const rows = await query<{ state: string }>("select state from grants where request_id = $1", [requestId]);
  return rows[0]?.state;
}

async function revokedCount(requestIds: string[]): Promise<number> {
  const rows = await query<{ n: string }>(
    "select count(*) as n from grants where request_id = any($1) and state = 'revoked'",
    [requestIds],
  );
  return Number(rows[0]!.n);
}

beforeAll(async () => {
  assertBuilt();
  store = await startStoreCluster();
  dataDir = await mkdtemp(path.join(tmpdir(), "stint-store-restart-"));
  node = await startServerNode("restart", {
    STINT_DATA_DIR: dataDir,
    STINT_DATABASE_URL: store.databaseUrl,
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    // Only a NOTIFY makes the outbox run a job promptly: the poll would take a minute.
    STINT_OUTBOX_POLL: "60s",
  });
}, 120_000);

afterAll(async () => {
  loading = false;
  await node?.kill();
  await store?.stop().catch(() => undefined);
  await target.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("store restart (issue 13 finding 1)", () => {
  it("rides through two restarts of the store's PostgreSQL cluster under load: no exit, 503 STORE_UNAVAILABLE or success, every acknowledged activation ends on time, NOTIFY works again, the chain verifies", async () => {
    const admin = await login("admin", ADMIN_PASSWORD);
    const created = await call("POST", "/v1/users", admin, { name: "alice", password: ALICE_PASSWORD });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await seedRoles(admin);
    const alice = await login("alice", ALICE_PASSWORD);

    const answers: Answer[] = [];
    const failures: string[] = [];
    const acknowledged: string[] = [];
    loading = true;
    let activating = true;
    let next = 0;
    async function worker(kind: "activate" | "read") {
      while (kind === "read" ? loading : activating) {
        const n = next++;
        try {
          if (kind === "read") {
            answers.push(await call("GET", n % 2 ? "/v1/users" : "/v1/activation-requests", n % 2 ? admin : alice));
            await sleep(50);
          } else {
            const answer = await call("POST", "/v1/activation-requests", alice, {
              role: `restart-${n % ROLES}`,
              reason: "store restart drill",
              duration: `${DURATION_S}s`,
            });
            answers.push(answer);
            if (answer.status === 201) acknowledged.push((answer.body as { id: string }).id);
            await sleep(100);
          }
        } catch (error) {
          failures.push(`request ${n}: ${(error as Error).message}`);
        }
      }
    }
    const activators = [worker("activate"), worker("activate")];
    const readers = [worker("read"), worker("read")];

    // Two restarts, each with the store down for DOWN_MS. The first is under the full load, and
    // requests must succeed again soon after it. Before the second the activations stop and every
    // one ends, so that no job of the outbox is in flight or due (a finishing job makes the runner
    // claim again, which would hide a lost NOTIFY); the reads go on through it.
    let downTotalMs = 0;
    await sleep(2_500);
    let down = Date.now();
    await store.instance.restart({ downMs: DOWN_MS });
    let up = Date.now();
    downTotalMs += up - down;
    await waitFor("a successful read after the first restart", 5_000, async () =>
      (await call("GET", "/v1/users", admin)).status === 200 ? true : undefined,
    );
    const recoveryMs = Date.now() - up;
    // Activations go on a while after it (on a loaded machine, until each role has had one).
    await sleep(2_500);
    await waitFor("an activation acknowledged per role", 30_000, async () =>
      acknowledged.length >= ROLES ? true : undefined,
    );
    activating = false;
    await Promise.all(activators);
    await waitFor("every activation acknowledged so far ended", DURATION_S * 1000 + downTotalMs + 5_000, async () =>
      (await revokedCount(acknowledged)) === acknowledged.length ? true : undefined,
    );
    await sleep(500);
    down = Date.now();
    await store.instance.restart({ downMs: DOWN_MS });
    up = Date.now();
    downTotalMs += up - down;

    // LISTEN is back: with a minute's poll, only a NOTIFY (or the catch-up on reconnecting)
    // provisions an activation requested as soon as the store answers within a second or two.
    const after = await waitFor("an activation accepted after the second restart", 5_000, async () => {
      const res = await call("POST", "/v1/activation-requests", alice, {
        role: "restart-after",
        reason: "after the restarts",
        duration: "1h",
      });
      return res.status === 201 ? res : undefined;
    });
    const asked = Date.now();
    const secondRecoveryMs = asked - up;
    const provisioned = await waitFor("provisioning after the restarts (NOTIFY)", 3_000, async () =>
      (await grantState((after.body as { id: string }).id)) === "active" ? true : undefined,
    ).catch(() => false);
    const provisionedMs = Date.now() - asked;
    loading = false;
    await Promise.all(readers);
    expect(provisioned, `not provisioned within ${provisionedMs} ms: a NOTIFY was lost`).toBe(true);
    // LISTEN retries every second; without the catch-up this waits for the minute-long poll.
    expect(provisionedMs).toBeLessThan(2_000);

    expect(node.exited(), `the server exited:\n${node.output()}`).toBeUndefined();
    expect(failures).toEqual([]);
    const unexpected = answers.filter(
      (a) =>
        !(
          successOrStoreUnavailable(a) ||
          // The workload asks for a role whose previous activation is still running: its own doing.
          (a.status === 409 && a.what.startsWith("POST"))
        ),
    );
    expect([...new Set(unexpected.map((a) => `${a.what} ${a.status} ${JSON.stringify(a.body)}`))]).toEqual([]);
    expect(answers.filter((a) => a.ms > ANSWER_BOUND_MS).map((a) => `${a.what} took ${a.ms} ms`)).toEqual([]);
    // The outage was felt, and activations were acknowledged around it.
    expect(answers.filter((a) => a.code === "STORE_UNAVAILABLE").length).toBeGreaterThan(0);
    expect(acknowledged.length).toBeGreaterThanOrEqual(ROLES);

    // Every acknowledged activation exists and ended by its expiry, give or take the time the store was down.
    const slackMs = downTotalMs + 2_000;
    const rows = await query<{ id: string; state: string; expires_at: Date; ended_at: Date; revoked_at: Date }>(
      `select r.id, r.state, r.expires_at, r.ended_at, g.updated_at as revoked_at
         from activation_requests r join grants g on g.request_id = r.id where r.id = any($1)`,
      [acknowledged],
    );
    expect(rows.length).toBe(acknowledged.length);
    const late = rows.filter(
      (r) =>
        r.state !== "expired" ||
        r.ended_at.getTime() > r.expires_at.getTime() + slackMs ||
        r.revoked_at.getTime() > r.expires_at.getTime() + slackMs,
    );
    expect(
      late.map(
        (r) =>
          `${r.id} ${r.state} ended ${r.ended_at?.toISOString()} revoked ${r.revoked_at?.toISOString()} expiry ${r.expires_at?.toISOString()}`,
      ),
    ).toEqual([]);

    // No privilege remains at the target but the one activation still running.
    expect(await target.memberships()).toEqual([{ user: "alice", role: "restart-after" }]);

    const verified = await call("POST", "/v1/audit/verify", admin, {});
    expect(verified.status, JSON.stringify(verified.body)).toBe(200);
    expect(verified.body).toMatchObject({ ok: true });
    expect(node.exited()).toBeUndefined();
    console.info(
      `store restart: ${answers.length} answers (${answers.filter((a) => a.code === "STORE_UNAVAILABLE").length} STORE_UNAVAILABLE), ` +
        `${acknowledged.length} activations acknowledged, down ${downTotalMs} ms in all, back within ${recoveryMs}/${secondRecoveryMs} ms, ` +
        `NOTIFY provisioning ${provisionedMs} ms, slowest answer ${Math.max(...answers.map((a) => a.ms))} ms`,
    );
  }, 90_000);
});
