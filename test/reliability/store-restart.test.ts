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
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startPostgres, type PostgresInstance } from "../../src/testing/postgres-instance.js";
import { selfServicePolicy } from "../../src/testing/targets-harness.js";
import { assertBuilt, freePort, ROOT } from "../e2e/support.js";

const ADMIN_PASSWORD = "store-restart-admin-password";
const ALICE_PASSWORD = "drill-password-for-the-requester";
const ROLES = 8;
const DURATION_S = 5;
const DOWN_MS = 3_000;
/** No request may take longer than this, outage or not (the pool's connect timeout is 5 s). */
const ANSWER_BOUND_MS = 8_000;
/** The target: a database on the machine's PostgreSQL (not the store's cluster, which restarts). */
const TARGET_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";
const hex = randomBytes(4).toString("hex");
const targetDb = `stint_rs_${hex}`;
const aliceLogin = `stint_rs_alice_${hex}`;
const targetRoles = [...Array.from({ length: ROLES }, (_, i) => `stint_rs_r${i}_${hex}`), `stint_rs_after_${hex}`];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Answer {
  what: string;
  status: number;
  code?: string;
  retryAfter: string | null;
  ms: number;
  body: unknown;
}

let cluster: PostgresInstance;
let databaseUrl: string;
let child: ChildProcess;
let output = "";
let base: string;
let dataDir: string;
/** The read load runs while true (afterAll stops it too, should an assertion throw first). */
let loading = false;
let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith("STINT_") && key !== "NODE_OPTIONS") env[key] = value;
  return { ...env, ...extra };
}

async function call(method: string, url: string, auth?: string, body?: unknown): Promise<Answer> {
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

async function login(name: string, password: string): Promise<string> {
  const res = await call("POST", "/v1/auth/login", undefined, { username: name, password });
  if (res.status !== 200) throw new Error(`login ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return `Bearer ${(res.body as { accessToken: string }).accessToken}`;
}

async function query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  const db = new pg.Client({ connectionString: databaseUrl });
  db.on("error", () => undefined);
  await db.connect();
  try {
    return (await db.query<R>(text, values)).rows;
  } finally {
    await db.end();
  }
}

async function onTarget<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
  const db = new pg.Client({ connectionString: TARGET_ADMIN_URL });
  await db.connect();
  try {
    return (await db.query<R>(text, values)).rows;
  } finally {
    await db.end();
  }
}

/** The target roles alice's login is a member of right now. */
async function memberships(): Promise<string[]> {
  const rows = await onTarget<{ role: string }>(
    `select r.rolname as role from pg_auth_members m join pg_roles r on r.oid = m.roleid
       join pg_roles u on u.oid = m.member where u.rolname = $1`,
    [aliceLogin],
  );
  return rows.map((r) => r.role);
}

/** A real PostgreSQL target and roles anyone eligible activates without approval or MFA. */
async function seedRoles(admin: string): Promise<void> {
  await onTarget(`create database ${targetDb}`);
  await onTarget(`create role ${aliceLogin} login`);
  for (const role of targetRoles) await onTarget(`create role ${role} nologin`);
  const roleYaml = targetRoles
    .map(
      (role, i) => `
  - name: ${i < ROLES ? `restart-${i}` : "restart-after"}
    target: restart-db
    entitlement: { role: ${role} }
    policy: restart-self
    risk: low`,
    )
    .join("");
  const applied = await call("POST", "/v1/config/apply", admin, {
    yaml: `
apiVersion: stint/v1
policies:${selfServicePolicy("restart-self")}
targets:
  - name: restart-db
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/${targetDb}?sslmode=disable
    identity: { template: "stint_rs_{{name}}_${hex}" }
    options: { ignore: [postgres] }
roles:${roleYaml}
eligibility:
${targetRoles
  .map(
    (_, i) => `  - role: ${i < ROLES ? `restart-${i}` : "restart-after"}
    users: [alice]`,
  )
  .join("\n")}
`,
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

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`${what} did not happen within ${timeoutMs} ms; server output:\n${output}`);
    await sleep(100);
  }
}

beforeAll(async () => {
  assertBuilt();
  cluster = await startPostgres();
  const admin = new pg.Client({
    host: "127.0.0.1",
    port: cluster.port,
    user: "postgres",
    database: "postgres",
    password: cluster.adminPassword,
  });
  await admin.connect();
  await admin.query("create database stint");
  await admin.end();
  databaseUrl = `postgres://postgres:${cluster.adminPassword}@127.0.0.1:${cluster.port}/stint`;
  dataDir = await mkdtemp(path.join(tmpdir(), "stint-store-restart-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  child = spawn(process.execPath, ["bin/stint.js", "server"], {
    cwd: ROOT,
    env: childEnv({
      STINT_LISTEN: `127.0.0.1:${port}`,
      STINT_DATA_DIR: dataDir,
      STINT_DATABASE_URL: databaseUrl,
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_LOG_LEVEL: "warn",
      // Only a NOTIFY makes the outbox run a job promptly: the poll would take a minute.
      STINT_OUTBOX_POLL: "60s",
      STINT_SSH_PROXY_LISTEN: "off",
      STINT_PG_PROXY_LISTEN: "off",
    }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const collect = (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-20_000));
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  child.once("exit", (code, signal) => (exited = { code, signal }));
  await waitFor("readiness", 60_000, async () => {
    if (exited) throw new Error(`the server exited early:\n${output}`);
    const res = await fetch(`${base}/readyz`);
    return res.ok ? true : undefined;
  });
}, 120_000);

afterAll(async () => {
  loading = false;
  if (child && !exited) {
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
  }
  await cluster?.stop().catch(() => undefined);
  await onTarget(`drop database if exists ${targetDb} with (force)`).catch(() => undefined);
  for (const role of [aliceLogin, ...targetRoles]) await onTarget(`drop role if exists ${role}`).catch(() => undefined);
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
    await cluster.restart({ downMs: DOWN_MS });
    let up = Date.now();
    downTotalMs += up - down;
    await waitFor("a successful read after the first restart", 5_000, async () =>
      (await call("GET", "/v1/users", admin)).status === 200 ? true : undefined,
    );
    const recoveryMs = Date.now() - up;
    await sleep(2_500);
    activating = false;
    await Promise.all(activators);
    await waitFor("every activation acknowledged so far ended", DURATION_S * 1000 + downTotalMs + 5_000, async () =>
      (await revokedCount(acknowledged)) === acknowledged.length ? true : undefined,
    );
    await sleep(500);
    down = Date.now();
    await cluster.restart({ downMs: DOWN_MS });
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

    expect(exited, `the server exited:\n${output}`).toBeUndefined();
    expect(failures).toEqual([]);
    const unexpected = answers.filter(
      (a) =>
        !(
          a.status < 300 ||
          (a.status === 503 && a.code === "STORE_UNAVAILABLE" && a.retryAfter !== null) ||
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
    expect(await memberships()).toEqual([targetRoles[ROLES]]);

    const verified = await call("POST", "/v1/audit/verify", admin, {});
    expect(verified.status, JSON.stringify(verified.body)).toBe(200);
    expect(verified.body).toMatchObject({ ok: true });
    expect(exited).toBeUndefined();
    console.info(
      `store restart: ${answers.length} answers (${answers.filter((a) => a.code === "STORE_UNAVAILABLE").length} STORE_UNAVAILABLE), ` +
        `${acknowledged.length} activations acknowledged, down ${downTotalMs} ms in all, back within ${recoveryMs}/${secondRecoveryMs} ms, ` +
        `NOTIFY provisioning ${provisionedMs} ms, slowest answer ${Math.max(...answers.map((a) => a.ms))} ms`,
    );
  }, 90_000);
});
