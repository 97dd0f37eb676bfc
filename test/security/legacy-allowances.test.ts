/**
 * The start's upgrade steps for session-secret allowances (issue 12 finding 1): allowances written before they
 * carried a MAC get theirs, and a session secret one target named before allowances existed gets its
 * allowance. Both trust the database as it was when it was upgraded, so each runs once per database: the step
 * writes its `upgrade.completed` marker into the hash-chained audit log in its own transaction, under a lock,
 * and a start that finds the marker skips it. A database writer's MAC-less allowance or edited target option
 * after that is never made valid (the allowance is reported); deleting the marker breaks `stint audit verify`.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../src/db/index.js";
import { deriveKey, seal } from "../../src/lib/security.js";
import { insertTarget } from "../../src/modules/catalog/catalog.store.js";
import { legacyCredentialBinding } from "../../src/modules/catalog/custody.rules.js";
import type { Engine } from "../../src/lib/db.js";
import { ENGINES } from "../../src/testing/engines.js";
import { testServer, type TestServer } from "../../src/testing/server.js";

const OLD = "00000000-0000-4000-8000-0000000000a1";
const NAMER = "00000000-0000-4000-8000-0000000000a2";

/** What a release from before allowances and their MACs left: a MAC-less allowance, a target naming its secret. */
async function olderRelease(store: AppStore): Promise<void> {
  const now = new Date();
  for (const [id, name, options] of [
    [OLD, "old-db", {}],
    [NAMER, "namer-db", { session: { login: "app", secret: "shared/named-session" } }],
  ] as const)
    await insertTarget(
      store.db,
      id,
      {
        name,
        kind: "postgres",
        address: `postgres://stint@127.0.0.1:45999/${name}`,
        labels: {},
        credential: null,
        identity: { template: "{{name}}", map: {} },
        options,
      },
      now,
    );
  await store.db
    .insertInto("secret_target_allowances")
    .values({ path: "shared/old-session", target_id: OLD, endpoint: "E-old", granted_by: "admin", created_at: now })
    .execute();
}

interface Event {
  action: string;
  subject: string;
  actor: string;
  outcome: string;
  details: Record<string, unknown>;
}

/**
 * For a describe: a test server started on a store `prepareStore` left as an older release did, its log lines at warn
 * and above in `warnings`, and `events(...actions)`: the audit events of those actions, oldest first.
 */
function startedFromOlder(
  engine: Engine,
  prepareStore: (store: AppStore) => Promise<void>,
  options: { masterKey?: Uint8Array } = {},
) {
  const started = {
    server: undefined as unknown as TestServer,
    warnings: [] as string[],
    events: async (...actions: string[]) => {
      const res = await started.server.app.inject({
        method: "GET",
        url: "/v1/audit/events?limit=500&order=asc",
        headers: { authorization: started.server.adminAuth },
      });
      return (res.json().items as Event[]).filter((e) => actions.includes(e.action));
    },
  };
  beforeAll(async () => {
    started.server = await testServer(engine, {
      env: { STINT_RECONCILE_INTERVAL: "0" },
      ...options,
      prepareStore,
      logLevel: "warn",
      logDestination: { write: (line: string) => void started.warnings.push(line) },
    });
  });
  afterAll(async () => {
    await started.server?.cleanup();
  });
  return started;
}

describe.each(ENGINES)("the start's allowance upgrade steps on %s", (engine) => {
  const started = startedFromOlder(engine, olderRelease);
  const { warnings, events } = started;
  const allowance = (path: string) =>
    started.server.store.db
      .selectFrom("secret_target_allowances")
      .select(["target_id", "granted_by", "mac"])
      .where("path", "=", path)
      .executeTakeFirst();
  const markers = async () => (await events("upgrade.completed")).map((e) => e.details.step).sort();
  const verify = async () => {
    const res = await started.server.app.inject({
      method: "GET",
      url: "/v1/audit/verify",
      headers: { authorization: started.server.adminAuth },
    });
    return res.json<{ ok: boolean; brokenSeq?: number; problem?: string }>();
  };

  it("a database from an older release is upgraded at its first start, audited, with one marker per step", async () => {
    // The markers are in the hash chain already (before anything reads the log and chains what waits), not in
    // audit_pending, where a deletion would go unnoticed.
    const pending = await started.server.store.db
      .selectFrom("audit_pending")
      .select("id")
      .where("action", "=", "upgrade.completed")
      .execute();
    expect(pending).toEqual([]);
    expect((await allowance("shared/old-session"))?.mac).toEqual(expect.any(String));
    expect(await allowance("shared/named-session")).toMatchObject({ target_id: NAMER, granted_by: "upgrade" });
    expect(await events("secret.allowed")).toEqual([
      expect.objectContaining({
        subject: "secret:shared/named-session",
        details: { target: "namer-db", by: "upgrade" },
      }),
      expect.objectContaining({
        subject: "secret:shared/old-session",
        details: { target: "old-db", by: "upgrade", legacy: true },
      }),
    ]);
    expect(await markers()).toEqual(["allowance-macs", "credential-binding", "session-secret-allowances"]);

    // Restarts (two at once here) find the markers: nothing runs again.
    await Promise.all([started.server.grants.bindStoredCredentials(), started.server.grants.bindStoredCredentials()]);
    expect(await markers()).toEqual(["allowance-macs", "credential-binding", "session-secret-allowances"]);
    expect(await events("secret.allowed")).toHaveLength(2);
  });

  it("an allowance a database writer inserts without a MAC after the upgrade stays refused at restart, and is reported", async () => {
    await started.server.store.db
      .insertInto("secret_target_allowances")
      .values({
        path: "shared/planted-session",
        target_id: OLD,
        endpoint: "E-planted",
        granted_by: "admin",
        created_at: new Date(),
        mac: null,
      })
      .execute();

    await started.server.grants.bindStoredCredentials();

    expect((await allowance("shared/planted-session"))?.mac).toBeNull();
    const warned = warnings.map((line) => JSON.parse(line) as { msg: string; allowances?: unknown });
    expect(warned).toContainEqual(
      expect.objectContaining({
        msg: expect.stringMatching(/without a MAC .* are refused/),
        allowances: [{ path: "shared/planted-session", target: "old-db" }],
      }),
    );
    expect((await events("secret.allowed")).map((e) => e.subject)).not.toContain("secret:shared/planted-session");
    expect(await events("secret.allowance_refused")).toEqual([
      expect.objectContaining({
        subject: "secret:shared/planted-session",
        outcome: "denied",
        correlationId: "upgrade",
        details: { target: "old-db" },
      }),
    ]);
    await started.server.store.db
      .deleteFrom("secret_target_allowances")
      .where("path", "=", "shared/planted-session")
      .execute();
  });

  it("a target option a database writer edits to name a secret after the adoption gets no allowance at restart", async () => {
    const row = await started.server.store.db
      .selectFrom("targets")
      .select("config")
      .where("id", "=", OLD)
      .executeTakeFirstOrThrow();
    const config = row.config as Record<string, unknown>;
    await started.server.store.db
      .updateTable("targets")
      .set({ config: JSON.stringify({ ...config, options: { session: { login: "app", secret: "shared/edited" } } }) })
      .where("id", "=", OLD)
      .execute();

    const { unbound } = await started.server.grants.bindStoredCredentials();

    expect(unbound).toContain("shared/edited");
    expect(await allowance("shared/edited")).toBeUndefined();
    expect(await events("secret.allowed")).toHaveLength(2);
  });

  it("deleting a marker is reported by audit verify; a start then upgrades what is MAC-less once, audited", async () => {
    expect(await verify()).toMatchObject({ ok: true });
    await started.server.audit.catchUp();
    await started.server.store.db.deleteFrom("audit_events").where("action", "=", "upgrade.completed").execute();
    await started.server.store.db
      .insertInto("secret_target_allowances")
      .values({ path: "shared/late", target_id: OLD, endpoint: "E-late", granted_by: "admin", created_at: new Date() })
      .execute();
    expect(await verify()).toMatchObject({ ok: false, brokenSeq: expect.any(Number) });

    // Two nodes starting at once: the upgrade lock lets one run each step, the other finds its marker.
    await Promise.all([started.server.grants.bindStoredCredentials(), started.server.grants.bindStoredCredentials()]);

    expect(await markers()).toEqual(["allowance-macs", "credential-binding", "session-secret-allowances"]);
    expect((await events("secret.allowed")).filter((e) => e.subject === "secret:shared/late")).toEqual([
      expect.objectContaining({ details: { target: "old-db", by: "upgrade", legacy: true } }),
    ]);
    // The laundering is in the log, and the log's gap still shows.
    expect(await verify()).toMatchObject({ ok: false });
  });
});

/**
 * The start's credential binding (issue 12 finding 1's upgrade): a target credential stored before credentials
 * were bound to their target (`target_id` null, sealed to its path alone) is re-sealed for the one target naming
 * it. That too trusts the database as it was at the upgrade, so it runs once per database like the steps above;
 * afterwards an unbound row is refused and reported, never bound to whichever target a database writer made name it.
 */
const BOUND = "00000000-0000-4000-8000-0000000000b1";
const TWIN_A = "00000000-0000-4000-8000-0000000000b2";
const TWIN_B = "00000000-0000-4000-8000-0000000000b3";
const EVIL = "00000000-0000-4000-8000-0000000000b4";
const masterKey = randomBytes(32);
/** What an older release sealed: the value bound to its path alone. */
const legacySealed = (path: string) =>
  seal(deriveKey(masterKey, "target-secrets"), `password-of-${path}`, legacyCredentialBinding(path));

/**
 * An older release's database: bound-db's credential (named by it alone), one named by two targets, one named by
 * none (its target gone), and evil-db, at an address a database writer controls, with no credential.
 */
async function olderCredentials(store: AppStore): Promise<void> {
  const now = new Date();
  for (const [id, name, credential] of [
    [BOUND, "bound-db", "targets/bound-db/admin"],
    [TWIN_A, "twin-a", "shared/twin-admin"],
    [TWIN_B, "twin-b", "shared/twin-admin"],
    [EVIL, "evil-db", null],
  ] as const)
    await insertTarget(
      store.db,
      id,
      {
        name,
        kind: "postgres",
        address: `postgres://stint@127.0.0.1:45999/${name}`,
        labels: {},
        credential,
        identity: { template: "{{name}}", map: {} },
        options: {},
      },
      now,
    );
  for (const path of ["targets/bound-db/admin", "shared/twin-admin", "targets/gone-db/admin"])
    await store.db
      .insertInto("target_secrets")
      .values({ path, sealed: legacySealed(path), target_id: null, endpoint: null, created_at: now, updated_at: now })
      .execute();
}

describe.each(ENGINES)("the start's credential binding on %s", (engine) => {
  const started = startedFromOlder(engine, olderCredentials, { masterKey });
  const { warnings, events } = started;
  const owner = async (path: string) =>
    (
      await started.server.store.db
        .selectFrom("target_secrets")
        .select("target_id")
        .where("path", "=", path)
        .executeTakeFirstOrThrow()
    ).target_id;
  /** A database writer edits the credential path a target names. */
  const nameCredential = async (targetId: string, path: string | null) => {
    const row = await started.server.store.db
      .selectFrom("targets")
      .select("config")
      .where("id", "=", targetId)
      .executeTakeFirstOrThrow();
    await started.server.store.db
      .updateTable("targets")
      .set({ config: JSON.stringify({ ...(row.config as Record<string, unknown>), credential: path }) })
      .where("id", "=", targetId)
      .execute();
  };
  const testEvil = async () => {
    const res = await started.server.app.inject({
      method: "POST",
      url: "/v1/targets/evil-db/test",
      headers: { authorization: started.server.adminAuth },
    });
    return res.json<{ ok: boolean; detail: string }>();
  };

  it("a database from an older release has its credentials bound at its first start, once, audited", async () => {
    expect(await owner("targets/bound-db/admin")).toBe(BOUND);
    expect(await owner("shared/twin-admin")).toBeNull();
    expect(await owner("targets/gone-db/admin")).toBeNull();
    expect(await events("target.credential_bound")).toEqual([
      expect.objectContaining({ subject: "target:bound-db", details: { secret: "targets/bound-db/admin" } }),
    ]);
    expect(
      (await events("upgrade.completed")).map((e) => e.details.step).filter((step) => step === "credential-binding"),
    ).toEqual(["credential-binding"]);

    // Restarts (two at once) find the marker.
    await Promise.all([started.server.grants.bindStoredCredentials(), started.server.grants.bindStoredCredentials()]);
    expect((await events("upgrade.completed")).filter((e) => e.details.step === "credential-binding")).toHaveLength(1);
  });

  it("an unbound credential a database writer points a target at is not bound to it at restart, and is reported", async () => {
    // evil-db names the credential whose target is gone; twin-b stops naming the shared one, so twin-a alone does.
    await nameCredential(EVIL, "targets/gone-db/admin");
    await nameCredential(TWIN_B, null);
    warnings.length = 0;

    const { unbound } = await started.server.grants.bindStoredCredentials();

    expect(await owner("targets/gone-db/admin")).toBeNull();
    expect(await owner("shared/twin-admin")).toBeNull();
    expect(unbound).toEqual(expect.arrayContaining(["targets/gone-db/admin", "shared/twin-admin"]));
    expect(await events("target.credential_bound")).toHaveLength(1);
    expect((await testEvil()).detail).toMatch(/does not belong to target evil-db/);
    const warned = warnings.map((line) => JSON.parse(line) as { msg: string; credentials?: unknown });
    expect(warned).toContainEqual(
      expect.objectContaining({
        msg: expect.stringMatching(/stored credentials without a target .* are refused/),
        credentials: expect.arrayContaining([
          { path: "targets/gone-db/admin", targets: ["evil-db"] },
          { path: "shared/twin-admin", targets: ["twin-a"] },
        ]),
      }),
    );
    expect(await events("target.credential_refused")).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          subject: "secret:targets/gone-db/admin",
          outcome: "denied",
          correlationId: "upgrade",
          details: { targets: ["evil-db"] },
        }),
        expect.objectContaining({ subject: "secret:shared/twin-admin", details: { targets: ["twin-a"] } }),
      ]),
    );
  });

  it("another target's credential put back unbound from a backup is not bound to the target a writer chose", async () => {
    // The row as the older release stored it, from a backup, in place of bound-db's; evil-db alone names it.
    await started.server.store.db.deleteFrom("target_secrets").where("path", "=", "targets/bound-db/admin").execute();
    const now = new Date();
    await started.server.store.db
      .insertInto("target_secrets")
      .values({
        path: "targets/bound-db/admin",
        sealed: legacySealed("targets/bound-db/admin"),
        target_id: null,
        endpoint: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
    await nameCredential(BOUND, null);
    await nameCredential(EVIL, "targets/bound-db/admin");

    await started.server.grants.bindStoredCredentials();

    expect(await owner("targets/bound-db/admin")).toBeNull();
    expect(await events("target.credential_bound")).toHaveLength(1);
    expect((await testEvil()).detail).toMatch(/does not belong to target evil-db/);
    expect((await events("target.credential_refused")).map((e) => e.subject)).toContain(
      "secret:targets/bound-db/admin",
    );
  });
});
