/**
 * Rotation races between nodes (issue 12, finding 16): two Stint nodes on one real PostgreSQL database
 * rotate the password of a real login on a throwaway PostgreSQL cluster that checks passwords.
 *
 * - Both nodes find the same rotation due at once: exactly one rotates, and the vault's current version
 *   is the password the target accepts.
 * - A node dies between changing the password at the target and committing (its connector call never
 *   returns): the next node to start settles the pending version on the password the target accepts.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { openAppStore } from "../../db/index.js";
import { manualClock, type Clock } from "../../lib/clock.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { createPgDatabase } from "../../testing/engines.js";
import { asSuperuser, signsIn, startPostgres, type PostgresInstance } from "../../testing/postgres-instance.js";
import { ADMIN_PASSWORD, TEST_SCRYPT } from "../../testing/server.js";
import { SYSTEM, type Actor } from "../authz/authz.types.js";
import { createVaultService } from "./vault.service.js";

const masterKey = randomBytes(32);
const vaultKey = randomBytes(32);
const context = { correlationId: "test", sourceIp: null, userAgent: null };
let instance: PostgresInstance;
let database: { url: string; drop: () => Promise<void> };
const nodes: Server[] = [];

async function node(clock?: Clock): Promise<Server> {
  const parsed = loadConfig({
    STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
    STINT_LOG_LEVEL: "silent",
    STINT_RECONCILE_INTERVAL: "0",
  });
  if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
  const server = await createServer({
    config: parsed.config,
    logger: createLogger({ level: "silent" }),
    masterKey,
    vaultKey,
    store: await openAppStore({ databaseUrl: database.url }),
    scrypt: TEST_SCRYPT,
    ...(clock ? { clock } : {}),
  });
  await server.bootstrap();
  nodes.push(server);
  return server;
}

/** A login at the target and a secret in the vault that is its password, due for rotation now. */
async function dueSecret(server: Server, path: string): Promise<{ login: string; original: string }> {
  const login = `app_${randomBytes(3).toString("hex")}`;
  const original = `orig-${randomBytes(10).toString("hex")}`;
  await asSuperuser(instance, (c) => c.query(`create role ${login} login password '${original}'`));
  await server.vault.put(SYSTEM_ADMIN, context, path, {
    kind: "password",
    value: original,
    platformRoles: ["admin"],
    rotation: { target: "scratch-db", login, every: "30d" },
  } as never);
  await server.store.db
    .updateTable("secrets")
    .set({ rotation_due_at: new Date(Date.now() - 1000) })
    .where("path", "=", path)
    .execute();
  return { login, original };
}

/** The vault's current value of a secret, read from the database with the node's own key. */
async function currentValue(server: Server, path: string): Promise<{ version: number; value: string }> {
  const row = await server.store.db
    .selectFrom("secrets")
    .select(["current_version"])
    .where("path", "=", path)
    .executeTakeFirstOrThrow();
  const read = await server.vault.read(SYSTEM_ADMIN, context, path);
  return { version: row.current_version, value: read.value };
}

async function events(server: Server, action: string, path: string): Promise<number> {
  await server.audit.catchUp(); // committed events, chained (the sequencer's work on PostgreSQL)
  const rows = await server.store.db
    .selectFrom("audit_events")
    .select("id")
    .where("action", "=", action)
    .where("subject", "=", `secret:${path}`)
    .execute();
  return rows.length;
}

// An admin principal as the services see one (the vault's put and read need a principal).
const SYSTEM_ADMIN: Extract<Actor, { kind: "principal" }> = {
  kind: "principal",
  id: "00000000-0000-7000-8000-000000000001",
  name: "admin",
  principalKind: "user",
  roles: ["admin"],
  mfaAt: null,
};

beforeAll(async () => {
  [instance, database] = await Promise.all([startPostgres(), createPgDatabase()]);
  const first = await node();
  await first.app.ready();
  const login = await first.app.inject({
    method: "POST",
    url: "/v1/auth/login",
    payload: { username: "admin", password: ADMIN_PASSWORD },
  });
  const authorization = `Bearer ${login.json<{ accessToken: string }>().accessToken}`;
  const applied = await first.app.inject({
    method: "POST",
    url: "/v1/config/apply",
    headers: { authorization },
    payload: {
      yaml: `apiVersion: stint/v1
targets:
  - name: scratch-db
    kind: postgres
    address: ${instance.url}?sslmode=disable
    credential: { secret: targets/scratch-db/admin }
`,
    },
  });
  expect(applied.statusCode, applied.body).toBe(200);
  const set = await first.app.inject({
    method: "PUT",
    url: "/v1/targets/scratch-db/credential",
    headers: { authorization },
    payload: { secret: instance.adminPassword },
  });
  expect(set.statusCode, set.body).toBe(200);
  SYSTEM_ADMIN.id = (
    await first.store.db.selectFrom("principals").select("id").where("name", "=", "admin").executeTakeFirstOrThrow()
  ).id;
});

afterAll(async () => {
  for (const server of nodes) await server.close().catch(() => undefined);
  await database?.drop();
  await instance?.stop();
});

describe("rotation races between nodes (finding 16)", () => {
  it("two nodes find the same rotation due at once: exactly one rotates, and the target accepts the vault's value", async () => {
    const [a, b] = [nodes[0]!, await node()];
    for (let round = 0; round < 5; round++) {
      const path = `race/app-${round}`;
      const { login, original } = await dueSecret(a, path);
      const done = await Promise.all([a.vault.rotateDue(), b.vault.rotateDue()]);
      expect(done[0] + done[1], `round ${round}: rotations done`).toBe(1);
      expect(await events(a, "secret.rotated", path)).toBe(1);
      const current = await currentValue(a, path);
      expect(current.version).toBe(2);
      expect(await signsIn(instance, login, current.value)).toBe(true);
      expect(await signsIn(instance, login, original)).toBe(false);
    }
  });

  it("a node that dies after changing the target and before committing: the next node settles the vault on what the target accepts", async () => {
    const a = nodes[0]!;
    const path = "crash/after-target";
    const { login, original } = await dueSecret(a, path);
    // Node A's rotation sets the new password at the target, then dies: its sign-in proof never returns.
    const dying = createVaultService({
      store: a.store,
      audit: a.audit,
      clock: { now: () => new Date() },
      fileKey: vaultKey,
      targets: {
        withCredentials: (name, work) =>
          a.grants.withCredentials(name, (ops) =>
            work({ setPassword: ops.setPassword, verifyPassword: () => new Promise<boolean>(() => undefined) }),
          ),
      },
    });
    void dying.rotate(SYSTEM, context, path);
    for (let i = 0; i < 200 && (await signsIn(instance, login, original)); i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(await signsIn(instance, login, original), "node A changed the password at the target").toBe(false);
    expect((await currentValue(a, path)).version, "nothing committed yet").toBe(1);

    // Node C starts after A's claim ran out.
    const later = manualClock(new Date(Date.now() + 60 * 60_000));
    const c = await node(later);
    const settled = await currentValue(c, path);
    expect(settled.version).toBe(2);
    expect(await signsIn(instance, login, settled.value)).toBe(true);
    expect(await events(c, "secret.rotation_reconciled", path)).toBe(1);
  });

  it("a node that dies before the target changed: the pending version is dropped and the old password stays", async () => {
    const a = nodes[0]!;
    const path = "crash/before-target";
    const { login, original } = await dueSecret(a, path);
    let reached = false;
    const dying = createVaultService({
      store: a.store,
      audit: a.audit,
      clock: { now: () => new Date() },
      fileKey: vaultKey,
      targets: {
        withCredentials: async () => {
          reached = true;
          return new Promise<never>(() => undefined);
        },
      },
    });
    void dying.rotate(SYSTEM, context, path);
    for (let i = 0; i < 200 && !reached; i++) await new Promise((r) => setTimeout(r, 25));
    expect(reached).toBe(true);
    const c = await node(manualClock(new Date(Date.now() + 60 * 60_000)));
    const settled = await currentValue(c, path);
    expect(settled.version).toBe(1);
    expect(settled.value).toBe(original);
    expect(await signsIn(instance, login, original)).toBe(true);
    const versions = await c.store.db
      .selectFrom("secret_versions")
      .innerJoin("secrets", "secrets.id", "secret_versions.secret_id")
      .select("secret_versions.version")
      .where("secrets.path", "=", path)
      .execute();
    expect(versions.map((v) => v.version)).toEqual([1]);
  });
});
