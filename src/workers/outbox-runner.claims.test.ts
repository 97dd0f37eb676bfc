/**
 * The claims a started runner sends around jobs run after their enqueuing commit (`runAfterCommit`): when nothing
 * else came while such a job ran, its end sends no claim statement (it would only compete with the caller's next
 * work: a dynamic login's credentials read); when something came meanwhile (a NOTIFY while every slot was taken),
 * its end claims at once, as every finished attempt did. Real clock, a poll of a minute: a claim can only come from
 * a wake.
 */
import type { KyselyPlugin, RootOperationNode } from "kysely";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { AppStore } from "../db/index.js";
import { systemClock } from "../lib/clock.js";
import { createOutboxService, outboxStore, type OutboxHandlers } from "../modules/outbox/index.js";
import { ENGINES } from "../testing/engines.js";
import { auditHarness } from "../testing/harness.js";
import { createOutboxRunner } from "./outbox-runner.js";

/** Counts the runner's claim statements (claimDue's UPDATE) sent through the store it is given. */
function claimCounter(store: AppStore) {
  let claims = 0;
  let heard = 0;
  const plugin: KyselyPlugin = {
    transformQuery({ node }) {
      const fragments = (node as RootOperationNode & { sqlFragments?: readonly string[] }).sqlFragments;
      if (fragments?.join("").includes("set status = 'running', attempts = attempts + 1")) claims += 1;
      return node;
    },
    transformResult: async ({ result }) => result,
  };
  const counted: AppStore = {
    ...store,
    db: store.db.withPlugin(plugin),
    // The NOTIFYs the runner heard, once it has acted on each.
    listen: (channel, onMessage, options) =>
      store.listen(
        channel,
        (payload) => {
          onMessage(payload);
          heard += 1;
        },
        options,
      ),
  };
  return { store: counted, claims: () => claims, heard: () => heard };
}

describe.each(ENGINES)("outbox runner claims around jobs run after their commit, on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  async function setup(handlers: OutboxHandlers) {
    h = await auditHarness(engine);
    const harness = h;
    const { store, claims, heard } = claimCounter(harness.store);
    const outbox = createOutboxService({ store, clock: systemClock, audit: harness.audit });
    const runner = createOutboxRunner({
      store,
      clock: systemClock,
      audit: harness.audit,
      handlers,
      registry: new Registry(),
      concurrency: 1,
      pollMs: 60_000,
    });
    const add = (key: string, runAfterCommit: boolean) =>
      harness.store.transaction((tx) =>
        outbox.enqueue(tx, { kind: "provision", idempotencyKey: key, payload: {}, runAfterCommit }),
      );
    const status = async (key: string) => (await outboxStore.findByIdempotencyKey(harness.store.db, key))?.status;
    return { runner, add, status, claims, heard };
  }

  it("jobs run one after another with nothing else coming: their ends claim nothing", async () => {
    const ran: string[] = [];
    const { runner, add, status, claims } = await setup({
      provision: async (_payload, ctx) => void ran.push(ctx.idempotencyKey),
    });
    runner.start();
    // The first job lets the start's claims (the first pass, the one once LISTEN holds) happen.
    await add("p:0", true);
    await expect.poll(() => status("p:0"), { timeout: 10_000 }).toBe("done");
    const before = claims();
    for (let i = 1; i <= 5; i += 1) {
      await add(`p:${i}`, true);
      await expect.poll(() => status(`p:${i}`), { timeout: 10_000 }).toBe("done");
    }
    const during = claims() - before;
    await runner.stop();
    expect(ran).toEqual(["p:0", "p:1", "p:2", "p:3", "p:4", "p:5"]);
    // Each job was handed over at its commit (none claimed); at most one late start-up claim may fall in here.
    expect(during).toBeLessThanOrEqual(1);
  });

  it("a job that came while every slot was taken is claimed the moment the adopted job ends", async () => {
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const ran: string[] = [];
    const { runner, add, status, heard } = await setup({
      provision: async (_payload, ctx) => {
        ran.push(ctx.idempotencyKey);
        if (ctx.idempotencyKey === "slow") await gate;
      },
    });
    runner.start();
    await add("warm-up", true);
    await expect.poll(() => status("warm-up"), { timeout: 10_000 }).toBe("done");
    await add("slow", true);
    await expect.poll(() => ran.includes("slow"), { timeout: 10_000 }).toBe(true);
    const before = heard();
    // Due now, not handed over (no free slot): its NOTIFY wakes the loop, which has no room to claim it.
    await add("queued", true);
    await expect.poll(() => heard() > before, { timeout: 10_000 }).toBe(true);
    expect(await status("queued")).toBe("pending");
    release();
    // Far within the minute-long poll: the slot freed by "slow" claimed it.
    await expect.poll(() => status("queued"), { timeout: 10_000 }).toBe("done");
    await runner.stop();
    expect(ran).toEqual(["warm-up", "slow", "queued"]);
  });
});
