/**
 * How the sequencer wakes (issue 14): the leader's own appends wake it at once; a node that does not hold the
 * lease sends the leader one NOTIFY after its commit (PostgreSQL), at most one per gap; the idle poll is only
 * the fallback for a lost wake, so an idle leader reads a few times a second, not forty.
 */
import { describe, expect, it } from "vitest";
import pg from "pg";
import { alice, sequencerFixture, sleep, until } from "../../testing/audit-sequencer.js";
import { ENGINES } from "../../testing/engines.js";
import { statementCounter } from "../../testing/statements.js";
import { openAppStore, type AppStore } from "../../db/index.js";
import { createBurstHold } from "../../lib/burst-hold.js";
import { systemClock } from "../../lib/clock.js";
import { loadKeyring } from "../keys/keys.service.js";
import { NO_CONTEXT } from "../authz/authz.types.js";
import { createAuditLog, type AuditLog } from "./audit.service.js";
import {
  createAuditSequencer,
  DEFAULT_POLL_MS,
  storeLease,
  storeWakes,
  type AuditSequencerOptions,
  type AuditWakes,
} from "./audit.sequencer.js";

const MINUTE = 60_000;

const event = (subject: string) => ({ action: "x", outcome: "success" as const, subject });
const never = { take: () => Promise.resolve(false), release: () => Promise.resolve() };

describe.each(ENGINES)("audit sequencer wakes on %s", (engine) => {
  const fixture = sequencerFixture();

  async function node(store: AppStore, masterKey: Uint8Array): Promise<AuditLog> {
    const keyring = await loadKeyring({ store, masterKey, clock: systemClock });
    return createAuditLog({ store, keyring, clock: systemClock, sequencing: "background" });
  }

  it("the leader's own appends wake it at once: chained with a poll of a minute, in a transaction and alone", async () => {
    const h = await fixture.harness(engine, { sequencing: "background" });
    const audit = await node(h.store, h.masterKey);
    const store = h.store;
    const sequencer = createAuditSequencer({ audit, lease: storeLease(store), holder: "a", pollMs: MINUTE });
    fixture.start(sequencer);
    await until(async () => sequencer.isLeader(), "leader");
    await store.transaction((tx) => audit.append(tx, alice, NO_CONTEXT, event("in a transaction")));
    await until(async () => (await audit.pendingStats()).count === 0, "chained");
    await audit.record(alice, NO_CONTEXT, event("alone"));
    await until(async () => (await audit.pendingStats()).count === 0, "chained");
    expect(await audit.verify()).toMatchObject({ ok: true, count: 2 });
  });

  /** A leader (poll of a minute) whose chaining passes are counted. */
  async function countedLeader(gathers: Pick<AuditSequencerOptions, "gatherMs" | "streamGatherMs" | "leaseMs">) {
    const h = await fixture.harness(engine, { sequencing: "background" });
    const audit = await node(h.store, h.masterKey);
    const count = { passes: 0 };
    const counted: typeof audit = {
      ...audit,
      chainPending: (tx, limit, fresh) => (count.passes++, audit.chainPending(tx, limit, fresh)),
    };
    const sequencer = createAuditSequencer({
      audit: counted,
      lease: storeLease(h.store),
      holder: "a",
      pollMs: MINUTE,
      ...gathers,
    });
    fixture.start(sequencer);
    await until(async () => sequencer.isLeader(), "leader");
    return { audit, count };
  }

  /** `n` commits of one event each, `gapMs` apart, then until all are chained. */
  async function streamOf(audit: AuditLog, n: number, gapMs: number) {
    for (let i = 0; i < n; i++) {
      await audit.record(alice, NO_CONTEXT, event(`read ${i}`));
      await sleep(gapMs);
    }
    await until(async () => (await audit.pendingStats()).count === 0, "chained");
  }

  it("a stream of the leader's own small commits is chained a gather window at a time, not a pass per commit", async () => {
    const { audit, count } = await countedLeader({ gatherMs: 2000 });
    await until(async () => (count.passes > 0 ? true : (await sleep(10), false)), "the first look");
    const before = count.passes;
    // Twenty commits a few milliseconds apart, as grouped secret reads commit.
    await streamOf(audit, 20, 5);
    // One pass for them all (two if the window closed between two commits), not one per commit.
    expect(count.passes - before).toBeLessThanOrEqual(2);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 20 });
  });

  it("while the leader's own commits stream its windows grow to streamGatherMs: a stream of them in one pass or two", async () => {
    const { audit, count } = await countedLeader({ gatherMs: 50, streamGatherMs: 5000 });
    // The first commit after a quiet spell: a window of gatherMs, then its pass.
    await audit.record(alice, NO_CONTEXT, event("first"));
    await until(async () => (await audit.pendingStats()).count === 0, "the first chained");
    const before = count.passes;
    // Right after that window: a stream. Twenty commits at least 10 ms apart span more than four windows of
    // gatherMs; they go in the stream's window (two if it closed between two commits), not one pass per 50 ms.
    await streamOf(audit, 20, 10);
    expect(count.passes - before).toBeLessThanOrEqual(2);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 21 });
  });

  it("commits that land while a pass writes are chained by the wake they sent, not left for the poll", async () => {
    // A pass reads the next pass's rows with its move; commits after that read are covered by the wake they
    // sent. Chaining only the rows read before them left them unchained until the idle poll (p99 lag = poll).
    // The lease is renewed every third of it, a look too: ten minutes, so that no renewal chains them either.
    const { audit } = await countedLeader({ gatherMs: 5, streamGatherMs: 5, leaseMs: 10 * MINUTE });
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 4 }, async (_, writer) => {
          for (let i = 0; i < 40; i++) await audit.record(alice, NO_CONTEXT, event(`r${round} w${writer} ${i}`));
        }),
      );
      // The poll is a minute: only the wakes can chain the last commits within this.
      await until(async () => (await audit.pendingStats()).count === 0, `round ${round} chained`, 15_000);
    }
    expect(await audit.verify()).toMatchObject({ ok: true, count: 480 });
  });

  it("a node that does not sequence sends one wake per gap however much it appends, and none for a rollback", async () => {
    const h = await fixture.harness(engine, { sequencing: "background" });
    const audit = await node(h.store, h.masterKey);
    const store = h.store;
    let sent = 0;
    const wakes: AuditWakes = {
      listen: () => Promise.reject(new Error("a node that does not sequence never listens")),
      send: () => Promise.resolve(void sent++),
    };
    const follower = createAuditSequencer({ audit, lease: never, holder: "b", wakes, wakeGapMs: MINUTE });
    fixture.start(follower);
    await store
      .transaction(async (tx) => {
        await audit.append(tx, alice, NO_CONTEXT, event("rolled back"));
        throw new Error("the change failed");
      })
      .catch(() => undefined);
    await sleep(50);
    expect(sent).toBe(0);
    for (let i = 0; i < 20; i++) {
      await store.transaction((tx) => audit.append(tx, alice, NO_CONTEXT, event(`t${i}`)));
      await audit.record(alice, NO_CONTEXT, event(`r${i}`));
    }
    await until(async () => sent > 0, "the first wake sent");
    await sleep(50);
    // The other 39 appends fall within the gap: one more wake once it ends, not one each.
    expect(sent).toBe(1);
  });

  it("a burst (a wave of expiries) holds the leader's pass, for its limit at most; without one it chains at once", async () => {
    const h = await fixture.harness(engine, { sequencing: "background" });
    const audit = await node(h.store, h.masterKey);
    const burst = createBurstHold();
    const sequencer = createAuditSequencer({
      audit,
      lease: storeLease(h.store),
      holder: "a",
      pollMs: MINUTE,
      burst,
      burstHoldMs: 1000,
    });
    fixture.start(sequencer);
    await until(async () => sequencer.isLeader(), "leader");
    // A burst that goes on and on: renewed every 50 ms.
    burst.hold(300);
    const renew = setInterval(() => burst.hold(300), 50);
    try {
      await audit.record(alice, NO_CONTEXT, event("during the burst"));
      await sleep(300);
      expect((await audit.pendingStats()).count).toBe(1);
      await until(async () => (await audit.pendingStats()).count === 0, "chained once the hold's limit is spent");
      // Chained while the burst still went on: the limit, not the burst's end, let the pass run.
      expect(burst.until()).toBeGreaterThan(Date.now());
    } finally {
      clearInterval(renew);
    }
    await until(async () => burst.until() < Date.now(), "the burst is over");
    await audit.record(alice, NO_CONTEXT, event("after the burst"));
    await until(async () => (await audit.pendingStats()).count === 0, "chained");
    expect(await audit.verify()).toMatchObject({ ok: true, count: 2 });
  });

  it(`an idle leader reads a few times a second (the poll, every ${DEFAULT_POLL_MS} ms), not at every 25 ms`, async () => {
    const h = await fixture.harness(engine, { sequencing: "background" });
    const counter = statementCounter();
    const store = counter.wrap(h.store);
    const audit = await node(store, h.masterKey);
    const sequencer = createAuditSequencer({ audit, lease: storeLease(store), holder: "a", wakes: storeWakes(store) });
    fixture.track(sequencer);
    const seconds = 2;
    const { statements } = await counter.measure(async () => {
      sequencer.start();
      await sleep(seconds * 1000);
      await sequencer.stop();
    });
    expect(sequencer.isLeader()).toBe(false);
    // Besides the poll's read of `audit_pending`: the lag read (the same table), a pass at start (another once it
    // listens: what was appended before) and the lease taken and renewed (each renewal wakes the loop once).
    // A slow machine only makes fewer: the loop waits between them. The old 25 ms poll read 80 times in 2 s.
    const polls = statements.filter((s) => s === "select audit_pending").length;
    expect(polls).toBeGreaterThan(0);
    expect(polls).toBeLessThanOrEqual((seconds * 1000) / DEFAULT_POLL_MS + 4);
    expect(statements.length - polls).toBeLessThanOrEqual(8);
  });
});

describe("audit sequencer wakes between nodes on postgres", () => {
  const fixture = sequencerFixture();

  /** Two nodes over one database: A sequences (started first), B appends. Each its own store and audit log. */
  async function twoNodes(pollMs: number) {
    const h = await fixture.harness("postgres", { sequencing: "background" });
    const storeB = await openAppStore({ databaseUrl: h.url! });
    fixture.onCleanup(() => storeB.close());
    const keyring = (store: AppStore) => loadKeyring({ store, masterKey: h.masterKey, clock: systemClock });
    const auditA = createAuditLog({ store: h.store, keyring: await keyring(h.store), clock: systemClock });
    const auditB = createAuditLog({ store: storeB, keyring: await keyring(storeB), clock: systemClock });
    const a = createAuditSequencer({
      audit: auditA,
      lease: storeLease(h.store),
      holder: "a",
      wakes: storeWakes(h.store),
      pollMs,
    });
    fixture.start(a);
    await until(async () => a.isLeader(), "A leads");
    const b = createAuditSequencer({
      audit: auditB,
      lease: storeLease(storeB),
      holder: "b",
      wakes: storeWakes(storeB),
      pollMs,
    });
    fixture.start(b);
    return { a, b, auditA, auditB, storeB, url: h.url! };
  }

  it("an event appended on a node that does not sequence is chained at once, with the leader's poll at a minute", async () => {
    const { b, auditA, auditB, storeB } = await twoNodes(MINUTE);
    await storeB.transaction((tx) => auditB.append(tx, alice, NO_CONTEXT, event("on b")));
    await auditB.record(alice, NO_CONTEXT, event("on b, alone"));
    // Well within the minute the leader would otherwise sleep: only B's NOTIFY can have woken it.
    await until(async () => (await auditA.pendingStats()).count === 0, "chained by A", 20_000);
    expect(b.isLeader()).toBe(false);
    expect((await auditA.read({})).map((e) => e.subject)).toEqual(["on b", "on b, alone"]);
    expect(await auditA.verify()).toMatchObject({ ok: true, count: 2 });
  });

  it("the leader's listening connection lost: events appended meanwhile are chained all the same", async () => {
    const { auditA, auditB, url } = await twoNodes(300);
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    fixture.onCleanup(() => admin.end());
    const listening =
      "select pid from pg_stat_activity where datname = current_database() and application_name = 'stint listen stint_audit_wake'";
    await until(async () => (await admin.query(listening)).rowCount === 1, "A listens");
    const { rows } = await admin.query<{ pid: number }>(listening);
    await admin.query("select pg_terminate_backend($1)", [rows[0]!.pid]);
    // Sent while nobody listens: this wake is lost; the poll (or the listener's return) finds the event.
    await auditB.record(alice, NO_CONTEXT, event("while A was deaf"));
    await until(async () => (await auditA.pendingStats()).count === 0, "chained by A", 20_000);
    await until(async () => (await admin.query(listening)).rowCount === 1, "A listens again");
    await auditB.record(alice, NO_CONTEXT, event("after"));
    await until(async () => (await auditA.pendingStats()).count === 0, "chained by A", 20_000);
    expect(await auditA.verify()).toMatchObject({ ok: true, count: 2 });
  });

  it("a leader that cannot listen at all polls: chained eventually", async () => {
    const h = await fixture.harness("postgres", { sequencing: "background" });
    const audit = await loadKeyring({ store: h.store, masterKey: h.masterKey, clock: systemClock }).then((keyring) =>
      createAuditLog({ store: h.store, keyring, clock: systemClock }),
    );
    const deaf: AuditWakes = {
      listen: () => Promise.reject(new Error("too many connections")),
      send: () => Promise.resolve(),
    };
    const a = createAuditSequencer({ audit, lease: storeLease(h.store), holder: "a", wakes: deaf, pollMs: 200 });
    fixture.start(a);
    await until(async () => a.isLeader(), "A leads");
    // Written as another node would: no nudge reaches A's loop.
    const other = createAuditLog({ store: h.store, keyring: h.keyring, clock: systemClock });
    await other.record(alice, NO_CONTEXT, event("from elsewhere"));
    await until(async () => (await audit.pendingStats()).count === 0, "chained by the poll");
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
  });
});

describe("a flood of wakes (any user of the database may NOTIFY stint_audit_wake)", () => {
  const fixture = sequencerFixture();

  /** A leader (its lease always held, its poll a minute) that counts its looks; `wakes` is how it is woken. */
  async function countingLeader(wakeGapMs: number) {
    let looks = 0;
    let wake: { verified: () => void; unverified: () => void } | undefined;
    const audit = {
      sequencing: "background" as const,
      chainPending: () =>
        Promise.resolve(void looks++).then(() => ({ chained: 0, rejected: 0, times: [] as string[] })),
      anyPending: () => Promise.resolve(void looks++).then(() => false),
      pendingStats: () => Promise.resolve({ count: 0, oldest: null }),
      onPending: () => undefined,
    };
    const wakes: AuditWakes = {
      listen: (verified, unverified) => {
        wake = { verified, unverified: unverified ?? verified };
        return Promise.resolve(() => Promise.resolve());
      },
      send: () => Promise.resolve(),
    };
    const always = { take: () => Promise.resolve(true), release: () => Promise.resolve() };
    fixture.start(createAuditSequencer({ audit, lease: always, holder: "a", wakes, pollMs: MINUTE, wakeGapMs }));
    await until(() => Promise.resolve(wake !== undefined), "listening");
    await sleep(50);
    return { wakes: wake!, looks: () => looks };
  }

  it("of unverified wakes (senders gone before the check) costs at most one look per gap, not a pass per wake", async () => {
    const gap = 20;
    const leader = await countingLeader(gap);
    const before = leader.looks();
    const started = Date.now();
    // A NOTIFY at every turn of the event loop: each used to start a chaining pass at once, back to back.
    while (Date.now() - started < 300) {
      leader.wakes.unverified();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const counted = leader.looks() - before;
    const elapsed = Date.now() - started;
    // A slower machine only looks less often; the bound is the gap, whatever the rate of NOTIFYs.
    expect(counted).toBeGreaterThan(0);
    expect(counted).toBeLessThanOrEqual(elapsed / gap + 3);
  });

  it("does not delay a verified wake: Stint's own wake is looked at at once, even within the gap", async () => {
    const leader = await countingLeader(MINUTE);
    // Its last look (at start) found nothing: an unverified wake waits out the gap (a minute), a verified one does not.
    const after = leader.looks();
    leader.wakes.unverified();
    await sleep(100);
    expect(leader.looks()).toBe(after);
    leader.wakes.verified();
    await until(() => Promise.resolve(leader.looks() > after), "the verified wake looked at", 10_000);
  });
});
