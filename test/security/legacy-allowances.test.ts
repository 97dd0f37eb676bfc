/**
 * A database writer's allowance without a MAC (issue 12 finding 1, the start's upgrade step): rows written before
 * allowances carried a MAC get theirs at every start, so one inserted without a MAC since is MACed too. The start
 * cannot tell the two apart without the audit log, so it records each one it MACs there (`secret.allowed`, by
 * `upgrade`, `legacy: true`), where a database writer cannot remove it unnoticed; allowances with a MAC are left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testServer, type TestServer } from "../../src/testing/server.js";

describe("an allowance inserted in the database without a MAC", () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await testServer("pglite", { env: { STINT_RECONCILE_INTERVAL: "0" } });
    const applied = await server.app.inject({
      method: "POST",
      url: "/v1/config/apply",
      headers: { authorization: server.adminAuth },
      payload: {
        yaml: `apiVersion: stint/v1
targets:
  - name: planted
    kind: webhook
    address: http://127.0.0.1:45999/stint
`,
      },
    });
    expect(applied.json(), applied.body).toMatchObject({ applied: true });
  });

  afterAll(async () => {
    await server?.cleanup();
  });

  const allowedEvents = async () =>
    server.app
      .inject({
        method: "GET",
        url: "/v1/audit/events?limit=100&order=desc",
        headers: { authorization: server.adminAuth },
      })
      .then((res) =>
        (
          res.json().items as { action: string; subject: string; actor: string; details: Record<string, unknown> }[]
        ).filter((e) => e.action === "secret.allowed"),
      );

  it("is MACed at the next start only with a secret.allowed event naming it (by upgrade, legacy), once", async () => {
    const target = await server.store.db
      .selectFrom("targets")
      .select("id")
      .where("name", "=", "planted")
      .executeTakeFirstOrThrow();
    await server.store.db
      .insertInto("secret_target_allowances")
      .values({
        path: "shared/planted-session",
        target_id: target.id,
        endpoint: "http://127.0.0.1:45999/stint",
        granted_by: "admin",
        created_at: new Date(),
        mac: null,
      })
      .execute();
    expect(await allowedEvents()).toEqual([]);

    // What every start runs before anything uses a credential.
    await server.grants.bindStoredCredentials();

    const events = await allowedEvents();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      subject: "secret:shared/planted-session",
      details: { target: "planted", by: "upgrade", legacy: true },
    });
    // The next start has nothing left to MAC: no second event.
    await server.grants.bindStoredCredentials();
    expect(await allowedEvents()).toHaveLength(1);
  });
});
