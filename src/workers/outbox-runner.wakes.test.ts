/**
 * Any user of Stint's database may NOTIFY the runners' channel (PostgreSQL checks no privilege on NOTIFY). The store
 * delivers only those sent by Stint's own role; one whose sender exited before the check reaches the runner as an
 * unverified wake. A flood of either must not make a runner claim once per NOTIFY: after a claim that found
 * nothing, an unverified wake within `wakeGapMs` waits out the gap. A NOTIFY from Stint's own role (a job
 * committed) claims at once, gap or not. A real job committed during a flood still runs.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { Registry } from "prom-client";
import type { KyselyPlugin, RootOperationNode } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import type { AppStore } from "../db/index.js";
import { auditHarness } from "../testing/harness.js";
import { createOutboxService, outboxStore } from "../modules/outbox/index.js";
import { createOutboxRunner, type OutboxRunner } from "./outbox-runner.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const turn = () => new Promise((resolve) => setImmediate(resolve));

async function until(what: string, condition: () => boolean) {
  for (let tries = 0; !condition(); tries++) {
    if (tries >= 400) throw new Error(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

describe("wakes of the outbox runner (postgres)", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * A started runner on a fresh store whose claim statements are counted. `listen` is the store's own; the
   * runner's `onUnverified` hook is kept so a test can call it as the store does for an unverified NOTIFY.
   */
  async function startRunner(options: { gap: number; listening?: Promise<void> }) {
    const h = await auditHarness("postgres");
    cleanups.push(h.cleanup);
    // Counts the runner's claim statements (outboxStore.claimDue: raw SQL, an UPDATE … FOR UPDATE SKIP LOCKED).
    const counter = { claims: 0 };
    const counting: KyselyPlugin = {
      transformQuery(args): RootOperationNode {
        const raw = args.node as { kind: string; sqlFragments?: readonly string[] };
        if (raw.kind === "RawNode" && /update outbox[\s\S]*skip locked/.test(raw.sqlFragments?.join("") ?? ""))
          counter.claims += 1;
        return args.node;
      },
      transformResult: (args) => Promise.resolve(args.result),
    };
    const hooks: { unverified?: () => void } = {};
    const listen: AppStore["listen"] = async (channel, onMessage, opts) => {
      hooks.unverified = opts?.onUnverified;
      // A LISTEN that takes hold late (a slow connection): the test decides when.
      await options.listening;
      return h.store.listen(channel, onMessage, opts);
    };
    const ran: string[] = [];
    const runner: OutboxRunner = createOutboxRunner({
      store: { db: h.store.db.withPlugin(counting), transaction: h.store.transaction, listen },
      clock: h.clock,
      audit: h.audit,
      registry: new Registry(),
      handlers: { notify: (_payload, ctx) => Promise.resolve(void ran.push(ctx.idempotencyKey)) },
      // Only a wake makes it claim within a test.
      pollMs: 60_000,
      wakeGapMs: options.gap,
    });
    runner.start();
    cleanups.push(() => runner.stop());
    // Its first claim (at start) has found nothing.
    await until("the runner claimed once", () => counter.claims > 0);
    const outbox = createOutboxService({ store: h.store, clock: h.clock, audit: h.audit });
    const enqueue = (key: string) =>
      h.store.transaction((tx) => outbox.enqueue(tx, { kind: "notify", idempotencyKey: key, payload: {} }));
    return { h, counter, hooks, ran, enqueue };
  }

  /**
   * Sends `send()` at every turn of the event loop for 300 ms (a few in flight), enqueuing a real job halfway.
   * Returns how many were sent, the claims counted meanwhile and how long it took.
   */
  async function flood(send: () => Promise<unknown>, enqueue: () => Promise<unknown>, counter: { claims: number }) {
    counter.claims = 0;
    const started = Date.now();
    let inFlight = 0;
    let sent = 0;
    let enqueued = false;
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
        void enqueue();
      }
      await turn();
    }
    const claims = counter.claims;
    const elapsed = Date.now() - started;
    while (inFlight > 0) await turn();
    return { sent, claims, elapsed };
  }

  it("a flood of unverified wakes costs one claim per gap after a claim that found nothing; a real job still runs", async () => {
    const gap = 50;
    const { counter, hooks, ran, enqueue } = await startRunner({ gap });
    expect(hooks.unverified).toBeTypeOf("function");
    // What the store does for each NOTIFY whose sender exited before it was checked.
    const { sent, claims, elapsed } = await flood(
      () => Promise.resolve(hooks.unverified!()),
      () => enqueue("real"),
      counter,
    );
    // A slower machine only claims less often; the bound is the gap, whatever the rate of wakes.
    expect(sent).toBeGreaterThan(claims);
    expect(claims).toBeLessThanOrEqual(elapsed / gap + 3);
    // The job enqueued during the flood runs (its own NOTIFY, verified, claims at once).
    await until("the real job ran", () => ran.includes("real"));
    expect(ran).toEqual(["real"]);
  });

  it("a flood of NOTIFYs from a role other than Stint's costs no claim per NOTIFY; a real job still runs", async () => {
    const gap = 50;
    const { h, counter, ran, enqueue } = await startRunner({ gap });
    const admin = new pg.Client({ connectionString: h.url });
    await admin.connect();
    cleanups.push(() => admin.end());
    const role = `nopriv_${randomBytes(4).toString("hex")}`;
    await admin.query(`create role ${role} login`);
    await admin.query(`grant connect on database "${new URL(h.url!).pathname.slice(1)}" to ${role}`);
    cleanups.push(async () => void (await admin.query(`drop owned by ${role}; drop role ${role}`)));
    const url = new URL(h.url!);
    url.username = role;
    url.password = "";
    const attacker = new pg.Client({ connectionString: url.toString() });
    await attacker.connect();
    cleanups.push(() => attacker.end());
    // Any session may skip the commit's flush: a NOTIFY is then a round trip, not a disk write.
    await attacker.query("set synchronous_commit = off");
    const { sent, claims, elapsed } = await flood(
      () => attacker.query(`notify ${outboxStore.DUE_CHANNEL}`),
      () => enqueue("real"),
      counter,
    );
    expect(sent).toBeGreaterThan(claims);
    expect(claims).toBeLessThanOrEqual(elapsed / gap + 3);
    await until("the real job ran", () => ran.includes("real"));
    expect(ran).toEqual(["real"]);
  });

  it("a NOTIFY from Stint's own role right after a claim that found nothing claims at once, not after the gap", async () => {
    // A gap far longer than the test may wait: the job runs only if its NOTIFY is not held by the gap.
    const { counter, ran, enqueue } = await startRunner({ gap: 600_000 });
    const before = counter.claims;
    await enqueue("committed");
    await until("the committed job ran", () => ran.includes("committed"));
    expect(counter.claims).toBeGreaterThan(before);
    // Woken again the same way (after a claim that found nothing, within the gap): again at once.
    await enqueue("again");
    await until("the second job ran", () => ran.includes("again"));
    expect(ran).toEqual(["committed", "again"]);
  });

  it("a job committed after the first claim but before LISTEN took hold runs when it does, not at the next poll", async () => {
    let listening!: () => void;
    const { counter, ran, enqueue } = await startRunner({
      gap: 600_000,
      listening: new Promise<void>((resolve) => (listening = resolve)),
    });
    // Its NOTIFY is sent while nobody listens: lost.
    await enqueue("early");
    const before = counter.claims;
    listening();
    // The poll is a minute away: only a claim once LISTEN holds finds the job.
    await until("the early job ran", () => ran.includes("early"));
    expect(counter.claims).toBeGreaterThan(before);
    expect(ran).toEqual(["early"]);
  });
});
