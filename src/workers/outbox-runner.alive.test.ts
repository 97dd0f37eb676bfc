/**
 * A job run after its enqueuing commit (`runAfterCommit`) is held by its node only while that node keeps it
 * alive: a node that dies between the commit and the run leaves it to another runner within the short hold
 * (`aliveMs`), not the whole lease; a node that lives keeps it through a run longer than the hold, and the
 * job runs exactly once either way. Real clock, a hold of 1 s, a lease of 60 s: a takeover can only come
 * from the hold.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { systemClock } from "../lib/clock.js";
import { armFailpoint, disarmFailpoints } from "../lib/failpoints.js";
import { createOutboxService, outboxStore, type OutboxHandlers } from "../modules/outbox/index.js";
import { ENGINES } from "../testing/engines.js";
import { auditHarness } from "../testing/harness.js";
import { createOutboxRunner } from "./outbox-runner.js";

const ALIVE_MS = 1_000;
const LEASE_MS = 60_000;

describe.each(ENGINES)("outbox jobs run after their commit, kept alive, on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    disarmFailpoints();
    await h?.cleanup();
    h = undefined;
  });

  async function setup() {
    h = await auditHarness(engine);
    const harness = h;
    const outbox = createOutboxService({ store: harness.store, clock: systemClock, audit: harness.audit });
    const runner = (handlers: OutboxHandlers) =>
      createOutboxRunner({
        store: harness.store,
        clock: systemClock,
        audit: harness.audit,
        handlers,
        registry: new Registry(),
        leaseMs: LEASE_MS,
        aliveMs: ALIVE_MS,
        pollMs: 50,
      });
    const add = (key: string) =>
      harness.store.transaction((tx) =>
        outbox.enqueue(tx, { kind: "provision", idempotencyKey: key, payload: {}, runAfterCommit: true }),
      );
    const job = async (key: string) => (await outboxStore.findByIdempotencyKey(harness.store.db, key))!;
    return { runner, add, job };
  }

  it("a node that dies between the commit and the run: another runner takes the job within the short hold, once", async () => {
    const { runner, add, job } = await setup();
    const ran: string[] = [];
    const handlers: OutboxHandlers = {
      provision: async (_payload, ctx) => void ran.push(`${ctx.idempotencyKey}#${ctx.attempt}`),
    };
    const dying = runner(handlers);
    dying.start();
    // The node dies once the row is committed claimed by it, before its handler starts.
    const crash = armFailpoint("outbox.job.before-run", "crash", 1);
    await add("p:1");
    await expect.poll(() => crash.fired, { timeout: 5_000 }).toBe(1);
    await dying.stop();
    const other = runner(handlers);
    other.start();
    // Within the hold, far from the 60 s lease.
    await expect.poll(async () => (await job("p:1")).status, { timeout: 10_000 }).toBe("done");
    await other.stop();
    expect(ran).toEqual(["p:1#2"]);
    expect(await job("p:1")).toMatchObject({ attempts: 2 });
  });

  it("a live node keeps its job through a run several holds long: no other runner starts it meanwhile", async () => {
    const { runner, add, job } = await setup();
    const ran: string[] = [];
    let running = 0;
    let most = 0;
    const handlers: OutboxHandlers = {
      provision: async (_payload, ctx) => {
        ran.push(`${ctx.idempotencyKey}#${ctx.attempt}`);
        most = Math.max(most, ++running);
        await new Promise((resolve) => setTimeout(resolve, 2.5 * ALIVE_MS));
        running -= 1;
        if (ctx.signal.aborted) throw new Error("stopped: the hold was lost");
      },
    };
    const owner = runner(handlers);
    const other = runner(handlers);
    owner.start(); // registered first: jobs enqueued on this node are written claimed by it
    other.start();
    await add("p:2");
    await expect.poll(async () => (await job("p:2")).status, { timeout: 10_000 }).toBe("done");
    await owner.stop();
    await other.stop();
    expect(ran).toEqual(["p:2#1"]);
    expect(most).toBe(1);
    expect(await job("p:2")).toMatchObject({ attempts: 1 });
  });
});
