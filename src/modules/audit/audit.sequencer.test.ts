/**
 * The background sequencer (issue 14): business transactions write unchained events without locking
 * the head; the sequencer chains what committed. Run on both engines, in background mode on each.
 */
import { describe, expect, it } from "vitest";
import { sql } from "kysely";
import { Registry } from "prom-client";
import { ENGINES } from "../../testing/engines.js";
import { alice, sequencerFixture, sleep, until } from "../../testing/audit-sequencer.js";
import { NO_CONTEXT } from "../authz/authz.types.js";
import type { AppStore } from "../../db/index.js";
import { createAuditLog, type AuditLog } from "./audit.service.js";
import { createAuditSequencer, storeLease } from "./audit.sequencer.js";
import * as auditStore from "./audit.store.js";
import { systemClock } from "../../lib/clock.js";
import { armFailpoint, disarmFailpoints } from "../../lib/failpoints.js";
import type { Logger } from "../../lib/logger.js";

describe.each(ENGINES)("audit sequencer on %s", (engine) => {
  const fixture = sequencerFixture();

  async function setup(checkpointEvery = 50) {
    const h = await fixture.harness(engine, { checkpointEvery, sequencing: "background" });
    // Event times from the real clock, so the lag histogram means something.
    const audit = createAuditLog({
      store: h.store,
      keyring: h.keyring,
      clock: systemClock,
      checkpointEvery,
      sequencing: "background",
    });
    return { ...h, audit };
  }

  /** Starts a sequencer (its own metrics, a 10 ms poll) and waits until nothing is pending. */
  async function chainedBySequencer(audit: AuditLog, store: AppStore) {
    const registry = new Registry();
    const sequencer = fixture.start(
      createAuditSequencer({ audit, lease: storeLease(store), holder: "a", registry, pollMs: 10 }),
    );
    await until(async () => (await audit.pendingStats()).count === 0);
    return { registry, sequencer };
  }

  it("appends take no lock on the head and stay unchained until the sequencer runs", async () => {
    const { audit, store } = await setup();
    await store.transaction(async (tx) => {
      await audit.append(tx, alice, NO_CONTEXT, { action: "role.activate", outcome: "success" });
      // Another connection can move the head meanwhile: nothing here holds it.
      if (engine === "postgres") await store.transaction((other) => audit.chainPending(other).then(() => undefined));
    });
    expect(await audit.pendingStats()).toMatchObject({ count: 1 });
    expect(await store.db.selectFrom("audit_events").select("seq").execute()).toHaveLength(0);
    const { registry } = await chainedBySequencer(audit, store);
    const [event] = await store.db.selectFrom("audit_events").selectAll().execute();
    expect(event).toMatchObject({ seq: 1, action: "role.activate", actor: "alice" });
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
    const lag = await registry.getSingleMetric("stint_audit_chaining_lag_seconds")!.get();
    expect(
      (lag.values as { metricName?: string; value: number }[]).find(
        (v) => v.metricName === "stint_audit_chaining_lag_seconds_count",
      )?.value,
    ).toBe(1);
  });

  it("32 concurrent writers: every committed event chained exactly once in a gapless chain; rolled back ones never", async () => {
    const { audit, store } = await setup(100);
    const sequencer = createAuditSequencer({ audit, lease: storeLease(store), holder: "a", pollMs: 5, batch: 64 });
    fixture.start(sequencer);
    const committed: string[] = [];
    const rolledBack: string[] = [];
    await Promise.all(
      Array.from({ length: 32 }, async (_, writer) => {
        for (let i = 0; i < 12; i++) {
          const fail = i % 5 === 4;
          await store
            .transaction(async (tx) => {
              const events = await audit.append(tx, alice, NO_CONTEXT, [
                { action: "x", outcome: "success", subject: `w${writer}:${i}:a` },
                { action: "x", outcome: "success", subject: `w${writer}:${i}:b` },
              ]);
              if (fail) {
                rolledBack.push(...events.map((e) => e.id));
                throw new Error("the change failed");
              }
              return events;
            })
            .then((events) => committed.push(...events.map((e) => e.id)))
            .catch((error: Error) => {
              if (error.message !== "the change failed") throw error;
            });
        }
      }),
    );
    await until(async () => (await audit.pendingStats()).count === 0);
    const rows = await store.db.selectFrom("audit_events").select(["seq", "id"]).orderBy("seq").execute();
    expect(rows.map((r) => Number(r.seq))).toEqual(rows.map((_, i) => i + 1));
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(committed));
    expect(rows.some((r) => rolledBack.includes(r.id))).toBe(false);
    // Checkpoints at exactly every 100th event, signed by the sequencer.
    const checkpoints = await store.db.selectFrom("audit_checkpoints").select("seq").orderBy("seq").execute();
    expect(checkpoints.map((c) => Number(c.seq))).toEqual(
      Array.from({ length: Math.floor(committed.length / 100) }, (_, i) => (i + 1) * 100),
    );
    expect(await audit.verify()).toEqual({
      ok: true,
      count: committed.length,
      headSeq: committed.length,
      checkpoints: checkpoints.length,
    });
  });

  it("concurrent chaining passes (a sequencer and readers catching up) never chain an event twice", async () => {
    const { audit, store } = await setup(25);
    let writing = true;
    const chainers = Array.from({ length: 4 }, async () => {
      while (writing) await audit.chainPending(undefined, 7);
    });
    for (let i = 0; i < 60; i++) await audit.record(alice, NO_CONTEXT, [{ action: "x", outcome: "success" }]);
    writing = false;
    await Promise.all(chainers);
    await audit.catchUp();
    const rows = await store.db.selectFrom("audit_events").select(["seq", "id"]).execute();
    expect(rows).toHaveLength(60);
    expect(new Set(rows.map((r) => r.id)).size).toBe(60);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 60 });
  });

  it("a pass whose head another pass moved after its read writes nothing and runs again under the lock", async () => {
    const { audit, store } = await setup(4);
    for (let i = 0; i < 3; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    // Between this pass's read and its move, more events commit and a second chainer chains them all.
    const armed = armFailpoint("audit.sequence.before-commit", async () => {
      for (let i = 0; i < 2; i++) await audit.record(alice, NO_CONTEXT, { action: "y", outcome: "success" });
      expect((await store.transaction((tx) => audit.chainPending(tx))).chained).toBe(5);
    });
    try {
      expect(await audit.chainPending()).toMatchObject({ chained: 0, rejected: 0 });
    } finally {
      disarmFailpoints();
    }
    expect(armed.fired).toBe(1);
    const rows = await store.db.selectFrom("audit_events").select(["seq", "id", "action"]).orderBy("seq").execute();
    expect(rows.map((r) => [Number(r.seq), r.action])).toEqual([
      [1, "x"],
      [2, "x"],
      [3, "x"],
      [4, "y"],
      [5, "y"],
    ]);
    expect(new Set(rows.map((r) => r.id)).size).toBe(5);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 5, checkpoints: 1 });
  });

  it("the move refuses a head that is not the one read, a pending row that is gone or changed: nothing written", async () => {
    const { audit, store } = await setup();
    for (let i = 0; i < 2; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    const { head, rows } = await auditStore.readHeadAndPending(store.db, 10);
    const chained = rows.map((row, i) => ({ pos: row.pos, seq: i + 1, prevHash: "p", hash: `h${i + 1}` }));
    const stale = { seq: head.seq, hash: "f".repeat(64) };
    const refused = auditStore.chainMove(store.db, stale, [rows[0]!], chained.slice(0, 1), chained[0]!, []);
    await expect(refused).rejects.toMatchObject({ code: "STA01" });
    const moved = { seq: 1, hash: "h1" };
    await sql`delete from audit_pending where pos = ${rows[1]!.pos}`.execute(store.db);
    await expect(
      auditStore.chainMove(store.db, head, [rows[0]!, rows[1]!], chained, { seq: 2, hash: "h2" }, []),
    ).rejects.toThrow("audit chaining moved 1 of 2 pending events");
    // Neither wrote anything: the head, the pending row and the events are as they were.
    const headNow = async () => auditStore.readHead(store.db).then((h) => ({ seq: Number(h.seq), hash: h.hash }));
    expect(await headNow()).toEqual(head);
    expect((await auditStore.readHeadAndPending(store.db, 10)).rows.map((r) => r.pos)).toEqual([rows[0]!.pos]);
    expect(await store.db.selectFrom("audit_events").select("seq").execute()).toEqual([]);
    // A row changed since the read (another version now): refused, nothing written (docs/security.md, finding 28).
    await sql`update audit_pending set subject = 'forged' where pos = ${rows[0]!.pos}`.execute(store.db);
    await expect(
      auditStore.chainMove(store.db, head, [rows[0]!], chained.slice(0, 1), moved, []),
    ).rejects.toMatchObject({ code: "STA03" });
    expect(await headNow()).toEqual(head);
    expect(await store.db.selectFrom("audit_events").select("seq").execute()).toEqual([]);
    const [now] = (await auditStore.readHeadAndPending(store.db, 10)).rows;
    await auditStore.chainMove(store.db, head, [now!], chained.slice(0, 1), moved, []);
    expect(await headNow()).toEqual(moved);
  });

  it("a row a database writer slips into the pending table is not chained as what it claims, and the chain says so", async () => {
    const { audit, store } = await setup();
    await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    // The attacker copies a genuine row's MAC onto a forged event (approval by someone who never approved).
    await sql`insert into audit_pending (id, time, actor, action, outcome, details, mac)
      select '0190d000-0000-7000-8000-0000000000ff', now(), 'carol', 'request.approve', 'success', '{}', mac
      from audit_pending limit 1`.execute(store.db);
    const { registry, sequencer } = await chainedBySequencer(audit, store);
    const events = await audit.read({});
    expect(events.map((e) => e.action)).toEqual(["x", "audit.pending_rejected"]);
    expect(events.some((e) => e.id === "0190d000-0000-7000-8000-0000000000ff" || e.actor === "carol")).toBe(false);
    expect(events[1]).toMatchObject({
      actor: "system:audit",
      outcome: "failed",
      details: { claimedId: "0190d000-0000-7000-8000-0000000000ff", claimedAction: "request.approve" },
    });
    const rejected = await registry.getSingleMetric("stint_audit_rejected_events_total")!.get();
    expect(rejected.values[0]?.value).toBe(1);
    // Changing a genuine pending row before it is chained is caught the same way. The sequencer is stopped
    // meanwhile: running, it could chain the row before the change (a race the test would lose at random).
    await sequencer.stop();
    await audit.record(alice, NO_CONTEXT, { action: "secret.read", outcome: "success", subject: "secret:db" });
    await sql`update audit_pending set subject = 'secret:other'`.execute(store.db);
    const again = createAuditSequencer({ audit, lease: storeLease(store), holder: "a", registry, pollMs: 10 });
    fixture.start(again);
    await until(async () => (await audit.pendingStats()).count === 0);
    expect((await audit.read({ afterSeq: 2 })).map((e) => e.action)).toEqual(["audit.pending_rejected"]);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 3 });
  });

  it("one sequencer at a time; when the holder stops renewing, another takes over within the lease", async () => {
    const { audit, store } = await setup();
    const lease = storeLease(store);
    // A's lease calls hang once `frozen` (a node that froze or died holding the lease).
    let frozen = false;
    const frozenLease = {
      take: (holder: string, ttl: number) => (frozen ? new Promise<boolean>(() => undefined) : lease.take(holder, ttl)),
      release: (holder: string) => (frozen ? Promise.resolve() : lease.release(holder)),
    };
    const a = createAuditSequencer({ audit, lease: frozenLease, holder: "a", pollMs: 10, leaseMs: 600 });
    a.start();
    await until(async () => a.isLeader());
    const b = createAuditSequencer({ audit, lease, holder: "b", pollMs: 10, leaseMs: 600 });
    fixture.start(b);
    await sleep(700);
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    expect(await auditStore.takeLease(store.db, "c", 600)).toBe(false);
    frozen = true;
    const frozeAt = Date.now();
    await until(async () => b.isLeader(), "condition", 10_000);
    expect(Date.now() - frozeAt).toBeLessThan(3_000);
    await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    await until(async () => (await audit.pendingStats()).count === 0);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
    // A stuck in its lease call never stops; it is abandoned like a dead node.
    void a.stop();
  });

  it("raises the lag alert on every node when nobody chains (the lease holder died)", async () => {
    const { audit, store } = await setup();
    // A holder that died with a long lease: nobody chains until it runs out.
    expect(await auditStore.takeLease(store.db, "dead-node", 60_000)).toBe(true);
    await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    const registry = new Registry();
    const errors: string[] = [];
    const logger = {
      info: () => undefined,
      warn: () => undefined,
      error: (...args: unknown[]) => void errors.push(String(args[1])),
    } as unknown as Pick<Logger, "info" | "warn" | "error">;
    const b = createAuditSequencer({
      audit,
      lease: storeLease(store),
      holder: "b",
      registry,
      logger,
      pollMs: 10,
      alertAfterMs: 1000,
    });
    fixture.start(b);
    const alerts = async () => (await registry.getSingleMetric("stint_audit_lag_alerts_total")!.get()).values[0]?.value;
    await until(async () => (await alerts()) === 1, "condition", 10_000);
    expect(b.isLeader()).toBe(false);
    expect(errors).toContain("audit events are waiting longer than allowed to be chained");
    const age = await registry.getSingleMetric("stint_audit_unchained_age_seconds")!.get();
    expect(age.values[0]!.value).toBeGreaterThanOrEqual(1);
    const waiting = await registry.getSingleMetric("stint_audit_unchained_events")!.get();
    expect(waiting.values[0]!.value).toBe(1);
  });

  it("verify covers what committed before it was called and reports what still waits", async () => {
    const { audit, store } = await setup();
    for (let i = 0; i < 3; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    expect(await audit.verify()).toEqual({ ok: true, count: 3, headSeq: 3, checkpoints: 0 });
    // An event committed while verify runs: chained next time, counted as pending now.
    let release!: () => void;
    const held = store.transaction(async (tx) => {
      await audit.append(tx, alice, NO_CONTEXT, { action: "y", outcome: "success" });
      await new Promise<void>((resolve) => (release = resolve));
    });
    await sleep(50);
    if (engine === "postgres") {
      // Uncommitted: invisible to verify, neither chained nor counted.
      expect(await audit.verify()).toMatchObject({ ok: true, count: 3 });
    }
    release();
    await held;
    const pendingNow = await audit.pendingStats();
    expect(pendingNow.count).toBe(1);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 4 });
  });
});

describe("a store that cuts long chaining passes", () => {
  it("a pass that cannot commit is retried half as large, so the backlog drains (it never did at 2000 a pass)", async () => {
    let pending = 300;
    const asked: number[] = [];
    const audit = {
      sequencing: "background" as const,
      // Passes of more than 100 events outlive the store's connection: they fail, and nothing is chained.
      chainPending: (_tx?: unknown, limit = 2000) => {
        asked.push(limit);
        if (limit > 100) return Promise.reject(new Error("Connection terminated unexpectedly"));
        const chained = Math.min(limit, pending);
        pending -= chained;
        return Promise.resolve({ chained, rejected: 0, times: [] as string[] });
      },
      anyPending: () => Promise.resolve(pending > 0),
      pendingStats: () => Promise.resolve({ count: pending, oldest: null }),
      onPending: () => undefined,
    };
    const sequencer = createAuditSequencer({
      audit,
      lease: { take: () => Promise.resolve(true), release: () => Promise.resolve() },
      holder: "a",
      pollMs: 5,
    });
    sequencer.start();
    try {
      const deadline = Date.now() + 30_000;
      while (pending > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await sequencer.stop();
    }
    expect(pending).toBe(0);
    expect(asked.slice(0, 6)).toEqual([2000, 1000, 500, 250, 125, 62]);
  }, 40_000);
});
