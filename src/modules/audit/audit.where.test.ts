/**
 * `appendManyWhere`: the database decides in the INSERT itself which calls' events are written (the vault's
 * reads from memory). Only the calls the SELECT names are recorded, each with all its events, in order, and
 * chained as any other event; a SELECT that fails writes nothing at all and the append fails.
 */
import { sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import type { Actor, CallContext } from "../authz/authz.types.js";

const ann: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000003",
  name: "ann",
  principalKind: "user",
  roles: ["user"],
};
const context: CallContext = { correlationId: "c-1", sourceIp: "192.0.2.9", userAgent: "ua" };

const calls = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    actor: ann,
    context,
    events: [
      { action: "test.read", outcome: "success" as const, subject: `thing:${i}`, details: { i } },
      { action: "test.read.extra", outcome: "success" as const, subject: `thing:${i}` },
    ],
  }));

describe.each(ENGINES)("audit appendManyWhere on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  for (const sequencing of ["inline", "background"] as const)
    it(`writes only the calls the database selects, in one statement (${sequencing} chaining)`, async () => {
      h = await auditHarness(engine, { sequencing });
      const { audit, store } = h;
      const recorded = await store.transaction((tx) =>
        audit.appendManyWhere(tx, calls(4), sql`select 0 union all select 2 union all select 7`),
      );
      expect(recorded).toEqual([true, false, true, false]);
      await audit.catchUp();
      expect(await audit.verify()).toMatchObject({ ok: true, count: 4 });
      const read = await audit.read({ limit: 100 });
      expect(read.map((e) => [e.action, e.subject])).toEqual([
        ["test.read", "thing:0"],
        ["test.read.extra", "thing:0"],
        ["test.read", "thing:2"],
        ["test.read.extra", "thing:2"],
      ]);

      // None selected: nothing written, every call answered false.
      expect(await audit.appendManyWhere(store.db, calls(2), sql`select 5`)).toEqual([false, false]);
      // The SELECT fails: the statement fails, nothing is written.
      await expect(
        audit.appendManyWhere(
          store.db,
          calls(3),
          sql`select 0 union all select 1 / (select count(*) - count(*) from audit_head)::int`,
        ),
      ).rejects.toThrow();
      await audit.catchUp();
      expect(await audit.verify()).toMatchObject({ ok: true, count: 4 });
    });
});
