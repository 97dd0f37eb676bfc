/**
 * The vault against the real store on both engines: values are encrypted at
 * rest (nothing in a pg_dump), rows cannot be swapped, reads need an active
 * role, exclusive check-outs have exactly one winner, key rotation re-wraps;
 * and a wrong key or a sealed vault only stops secret operations.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config/config.js";
import { manualClock } from "../../lib/clock.js";
import { createLogger } from "../../lib/logger.js";
import { createServer, type Server } from "../../server.js";
import { ENGINES, freshStore, type TestStore } from "../../testing/engines.js";
import { ADMIN_PASSWORD, passwordFor, TEST_SCRYPT, testServer, type TestServer } from "../../testing/server.js";
import { selfServicePolicy } from "../../testing/targets-harness.js";

const run = promisify(execFile);
type Reply = {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string; details?: Record<string, unknown> } };
};

async function call(app: Server["app"], auth: string, method: string, url: string, payload?: unknown): Promise<Reply> {
  const res = await app.inject({
    method: method as "GET",
    url,
    headers: { authorization: auth },
    ...(payload !== undefined ? { payload: payload as object } : {}),
  });
  return { status: res.statusCode, body: res.body ? (res.json() as Reply["body"]) : {} };
}

const enc = (path: string) => encodeURIComponent(path);

describe.each(ENGINES)("vault on %s", (engine) => {
  let server: TestServer;
  const clock = manualClock(new Date());
  const VALUES = { db: `pw-${randomBytes(12).toString("hex")}`, api: `key-${randomBytes(12).toString("hex")}` };

  beforeAll(async () => {
    server = await testServer(engine, { clock });
    for (const name of ["dora", "eli"]) {
      const res = await call(server.app, server.adminAuth, "POST", "/v1/users", { name, password: passwordFor(name) });
      expect(res.status).toBe(201);
    }
    const applied = await call(server.app, server.adminAuth, "POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
policies:${selfServicePolicy("vault-self")}
targets:
  - name: stint
    kind: internal
roles:
  - name: db-break-fix
    target: stint
    policy: vault-self
    risk: high
eligibility:
  - role: db-break-fix
    users: [dora]
`,
    });
    expect(applied.status, JSON.stringify(applied.body)).toBe(200);
  });
  afterAll(async () => server?.cleanup());

  const admin = () => server.login(server.config.bootstrapAdminName, ADMIN_PASSWORD);
  const as = (name: string) => server.login(name, passwordFor(name));

  it("keeps values encrypted at rest: no value in the database, and swapped rows fail their integrity check", async () => {
    for (const [path, value] of [
      ["prod/db/admin", VALUES.db],
      ["prod/api/key", VALUES.api],
    ] as const) {
      const res = await call(server.app, await admin(), "PUT", `/v1/secrets/${enc(path)}`, {
        kind: "password",
        value,
        roles: ["db-break-fix"],
        platformRoles: ["admin"],
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    if (engine === "postgres") {
      const { stdout } = await run("pg_dump", ["--data-only", server.databaseUrl!], { maxBuffer: 64 * 1024 * 1024 });
      expect(stdout).toContain("prod/db/admin");
      for (const value of Object.values(VALUES)) expect(stdout).not.toContain(value);
    }
    const rows = await server.store.db.selectFrom("secret_versions").selectAll().execute();
    expect(JSON.stringify(rows)).not.toContain(VALUES.db);
    const audit = await call(server.app, await admin(), "GET", "/v1/audit/events?limit=500");
    expect(JSON.stringify(audit.body)).not.toContain(VALUES.db);

    const read = await call(server.app, await admin(), "GET", `/v1/secrets/${enc("prod/db/admin")}/value`);
    expect(read.body).toMatchObject({ value: VALUES.db, version: 1 });

    // Swap the two versions' ciphertexts and wrapped keys, as someone with SQL access might.
    await sql`
      update secret_versions a set ciphertext = b.ciphertext, wrapped_key = b.wrapped_key
        from secret_versions b where a.secret_id <> b.secret_id`.execute(server.store.db);
    for (const path of ["prod/db/admin", "prod/api/key"]) {
      const res = await call(server.app, await admin(), "GET", `/v1/secrets/${enc(path)}/value`);
      expect(res.status).toBe(500);
      expect(res.body.error?.code).toBe("INTEGRITY_FAILED");
    }
    // Put them back (for the tests below).
    await sql`
      update secret_versions a set ciphertext = b.ciphertext, wrapped_key = b.wrapped_key
        from secret_versions b where a.secret_id <> b.secret_id`.execute(server.store.db);
    expect((await call(server.app, await admin(), "GET", `/v1/secrets/${enc("prod/db/admin")}/value`)).status).toBe(
      200,
    );
  });

  it("a read needs an active activation of a role the secret lists; refusals and reads are audited, never the value", async () => {
    const path = `/v1/secrets/${enc("prod/db/admin")}/value`;
    const before = await call(server.app, await as("dora"), "GET", path);
    expect(before.status).toBe(404);
    const other = await call(server.app, await as("eli"), "GET", path);
    expect(other.status).toBe(404);
    expect(other.body.error?.message).toEqual(before.body.error?.message!.replace("prod/db/admin", "prod/db/admin"));

    const activated = await call(server.app, await as("dora"), "POST", "/v1/activation-requests", {
      role: "db-break-fix",
      duration: "30m",
      reason: "rotate the replication password after INC-9",
    });
    expect(activated.body.state).toBe("active");
    const during = await call(server.app, await as("dora"), "GET", path);
    expect(during.body).toMatchObject({ value: VALUES.db });

    clock.advance(31 * 60_000);
    expect((await call(server.app, await as("dora"), "GET", path)).status).toBe(404);
    const audit = await call(server.app, await admin(), "GET", "/v1/audit/events?limit=500");
    const reads = (audit.body.items as { action: string; outcome: string; actor: string }[]).filter(
      (e) => e.action === "secret.read" && e.actor === "dora",
    );
    expect(reads.map((e) => e.outcome)).toEqual(["denied", "success", "denied"]);
    expect(JSON.stringify(audit.body)).not.toContain(VALUES.db);
  });

  it("50 concurrent check-outs of one exclusive secret: exactly one wins, the others learn who holds it until when", async () => {
    const path = "shared/root-password";
    const put = await call(server.app, await admin(), "PUT", `/v1/secrets/${enc(path)}`, {
      kind: "password",
      generate: { length: 24 },
      platformRoles: ["user", "admin"],
      checkout: { exclusive: true, maxDuration: "1h", rotateOnCheckin: true },
    });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const auths = await Promise.all([as("dora"), as("eli")]);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call(server.app, auths[i % 2]!, "POST", `/v1/secrets/${enc(path)}/checkout`, {
          reason: "break-fix on the legacy host",
          duration: "20m",
        }),
      ),
    );
    const won = results.filter((r) => r.status === 200);
    const lost = results.filter((r) => r.status !== 200);
    expect(won).toHaveLength(1);
    expect(String(won[0]!.body.value)).toHaveLength(24);
    const holder = won[0]!.body.holder as string;
    expect(lost).toHaveLength(49);
    for (const r of lost) {
      expect(r.status).toBe(409);
      expect(r.body.error?.code).toBe("CHECKED_OUT");
      expect(r.body.error?.details).toEqual({ holder, until: won[0]!.body.until });
    }
    // Only the holder reads it meanwhile; at the end of its time it is checked in by itself, and rotated
    // (the holder saw the value).
    const other = holder === "dora" ? "eli" : "dora";
    expect((await call(server.app, await as(other), "GET", `/v1/secrets/${enc(path)}/value`)).body.error?.code).toBe(
      "CHECKED_OUT",
    );
    clock.advance(21 * 60_000);
    await server.scheduler.runOnce();
    const meta = await call(server.app, await admin(), "GET", `/v1/secrets/${enc(path)}`);
    expect(meta.body.checkedOut).toBeNull();
    const next = await call(server.app, await as(other), "POST", `/v1/secrets/${enc(path)}/checkout`, {
      reason: "my turn on the legacy host",
    });
    expect(next.status).toBe(200);
    const checkin = await call(server.app, await as(other), "POST", `/v1/secrets/${enc(path)}/checkin`);
    expect(checkin.body).toMatchObject({ rotated: true, currentVersion: 3 });
  });

  it("rotating the key re-wraps every data key and leaves the payloads and values as they were", async () => {
    const before = await server.store.db.selectFrom("secret_versions").select(["ciphertext", "wrapped_key"]).execute();
    const rotated = await call(server.app, await admin(), "POST", "/v1/operator/rotate-key");
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(rotated.body.rewrapped).toBe(before.length);
    const after = await server.store.db
      .selectFrom("secret_versions")
      .select(["ciphertext", "wrapped_key", "kek_version"])
      .execute();
    expect(after.map((r) => r.ciphertext).sort()).toEqual(before.map((r) => r.ciphertext).sort());
    expect(after.every((r) => r.kek_version === rotated.body.keyVersion)).toBe(true);
    expect(after.some((r) => before.some((b) => b.wrapped_key === r.wrapped_key))).toBe(false);
    const read = await call(server.app, await admin(), "GET", `/v1/secrets/${enc("prod/db/admin")}/value`);
    expect(read.body).toMatchObject({ value: VALUES.db });
  });
});

describe("a wrong key, and a sealed vault", () => {
  const masterKey = randomBytes(32);
  const vaultKey = randomBytes(32);
  let shared: TestStore;
  const servers: Server[] = [];

  async function node(key: Uint8Array | null): Promise<{ server: Server; admin: () => Promise<string> }> {
    const parsed = loadConfig({ STINT_BOOTSTRAP_ADMIN_PASSWORD: ADMIN_PASSWORD, STINT_LOG_LEVEL: "silent" });
    if (!parsed.ok) throw new Error(parsed.problems.join("; "));
    const server = await createServer({
      config: parsed.config,
      logger: createLogger({ level: process.env.VAULT_TEST_LOG ?? "silent" }),
      masterKey,
      vaultKey: key,
      store: shared.store,
      scrypt: TEST_SCRYPT,
    });
    servers.push(server);
    await server.bootstrap();
    await server.app.ready();
    const admin = async () => {
      const res = await server.app.inject({
        method: "POST",
        url: "/v1/auth/login",
        payload: { username: "admin", password: ADMIN_PASSWORD },
      });
      expect(res.statusCode).toBe(200);
      return `Bearer ${res.json<{ accessToken: string }>().accessToken}`;
    };
    return { server, admin };
  }

  beforeAll(async () => {
    shared = await freshStore("pglite");
  });
  afterAll(async () => {
    for (const server of servers) await server.app.close();
    await shared?.cleanup();
  });

  it("with a wrong key, secret operations say so while sign-in, activation and audit keep working", async () => {
    const good = await node(vaultKey);
    const put = await call(good.server.app, await good.admin(), "PUT", "/v1/secrets/ops%2Ftoken", {
      value: "the-token-value",
      platformRoles: ["admin"],
    });
    expect(put.status).toBe(200);

    const wrong = await node(randomBytes(32));
    const auth = await wrong.admin();
    const read = await call(wrong.server.app, auth, "GET", "/v1/secrets/ops%2Ftoken/value");
    expect(read.status).toBe(503);
    expect(read.body.error?.code).toBe("VAULT_KEY_INVALID");
    expect(JSON.stringify(read.body)).not.toMatch(/at .*\.(js|ts)/);
    expect((await call(wrong.server.app, auth, "GET", "/v1/audit/verify")).body).toMatchObject({ ok: true });
    // Someone other than the admin applying the file: nobody grants themselves eligibility (SELF_GRANT).
    const created = await call(wrong.server.app, auth, "POST", "/v1/users", {
      name: "oncall",
      password: passwordFor("oncall"),
    });
    expect(created.status).toBe(201);
    const apply = await call(wrong.server.app, auth, "POST", "/v1/config/apply", {
      yaml: `apiVersion: stint/v1
policies:${selfServicePolicy("self")}
targets:
  - name: stint
    kind: internal
roles:
  - name: on-call
    target: stint
    policy: self
    risk: low
eligibility:
  - role: on-call
    users: [oncall]
`,
    });
    expect(apply.status).toBe(200);
    const signIn = await wrong.server.app.inject({
      method: "POST",
      url: "/v1/auth/login",
      payload: { username: "oncall", password: passwordFor("oncall") },
    });
    const oncall = `Bearer ${signIn.json<{ accessToken: string }>().accessToken}`;
    const activation = await call(wrong.server.app, oncall, "POST", "/v1/activation-requests", {
      role: "on-call",
      reason: "the vault key is wrong but on-call still works",
    });
    expect(activation.body.state).toBe("active");
  });

  it("initialized with 5 shares and threshold 3: sealed answers SEALED, 2 shares do not unseal, 3 do", async () => {
    const { server, admin } = await node(vaultKey);
    const init = await call(server.app, await admin(), "POST", "/v1/operator/init", { shares: 5, threshold: 3 });
    expect(init.status, JSON.stringify(init.body)).toBe(200);
    const shares = init.body.shares as string[];
    expect(new Set(shares).size).toBe(5);
    // Still readable right after init: the node that made the key holds it.
    expect((await call(server.app, await admin(), "GET", "/v1/secrets/ops%2Ftoken/value")).body.value).toBe(
      "the-token-value",
    );

    await call(server.app, await admin(), "POST", "/v1/operator/seal");
    const sealed = await call(server.app, await admin(), "GET", "/v1/secrets/ops%2Ftoken/value");
    expect(sealed.status).toBe(503);
    expect(sealed.body.error?.code).toBe("SEALED");
    expect((await call(server.app, await admin(), "GET", "/v1/audit/verify")).body).toMatchObject({ ok: true });

    for (const share of shares.slice(1, 3)) {
      const res = await call(server.app, await admin(), "POST", "/v1/operator/unseal", { share });
      expect(res.body).toMatchObject({ sealed: true });
    }
    expect((await call(server.app, await admin(), "GET", "/v1/operator/status")).body).toMatchObject({
      mode: "shamir",
      sealed: true,
      progress: 2,
      threshold: 3,
    });
    expect((await call(server.app, await admin(), "GET", "/v1/secrets/ops%2Ftoken/value")).body.error?.code).toBe(
      "SEALED",
    );
    const third = await call(server.app, await admin(), "POST", "/v1/operator/unseal", { share: shares[4] });
    expect(third.body).toMatchObject({ sealed: false });
    expect((await call(server.app, await admin(), "GET", "/v1/secrets/ops%2Ftoken/value")).body.value).toBe(
      "the-token-value",
    );

    // Another node sharing the database starts sealed: shares are per node, the key file no longer counts.
    const other = await node(vaultKey);
    expect(
      (await call(other.server.app, await other.admin(), "GET", "/v1/secrets/ops%2Ftoken/value")).body.error?.code,
    ).toBe("SEALED");
  });
});
