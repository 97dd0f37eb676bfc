/**
 * Secret reads at memory speed (issue 14, item 3), on both engines: the access decision and the sealed
 * value come from memory (no read of the secret, its versions, the KEKs, the activations or the session);
 * every read still has its audit event, committed before the value is returned (a read whose event cannot
 * be committed returns nothing); a new version and the end of an activation are honoured by the next read.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs, RootOperationNode } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import type { AppStore } from "../../db/index.js";
import { ENGINES } from "../../testing/engines.js";
import { seedRole, seedUser } from "../../testing/pim.js";
import { insertsInto } from "../../testing/statements.js";
import { testServer, type TestServer } from "../../testing/server.js";

const READ_TABLES = new Set([
  "secrets",
  "secret_versions",
  "vault_keks",
  "vault_config",
  "activation_requests",
  "principals",
  "refresh_sessions",
  "roles",
]);

function tableOf(node: RootOperationNode): string | undefined {
  const n = node as unknown as { from?: { froms?: { table?: { identifier?: { name?: string } } }[] } };
  return n.from?.froms?.[0]?.table?.identifier?.name;
}

/** Marks the calls whose statements are counted. */
const measured = new AsyncLocalStorage<boolean>();

/**
 * Counts reads of the tables behind a secret read, and counts (or makes fail) the statements that write
 * audit events, whether they run in a transaction or alone.
 */
function instrumented() {
  const state = { reads: 0, auditWritesAlone: 0, auditWritesInTransactions: 0, failAuditWrites: false };
  const plugin = (inTransaction: boolean): KyselyPlugin => ({
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      const table = tableOf(args.node);
      if (insertsInto(args.node, "audit_pending") && state.failAuditWrites)
        throw new Error("the store refused the audit write (test)");
      // Reads: only those of the measured calls (not the index's cross-check). Audit writes: all (a batch may
      // run in another call's context; nothing else writes audit events meanwhile).
      if (args.node.kind === "SelectQueryNode" && table && READ_TABLES.has(table) && measured.getStore()) state.reads++;
      if (insertsInto(args.node, "audit_pending")) {
        if (inTransaction) state.auditWritesInTransactions++;
        else state.auditWritesAlone++;
      }
      return args.node;
    },
    transformResult: async (args: PluginTransformResultArgs) => args.result,
  });
  const wrap = (store: AppStore): AppStore => ({
    engine: store.engine,
    db: store.db.withPlugin(plugin(false)),
    transaction: (fn) => store.transaction((tx) => fn(tx.withPlugin(plugin(true)))),
    migrate: (dir) => store.migrate(dir),
    ping: () => store.ping(),
    listen: (channel, onMessage, options) => store.listen(channel, onMessage, options),
    close: () => store.close(),
  });
  return { state, wrap };
}

describe.each(ENGINES)("secret reads on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("decide and open from memory; every read has its audit event; changes are honoured by the next read", async () => {
    const { state, wrap } = instrumented();
    server = await testServer(engine, { wrapStore: wrap });
    const s = server;
    await seedUser(s, "rita", { groups: ["payments"] });
    await seedRole(s, {
      name: "payments-oncall",
      policy: {
        defaultDuration: "30m",
        maxDuration: "1h",
        mfa: { required: false, maxAge: "10m" },
        justification: { minLength: 5 },
        approval: { stages: [] },
      },
      eligibleGroups: ["payments"],
    });
    const rita = await s.login("rita");
    const call = async (auth: string, method: "GET" | "POST" | "PUT", url: string, payload?: object) => {
      const res = await s.app.inject({
        method,
        url,
        headers: { authorization: auth },
        ...(payload ? { payload } : {}),
      });
      return { status: res.statusCode, body: res.json() as Record<string, unknown> };
    };
    const path = `/v1/secrets/${encodeURIComponent("payments/psp/api-key")}/value`;
    const put = await call(s.adminAuth, "PUT", `/v1/secrets/${encodeURIComponent("payments/psp/api-key")}`, {
      kind: "api-key",
      value: "psp-key-version-one",
      roles: ["payments-oncall"],
    });
    expect(put.status).toBe(200);
    expect((await call(rita, "GET", path)).status).toBe(404); // no activation yet
    const activated = await call(rita, "POST", "/v1/activation-requests", {
      role: "payments-oncall",
      reason: "refund run",
    });
    expect(activated.body.state).toBe("active");
    expect((await call(rita, "GET", path)).body).toMatchObject({ value: "psp-key-version-one", version: 1 });

    const readsBefore = (await s.audit.read({ action: "secret.read", limit: 10_000 })).length;
    state.reads = 0;
    state.auditWritesAlone = 0;
    state.auditWritesInTransactions = 0;
    const replies = await measured.run(true, () =>
      Promise.all(Array.from({ length: 48 }, () => call(rita, "GET", path))),
    );
    for (const reply of replies) expect(reply.body).toMatchObject({ value: "psp-key-version-one" });
    expect(state.reads).toBe(0);
    // Group commit: 48 concurrent reads share a few INSERTs. On PostgreSQL (the sequencer chains apart) each
    // is one statement with no transaction around it; on PGlite the chaining commits with it, in one.
    const auditWrites = state.auditWritesAlone + state.auditWritesInTransactions;
    expect(auditWrites).toBeGreaterThan(0);
    expect(auditWrites).toBeLessThan(48);
    if (engine === "postgres") expect(state.auditWritesInTransactions).toBe(0);
    else expect(state.auditWritesAlone).toBe(0);
    const events = await s.audit.read({ action: "secret.read", limit: 10_000 });
    expect(events.length - readsBefore).toBe(48);
    expect(JSON.stringify(events)).not.toContain("psp-key-version-one");
    expect(events.at(-1)).toMatchObject({ actor: "rita", outcome: "success", subject: "secret:payments/psp/api-key" });

    // A read whose audit event cannot be committed gives nothing away.
    state.failAuditWrites = true;
    const unaudited = await Promise.all(
      Array.from({ length: 8 }, () => s.app.inject({ method: "GET", url: path, headers: { authorization: rita } })),
    );
    state.failAuditWrites = false;
    for (const reply of unaudited) {
      expect(reply.statusCode).toBe(500);
      expect(reply.body).not.toContain("psp-key-version-one");
    }
    expect((await call(rita, "GET", path)).body).toMatchObject({ value: "psp-key-version-one" });

    // A new version is what the next read returns; the end of the activation stops the next read.
    await call(s.adminAuth, "PUT", `/v1/secrets/${encodeURIComponent("payments/psp/api-key")}`, {
      value: "psp-key-version-two",
    });
    expect((await call(rita, "GET", path)).body).toMatchObject({ value: "psp-key-version-two", version: 2 });
    expect((await call(rita, "GET", `${path}?version=1`)).body).toMatchObject({ value: "psp-key-version-one" });
    expect((await call(rita, "POST", "/v1/me/roles/payments-oncall/deactivate")).status).toBe(200);
    const after = await call(rita, "GET", path);
    expect(after.status).toBe(404);
    expect(JSON.stringify(after.body)).not.toContain("psp-key");
  });

  it("a secret's row changed behind Stint's back, in any column, is read again from the database", async () => {
    server = await testServer(engine);
    const s = server;
    const reader = await s.userWithRoles("reader", ["user"]);
    const url = `/v1/secrets/${encodeURIComponent("ops/backup/token")}`;
    const headers = (auth: string) => ({ authorization: auth });
    const put = await s.app.inject({
      method: "PUT",
      url,
      headers: headers(s.adminAuth),
      payload: { kind: "api-key", value: "backup-token-value", platformRoles: ["user"] },
    });
    expect(put.statusCode).toBe(200);
    const read = async () => {
      const reply = await measured.run(true, () => s.app.inject({ url: `${url}/value`, headers: headers(reader) }));
      expect(reply.json()).toMatchObject({ value: "backup-token-value" });
    };
    await read();
    await read();
    expect(s.vault.readAuditStats().stale).toBe(0); // from memory, the copy current
    // Someone with SQL access rewrites the row in a column no read decides on, and no message is sent.
    await s.store.db
      .updateTable("secrets")
      .set({ description: "changed behind Stint's back" })
      .where("path", "=", "ops/backup/token")
      .execute();
    // The batch found the copy stale (its row version changed): nothing recorded for it, read again from the
    // database, which recorded that read instead.
    await read();
    expect(s.vault.readAuditStats().stale).toBe(1);
    const events = await s.audit.read({ action: "secret.read", limit: 100 });
    expect(events.filter((e) => e.subject === "secret:ops/backup/token")).toHaveLength(3);
  });
});
