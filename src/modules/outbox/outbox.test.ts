import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { sql } from "kysely";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import { NO_CONTEXT, SYSTEM, type Actor } from "../authz/authz.types.js";
import {
  backoffCeilingMs,
  backoffMs,
  decideAfterFailure,
  DEFAULT_BACKOFF,
  safeErrorMessage,
  assertBackoffPolicy,
} from "./outbox.rules.js";
import { createOutboxService } from "./outbox.service.js";
import * as outboxStore from "./outbox.store.js";
import type { Alongside } from "./outbox.types.js";

const admin: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000001",
  name: "ada",
  principalKind: "user",
  roles: ["admin"],
};
const bob: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000002",
  name: "bob",
  principalKind: "user",
  roles: ["user"],
};

/** A seeded PRNG (mulberry32) so statistical checks are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const policyArb = fc
  .record({ baseMs: fc.integer({ min: 1, max: 60_000 }), extra: fc.integer({ min: 0, max: 3_600_000 }) })
  .map(({ baseMs, extra }) => ({ baseMs, capMs: baseMs + extra }));
const randomValueArb = fc.oneof(
  fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  fc.constantFrom(0, 1, -0.5, 7, Number.NaN, Number.POSITIVE_INFINITY),
);

describe("outbox rules", () => {
  it("backoff is a whole number of ms, never negative and never above the cap", () => {
    fc.assert(
      fc.property(fc.integer({ min: -5, max: 10_000 }), policyArb, randomValueArb, (attempt, policy, r) => {
        const delay = backoffMs(attempt, policy, () => r);
        expect(Number.isInteger(delay)).toBe(true);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThanOrEqual(policy.capMs);
        expect(delay).toBeLessThanOrEqual(backoffCeilingMs(attempt, policy));
      }),
    );
  });

  it("for the same random draw, a later attempt never waits less (so the mean grows)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        policyArb,
        fc.double({ min: 0, max: 1, noNaN: true }),
        (n, policy, r) => {
          expect(backoffMs(n + 1, policy, () => r)).toBeGreaterThanOrEqual(backoffMs(n, policy, () => r));
          expect(backoffCeilingMs(n + 1, policy)).toBeGreaterThanOrEqual(backoffCeilingMs(n, policy));
        },
      ),
    );
  });

  it("the mean delay doubles per attempt until the cap, and jitter spreads the whole range", () => {
    const policy = { baseMs: 1_000, capMs: 60_000 };
    const random = seeded(42);
    const mean = (attempt: number) => {
      let sum = 0;
      for (let i = 0; i < 4_000; i++) sum += backoffMs(attempt, policy, random);
      return sum / 4_000;
    };
    const means = [1, 2, 3, 4, 5, 6, 7, 10].map(mean);
    // Expected: half the ceiling (500, 1000, 2000, … capped at 30000).
    for (let i = 1; i < 6; i++) expect(means[i]!).toBeGreaterThan(means[i - 1]! * 1.7);
    expect(means.at(-1)!).toBeGreaterThan(27_000);
    expect(means.at(-1)!).toBeLessThan(33_000);
    const samples = Array.from({ length: 1_000 }, () => backoffMs(10, policy, random));
    expect(Math.min(...samples)).toBeLessThan(3_000);
    expect(Math.max(...samples)).toBeGreaterThan(57_000);
  });

  it("retries until the attempts are used up, then dead-letters", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 50 }),
        policyArb,
        (attempts, maxAttempts, policy) => {
          const now = new Date("2026-03-01T09:00:00Z");
          const decision = decideAfterFailure({ attempts, maxAttempts, now, policy, random: () => 0.5 });
          if (attempts >= maxAttempts) {
            expect(decision).toEqual({ status: "dead" });
          } else {
            expect(decision.status).toBe("pending");
            if (decision.status !== "pending") return;
            expect(decision.nextAttemptAt.getTime() - now.getTime()).toBe(decision.delayMs);
            expect(decision.delayMs).toBeLessThanOrEqual(policy.capMs);
          }
        },
      ),
    );
  });

  it("rejects policies that would make nonsense delays", () => {
    expect(() => assertBackoffPolicy(DEFAULT_BACKOFF)).not.toThrow();
    expect(() => assertBackoffPolicy({ baseMs: 0, capMs: 10 })).toThrow(RangeError);
    expect(() => assertBackoffPolicy({ baseMs: 100, capMs: 10 })).toThrow(RangeError);
    expect(() => assertBackoffPolicy({ baseMs: 100, capMs: Number.NaN })).toThrow(RangeError);
  });

  it("stores a short single-line error with credential-shaped parts removed", () => {
    const leaks = [
      new Error("connect ECONNREFUSED postgres://admin:hunter2@db.internal:5432/app"),
      new Error('bad response {"token": "hunter2", "ok": false}'),
      new Error("login failed: password=hunter2 user=root"),
      new Error("401 for Authorization: Bearer hunter2.abc"),
      new Error("-----BEGIN OPENSSH PRIVATE KEY-----\nhunter2\n-----END OPENSSH PRIVATE KEY-----"),
      "jwt eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJodW50ZXIyIn0.c2ln rejected api_key: hunter2",
    ];
    for (const leak of leaks) {
      const message = safeErrorMessage(leak);
      expect(message).not.toMatch(/hunter2|eyJzdWIi/);
      expect(message).not.toMatch(/\n/);
    }
    expect(safeErrorMessage(new TypeError("boom"))).toBe("TypeError: boom");
    expect(safeErrorMessage(new Error(`password authentication failed for user "x"`))).toBe(
      `password authentication failed for user "x"`,
    );
    expect(safeErrorMessage(new Error("x".repeat(5_000)))).toHaveLength(200);
    expect(safeErrorMessage({ some: "object" })).toBe("a non-error value was thrown");
    expect(safeErrorMessage(new Error(""))).toBe("failed without a message");
  });
});

describe.each(ENGINES)("outbox service on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  async function setup() {
    h = await auditHarness(engine);
    const outbox = createOutboxService({ store: h.store, clock: h.clock, audit: h.audit });
    return { ...h, outbox };
  }

  it("enqueue commits with the caller's transaction and vanishes with its rollback", async () => {
    const { store, outbox, clock } = await setup();
    await expect(
      store.transaction(async (tx) => {
        await tx
          .insertInto("groups")
          .values({ id: crypto.randomUUID(), name: "ops", created_at: clock.now() })
          .execute();
        expect(await outbox.enqueue(tx, { kind: "notify", idempotencyKey: "notify:1", payload: { to: "ops" } })).toBe(
          true,
        );
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    expect(await store.db.selectFrom("outbox").selectAll().execute()).toEqual([]);

    await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "notify", idempotencyKey: "notify:1", payload: { to: "ops" } }),
    );
    const job = await outboxStore.findByIdempotencyKey(store.db, "notify:1");
    expect(job).toMatchObject({
      kind: "notify",
      payload: { to: "ops" },
      status: "pending",
      attempts: 0,
      maxAttempts: 10,
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
      lastError: null,
    });
  });

  it("a write carried alongside the job's INSERT commits with it, in one statement, and rolls back with it", async () => {
    const { store, outbox, clock } = await setup();
    const id = crypto.randomUUID();
    await store.db.insertInto("groups").values({ id, name: "ops", created_at: clock.now() }).execute();
    const rename =
      (name: string): Alongside =>
      (db) =>
        db.updateTable("groups").set({ name }).where("id", "=", id);
    const nameNow = async () =>
      (await store.db.selectFrom("groups").select("name").where("id", "=", id).executeTakeFirstOrThrow()).name;
    await expect(
      store.transaction(async (tx) => {
        await outbox.enqueue(tx, { kind: "notify", idempotencyKey: "notify:a", payload: {}, alongside: rename("x") });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow("the change failed");
    expect(await nameNow()).toBe("ops");
    expect(await store.db.selectFrom("outbox").selectAll().execute()).toEqual([]);
    const written = await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "notify", idempotencyKey: "notify:a", payload: {}, alongside: rename("ops-2") }),
    );
    expect(written).toBe(true);
    expect(await nameNow()).toBe("ops-2");
    expect(await outboxStore.findByIdempotencyKey(store.db, "notify:a")).toMatchObject({ status: "pending" });
    // The key existed: no second row, and the carried write still runs (it is the caller's, not the job's).
    const again = await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "notify", idempotencyKey: "notify:a", payload: {}, alongside: rename("ops-3") }),
    );
    expect(again).toBe(false);
    expect(await nameNow()).toBe("ops-3");
    expect(await store.db.selectFrom("outbox").selectAll().execute()).toHaveLength(1);
  });

  it("a duplicate idempotency key inserts once and keeps the first payload", async () => {
    const { store, outbox } = await setup();
    const first = await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "revoke", idempotencyKey: "revoke:g1", payload: { n: 1 }, maxAttempts: 3 }),
    );
    const second = await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "revoke", idempotencyKey: "revoke:g1", payload: { n: 2 } }),
    );
    // Within one transaction too.
    const third = await store.transaction(async (tx) => {
      await outbox.enqueue(tx, { kind: "revoke", idempotencyKey: "revoke:g2", payload: {} });
      return outbox.enqueue(tx, { kind: "revoke", idempotencyKey: "revoke:g2", payload: {} });
    });
    expect([first, second, third]).toEqual([true, false, false]);
    const rows = await store.db.selectFrom("outbox").select(["idempotency_key", "payload", "max_attempts"]).execute();
    expect(rows.sort((a, b) => a.idempotency_key.localeCompare(b.idempotency_key))).toEqual([
      { idempotency_key: "revoke:g1", payload: { n: 1 }, max_attempts: 3 },
      { idempotency_key: "revoke:g2", payload: {}, max_attempts: 10 },
    ]);
  });

  it("enqueueMany writes each key once (existing or repeated ones are not written) with each row's own attempts, lane and due time", async () => {
    const { store, outbox, clock } = await setup();
    await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "revoke", idempotencyKey: "revoke:g1", payload: { n: 1 } }),
    );
    const written = await store.transaction((tx) =>
      outbox.enqueueMany(tx, [
        { kind: "revoke", idempotencyKey: "revoke:g1", payload: { n: 2 } },
        { kind: "notify", idempotencyKey: "notify:a", payload: { n: 3 }, maxAttempts: 4, lane: "channel:ops" },
        { kind: "notify", idempotencyKey: "notify:a", payload: { n: 4 } },
        {
          kind: "notify",
          idempotencyKey: "notify:b",
          payload: { n: 5 },
          notBefore: new Date(clock.now().getTime() + 60_000),
        },
      ]),
    );
    expect(written).toEqual([false, true, false, true]);
    await expect(store.transaction((tx) => outbox.enqueueMany(tx, []))).resolves.toEqual([]);
    const rows = await store.db
      .selectFrom("outbox")
      .select(["idempotency_key", "payload", "max_attempts", "lane", "next_attempt_at"])
      .orderBy("idempotency_key")
      .execute();
    expect(rows).toEqual([
      {
        idempotency_key: "notify:a",
        payload: { n: 3 },
        max_attempts: 4,
        lane: "channel:ops",
        next_attempt_at: clock.now(),
      },
      {
        idempotency_key: "notify:b",
        payload: { n: 5 },
        max_attempts: 10,
        lane: null,
        next_attempt_at: new Date(clock.now().getTime() + 60_000),
      },
      { idempotency_key: "revoke:g1", payload: { n: 1 }, max_attempts: 10, lane: null, next_attempt_at: clock.now() },
    ]);
  });

  it("honours notBefore and refuses malformed input", async () => {
    const { store, outbox, clock } = await setup();
    const later = new Date(clock.now().getTime() + 60_000);
    await store.transaction((tx) =>
      outbox.enqueue(tx, { kind: "escalate", idempotencyKey: "e:1", payload: {}, notBefore: later }),
    );
    expect((await outboxStore.findByIdempotencyKey(store.db, "e:1"))?.nextAttemptAt).toEqual(later);
    await expect(
      store.transaction((tx) => outbox.enqueue(tx, { kind: "Bad Kind", idempotencyKey: "k", payload: {} })),
    ).rejects.toThrow(/not a valid name/);
    await expect(
      store.transaction((tx) => outbox.enqueue(tx, { kind: "a", idempotencyKey: "", payload: {} })),
    ).rejects.toThrow(/idempotency key/);
    await expect(
      store.transaction((tx) => outbox.enqueue(tx, { kind: "a", idempotencyKey: "k", payload: {}, maxAttempts: 0 })),
    ).rejects.toThrow(/maxAttempts/);
  });

  it("lists dead letters and retries one, audited in the same transaction", async () => {
    const { store, outbox, clock, audit } = await setup();
    await store.transaction(async (tx) => {
      await outbox.enqueue(tx, { kind: "notify", idempotencyKey: "n:1", payload: {} });
      await outbox.enqueue(tx, { kind: "notify", idempotencyKey: "n:2", payload: {} });
    });
    await sql`update outbox set status = 'dead', attempts = 10, last_error = 'gone', done_at = ${clock.now()}
      where idempotency_key = 'n:1'`.execute(store.db);

    const dead = await outbox.listDeadLetters(admin);
    expect(dead.map((j) => j.idempotencyKey)).toEqual(["n:1"]);
    await expect(outbox.listDeadLetters(bob)).rejects.toMatchObject({ code: "FORBIDDEN" });

    await expect(outbox.retryDeadLetter(bob, NO_CONTEXT, dead[0]!.id)).rejects.toMatchObject({ code: "FORBIDDEN" });
    const alive = (await outboxStore.findByIdempotencyKey(store.db, "n:2"))!;
    await expect(outbox.retryDeadLetter(admin, NO_CONTEXT, alive.id)).rejects.toMatchObject({ code: "CONFLICT" });
    await expect(outbox.retryDeadLetter(admin, NO_CONTEXT, crypto.randomUUID())).rejects.toMatchObject({
      code: "NOT_FOUND",
    });

    clock.advance(5_000);
    const retried = await outbox.retryDeadLetter(admin, NO_CONTEXT, dead[0]!.id);
    expect(retried).toMatchObject({ status: "pending", attempts: 0, nextAttemptAt: clock.now(), doneAt: null });
    expect(await outbox.listDeadLetters(SYSTEM)).toEqual([]);

    const events = await audit.read({});
    expect(events.map((e) => [e.actor, e.action, e.outcome, e.subject])).toEqual([
      ["bob", "outbox.retried", "denied", `outbox:${dead[0]!.id}`],
      ["ada", "outbox.retried", "success", `outbox:${dead[0]!.id}`],
    ]);
    expect(events[1]!.details).toEqual({ kind: "notify", idempotencyKey: "n:1", previousAttempts: 10 });
    expect(await audit.verify()).toMatchObject({ ok: true, count: 2 });
  });
});
