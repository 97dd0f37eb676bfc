/**
 * Group commit of submits and deactivates (`submit.group.ts`, `deactivate.group.ts`): calls made together are
 * written by one transaction, and each caller still gets its own answer, its own refusal, and its own audit
 * events committed with its change; a group that dies before its commit writes nothing, and its calls are
 * answered alone. An elevation and its audit events commit together: when the store refuses the audit write, a
 * submit or deactivate fails and writes nothing, alone or in a group (a Kysely plugin makes the audit INSERT
 * fail; it sees every statement of the hot path, and checks that none of them went around it).
 */
import {
  sql,
  type Kysely,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type RootOperationNode,
} from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import type { AppStore, Database } from "../../db/index.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { ENGINES } from "../../testing/engines.js";
import { seedRole, seedUser } from "../../testing/pim.js";
import { withPlugin } from "../../testing/plugged-store.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { insertsInto } from "../../testing/statements.js";

const ROLE = "grouped-ops";
const REASON = "investigate the grouped incident";

type Principal = Extract<Actor, { kind: "principal" }>;

/** `count` users in group "oncall" (eligible for ROLE, auto-approved) and one outside it. */
async function seed(server: TestServer, count: number): Promise<{ users: Principal[]; outsider: Principal }> {
  const names = Array.from({ length: count }, (_, i) => `grouped${i}`);
  for (const name of names) await seedUser(server, name, { groups: ["oncall"] });
  await seedUser(server, "outsider");
  await seedRole(server, {
    name: ROLE,
    policy: {
      defaultDuration: "15m",
      maxDuration: "1h",
      mfa: { required: false, maxAge: "5m" },
      justification: { minLength: 8 },
      approval: { stages: [] },
    },
    eligibleGroups: ["oncall"],
  });
  const rows = await server.store.db.selectFrom("principals").select(["id", "name"]).execute();
  const actor = (name: string): Principal => ({
    kind: "principal",
    id: rows.find((r) => r.name === name)!.id,
    name,
    principalKind: "user",
    roles: ["user"],
  });
  return { users: names.map(actor), outsider: actor("outsider") };
}

/** Each caller's own context: its audit events must carry it. */
const contextOf = (actor: Principal): CallContext => ({
  correlationId: `corr-${actor.name}`,
  sourceIp: "127.0.0.1",
  userAgent: null,
});

/** Every audit event (chained or not) of a subject, oldest first. */
async function eventsOf(db: Kysely<Database>, subject: string) {
  const columns = ["action", "outcome", "actor", "actor_id", "correlation_id", "subject"] as const;
  return db
    .selectFrom("audit_pending")
    .select(columns)
    .where("subject", "=", subject)
    .unionAll(db.selectFrom("audit_events").select(columns).where("subject", "=", subject))
    .execute();
}

/** Whose request each one was, and in which state. */
async function requestsOf(db: Kysely<Database>) {
  return db
    .selectFrom("activation_requests")
    .innerJoin("principals", "principals.id", "activation_requests.requester_id")
    .select(["activation_requests.id", "activation_requests.state", "activation_requests.ended_by", "principals.name"])
    .execute();
}

function codeOf(result: PromiseSettledResult<unknown>): string {
  if (result.status === "fulfilled") return "ok";
  return (result.reason as { code?: string }).code ?? String(result.reason);
}

describe.each(ENGINES)("group commit of elevations on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("concurrent submits and deactivates go in groups and each caller gets its own answer and audit events", async () => {
    server = await testServer(engine);
    const s = server;
    const { users } = await seed(s, 12);
    const submitted = await Promise.all(
      users.map((u) => s.requests.submit(u, { role: ROLE, reason: `${REASON} by ${u.name}` }, contextOf(u))),
    );
    const groups = s.requests.submitGroups();
    // Made in one turn: they went together (fewer groups than calls), none of them alone after a failure.
    expect(groups.groups).toBeLessThan(users.length);
    expect(groups.retried).toBe(0);
    for (const [i, u] of users.entries()) {
      expect(submitted[i]).toMatchObject({
        state: "active",
        role: ROLE,
        requester: u.name,
        reason: `${REASON} by ${u.name}`,
      });
      expect(submitted[i]!.expiresAt).not.toBeNull();
    }
    expect(new Set(submitted.map((r) => r.id)).size).toBe(users.length);
    // Each request's events are its caller's: actor and context, committed with it.
    for (const [i, u] of users.entries()) {
      const events = await eventsOf(s.store.db, `request:${submitted[i]!.id}`);
      expect(events.map((e) => e.action).sort()).toEqual([
        "request.activated",
        "request.approved",
        "request.submitted",
      ]);
      for (const e of events)
        expect(e).toMatchObject({ actor_id: u.id, actor: u.name, correlation_id: `corr-${u.name}` });
    }
    const grants = await s.store.db.selectFrom("grants").select(["request_id", "principal_id", "state"]).execute();
    expect(grants).toHaveLength(users.length);
    for (const [i, u] of users.entries())
      expect(grants.find((g) => g.request_id === submitted[i]!.id)).toMatchObject({
        principal_id: u.id,
        state: "active",
      });

    const ended = await Promise.all(users.map((u) => s.requests.deactivate(u, ROLE, contextOf(u))));
    expect(s.requests.deactivateGroups().groups).toBeLessThan(users.length);
    for (const [i, u] of users.entries())
      expect(ended[i]).toMatchObject({
        id: submitted[i]!.id,
        state: "deactivated",
        endedBy: u.name,
        requester: u.name,
      });
    for (const row of await requestsOf(s.store.db))
      expect(row).toMatchObject({ state: "deactivated", ended_by: row.name });
    for (const [i, u] of users.entries()) {
      const deactivated = (await eventsOf(s.store.db, `request:${submitted[i]!.id}`)).filter(
        (e) => e.action === "request.deactivated",
      );
      expect(deactivated).toEqual([expect.objectContaining({ actor_id: u.id, correlation_id: `corr-${u.name}` })]);
    }
    const states = await s.store.db.selectFrom("grants").select("state").execute();
    expect(states.every((g) => g.state === "revoked")).toBe(true);
  });

  it("a call that conflicts or is refused in a group fails alone, with its own error, and the others succeed", async () => {
    server = await testServer(engine);
    const s = server;
    const { users, outsider } = await seed(s, 6);
    const [holder, a, b, c, twice, idle] = users as [Principal, Principal, Principal, Principal, Principal, Principal];
    const open = await s.requests.submit(holder, { role: ROLE, reason: REASON }, contextOf(holder));
    const submit = (u: Principal) => s.requests.submit(u, { role: ROLE, reason: REASON }, contextOf(u));
    // One turn: an already-active requester, a requester not eligible, one submitting twice, three fine ones.
    const results = await Promise.allSettled([
      submit(holder),
      submit(a),
      submit(outsider),
      submit(b),
      submit(twice),
      submit(twice),
      submit(c),
    ]);
    expect(results.map(codeOf)).toEqual([
      "REQUEST_ALREADY_OPEN",
      "ok",
      "NOT_ELIGIBLE",
      "ok",
      "ok",
      "REQUEST_ALREADY_OPEN",
      "ok",
    ]);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ details: { requestId: open.id } });
    expect(s.requests.submitGroups().retried).toBe(0);
    const rows = await requestsOf(s.store.db);
    expect(rows.map((r) => r.name).sort()).toEqual([a, b, c, holder, twice].map((u) => u.name).sort());
    // Each refusal is audited as its own caller's denial.
    const denied = await eventsOf(s.store.db, `role:${ROLE}`);
    expect(denied.map((e) => [e.actor, e.outcome, e.correlation_id]).sort()).toEqual(
      [holder, outsider, twice].map((u) => [u.name, "denied", `corr-${u.name}`]).sort(),
    );

    // Deactivates in one turn: one with nothing active is refused alone.
    const ends = await Promise.allSettled([a, idle, b].map((u) => s.requests.deactivate(u, ROLE, contextOf(u))));
    expect(ends.map(codeOf)).toEqual(["ok", "NOT_ACTIVE", "ok"]);
    const after = await requestsOf(s.store.db);
    expect(
      after
        .filter((r) => r.state === "active")
        .map((r) => r.name)
        .sort(),
    ).toEqual([c.name, holder.name, twice.name].sort());
  });

  it("a group that dies before its commit writes nothing of it; each call is answered alone, and committed groups stay", async () => {
    let crash = false;
    let crashed = 0;
    // The death of the group's connection just before COMMIT (every statement of the group ran): its
    // transaction rolls back, as it would with the node gone.
    const dying = (store: AppStore): AppStore => ({
      ...store,
      transaction: (fn) =>
        store.transaction(async (tx) => {
          const result = await fn(tx);
          if (crash) {
            const { rows } = await sql<{ n: number }>`select count(*)::int as n from activation_requests
              where xmin::text = (pg_current_xact_id()::text::bigint % 4294967296)::text`.execute(tx);
            if (rows[0]!.n > 1) {
              crash = false;
              crashed += 1;
              throw new Error("simulated crash before the group's COMMIT");
            }
          }
          return result;
        }),
    });
    server = await testServer(engine, { wrapStore: dying });
    const s = server;
    const { users } = await seed(s, 10);
    const first = users.slice(0, 4);
    const second = users.slice(4);
    const committed = await Promise.all(
      first.map((u) => s.requests.submit(u, { role: ROLE, reason: REASON }, contextOf(u))),
    );
    crash = true;
    const answered = await Promise.all(
      second.map((u) => s.requests.submit(u, { role: ROLE, reason: REASON }, contextOf(u))),
    );
    expect(crashed).toBe(1);
    expect(s.requests.submitGroups().retried).toBe(second.length);
    for (const [i, u] of second.entries()) expect(answered[i]).toMatchObject({ state: "active", requester: u.name });
    // Exactly one request, one grant and one set of events per caller: nothing of the dead group survived.
    const rows = await requestsOf(s.store.db);
    expect(rows.map((r) => r.id).sort()).toEqual([...committed, ...answered].map((r) => r.id).sort());
    expect(await s.store.db.selectFrom("grants").select("id").execute()).toHaveLength(users.length);
    const events = await s.store.db
      .selectFrom("audit_pending")
      .select("action")
      .where("action", "like", "request.%")
      .unionAll(s.store.db.selectFrom("audit_events").select("action").where("action", "like", "request.%"))
      .execute();
    expect(events).toHaveLength(users.length * 3);
  });
});

/** A store whose audit INSERTs fail while `state.fail`; `state.unseen`: results of statements no plugin saw. */
function failingAudit() {
  const state = { fail: false, unseen: [] as string[] };
  const seen = new WeakSet<object>();
  const plugin: KyselyPlugin = {
    transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
      seen.add(args.queryId);
      if (state.fail && insertsInto(args.node, "audit_pending")) throw new Error("the store refused the audit write");
      return args.node;
    },
    transformResult: async (args: PluginTransformResultArgs) => {
      // A compiled query run as it is (`executeQuery(CompiledQuery)`) has no id: no plugin saw it before it ran.
      if (!args.queryId || !seen.has(args.queryId))
        state.unseen.push(JSON.stringify(args.result.rows[0] ?? {}).slice(0, 80));
      return args.result;
    },
  };
  return { state, wrap: (store: AppStore) => withPlugin(store, plugin) };
}

describe.each(ENGINES)("an elevation whose audit write fails, on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("writes nothing: no request, grant or end without its audit events, alone or in a group", async () => {
    const { state, wrap } = failingAudit();
    server = await testServer(engine, { wrapStore: wrap });
    const s = server;
    const { users } = await seed(s, 4);
    const db = s.store.db;
    const submit = (u: (typeof users)[number]) => s.requests.submit(u, { role: ROLE, reason: REASON }, contextOf(u));
    const deactivate = (u: (typeof users)[number]) => s.requests.deactivate(u, ROLE, contextOf(u));
    const counts = async () => ({
      requests: Number(
        (await db.selectFrom("activation_requests").select(db.fn.countAll().as("n")).executeTakeFirstOrThrow()).n,
      ),
      grants: Number((await db.selectFrom("grants").select(db.fn.countAll().as("n")).executeTakeFirstOrThrow()).n),
    });

    // Submits: one alone, then the others together (one group).
    state.fail = true;
    await expect(submit(users[0]!)).rejects.toThrow(/refused the audit write/);
    const group = await Promise.allSettled(users.map(submit));
    expect(group.map((r) => r.status)).toEqual(users.map(() => "rejected"));
    expect(await counts()).toEqual({ requests: 0, grants: 0 });

    // Active, then deactivates that cannot write their events leave the activations active.
    state.fail = false;
    const active = await Promise.all(users.map(submit));
    expect(active.map((r) => r.state)).toEqual(users.map(() => "active"));
    state.fail = true;
    await expect(deactivate(users[0]!)).rejects.toThrow(/refused the audit write/);
    const ends = await Promise.allSettled(users.map(deactivate));
    expect(ends.map((r) => r.status)).toEqual(users.map(() => "rejected"));
    const rows = await db.selectFrom("activation_requests").select("state").execute();
    expect(rows.map((r) => r.state)).toEqual(users.map(() => "active"));
    const grants = await db.selectFrom("grants").select("state").execute();
    expect(grants.map((g) => g.state)).toEqual(users.map(() => "active"));

    // And once the store takes audit events again, they end (each with its event).
    state.fail = false;
    const ended = await Promise.all(users.map(deactivate));
    expect(ended.map((r) => r.state)).toEqual(users.map(() => "deactivated"));
    const events = await db
      .selectFrom("audit_pending")
      .select("action")
      .where("action", "in", ["request.activated", "request.deactivated"])
      .unionAll(
        db
          .selectFrom("audit_events")
          .select("action")
          .where("action", "in", ["request.activated", "request.deactivated"]),
      )
      .execute();
    expect(events.filter((e) => e.action === "request.activated")).toHaveLength(users.length);
    expect(events.filter((e) => e.action === "request.deactivated")).toHaveLength(users.length);
    // Every statement that came back had been seen by the plugin first (none went around it).
    expect(state.unseen).toEqual([]);
  });
});
