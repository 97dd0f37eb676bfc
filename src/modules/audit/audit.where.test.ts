/**
 * `appendManyWhere`: the database decides in the INSERT itself which calls' events are written (the vault's
 * reads from memory). Only the calls without a copy or whose copy meets the condition are recorded, each with
 * all its events, in order, and chained as any other event; a condition that fails writes nothing at all and
 * the append fails.
 */
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

/** `n` calls; call i gives the copy `[i]` (none when i is in `without`). */
const calls = (n: number, without: number[] = []) =>
  Array.from({ length: n }, (_, i) => ({
    actor: ann,
    context,
    copy: without.includes(i) ? undefined : [i],
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
        audit.appendManyWhere(tx, calls(5, [4]), { sql: "(c.copy->>0)::int in (0, 2, 7)" }),
      );
      expect(recorded).toEqual([true, false, true, false, true]);
      await audit.catchUp();
      expect(await audit.verify()).toMatchObject({ ok: true, count: 6 });
      const read = await audit.read({ limit: 100 });
      expect(read.map((e) => [e.action, e.subject])).toEqual([
        ["test.read", "thing:0"],
        ["test.read.extra", "thing:0"],
        ["test.read", "thing:2"],
        ["test.read.extra", "thing:2"],
        ["test.read", "thing:4"],
        ["test.read.extra", "thing:4"],
      ]);

      // None meets it: nothing written, every call answered false.
      expect(await audit.appendManyWhere(store.db, calls(2), { sql: "(c.copy->>0)::int = 5" })).toEqual([false, false]);
      // The condition fails for one copy: the statement fails, nothing is written.
      await expect(
        audit.appendManyWhere(store.db, calls(3), {
          sql: "1 / ((c.copy->>0)::int - 1 + (select count(*) - count(*) from audit_head)::int) > 0",
        }),
      ).rejects.toThrow();
      await audit.catchUp();
      expect(await audit.verify()).toMatchObject({ ok: true, count: 6 });
    });
});
