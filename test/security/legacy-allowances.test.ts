/**
 * The start's upgrade steps for session-secret allowances (issue 12 finding 1): allowances written before they
 * carried a MAC get theirs, and a session secret one target named before allowances existed gets its
 * allowance. Both trust the database as it was when it was upgraded, so each runs once per database: the step
 * writes its `upgrade.completed` marker into the hash-chained audit log in its own transaction, under a lock,
 * and a start that finds the marker skips it. A database writer's MAC-less allowance or edited target option
 * after that is never made valid (the allowance is reported); deleting the marker breaks `stint audit verify`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AppStore } from "../../src/db/index.js";
import { insertTarget } from "../../src/modules/catalog/catalog.store.js";
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

describe.each(ENGINES)("the start's allowance upgrade steps on %s", (engine) => {
  let server: TestServer;
  const warnings: string[] = [];

  beforeAll(async () => {
    server = await testServer(engine, {
      env: { STINT_RECONCILE_INTERVAL: "0" },
      prepareStore: olderRelease,
      logLevel: "warn",
      logDestination: { write: (line: string) => void warnings.push(line) },
    });
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  const events = async (...actions: string[]) => {
    const res = await server.app.inject({
      method: "GET",
      url: "/v1/audit/events?limit=500&order=asc",
      headers: { authorization: server.adminAuth },
    });
    return (res.json().items as Event[]).filter((e) => actions.includes(e.action));
  };
  const allowance = (path: string) =>
    server.store.db
      .selectFrom("secret_target_allowances")
      .select(["target_id", "granted_by", "mac"])
      .where("path", "=", path)
      .executeTakeFirst();
  const markers = async () => (await events("upgrade.completed")).map((e) => e.details.step).sort();
  const verify = async () => {
    const res = await server.app.inject({
      method: "GET",
      url: "/v1/audit/verify",
      headers: { authorization: server.adminAuth },
    });
    return res.json<{ ok: boolean; brokenSeq?: number; problem?: string }>();
  };

  it("a database from an older release is upgraded at its first start, audited, with one marker per step", async () => {
    // The markers are in the hash chain already (before anything reads the log and chains what waits), not in
    // audit_pending, where a deletion would go unnoticed.
    const pending = await server.store.db
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
    expect(await markers()).toEqual(["allowance-macs", "session-secret-allowances"]);

    // Restarts (two at once here) find the markers: nothing runs again.
    await Promise.all([server.grants.bindStoredCredentials(), server.grants.bindStoredCredentials()]);
    expect(await markers()).toEqual(["allowance-macs", "session-secret-allowances"]);
    expect(await events("secret.allowed")).toHaveLength(2);
  });

  it("an allowance a database writer inserts without a MAC after the upgrade stays refused at restart, and is reported", async () => {
    await server.store.db
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

    await server.grants.bindStoredCredentials();

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
    await server.store.db.deleteFrom("secret_target_allowances").where("path", "=", "shared/planted-session").execute();
  });

  it("a target option a database writer edits to name a secret after the adoption gets no allowance at restart", async () => {
    const row = await server.store.db
      .selectFrom("targets")
      .select("config")
      .where("id", "=", OLD)
      .executeTakeFirstOrThrow();
    const config = row.config as Record<string, unknown>;
    await server.store.db
      .updateTable("targets")
      .set({ config: JSON.stringify({ ...config, options: { session: { login: "app", secret: "shared/edited" } } }) })
      .where("id", "=", OLD)
      .execute();

    const { unbound } = await server.grants.bindStoredCredentials();

    expect(unbound).toContain("shared/edited");
    expect(await allowance("shared/edited")).toBeUndefined();
    expect(await events("secret.allowed")).toHaveLength(2);
  });

  it("deleting a marker is reported by audit verify; a start then upgrades what is MAC-less once, audited", async () => {
    expect(await verify()).toMatchObject({ ok: true });
    await server.audit.catchUp();
    await server.store.db.deleteFrom("audit_events").where("action", "=", "upgrade.completed").execute();
    await server.store.db
      .insertInto("secret_target_allowances")
      .values({ path: "shared/late", target_id: OLD, endpoint: "E-late", granted_by: "admin", created_at: new Date() })
      .execute();
    expect(await verify()).toMatchObject({ ok: false, brokenSeq: expect.any(Number) });

    // Two nodes starting at once: the upgrade lock lets one run each step, the other finds its marker.
    await Promise.all([server.grants.bindStoredCredentials(), server.grants.bindStoredCredentials()]);

    expect(await markers()).toEqual(["allowance-macs", "session-secret-allowances"]);
    expect((await events("secret.allowed")).filter((e) => e.subject === "secret:shared/late")).toEqual([
      expect.objectContaining({ details: { target: "old-db", by: "upgrade", legacy: true } }),
    ]);
    // The laundering is in the log, and the log's gap still shows.
    expect(await verify()).toMatchObject({ ok: false });
  });
});
