/**
 * Issue 14 item 4: an elevation is one short transaction. Counts the SQL statements (and transactions) that
 * one auto-approved submit of an internal role (→ active) and one deactivate send to the store, and holds
 * them under a ceiling so a regression fails here rather than in a benchmark. The service is called as its
 * HTTP route calls it (the route adds no query: authentication answers from memory, see the access-index
 * tests). Only the statements of the call itself are counted (AsyncLocalStorage marks them): background work
 * (the audit sequencer, heartbeats, the outbox runner) runs outside it. BEGIN and COMMIT are not statements
 * here; transactions are counted apart.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import pg from "pg";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Actor } from "../authz/authz.types.js";
import { ENGINES } from "../../testing/engines.js";
import { seedRole, seedUser } from "../../testing/pim.js";
import { testServer, type TestServer } from "../../testing/server.js";
import { statementCounter } from "../../testing/statements.js";

/**
 * The ceilings (statements per call on PostgreSQL). Measured before issue 14 item 4: submit 15, deactivate 13
 * (each in one transaction). Now submit: one read (account, role, policy, eligibility), the request inserted
 * in its final state with its grant and the index's message (one statement; the message was one more before), the audit events. Deactivate: one locking read (with
 * the decisions), one statement ending the request, its grant and its pending extensions and sending the
 * access index's and the sessions' messages (5 before: the two messages were a statement each), the audit events.
 * Since 2026-12-07 the same ceilings hold for a group of submits or deactivates made together (`submit.group.ts`,
 * `deactivate.group.ts`): one transaction and these statements for the whole group, multi-row.
 */
const SUBMIT_MAX_STATEMENTS = 3;
const DEACTIVATE_MAX_STATEMENTS = 3;
/** On PGlite the audit log chains in the appending transaction (`inline`): four more statements. */
const INLINE_CHAINING = { pglite: 4, postgres: 0 };

/**
 * Parse messages (PostgreSQL parses and plans the text) of submits → active and deactivates: their hot statements
 * are prepared once per connection (constant texts with one JSON parameter, `PREPARED`, the audit events' INSERT
 * too), so on a connection that ran them before, nothing is parsed again. Before, every statement was, each time.
 */

async function seedSelfService(server: TestServer): Promise<Actor> {
  await seedUser(server, "alice", { groups: ["sre"] });
  await seedRole(server, {
    name: "self-service",
    policy: {
      defaultDuration: "30m",
      maxDuration: "2h",
      mfa: { required: false, maxAge: "10m" },
      justification: { minLength: 10 },
      approval: { stages: [] },
    },
    eligibleGroups: ["sre"],
  });
  const row = await server.store.db
    .selectFrom("principals")
    .select("id")
    .where("name", "=", "alice")
    .executeTakeFirstOrThrow();
  return { kind: "principal", id: row.id, name: "alice", principalKind: "user", roles: ["user"] };
}

describe.each(ENGINES)("statements of an elevation on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("an auto-approved submit → active and a deactivate stay under their statement ceilings", async () => {
    const { wrap, measure } = statementCounter();
    server = await testServer(engine, { wrapStore: wrap });
    const s = server;
    const alice = await seedSelfService(s);
    const context = { correlationId: "statements-test", sourceIp: "127.0.0.1", userAgent: null };
    // The first round warms what a node keeps in memory; the next ones are counted.
    for (let round = 0; round < 3; round++) {
      const submitted = await measure(() =>
        s.requests.submit(alice, { role: "self-service", reason: "rotate the replica's keys" }, context),
      );
      expect(submitted.result).toMatchObject({ state: "active", role: "self-service", requester: "alice" });
      expect(submitted.result.expiresAt).not.toBeNull();
      const ended = await measure(() => s.requests.deactivate(alice, "self-service", context));
      expect(ended.result).toMatchObject({ state: "deactivated", id: submitted.result.id, endedBy: "alice" });
      if (round === 0) continue;
      const report = `submit: ${submitted.statements.length} in ${submitted.transactions} tx ${JSON.stringify(submitted.statements)}; deactivate: ${ended.statements.length} in ${ended.transactions} tx ${JSON.stringify(ended.statements)}`;
      expect(submitted.statements.length, report).toBeLessThanOrEqual(SUBMIT_MAX_STATEMENTS + INLINE_CHAINING[engine]);
      expect(submitted.transactions, report).toBe(1);
      expect(ended.statements.length, report).toBeLessThanOrEqual(DEACTIVATE_MAX_STATEMENTS + INLINE_CHAINING[engine]);
      expect(ended.transactions, report).toBe(1);
    }
    // What the statements wrote is all there: the activation, its grant ended with it, and its audit events.
    const audit = await s.store.db
      .selectFrom("audit_pending")
      .select("action")
      .unionAll(s.store.db.selectFrom("audit_events").select("action"))
      .execute();
    const actions = audit.map((e) => e.action);
    for (const action of ["request.submitted", "request.approved", "request.activated", "request.deactivated"])
      expect(actions.filter((a) => a === action)).toHaveLength(3);
    const grants = await s.store.db.selectFrom("grants").select("state").execute();
    expect(grants.map((g) => g.state)).toEqual(["revoked", "revoked", "revoked"]);
  });
});

describe.each(ENGINES)("statements of a group of elevations on %s", (engine) => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.cleanup();
    server = undefined;
  });

  it("submits and deactivates made together cost one transaction and the statements of one", async () => {
    const { wrap, measure } = statementCounter();
    server = await testServer(engine, { wrapStore: wrap });
    const s = server;
    await seedSelfService(s);
    const names = ["bob", "carol", "dave", "erin", "frank"];
    for (const name of names) await seedUser(s, name, { groups: ["sre"] });
    const rows = await s.store.db.selectFrom("principals").select(["id", "name"]).where("name", "in", names).execute();
    const actors: Actor[] = rows.map((r) => ({
      kind: "principal",
      id: r.id,
      name: r.name,
      principalKind: "user",
      roles: ["user"],
    }));
    const context = { correlationId: "statements-test", sourceIp: "127.0.0.1", userAgent: null };
    // Made in one turn of the event loop: one group (`submit.group.ts`), written by multi-row statements.
    const submitted = await measure(() =>
      Promise.all(
        actors.map((a) => s.requests.submit(a, { role: "self-service", reason: "rotate the replica's keys" }, context)),
      ),
    );
    expect(submitted.result.map((r) => r.state)).toEqual(actors.map(() => "active"));
    const report = (m: { statements: string[]; transactions: number }) =>
      `${m.statements.length} in ${m.transactions} tx ${JSON.stringify(m.statements)}`;
    expect(submitted.transactions, report(submitted)).toBe(1);
    expect(submitted.statements.length, report(submitted)).toBeLessThanOrEqual(
      SUBMIT_MAX_STATEMENTS + INLINE_CHAINING[engine],
    );
    const ended = await measure(() =>
      Promise.all(actors.map((a) => s.requests.deactivate(a, "self-service", context))),
    );
    expect(ended.result.map((r) => r.state)).toEqual(actors.map(() => "deactivated"));
    expect(ended.transactions, report(ended)).toBe(1);
    expect(ended.statements.length, report(ended)).toBeLessThanOrEqual(
      DEACTIVATE_MAX_STATEMENTS + INLINE_CHAINING[engine],
    );
  });
});

describe("statements of an elevation on postgres, parsed", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await server?.cleanup();
    server = undefined;
  });

  it("an auto-approved submit → active and a deactivate parse nothing on a connection that ran them before", async () => {
    server = await testServer("postgres");
    const s = server;
    const alice = await seedSelfService(s);
    const context = { correlationId: "statements-test", sourceIp: "127.0.0.1", userAgent: null };
    // A statement is sent (Parse included) synchronously by the call that runs it, inside its transaction.
    const scope = new AsyncLocalStorage<boolean>();
    const parsedBy = new Map<unknown, Set<string>>();
    const again: string[] = [];
    const parsedInRound: number[] = [];
    const parse = pg.Connection.prototype.parse;
    vi.spyOn(pg.Connection.prototype, "parse").mockImplementation(function (this: unknown, ...args) {
      const text = String((args[0] as { text?: string }).text);
      if (scope.getStore()) {
        parsedInRound[parsedInRound.length - 1]! += 1;
        const seen = parsedBy.get(this) ?? new Set<string>();
        if (seen.has(text)) again.push(text.slice(0, 80));
        parsedBy.set(this, seen.add(text));
      }
      return parse.apply(this, args);
    });
    for (let round = 0; round < 4; round++) {
      parsedInRound.push(0);
      const submitted = await scope.run(true, () =>
        s.requests.submit(alice, { role: "self-service", reason: "rotate the replica's keys" }, context),
      );
      expect(submitted).toMatchObject({ state: "active", role: "self-service", requester: "alice" });
      const ended = await scope.run(true, () => s.requests.deactivate(alice, "self-service", context));
      expect(ended).toMatchObject({ state: "deactivated", id: submitted.id });
    }
    // The pool hands the last released connection out first: a later round ran on one that had parsed before,
    // and parsed nothing (the first round parsed its statements: the spy saw them).
    expect(parsedInRound[0]).toBeGreaterThan(0);
    expect(Math.min(...parsedInRound.slice(1))).toBe(0);
    expect(again).toEqual([]);
  });
});
