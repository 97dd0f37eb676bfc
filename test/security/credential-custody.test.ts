/**
 * Class: credential custody (issue 12, findings 1 and 3).
 *
 * A `security` user writes the catalog but must never reach the credentials Stint keeps for targets:
 * not by defining a target at a host they control that names another target's credential or a
 * break-glass secret, not by pointing an existing target somewhere else, and not through a session
 * whose upstream is theirs. The "host they control" is a real TCP listener speaking enough of the
 * PostgreSQL protocol to ask for a cleartext password: every connection and every byte it receives
 * is kept, and no test may see one arrive while a credential is at stake.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { selfServicePolicy, targetsHarness, type TargetsHarness } from "../../src/testing/targets-harness.js";
import { SessionRefusedError } from "../../src/modules/sessions/sessions.types.js";
import { loadConfig } from "../../src/config/config.js";
import { MIGRATIONS_DIR, openAppStore } from "../../src/db/index.js";
import { insertTarget } from "../../src/modules/catalog/catalog.store.js";
import { createLogger } from "../../src/lib/logger.js";
import { deriveKey, seal } from "../../src/lib/security.js";
import { endpointOf, legacyCredentialBinding } from "../../src/modules/catalog/custody.rules.js";
import { createServer as createStint } from "../../src/server.js";
import { createPgDatabase } from "../../src/testing/engines.js";
import { startPostgres } from "../../src/testing/postgres-instance.js";
import { ADMIN_PASSWORD, TEST_SCRYPT, passwordFor, totpNow } from "../../src/testing/server.js";

/** A PostgreSQL-speaking listener that asks every client for its password in clear and keeps what it hears. */
interface Trap {
  port: number;
  connections: number;
  heard: Buffer;
  close(): Promise<void>;
}

async function startTrap(): Promise<Trap> {
  const sockets = new Set<Socket>();
  const trap = { port: 0, connections: 0, heard: Buffer.alloc(0) } as Trap;
  const server: Server = createServer((socket) => {
    trap.connections += 1;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    let started = false;
    socket.on("data", (chunk) => {
      trap.heard = Buffer.concat([trap.heard, chunk]);
      buffer = Buffer.concat([buffer, chunk]);
      if (started || buffer.length < 8) return;
      const code = buffer.readInt32BE(4);
      if (code === 80877103 || code === 80877104) {
        // SSLRequest / GSSENCRequest: no.
        socket.write("N");
        buffer = buffer.subarray(8);
        return;
      }
      started = true;
      // AuthenticationCleartextPassword: the client answers with its password.
      socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  trap.port = (server.address() as { port: number }).port;
  trap.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return trap;
}

const hex = randomBytes(4).toString("hex");
const VICTIM_PASSWORD = `victim-admin-password-${hex}`;
const SESSION_PASSWORD = `victim-session-password-${hex}`;
const BREAK_GLASS_PASSWORD = `break-glass-root-password-${hex}`;
const mallory = `mallory${hex}`;

let h: TargetsHarness;
let trap: Trap;
let pgRoot: pg.Client;
let malloryAuth: string;

async function asMallory(method: "GET" | "POST" | "PUT" | "DELETE", url: string, payload?: unknown) {
  const res = await h.server.app.inject({
    method,
    url,
    headers: { authorization: malloryAuth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return {
    status: res.statusCode,
    body: (res.body ? res.json() : {}) as Record<string, unknown> & { error?: { code: string; message: string } },
  };
}

function expectNothingHeard() {
  expect(trap.connections, "a connection reached the attacker's listener").toBe(0);
  expect(trap.heard.toString("latin1")).not.toContain(VICTIM_PASSWORD);
  expect(trap.heard.toString("latin1")).not.toContain(SESSION_PASSWORD);
  expect(trap.heard.toString("latin1")).not.toContain(BREAK_GLASS_PASSWORD);
}

async function auditActions(prefix: string) {
  const res = await h.admin("GET", "/v1/audit/events?limit=1000");
  return (res.body.items as { action: string; subject: string | null; details: Record<string, unknown> }[]).filter(
    (e) => e.action.startsWith(prefix),
  );
}

beforeAll(async () => {
  pgRoot = new pg.Client({ connectionString: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" });
  await pgRoot.connect();
  h = await targetsHarness();
  h.server.sessions.setProxyAddress("postgres", { host: "127.0.0.1", port: 6543 });
  trap = await startTrap();
  malloryAuth = await h.server.userWithRoles(mallory, ["security"]);
  await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("custody-self")}
targets:
  - name: prod-db
    kind: postgres
    address: postgres://stint_admin@127.0.0.1:5432/postgres?sslmode=disable
    credential: { secret: targets/prod-db/admin }
    options:
      session: { login: app_ops, secret: targets/prod-db/session }
`);
  const set = await h.admin("PUT", "/v1/targets/prod-db/credential", { secret: VICTIM_PASSWORD });
  expect(set.status, JSON.stringify(set.body)).toBe(200);
  for (const [path, value, extra] of [
    ["targets/prod-db/session", SESSION_PASSWORD, {}],
    ["breakglass/root", BREAK_GLASS_PASSWORD, { breakGlass: true }],
  ] as const) {
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent(path)}`, {
      kind: "password",
      value,
      platformRoles: ["admin"],
      ...extra,
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
  }
});

afterAll(async () => {
  await trap?.close();
  await h?.server.cleanup();
  if (pgRoot) {
    await pgRoot.query(`drop role if exists ${mallory}`).catch(() => undefined);
    await pgRoot.query(`drop role if exists custody_ro_${hex}`).catch(() => undefined);
    await pgRoot.end();
  }
});

describe("target credential custody (finding 1)", () => {
  it("refuses a new target that names another target's credential, and its test reaches nobody", async () => {
    const created = await asMallory("POST", "/v1/targets", {
      name: "mallory-db",
      kind: "postgres",
      address: `postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
      credential: { secret: "targets/prod-db/admin" },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(400);
    expect(created.body.error?.code).toBe("VALIDATION_FAILED");
    const tested = await asMallory("POST", "/v1/targets/mallory-db/test");
    expect(tested.status).toBe(404);
    // Nor through configuration as code.
    const applied = await asMallory("POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
targets:
  - name: mallory-db
    kind: postgres
    address: postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable
    credential: { secret: targets/prod-db/admin }
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(400);
    expectNothingHeard();
  });

  it("a credential pointed at from another target's row does not open there (bound to the target id)", async () => {
    // A target of her own, with its own credential path: allowed.
    const created = await asMallory("POST", "/v1/targets", {
      name: "mallory-own",
      kind: "postgres",
      address: `postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
      credential: { secret: "targets/mallory-own/admin" },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    // A database writer repoints it at prod-db's credential behind the API's back.
    const row = await h.server.store.db
      .selectFrom("targets")
      .select("config")
      .where("name", "=", "mallory-own")
      .executeTakeFirstOrThrow();
    const config = { ...(row.config as Record<string, unknown>), credential: "targets/prod-db/admin" };
    await h.server.store.db
      .updateTable("targets")
      .set({ config: JSON.stringify(config) as never })
      .where("name", "=", "mallory-own")
      .execute();
    const tested = await asMallory("POST", "/v1/targets/mallory-own/test");
    expect(tested.status, JSON.stringify(tested.body)).toBe(200);
    expect(tested.body.ok).toBe(false);
    expect(JSON.stringify(tested.body)).not.toContain(VICTIM_PASSWORD);
    expectNothingHeard();
  });

  it("changing an existing target's address invalidates its credential until it is set again (API, file, database)", async () => {
    // Through the API.
    const current = await h.admin("GET", "/v1/targets/prod-db");
    const moved = await asMallory("PUT", "/v1/targets/prod-db", {
      name: "prod-db",
      kind: "postgres",
      address: `postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
      credential: current.body.credential ? { secret: "targets/prod-db/admin" } : undefined,
      options: current.body.options,
      identity: current.body.identity,
      labels: current.body.labels,
    });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.credential).toEqual({ secret: "targets/prod-db/admin", stored: false });
    const tested = await asMallory("POST", "/v1/targets/prod-db/test");
    expect(tested.body.ok).toBe(false);
    expect(String(tested.body.detail)).toMatch(/not stored|set it/);
    expectNothingHeard();
    const invalidated = await auditActions("target.credential_invalidated");
    expect(invalidated.some((e) => e.subject === "target:prod-db")).toBe(true);
    // Its session secret no longer goes there either, until an admin allows it again.
    const sessionDropped = await auditActions("target.session_secret_invalidated");
    expect(sessionDropped.some((e) => e.subject === "target:prod-db")).toBe(true);

    // Back home, set again by an admin; then a file moves it: invalidated again.
    await h.admin("PUT", "/v1/targets/prod-db", {
      name: "prod-db",
      kind: "postgres",
      address: "postgres://stint_admin@127.0.0.1:5432/postgres?sslmode=disable",
      credential: { secret: "targets/prod-db/admin" },
      options: current.body.options,
      identity: current.body.identity,
      labels: current.body.labels,
    });
    expect((await h.admin("PUT", "/v1/targets/prod-db/credential", { secret: VICTIM_PASSWORD })).status).toBe(200);
    const applied = await asMallory("POST", "/v1/config/apply", {
      yaml: `
apiVersion: stint/v1
targets:
  - name: prod-db
    kind: postgres
    address: postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable
    credential: { secret: targets/prod-db/admin }
    options:
      session: { login: app_ops, secret: targets/prod-db/session }
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
    expect((await asMallory("POST", "/v1/targets/prod-db/test")).body.ok).toBe(false);
    expectNothingHeard();

    // Back home once more, set again; a database writer moves the address: the sealed credential no longer opens.
    await h.admin("PUT", "/v1/targets/prod-db", {
      name: "prod-db",
      kind: "postgres",
      address: "postgres://stint_admin@127.0.0.1:5432/postgres?sslmode=disable",
      credential: { secret: "targets/prod-db/admin" },
      options: current.body.options,
      identity: current.body.identity,
      labels: current.body.labels,
    });
    expect((await h.admin("PUT", "/v1/targets/prod-db/credential", { secret: VICTIM_PASSWORD })).status).toBe(200);
    await h.server.store.db
      .updateTable("targets")
      .set({ address: `postgres://stint_admin@127.0.0.1:${trap.port}/postgres?sslmode=disable` })
      .where("name", "=", "prod-db")
      .execute();
    expect((await asMallory("POST", "/v1/targets/prod-db/test")).body.ok).toBe(false);
    expectNothingHeard();
    await h.server.store.db
      .updateTable("targets")
      .set({ address: "postgres://stint_admin@127.0.0.1:5432/postgres?sslmode=disable" })
      .where("name", "=", "prod-db")
      .execute();
  });

  it("refuses options.session.secret naming a break-glass secret or another target's secret at definition", async () => {
    for (const secret of ["breakglass/root", "targets/prod-db/session", "targets/prod-db/admin"]) {
      const created = await asMallory("POST", "/v1/targets", {
        name: "mallory-sessions",
        kind: "postgres",
        address: `postgres://app_ops@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
        options: { session: { login: "app_ops", secret } },
      });
      expect(created.status, `${secret}: ${JSON.stringify(created.body)}`).toBe(400);
      expect(created.body.error?.code).toBe("VALIDATION_FAILED");
    }
    expectNothingHeard();
  });

  it("another secret is used by a target only with an admin's explicit, audited allowance", async () => {
    const put = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("shared/ops-login")}`, {
      kind: "password",
      value: SESSION_PASSWORD,
      platformRoles: ["admin"],
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const definition = {
      name: "ops-db",
      kind: "postgres",
      address: `postgres://app_ops@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
      options: { session: { login: "app_ops", secret: "shared/ops-login" } },
    };
    expect((await asMallory("POST", "/v1/targets", definition)).status).toBe(400);
    expect((await asMallory("POST", "/v1/targets", { ...definition, options: {} })).status).toBe(201);
    const self = await asMallory("PUT", `/v1/secrets/${encodeURIComponent("shared/ops-login")}/targets/ops-db`);
    expect(self.status).toBe(403);
    const allowed = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("shared/ops-login")}/targets/ops-db`);
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
    expect((await asMallory("PUT", "/v1/targets/ops-db", definition)).status).toBe(200);
    expect((await auditActions("secret.allowed")).some((e) => e.subject === "secret:shared/ops-login")).toBe(true);
    // A break-glass secret is never allowed, not even by an admin.
    const bg = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("breakglass/root")}/targets/ops-db`);
    expect(bg.body.error?.code).toBe("BREAK_GLASS_ONLY");
    expectNothingHeard();
  });

  it("refuses at session open a session secret the target does not own (changed behind the API) or that is break-glass", async () => {
    // The target is the machine's PostgreSQL (trust): provisioning grants a real role to a real login.
    await pgRoot.query(`create role ${mallory} login`);
    await pgRoot.query(`create role custody_ro_${hex} nologin`);
    await h.apply(`
apiVersion: stint/v1
policies:${selfServicePolicy("custody-self")}
targets:
  - name: mallory-sessions
    kind: postgres
    address: postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
    options:
      session: { login: app_ops, secret: targets/mallory-sessions/session }
roles:
  - name: mallory-sessions-ops
    target: mallory-sessions
    entitlement: { role: custody_ro_${hex} }
    policy: custody-self
    risk: low
eligibility:
  - role: mallory-sessions-ops
    users: [${mallory}]
`);
    // Her own target's own secret: she put it, so it is hers to use.
    const own = await asMallory("PUT", `/v1/secrets/${encodeURIComponent("targets/mallory-sessions/session")}`, {
      kind: "password",
      value: "mallory-knows-this-one",
      platformRoles: ["security"],
    });
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    const request = await h.activate(mallory, "mallory-sessions-ops");
    expect(request.state, JSON.stringify(request)).toBe("active");
    const gate = h.server.sessions.gate;
    const open = async () => {
      const token = await h.as(mallory, "POST", "/v1/db/tokens", { role: "mallory-sessions-ops" });
      expect(token.status, JSON.stringify(token.body)).toBe(200);
      const body = token.body as { user: string; password: string };
      return gate
        .openPostgres({ user: body.user, password: body.password, database: null, clientAddress: "127.0.0.1" })
        .then(
          (session) => ({ session, error: null as unknown }),
          (error: unknown) => ({ session: null, error }),
        );
    };
    const allowed = await open();
    expect(allowed.error).toBeNull();
    expect(allowed.session?.upstream).toMatchObject({ user: "app_ops", password: "mallory-knows-this-one" });
    await allowed.session?.end("client_closed");

    // A database writer also hands prod-db's session secret to her target, allowance and all (no MAC to make).
    const target = await h.server.store.db
      .selectFrom("targets")
      .select(["id", "kind", "address", "config"])
      .where("name", "=", "mallory-sessions")
      .executeTakeFirstOrThrow();
    await h.server.store.db
      .deleteFrom("secret_target_allowances")
      .where("path", "=", "targets/prod-db/session")
      .execute();
    await h.server.store.db
      .insertInto("secret_target_allowances")
      .values({
        path: "targets/prod-db/session",
        target_id: target.id,
        endpoint: endpointOf({
          kind: target.kind,
          address: target.address,
          options: (target.config as { options: Record<string, unknown> }).options,
        }),
        granted_by: "admin",
        created_at: new Date(),
        mac: randomBytes(32).toString("base64url"),
      })
      .execute();
    for (const secret of ["targets/prod-db/session", "breakglass/root"]) {
      const row = await h.server.store.db
        .selectFrom("targets")
        .select("config")
        .where("name", "=", "mallory-sessions")
        .executeTakeFirstOrThrow();
      const config = row.config as { options: Record<string, unknown> };
      config.options = { ...config.options, session: { login: "app_ops", secret } };
      await h.server.store.db
        .updateTable("targets")
        .set({ config: JSON.stringify(config) as never })
        .where("name", "=", "mallory-sessions")
        .execute();
      const result = await open();
      if (result.session) await result.session.end("client_closed");
      expect(result.session?.upstream, `${secret} was released to a session`).toBeUndefined();
      expect(result.error).toBeInstanceOf(SessionRefusedError);
      expect(String((result.error as Error).message)).not.toContain(SESSION_PASSWORD);
    }
    expectNothingHeard();
  });
});

describe("a role's session secret (entitlement.session, finding 1 and 5)", () => {
  const role = (target: string, secret: string | null) => ({
    name: "mallory-role",
    target,
    policy: "custody-self",
    risk: "low",
    entitlement: { role: "pg_read_all_data", ...(secret ? { session: { login: "app_ops", secret } } : {}) },
  });
  // Break-glass: only its reveal releases it. Another target's: prod-db's session secret (allowed for
  // prod-db) and prod-db's admin credential path.
  const FORBIDDEN = ["breakglass/root", "targets/prod-db/session", "targets/prod-db/admin"];

  beforeAll(async () => {
    const created = await asMallory("POST", "/v1/targets", {
      name: "mallory-roles",
      kind: "postgres",
      address: `postgres://app_ops@127.0.0.1:${trap.port}/postgres?sslmode=disable`,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  });

  it("refuses a role whose session secret is break-glass or another target's, at create and update (API); nothing stored", async () => {
    for (const [target, secret] of [
      ...FORBIDDEN.map((secret) => ["mallory-roles", secret] as const),
      ["prod-db", "breakglass/root"] as const,
    ]) {
      const created = await asMallory("POST", "/v1/roles", role(target, secret));
      expect(created.status, `${target} ${secret}: ${JSON.stringify(created.body)}`).toBe(400);
      expect(created.body.error?.code).toBe("VALIDATION_FAILED");
      expect(created.body.error?.message).toContain("entitlement.session.secret");
      expect((await asMallory("GET", "/v1/roles/mallory-role")).status).toBe(404);
    }
    // Update: a role without a session login may not be given one of those either.
    expect((await asMallory("POST", "/v1/roles", role("mallory-roles", null))).status).toBe(201);
    for (const secret of FORBIDDEN) {
      const updated = await asMallory("PUT", "/v1/roles/mallory-role", role("mallory-roles", secret));
      expect(updated.status, `${secret}: ${JSON.stringify(updated.body)}`).toBe(400);
      expect(updated.body.error?.message).toContain("entitlement.session.secret");
    }
    const stored = await asMallory("GET", "/v1/roles/mallory-role");
    expect((stored.body.entitlement as Record<string, unknown>).session).toBeUndefined();
    // The target's own path is hers to name (the vault still releases it only where it is allowed).
    const own = await asMallory("PUT", "/v1/roles/mallory-role", role("mallory-roles", "targets/mallory-roles/ro"));
    expect(own.status, JSON.stringify(own.body)).toBe(200);
    expect((await asMallory("DELETE", "/v1/roles/mallory-role")).status).toBe(200);
    expectNothingHeard();
  });

  it("refuses the same through stint apply (the configuration file); nothing stored", async () => {
    for (const secret of FORBIDDEN) {
      const applied = await asMallory("POST", "/v1/config/apply", {
        yaml: `apiVersion: stint/v1
roles:
  - name: mallory-file-role
    target: mallory-roles
    entitlement: { role: pg_read_all_data, session: { login: app_ops, secret: ${secret} } }
    policy: custody-self
    risk: low
`,
      });
      expect(applied.status, `${secret}: ${JSON.stringify(applied.body)}`).toBe(400);
      expect(applied.body.error?.code).toBe("VALIDATION_FAILED");
      expect(applied.body.error?.message).toContain("entitlement.session.secret");
      expect((await asMallory("GET", "/v1/roles/mallory-file-role")).status).toBe(404);
    }
    expectNothingHeard();
  });
});

describe("credentials stored before they were bound to their target (upgrade)", () => {
  it("are re-sealed for their one target at start and keep working against a real PostgreSQL", async () => {
    const instance = await startPostgres();
    const database = await createPgDatabase();
    const masterKey = randomBytes(32);
    const vaultKey = randomBytes(32);
    const parsed = loadConfig({
      STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD,
      STINT_LOG_LEVEL: "silent",
      STINT_RECONCILE_INTERVAL: "0",
    });
    if (!parsed.ok) throw new Error(parsed.problems.join("\n"));
    const start = async () => {
      const server = await createStint({
        config: parsed.config,
        logger: createLogger({ level: "silent" }),
        masterKey,
        vaultKey,
        store: await openAppStore({ databaseUrl: database.url }),
        scrypt: TEST_SCRYPT,
      });
      await server.bootstrap();
      await server.app.ready();
      const login = await server.app.inject({
        method: "POST",
        url: "/v1/auth/login",
        payload: { username: parsed.config.bootstrapAdminName, password: ADMIN_PASSWORD },
      });
      const authorization = `Bearer ${login.json<{ accessToken: string }>().accessToken}`;
      const call = async (method: "GET" | "POST" | "PUT", url: string, payload?: unknown) => {
        const res = await server.app.inject({
          method,
          url,
          headers: { authorization },
          ...(payload !== undefined ? { payload: payload as object } : {}),
        });
        return { status: res.statusCode, body: res.json<Record<string, unknown>>() };
      };
      return { server, call };
    };
    try {
      // A database from a release before the binding: the target, and its credential sealed to its path alone,
      // with no target (the binding runs once per database, at its first start: a row made unbound later is a
      // database writer's, refused: test/security/legacy-allowances.test.ts).
      const targetId = randomUUID();
      const older = await openAppStore({ databaseUrl: database.url });
      try {
        await older.migrate(MIGRATIONS_DIR);
        const now = new Date();
        await insertTarget(
          older.db,
          targetId,
          {
            name: "legacy-db",
            kind: "postgres",
            address: `postgres://postgres@127.0.0.1:${instance.port}/postgres?sslmode=disable`,
            labels: {},
            credential: "targets/legacy-db/admin",
            identity: { template: "{{name}}", map: {} },
            options: { session: { login: "postgres", secret: "db/legacy/session" } },
          },
          now,
        );
        await older.db
          .insertInto("target_secrets")
          .values({
            path: "targets/legacy-db/admin",
            sealed: seal(
              deriveKey(masterKey, "target-secrets"),
              instance.adminPassword,
              legacyCredentialBinding("targets/legacy-db/admin"),
            ),
            target_id: null,
            endpoint: null,
            created_at: now,
            updated_at: now,
          })
          .execute();
      } finally {
        await older.close();
      }

      const first = await start();
      expect((await first.call("POST", "/v1/targets/legacy-db/test")).body).toMatchObject({ ok: true });
      // Its session secret's allowance (adopted at this first start) deleted by a database writer: the adoption of
      // secrets named before allowances existed ran once and does not run again (an older release's database:
      // test/security/legacy-allowances.test.ts).
      await first.server.store.db.deleteFrom("secret_target_allowances").execute();
      await first.server.close();

      const second = await start();
      try {
        const row = await second.server.store.db
          .selectFrom("target_secrets")
          .select(["target_id"])
          .where("path", "=", "targets/legacy-db/admin")
          .executeTakeFirstOrThrow();
        expect(row.target_id).toBe(targetId);
        const allowance = await second.server.store.db
          .selectFrom("secret_target_allowances")
          .select(["target_id", "granted_by"])
          .where("path", "=", "db/legacy/session")
          .executeTakeFirst();
        expect(allowance).toBeUndefined();
        const tested = await second.call("POST", "/v1/targets/legacy-db/test");
        expect(tested.body, JSON.stringify(tested.body)).toMatchObject({ ok: true });
      } finally {
        await second.server.close();
      }
    } finally {
      await database.drop();
      await instance.stop();
    }
  });
});

describe("break-glass secrets only through their reveal (finding 3)", () => {
  const BG_VALUE = `break-glass-db-root-${hex}`;
  const path = encodeURIComponent("breakglass/db-root");

  it("a user with read and check-out rights on a break-glass path is refused on every ordinary path", async () => {
    const put = await h.admin("PUT", `/v1/secrets/${path}`, {
      kind: "password",
      value: BG_VALUE,
      platformRoles: ["security"],
      breakGlass: true,
      checkout: { exclusive: false, maxDuration: "1h" },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const attempts = [
      await asMallory("GET", `/v1/secrets/${path}/value`),
      await asMallory("GET", `/v1/secrets/${path}/value?version=1`),
      await asMallory("POST", `/v1/secrets/${path}/checkout`, { reason: "just looking", duration: "5m" }),
      // secrets.write may add a version, but not turn the break-glass off or widen who may read it.
      await asMallory("PUT", `/v1/secrets/${path}`, { kind: "password", value: "x".repeat(20), breakGlass: false }),
      await asMallory("PUT", `/v1/secrets/${path}`, {
        kind: "password",
        value: "x".repeat(20),
        platformRoles: ["security", "user"],
      }),
      // Nor point its rotation at her own target (a failed rotation sets the old password back there).
      await asMallory("PUT", `/v1/secrets/${path}`, {
        kind: "password",
        value: "x".repeat(20),
        rotation: { target: "mallory-own", login: "stint_admin" },
      }),
    ];
    for (const attempt of attempts) {
      expect(attempt.status, JSON.stringify(attempt.body)).toBeGreaterThanOrEqual(400);
      expect(JSON.stringify(attempt.body)).not.toContain(BG_VALUE);
    }
    expect(attempts[0]!.body.error?.code).toBe("BREAK_GLASS_ONLY");
    expect(attempts[2]!.body.error?.code).toBe("BREAK_GLASS_ONLY");
    expect(attempts[3]!.body.error?.code).toBe("FORBIDDEN");
    expect(attempts[5]!.body.error?.code).toBe("FORBIDDEN");
    // A login's password at a target changes by rotation, not by a value a writer chose.
    const rotated = await h.admin("PUT", `/v1/secrets/${encodeURIComponent("db/rotated")}`, {
      kind: "password",
      value: "the-password-on-file-1",
      platformRoles: ["admin"],
      rotation: { target: "prod-db", login: "app_ops" },
    });
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    const chosen = await asMallory("PUT", `/v1/secrets/${encodeURIComponent("db/rotated")}`, {
      kind: "password",
      value: "a-value-mallory-knows",
    });
    expect(chosen.body.error?.code).toBe("FORBIDDEN");
    const meta = await h.admin("GET", `/v1/secrets/${path}`);
    expect(meta.body).toMatchObject({
      breakGlass: true,
      platformRoles: ["security"],
      currentVersion: 1,
      checkedOut: null,
    });
    const checkouts = await h.server.store.db.selectFrom("secret_checkouts").selectAll().execute();
    expect(checkouts).toEqual([]);
    const denied = await auditActions("secret.");
    expect(denied.filter((e) => e.subject === "secret:breakglass/db-root").length).toBeGreaterThanOrEqual(2);
  });

  it("the reveal still releases it, with fresh MFA, a review item, the alarm's audit event and a rotation scheduled", async () => {
    const stale = await asMallory("POST", `/v1/secrets/${path}/reveal`, { reason: "prod down, INC-4242, no login" });
    expect(stale.body.error?.code).toBe("MFA_STEP_UP_REQUIRED");
    const started = await asMallory("POST", "/v1/me/mfa/totp");
    const seed = String(started.body.secret);
    expect(
      (await asMallory("POST", "/v1/me/mfa/totp/confirm", { code: totpNow(seed, h.clock.now().getTime()) })).status,
    ).toBe(200);
    malloryAuth = await h.server.login(mallory, passwordFor(mallory), totpNow(seed, h.clock.now().getTime() + 30_000));
    const reveal = await asMallory("POST", `/v1/secrets/${path}/reveal`, { reason: "prod down, INC-4242, no login" });
    expect(reveal.status, JSON.stringify(reveal.body)).toBe(200);
    expect(reveal.body.value).toBe(BG_VALUE);
    const review = await h.server.store.db
      .selectFrom("review_items")
      .selectAll()
      .where("id", "=", String(reveal.body.reviewId))
      .executeTakeFirstOrThrow();
    expect(review).toMatchObject({ kind: "break-glass-secret", subject: "secret:breakglass/db-root", status: "open" });
    expect((await auditActions("breakglass.secret_revealed")).length).toBe(1);
    const meta = await h.admin("GET", `/v1/secrets/${path}`);
    expect(meta.body.rotationDueAt).toBe(reveal.body.rotationDueAt);
    // Fresh MFA does not open the ordinary paths either.
    const read = await asMallory("GET", `/v1/secrets/${path}/value`);
    expect(read.body.error?.code).toBe("BREAK_GLASS_ONLY");
  });
});
