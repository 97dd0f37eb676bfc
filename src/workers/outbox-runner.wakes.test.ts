/**
 * Any user of Stint's database may NOTIFY the runners' channel (PostgreSQL checks no privilege on NOTIFY).
 * A flood of them must not make a runner claim once per NOTIFY: after a claim that found nothing, a NOTIFY
 * within `wakeGapMs` waits out the gap. A real job committed meanwhile still runs.
 */
import pg from "pg";
import { Registry } from "prom-client";
import type { KyselyPlugin, RootOperationNode } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { auditHarness } from "../testing/harness.js";
import { createOutboxService, outboxStore } from "../modules/outbox/index.js";
import { createOutboxRunner, type OutboxRunner } from "./outbox-runner.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe("a flood of NOTIFYs on the outbox channel (postgres)", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("costs a runner one claim per gap after a claim that found nothing, and a real job still runs", async () => {
    const h = await auditHarness("postgres");
    cleanups.push(h.cleanup);
    // Counts the runner's claim statements (outboxStore.claimDue: raw SQL, an UPDATE … FOR UPDATE SKIP LOCKED).
    let claims = 0;
    const counting: KyselyPlugin = {
      transformQuery(args): RootOperationNode {
        const raw = args.node as { kind: string; sqlFragments?: readonly string[] };
        if (raw.kind === "RawNode" && /update outbox[\s\S]*skip locked/.test(raw.sqlFragments?.join("") ?? ""))
          claims += 1;
        return args.node;
      },
      transformResult: (args) => Promise.resolve(args.result),
    };
    const ran: string[] = [];
    const gap = 50;
    const runner: OutboxRunner = createOutboxRunner({
      store: { db: h.store.db.withPlugin(counting), transaction: h.store.transaction, listen: h.store.listen },
      clock: h.clock,
      audit: h.audit,
      registry: new Registry(),
      handlers: { notify: (_payload, ctx) => Promise.resolve(void ran.push(ctx.idempotencyKey)) },
      // Only a NOTIFY wakes it within the test.
      pollMs: 60_000,
      wakeGapMs: gap,
    });
    runner.start();
    cleanups.push(() => runner.stop());

    const attacker = new pg.Client({ connectionString: h.url });
    await attacker.connect();
    // Any session may skip the commit's flush: a NOTIFY is then a round trip, not a disk write.
    await attacker.query("set synchronous_commit = off");
    cleanups.push(() => attacker.end());
    const send = () => attacker.query(`notify ${outboxStore.DUE_CHANNEL}`);
    // Listening once a NOTIFY makes it claim.
    for (let tries = 0; claims === 0; tries++) {
      expect(tries).toBeLessThan(200);
      await send();
      await sleep(25);
    }
    await sleep(2 * gap);

    const outbox = createOutboxService({ store: h.store, clock: h.clock, audit: h.audit });
    claims = 0;
    const started = Date.now();
    let inFlight = 0;
    let sent = 0;
    let enqueued = false;
    // A NOTIFY at every turn of the event loop (a few in flight on the connection): each used to start a claim.
    while (Date.now() - started < 300) {
      if (inFlight < 16) {
        inFlight += 1;
        sent += 1;
        void send()
          .catch(() => undefined)
          .finally(() => (inFlight -= 1));
      }
      if (!enqueued && Date.now() - started >= 150) {
        enqueued = true;
        void h.store.transaction((tx) => outbox.enqueue(tx, { kind: "notify", idempotencyKey: "real", payload: {} }));
      }
      await turn();
    }
    const counted = claims;
    const elapsed = Date.now() - started;
    while (inFlight > 0) await turn();
    // A slower machine only claims less often; the bound is the gap, whatever the rate of NOTIFYs.
    expect(sent).toBeGreaterThan(counted);
    expect(counted).toBeLessThanOrEqual(elapsed / gap + 3);
    // The job enqueued during the flood runs (its own NOTIFY, or the next claim a gap later).
    for (let tries = 0; !ran.includes("real"); tries++) {
      expect(tries).toBeLessThan(200);
      await sleep(25);
    }
    expect(ran).toEqual(["real"]);
  });
});
