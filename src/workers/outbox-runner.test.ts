import { afterEach, describe, expect, it } from "vitest";
import { Registry } from "prom-client";
import { openAppStore, type AppStore } from "../db/index.js";
import { ENGINES } from "../testing/engines.js";
import { auditHarness } from "../testing/harness.js";
import { createOutboxService, outboxStore, type OutboxHandlers } from "../modules/outbox/index.js";
import { createOutboxRunner, type OutboxRunnerOptions } from "./outbox-runner.js";

const LEASE_MS = 30_000;
const BACKOFF = { baseMs: 1_000, capMs: 60_000 };

async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
}

describe.each(ENGINES)("outbox runner on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  const extraStores: AppStore[] = [];
  afterEach(async () => {
    for (const s of extraStores.splice(0)) await s.close();
    await h?.cleanup();
    h = undefined;
  });

  async function setup() {
    h = await auditHarness(engine);
    const outbox = createOutboxService({ store: h.store, clock: h.clock, audit: h.audit });
    const harness = h;
    const enqueue = (
      kind: string,
      idempotencyKey: string,
      payload: Record<string, unknown> = {},
      maxAttempts?: number,
    ) => harness.store.transaction((tx) => outbox.enqueue(tx, { kind, idempotencyKey, payload, maxAttempts }));
    const runner = (handlers: OutboxHandlers, options: Partial<OutboxRunnerOptions> = {}) => {
      const registry = options.registry ?? new Registry();
      return {
        registry,
        runner: createOutboxRunner({
          store: harness.store,
          clock: harness.clock,
          audit: harness.audit,
          handlers,
          registry,
          batchSize: 10,
          leaseMs: LEASE_MS,
          pollMs: 5,
          random: () => 0.999,
          backoff: BACKOFF,
          ...options,
        }),
      };
    };
    const job = async (key: string) => (await outboxStore.findByIdempotencyKey(harness.store.db, key))!;
    return { ...h, outbox, enqueue, runner, job };
  }

  it("runs a due row once, passes payload and attempt, and marks it done", async () => {
    const { enqueue, runner, job, clock } = await setup();
    await enqueue("notify", "notify:1", { to: "ops" });
    await enqueue("notify", "notify:later", {}, undefined);
    const calls: unknown[] = [];
    const { runner: r, registry } = runner({
      notify: async (payload, ctx) => {
        calls.push([payload, ctx.idempotencyKey, ctx.attempt]);
      },
    });
    expect(await r.runOnce()).toMatchObject({ claimed: 2, done: 2 });
    expect(calls).toContainEqual([{ to: "ops" }, "notify:1", 1]);
    expect(await job("notify:1")).toMatchObject({
      status: "done",
      attempts: 1,
      doneAt: clock.now(),
      lockedUntil: null,
    });
    expect(await r.runOnce()).toMatchObject({ claimed: 0 });
    expect(await metricValue(registry, "stint_outbox_executed_total")).toBe(2);
  });

  it("a handler that fails twice then succeeds runs 3 times, waiting longer each time", async () => {
    const { enqueue, runner, job, clock } = await setup();
    await enqueue("provision", "provision:g1", { grantId: "g1" });
    let calls = 0;
    const { runner: r, registry } = runner({
      provision: async () => {
        calls += 1;
        if (calls < 3) throw new Error(`target refused (call ${calls})`);
      },
    });

    const start = clock.now().getTime();
    expect(await r.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    const afterFirst = await job("provision:g1");
    expect(afterFirst).toMatchObject({ status: "pending", attempts: 1, lastError: "target refused (call 1)" });
    const firstDelay = afterFirst.nextAttemptAt.getTime() - start;
    expect(firstDelay).toBeGreaterThan(0);
    expect(firstDelay).toBeLessThanOrEqual(BACKOFF.baseMs);

    // Not due yet: nothing is claimed.
    clock.advance(firstDelay - 1);
    expect(await r.runOnce()).toMatchObject({ claimed: 0 });
    clock.advance(1);
    expect(await r.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    const afterSecond = await job("provision:g1");
    const secondDelay = afterSecond.nextAttemptAt.getTime() - clock.now().getTime();
    expect(secondDelay).toBeGreaterThan(firstDelay);
    expect(afterSecond.nextAttemptAt.getTime()).toBeGreaterThan(afterFirst.nextAttemptAt.getTime());

    clock.advance(secondDelay);
    expect(await r.runOnce()).toMatchObject({ claimed: 1, done: 1 });
    expect(calls).toBe(3);
    expect(await job("provision:g1")).toMatchObject({ status: "done", attempts: 3, lastError: null });
    expect(await metricValue(registry, "stint_outbox_failures_total", { kind: "provision" })).toBe(2);
    expect(await metricValue(registry, "stint_outbox_executed_total")).toBe(1);
  });

  it("an attempt that lost its store connection is retried within the first backoff step, whatever its number (issue 13)", async () => {
    const { enqueue, runner, job, clock } = await setup();
    await enqueue("revoke", "revoke:g1", { grantId: "g1" });
    let calls = 0;
    const { runner: r } = runner({
      revoke: async () => {
        calls += 1;
        // What a statement of the handler's gets when pg_terminate_backend or a restart ends its connection.
        if (calls <= 4)
          throw Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
      },
    });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      expect(await r.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
      const row = await job("revoke:g1");
      expect(row).toMatchObject({ status: "pending", attempts: attempt });
      delays.push(row.nextAttemptAt.getTime() - clock.now().getTime());
      clock.advance(delays.at(-1)!);
    }
    // A failing target would wait up to 1, 2, 4, 8 s (here, with the jitter at its top, just under each).
    expect(delays.filter((ms) => ms > BACKOFF.baseMs)).toEqual([]);
    expect(await r.runOnce()).toMatchObject({ claimed: 1, done: 1 });
    expect(await job("revoke:g1")).toMatchObject({ status: "done", attempts: 5 });
  });

  it("dead-letters after max attempts, with an audit event in the chain and a metric", async () => {
    const { enqueue, runner, job, clock, audit } = await setup();
    await enqueue("revoke", "revoke:g9", { grantId: "g9" }, 3);
    let calls = 0;
    const { runner: r, registry } = runner({
      revoke: async () => {
        calls += 1;
        throw new Error("ldap down: bind password=hunter2 rejected");
      },
    });
    for (let i = 0; i < 3; i++) {
      await r.runOnce();
      clock.advance(BACKOFF.capMs);
    }
    expect(await r.runOnce()).toMatchObject({ claimed: 0 });
    expect(calls).toBe(3);
    const dead = await job("revoke:g9");
    expect(dead).toMatchObject({ status: "dead", attempts: 3, lockedUntil: null });
    expect(dead.lastError).toBe("ldap down: bind password=[redacted] rejected");

    const events = await audit.read({});
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      actor: "system:system",
      action: "outbox.dead_lettered",
      outcome: "failed",
      subject: `outbox:${dead.id}`,
      reason: dead.lastError,
      details: { kind: "revoke", idempotencyKey: "revoke:g9", attempts: 3 },
    });
    expect(JSON.stringify(events)).not.toContain("hunter2");
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
    expect(await metricValue(registry, "stint_outbox_dead_letters_total")).toBe(1);
    expect(await metricValue(registry, "stint_outbox_failures_total", { kind: "revoke" })).toBe(3);
    expect(await registry.metrics()).toMatch(/^stint_outbox_dead_letters_total 1$/m);
  });

  it("an unknown kind fails each attempt and eventually dead-letters", async () => {
    const { enqueue, runner, job, clock } = await setup();
    await enqueue("nope", "nope:1", {}, 2);
    await enqueue("constructor", "proto:1", {}, 1);
    const { runner: r } = runner({});
    expect(await r.runOnce()).toMatchObject({ claimed: 2, retried: 1, dead: 1 });
    expect((await job("nope:1")).lastError).toBe('no handler for outbox kind "nope"');
    expect(await job("proto:1")).toMatchObject({
      status: "dead",
      lastError: 'no handler for outbox kind "constructor"',
    });
    clock.advance(BACKOFF.capMs);
    expect(await r.runOnce()).toMatchObject({ claimed: 1, dead: 1 });
    expect(await job("nope:1")).toMatchObject({ status: "dead", attempts: 2 });
  });

  it("reclaims a row whose worker died, and fences the dead worker's late outcome", async () => {
    const { enqueue, runner, job, clock, store } = await setup();
    await enqueue("notify", "notify:orphan", { n: 1 });
    // A worker claims the row and then disappears.
    const [claimed] = await outboxStore.claimDue(store.db, {
      now: clock.now(),
      leaseUntil: new Date(clock.now().getTime() + LEASE_MS),
      limit: 10,
    });
    expect(claimed).toMatchObject({ status: "running", attempts: 1 });

    const attempts: number[] = [];
    const { runner: r } = runner({ notify: async (_p, ctx) => void attempts.push(ctx.attempt) });
    expect(await r.runOnce()).toMatchObject({ claimed: 0 }); // lease still held
    clock.advance(LEASE_MS + 1);
    expect(await r.runOnce()).toMatchObject({ claimed: 1, done: 1 });
    expect(attempts).toEqual([2]);
    expect(await job("notify:orphan")).toMatchObject({ status: "done", attempts: 2 });

    // The first worker wakes up and reports: its writes match nothing.
    expect(await outboxStore.markDone(store.db, { id: claimed!.id, attempt: 1, now: clock.now() })).toBe(false);
    expect(
      await outboxStore.markRetry(store.db, {
        id: claimed!.id,
        attempt: 1,
        nextAttemptAt: clock.now(),
        lastError: "late",
      }),
    ).toBe(false);
    expect(await job("notify:orphan")).toMatchObject({ status: "done", attempts: 2, lastError: null });
  });

  it("a row whose last allowed attempt lost its lease is dead-lettered, not run again", async () => {
    const { enqueue, runner, job, clock, store, audit } = await setup();
    await enqueue("poison", "poison:1", {}, 1);
    await outboxStore.claimDue(store.db, {
      now: clock.now(),
      leaseUntil: new Date(clock.now().getTime() + LEASE_MS),
      limit: 1,
    });
    clock.advance(LEASE_MS + 1);
    let ran = false;
    const { runner: r } = runner({ poison: async () => void (ran = true) });
    expect(await r.runOnce()).toMatchObject({ claimed: 1, dead: 1 });
    expect(ran).toBe(false);
    expect(await job("poison:1")).toMatchObject({ status: "dead" });
    expect((await audit.read({})).map((e) => e.action)).toEqual(["outbox.dead_lettered"]);
  });

  it("a handler that overruns its deadline fails the attempt and sees its signal aborted", async () => {
    const { enqueue, runner, job } = await setup();
    await enqueue("slow", "slow:1");
    let aborted = false;
    const { runner: r } = runner(
      {
        slow: (_p, ctx) =>
          new Promise<void>((resolve) => {
            ctx.signal.addEventListener("abort", () => {
              aborted = true;
              resolve();
            });
          }),
      },
      { handlerTimeoutMs: 50 },
    );
    expect(await r.runOnce()).toMatchObject({ claimed: 1, retried: 1 });
    expect(aborted).toBe(true);
    expect((await job("slow:1")).lastError).toBe("HandlerTimeout: the handler did not finish within 50 ms");
  });

  it("two runners on separate connections never run the same row twice", async () => {
    const { runner, store, url, clock } = await setup();
    const total = 200;
    await store.transaction(async (tx) => {
      const outbox = createOutboxService({ store, clock, audit: h!.audit });
      for (let i = 0; i < total; i++)
        await outbox.enqueue(tx, { kind: "work", idempotencyKey: `work:${i}`, payload: { i } });
    });
    // On PostgreSQL the second runner gets a store (and pool) of its own, like another node.
    const otherStore = url ? await openAppStore({ databaseUrl: url }) : store;
    if (url) extraStores.push(otherStore);

    const seen: number[] = [];
    const byRunner = [0, 0];
    const handlers = (who: 0 | 1): OutboxHandlers => ({
      work: async (payload) => {
        seen.push(payload.i as number);
        byRunner[who]! += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
      },
    });
    const a = runner(handlers(0), { batchSize: 7 }).runner;
    const b = runner(handlers(1), { batchSize: 7, store: otherStore }).runner;
    const drain = async (r: typeof a) => {
      while ((await r.runOnce()).claimed > 0);
    };
    await Promise.all([drain(a), drain(b), drain(a), drain(b)]);

    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    if (engine === "postgres") expect(Math.min(...byRunner)).toBeGreaterThan(0);
    const states = await store.db.selectFrom("outbox").select(["status", "attempts"]).distinct().execute();
    expect(states).toEqual([{ status: "done", attempts: 1 }]);
  });

  it("start polls until stopped, and stop waits for the work in flight", async () => {
    const { enqueue, runner, job } = await setup();
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started = false;
    const { runner: r } = runner({
      slow: async () => {
        started = true;
        await gate;
      },
      quick: async () => undefined,
    });
    r.start();
    r.start(); // idempotent
    await enqueue("quick", "quick:1");
    await enqueue("slow", "slow:1");
    await expect.poll(() => started, { timeout: 5_000 }).toBe(true);
    let stopped = false;
    const stopping = r.stop().then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(await job("slow:1")).toMatchObject({ status: "done" });
    expect(await job("quick:1")).toMatchObject({ status: "done" });
  });

  it("a started runner wakes when a due job commits, not at its next poll", async () => {
    const { enqueue, runner, store, job } = await setup();
    let ranAt = 0;
    const { runner: r } = runner({ prompt: async () => void (ranAt = Date.now()) }, { pollMs: 60_000 });
    r.start();
    // The first pass finds nothing; the runner then sleeps for a minute. Give its LISTEN a moment.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const committedAt = Date.now();
    await enqueue("prompt", "prompt:1");
    await expect.poll(() => ranAt, { timeout: 5_000 }).toBeGreaterThan(0);
    expect(ranAt - committedAt).toBeLessThan(1000);
    // A job that becomes due later is not run now.
    await store.transaction(async (tx) => {
      const outbox = createOutboxService({ store, clock: h!.clock, audit: h!.audit });
      await outbox.enqueue(tx, {
        kind: "prompt",
        idempotencyKey: "prompt:later",
        payload: {},
        notBefore: new Date(h!.clock.now().getTime() + 3_600_000),
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await job("prompt:later")).toMatchObject({ status: "pending" });
    await r.stop();
  });

  it("runAfterCommit: written claimed by this node's started runner and run at commit; rolled back, nothing runs and the slot comes back; a full lane or no started runner enqueues it as usual", async () => {
    const { outbox, store, runner, job } = await setup();
    const ran: string[] = [];
    let hold: Promise<void> | undefined;
    const { runner: r } = runner(
      {
        provision: async (_payload, ctx) => {
          ran.push(`${ctx.idempotencyKey}#${ctx.attempt}`);
          await hold;
        },
      },
      { pollMs: 60_000, laneConcurrency: 1 },
    );
    /** Enqueues `key` and returns the row as the enqueuing transaction sees it, before its commit. */
    const add = (key: string, rollBack = false) =>
      store.transaction(async (tx) => {
        await outbox.enqueue(tx, {
          kind: "provision",
          idempotencyKey: key,
          payload: {},
          lane: "target:a",
          runAfterCommit: true,
        });
        const row = await outboxStore.findByIdempotencyKey(tx, key);
        if (rollBack) throw new Error("rolled back");
        return row;
      });
    // No started runner on this node: an ordinary pending row, for any runner to claim.
    expect(await add("p:0")).toMatchObject({ status: "pending", attempts: 0 });
    await r.runOnce();
    r.start();
    const before = await add("p:1");
    expect(before).toMatchObject({ status: "running", attempts: 1 });
    expect(before!.lockedUntil!.getTime()).toBe(h!.clock.now().getTime() + LEASE_MS);
    await expect.poll(async () => (await job("p:1")).status, { timeout: 5_000 }).toBe("done");
    expect(await job("p:1")).toMatchObject({ attempts: 1 });
    // Rolled back: no row, nothing run, and the lane's only slot is free again for the next one.
    await expect(add("p:2", true)).rejects.toThrow("rolled back");
    expect(await outboxStore.findByIdempotencyKey(store.db, "p:2")).toBeUndefined();
    let release!: () => void;
    hold = new Promise<void>((resolve) => (release = resolve));
    expect(await add("p:3")).toMatchObject({ status: "running", attempts: 1 });
    await expect.poll(() => ran.includes("p:3#1"), { timeout: 5_000 }).toBe(true);
    // Its lane is full (laneConcurrency 1) while p:3 runs: the next is pending, not claimed beyond the cap.
    expect(await add("p:4")).toMatchObject({ status: "pending", attempts: 0 });
    release();
    hold = undefined;
    await expect.poll(async () => (await job("p:4")).status, { timeout: 5_000 }).toBe("done");
    await r.stop();
    expect(ran).toEqual(["p:0#1", "p:1#1", "p:3#1", "p:4#1"]);
  });

  it("keeps claiming while one lane hangs: another lane's jobs finish at once, and a lane runs at most laneConcurrency at a time (issue 13 finding 3)", async () => {
    const { outbox, store, runner, job } = await setup();
    const until = async (what: string, check: () => Promise<boolean> | boolean, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };
    const add = (key: string, kind: string, lane: string) =>
      store.transaction((tx) => outbox.enqueue(tx, { kind, idempotencyKey: key, payload: {}, lane }));
    for (let i = 0; i < 6; i++) await add(`slow:${i}`, "revoke_slow", "target:slow");
    const hanging: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { runner: r } = runner(
      {
        revoke_slow: async (_payload, ctx) => {
          hanging.push(ctx.idempotencyKey);
          await gate;
        },
        revoke_fast: async () => undefined,
      },
      { laneConcurrency: 2, pollMs: 50 },
    );
    r.start();
    try {
      await until("the slow target's calls hang", () => hanging.length >= 2, 5_000);
      // Jobs for a healthy target, queued while the slow target's calls hang.
      const fast = ["fast:0", "fast:1", "fast:2", "fast:3"];
      for (const key of fast) await add(key, "revoke_fast", "target:fast");
      const started = Date.now();
      await until(
        "the healthy target's jobs finish",
        async () => (await Promise.all(fast.map(job))).every((j) => j.status === "done"),
        2_000,
      );
      expect(Date.now() - started).toBeLessThan(2_000);
      // The slow lane runs at most two at once; the rest wait unclaimed (their lease is not ticking).
      expect(hanging).toHaveLength(2);
      const slow = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => job(`slow:${i}`)));
      expect(slow.filter((j) => j.status === "running")).toHaveLength(2);
      expect(slow.filter((j) => j.status === "pending")).toHaveLength(4);
    } finally {
      release();
      await r.stop();
    }
    // Once the target answers, the rest of its lane runs too.
    r.start();
    try {
      await until(
        "the slow target's remaining jobs finish",
        async () =>
          (await Promise.all([0, 1, 2, 3, 4, 5].map((i) => job(`slow:${i}`)))).every((j) => j.status === "done"),
        5_000,
      );
    } finally {
      await r.stop();
    }
  });

  it("exposes depth per kind and the age of the oldest pending row at /metrics", async () => {
    const { enqueue, runner, clock, store } = await setup();
    const { registry } = runner({});
    expect(await metricValue(registry, "stint_outbox_oldest_age_seconds")).toBe(0);
    await enqueue("notify", "n:1");
    clock.advance(90_000);
    await enqueue("notify", "n:2");
    await enqueue("revoke", "r:1");
    await store.db.updateTable("outbox").set({ status: "done" }).where("idempotency_key", "=", "r:1").execute();
    clock.advance(10_000);

    const text = await registry.metrics();
    expect(text).toMatch(/^stint_outbox_depth\{kind="notify"\} 2$/m);
    expect(text).not.toMatch(/kind="revoke"/);
    expect(text).toMatch(/^stint_outbox_oldest_age_seconds 100$/m);

    // A second runner on the same registry shares the metrics instead of failing to register.
    expect(() => runner({}, { registry })).not.toThrow();
  });
});
