/**
 * The statement counter's transactions behave as the store's own for after-commit hooks (`whenSettled`): a hook
 * registered in a counted transaction runs once its COMMIT is done (another connection sees what it wrote) and
 * never after a rollback, and the outbox's claim-on-commit (`runAfterCommit`) takes the path it takes without the
 * counter. Ceiling tests measure that path, so it must be the one production runs.
 */
import { afterEach, describe, expect, it } from "vitest";
import pg from "pg";
import { Registry } from "prom-client";
import type { AppStore } from "../db/index.js";
import { whenSettled } from "../lib/db.js";
import { createOutboxService, outboxStore } from "../modules/outbox/index.js";
import { createOutboxRunner } from "../workers/outbox-runner.js";
import { ENGINES } from "./engines.js";
import { auditHarness } from "./harness.js";
import { statementCounter } from "./statements.js";

describe.each(ENGINES)("counted transactions on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  const closing: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0)) await close();
    await h?.cleanup();
    h = undefined;
  });

  /** Whether a group named `name` exists, read on a connection of its own (PGlite has one: after the others). */
  async function otherConnection(store: AppStore) {
    if (!store.connectionUrl)
      return (name: string) => store.db.selectFrom("groups").where("name", "=", name).select("id").execute();
    const client = new pg.Client({ connectionString: store.connectionUrl });
    await client.connect();
    closing.push(() => client.end());
    return async (name: string) => (await client.query("select id from groups where name = $1", [name])).rows;
  }

  it("a hook registered in a counted transaction runs after its COMMIT, seen from another connection, and never after a rollback", async () => {
    h = await auditHarness(engine);
    const counter = statementCounter();
    const store = counter.wrap(h.store);
    const groups = await otherConnection(h.store);
    const settled: { committed: boolean; seen: Promise<unknown[]> }[] = [];
    const write = (name: string, rollBack: boolean) =>
      store.transaction(async (tx) => {
        await tx.insertInto("groups").values({ id: crypto.randomUUID(), name, created_at: h!.clock.now() }).execute();
        expect(whenSettled(tx, (committed) => settled.push({ committed, seen: groups(name) }))).toBe(true);
        // Not before the transaction ends.
        expect(settled).toHaveLength(0);
        if (rollBack) throw new Error("rolled back");
      });

    const measured = await counter.measure(() => write("committed", false));
    expect(measured).toMatchObject({ statements: ["insert groups"], transactions: 1 });
    expect(settled).toHaveLength(1);
    expect(settled[0]!.committed).toBe(true);
    expect(await settled[0]!.seen).toHaveLength(1);

    settled.length = 0;
    await expect(counter.measure(() => write("rolled back", true))).rejects.toThrow("rolled back");
    expect(settled.map((s) => s.committed)).toEqual([false]);
    expect(await settled[0]!.seen).toHaveLength(0);
  });

  it("runAfterCommit writes the job claimed and this node's runner runs it at commit, counted or not; its run is not counted", async () => {
    h = await auditHarness(engine);
    const harness = h;
    const counter = statementCounter();
    for (const [name, store] of [
      ["plain", harness.store],
      ["counted", counter.wrap(harness.store)],
    ] as const) {
      const ran: string[] = [];
      const runner = createOutboxRunner({
        store,
        clock: harness.clock,
        audit: harness.audit,
        handlers: { notify: async (_payload, ctx) => void ran.push(ctx.idempotencyKey) },
        registry: new Registry(),
        pollMs: 60_000,
      });
      await runner.runOnce();
      runner.start();
      closing.push(() => runner.stop());
      const outbox = createOutboxService({ store, clock: harness.clock, audit: harness.audit });
      const key = `notify:${name}`;
      const measured = await counter.measure(() =>
        store.transaction(async (tx) => {
          await outbox.enqueue(tx, { kind: "notify", idempotencyKey: key, payload: {}, runAfterCommit: true });
          // As outbox-runner.test.ts checks the path: the row is written claimed by this node (attempt 1).
          return outboxStore.findByIdempotencyKey(tx, key);
        }),
      );
      expect(measured.result, name).toMatchObject({ status: "running", attempts: 1 });
      await expect
        .poll(async () => (await outboxStore.findByIdempotencyKey(harness.store.db, key))?.status, { timeout: 10_000 })
        .toBe("done");
      expect(ran).toEqual([key]);
      // Counted: the enqueue and the read only; the job's run at commit is background work.
      if (name === "counted") expect(measured.statements).toEqual(["insert outbox", "select outbox"]);
      await runner.stop();
    }
  });
});
