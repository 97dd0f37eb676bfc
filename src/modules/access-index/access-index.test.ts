/**
 * The access index in a whole server, on both engines: the hot paths answer without a database query; a
 * change answered is honoured at once on the node that made it; an expiry needs no message; after lost
 * messages the node answers from the database until a full reload; a cross-check counts what it finds the
 * index had wrong; on PostgreSQL a killed listening connection is noticed and repaired.
 */
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, RootOperationNode } from "kysely";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import type { AppStore } from "../../db/index.js";
import { manualClock } from "../../lib/clock.js";
import { ENGINES } from "../../testing/engines.js";
import { SELF_SERVICE_POLICY, seedRole, seedUser } from "../../testing/pim.js";
import { onEachQuery, tableOf, withPlugin } from "../../testing/plugged-store.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { until } from "../../testing/until.js";

/** Tables whose reads the hot paths must not need. */
const HOT_TABLES = new Set(["activation_requests", "principals", "refresh_sessions", "api_tokens", "roles", "grants"]);

/**
 * Counts the statements the server sends (through `store.db` or a transaction) that read or write the tables
 * behind authentication and activations. Background work (heartbeats, the audit sequencer) touches others.
 */
function counting() {
  const counter = { queries: 0 };
  const plugin = onEachQuery(({ node }) => {
    const table = tableOf(node);
    // The index's own pass over every role's name (a timer, every 2 s: `roleNames`, a select without a where)
    // is not a hot path; under load it lands inside the measured loop.
    const wholeRolesTable = table === "roles" && node.kind === "SelectQueryNode" && !("where" in node && node.where);
    if (table && HOT_TABLES.has(table) && !wholeRolesTable) counter.queries++;
  });
  return { counter, wrap: (store: AppStore) => withPlugin(store, plugin) };
}

/** Holds the answer of the index's role-name read (every role's name, no where) while `hold()` is on. */
function holdingRoleNames() {
  let gate: Promise<void> | null = null;
  let open = () => {};
  const state = { reached: 0 };
  const held = new WeakSet<object>();
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      const node = args.node;
      if (gate && tableOf(node) === "roles" && node.kind === "SelectQueryNode" && !node.where) held.add(args.queryId);
      return node;
    },
    transformResult: async (args: PluginTransformResultArgs) => {
      if (held.has(args.queryId)) {
        state.reached += 1;
        await gate;
      }
      return args.result;
    },
  };
  return {
    state,
    wrap: (store: AppStore) => withPlugin(store, plugin),
    hold: () => void (gate = new Promise<void>((resolve) => (open = resolve))),
    release: () => {
      gate = null;
      open();
    },
  };
}

describe.each(ENGINES)("access index on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  async function setup(
    options: { clock?: ReturnType<typeof manualClock>; wrapStore?: (s: AppStore) => AppStore } = {},
  ) {
    server = await testServer(engine, options);
    await seedUser(server, "alice", { groups: ["sre"] });
    await seedRole(server, { name: "db-reader", policy: SELF_SERVICE_POLICY, eligibleGroups: ["sre"] });
    const alice = await server.login("alice");
    const auditor = await server.userWithRoles("auditor-1", ["auditor"]);
    await until("the index is current", () => server!.accessIndex.current());
    const s = server;
    const call = async (auth: string, method: "GET" | "POST", url: string, payload?: object) => {
      const res = await s.app.inject({
        method,
        url,
        headers: { authorization: auth },
        ...(payload ? { payload } : {}),
      });
      return { status: res.statusCode, body: res.json() as Record<string, unknown> };
    };
    const check = async () => (await call(auditor, "GET", "/v1/check?principal=alice&role=db-reader")).body;
    return { server: s, alice, auditor, call, check };
  }

  it("answers the check API, activation tokens and bearer authentication without a database query", async () => {
    const { counter, wrap } = counting();
    const { alice, auditor, call, check } = await setup({ wrapStore: wrap });
    const submitted = await call(alice, "POST", "/v1/activation-requests", {
      role: "db-reader",
      reason: "read the replica's lag",
    });
    expect(submitted.body.state).toBe("active");
    await check(); // the first call of each token verifies its signature and reads its session once
    await call(alice, "POST", "/v1/tokens/activation");
    expect(counter.queries).toBeGreaterThan(0); // the submit wrote activation_requests: the counter sees them
    counter.queries = 0;
    for (let i = 0; i < 20; i++) {
      expect(await check()).toMatchObject({ allowed: true, requestId: submitted.body.id });
      const token = await call(alice, "POST", "/v1/tokens/activation");
      expect(token.status).toBe(200);
      expect(token.body.roles).toEqual([expect.objectContaining({ role: "db-reader", requestId: submitted.body.id })]);
    }
    expect(counter.queries).toBe(0);
    expect(await check()).toMatchObject({ allowed: true });
    expect((await call(auditor, "GET", "/v1/check?principal=nobody&role=db-reader")).body).toMatchObject({
      allowed: false,
      reason: "no such principal",
    });
    expect(counter.queries).toBe(0);
  });

  it("a deactivation or revocation answered is honoured by this node's very next answer", async () => {
    const { server, alice, auditor, call, check } = await setup();
    for (const how of ["deactivate", "revoke"] as const) {
      const submitted = await call(alice, "POST", "/v1/activation-requests", {
        role: "db-reader",
        reason: `activate before ${how}`,
      });
      expect(await check()).toMatchObject({ allowed: true });
      const ended =
        how === "deactivate"
          ? await call(alice, "POST", "/v1/me/roles/db-reader/deactivate")
          : await call(server.adminAuth, "POST", `/v1/activation-requests/${String(submitted.body.id)}/revoke`, {
              reason: "incident response: revoke now",
            });
      expect(ended.status).toBe(200);
      expect(await check()).toMatchObject({ allowed: false, reason: "no active activation of this role" });
      expect((await call(alice, "POST", "/v1/tokens/activation")).status).toBe(409);
    }
    // Disabling the holder: its sessions, tokens and activations end, and the index says so at once.
    await call(alice, "POST", "/v1/activation-requests", { role: "db-reader", reason: "one more activation" });
    expect(await check()).toMatchObject({ allowed: true });
    const disabled = await server.app.inject({
      method: "POST",
      url: "/v1/users/alice/disable",
      headers: { authorization: server.adminAuth },
      payload: { reason: "left the company" },
    });
    expect(disabled.statusCode).toBe(200);
    expect(await check()).toMatchObject({ allowed: false, reason: "the principal is disabled" });
    expect((await call(alice, "GET", "/v1/me")).status).toBe(401);
    expect((await call(auditor, "GET", "/v1/me")).status).toBe(200);
  });

  it("an activation's expiry is honoured by the clock, without the scheduler or any message", async () => {
    const clock = manualClock("2026-03-02T10:00:00Z");
    const { call, check, alice } = await setup({ clock });
    await call(alice, "POST", "/v1/activation-requests", { role: "db-reader", duration: "5m", reason: "short task" });
    clock.advance(5 * 60_000 - 1);
    expect(await check()).toMatchObject({ allowed: true });
    clock.advance(1);
    expect(await check()).toMatchObject({ allowed: false });
    expect((await call(alice, "POST", "/v1/tokens/activation")).status).toBe(409);
  });

  it("after lost messages answers come from the database until a full reload; a cross-check counts drift", async () => {
    const { server, alice, call, check } = await setup();
    const submitted = await call(alice, "POST", "/v1/activation-requests", {
      role: "db-reader",
      reason: "something a database writer ends behind Stint's back",
    });
    // The activation's own message may lag under load; changed behind the index's back only once it was heard
    // (a message still in flight during a reload is taken as newer than the reload's snapshot).
    await until("the index has the activation", async () => (await check()).allowed === true);
    // A change nobody was told about (a database writer, or a message lost with its connection).
    await server.store.db
      .updateTable("activation_requests")
      .set({ state: "revoked", ended_at: new Date() })
      .where("id", "=", String(submitted.body.id))
      .execute();
    expect(await check()).toMatchObject({ allowed: true }); // the index cannot know yet
    await server.accessIndex.reload("cross-check");
    expect(await check()).toMatchObject({ allowed: false });
    const drift = await server.app.inject({
      method: "GET",
      url: "/metrics",
      headers: { authorization: server.adminAuth },
    });
    expect(drift.body).toMatch(/stint_access_index_drift_total\{kind="extra"\} 1/);

    const second = await call(alice, "POST", "/v1/activation-requests", { role: "db-reader", reason: "again, please" });
    await until("the index has the second activation", async () => (await check()).allowed === true);
    await server.store.db
      .updateTable("activation_requests")
      .set({ state: "revoked", ended_at: new Date() })
      .where("id", "=", String(second.body.id))
      .execute();
    server.accessIndex.lose("test");
    // Until the reload that began after the loss completes, the database answers: never the stale index.
    expect(await check()).toMatchObject({ allowed: false });
    await until("the index is current again", () => server.accessIndex.current());
    expect(await check()).toMatchObject({ allowed: false });
  });

  it("a renamed role (the catalog sends no message) is found by its new name within the role-name pass", async () => {
    const { server, alice, call, check } = await setup();
    await call(alice, "POST", "/v1/activation-requests", { role: "db-reader", reason: "before the rename" });
    await server.store.db.updateTable("roles").set({ name: "db-reader-v2" }).where("name", "=", "db-reader").execute();
    await server.accessIndex.checkRoleNames();
    expect(await check()).toMatchObject({ allowed: false }); // the old name
    const renamed = await call(server.adminAuth, "GET", "/v1/check?principal=alice&role=db-reader-v2");
    expect(renamed.body).toMatchObject({ allowed: true });
  });

  // On PostgreSQL only: the held answer keeps its connection, and PGlite has one (the rename would wait for it).
  it.runIf(engine === "postgres")(
    "a role-name pass asked for while one is under way applies a rename that one read too early",
    async () => {
      const holding = holdingRoleNames();
      const { server, alice, call } = await setup({ wrapStore: holding.wrap });
      await call(alice, "POST", "/v1/activation-requests", { role: "db-reader", reason: "before the rename" });
      // A pass (the timer's, say) has read the names, before the rename; its answer is held.
      holding.hold();
      const running = server.accessIndex.checkRoleNames();
      await until("the pass read the names", () => holding.state.reached > 0);
      // Renamed on a connection of its own (the store's may all be busy).
      const admin = new pg.Client({ connectionString: server.databaseUrl });
      await admin.connect();
      try {
        await admin.query("update roles set name = 'db-reader-v2' where name = 'db-reader'");
      } finally {
        await admin.end();
      }
      // Asked for after the rename: once it settles, the rename is applied.
      const asked = server.accessIndex.checkRoleNames();
      holding.release();
      await Promise.all([asked, running]);
      const renamed = await call(server.adminAuth, "GET", "/v1/check?principal=alice&role=db-reader-v2");
      expect(renamed.body).toMatchObject({ allowed: true });
    },
  );

  it.runIf(engine === "postgres")(
    "a killed listening connection is noticed: answers come from the database, then from a full reload",
    async () => {
      const { server, alice, call, check } = await setup();
      const submitted = await call(alice, "POST", "/v1/activation-requests", {
        role: "db-reader",
        reason: "held while the connection dies",
      });
      const admin = new pg.Client({ connectionString: server.databaseUrl });
      await admin.connect();
      try {
        const listener = await admin.query<{ pid: number }>(
          "select pid from pg_stat_activity where datname = current_database() and application_name = 'stint listen stint_access'",
        );
        expect(listener.rowCount).toBe(1);
        await admin.query("select pg_terminate_backend($1)", [listener.rows[0]!.pid]);
        // Ended while nobody listened on this node: its message is lost.
        await admin.query("update activation_requests set state = 'revoked', ended_at = now() where id = $1", [
          submitted.body.id,
        ]);
        await until("the answer follows the database", async () => (await check()).allowed === false);
        await until("the listener is back and the index current", async () => {
          const again = await admin.query(
            "select 1 from pg_stat_activity where datname = current_database() and application_name = 'stint listen stint_access'",
          );
          return again.rowCount === 1 && server.accessIndex.current();
        });
        expect(await check()).toMatchObject({ allowed: false });
        const metrics = await server.app.inject({
          method: "GET",
          url: "/metrics",
          headers: { authorization: server.adminAuth },
        });
        expect(metrics.body).toMatch(
          /stint_access_index_reloads_total\{reason="(listen-reconnected|heartbeat-skipped)"\}/,
        );
      } finally {
        await admin.end();
      }
    },
  );
});
