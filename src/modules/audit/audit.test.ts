import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import canonicalize from "canonicalize";
import { sql } from "kysely";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import { createAuditLog, type AuditLog } from "./audit.service.js";
import { loadKeyring, MasterKeyMismatchError } from "../keys/keys.service.js";
import {
  boundariesCrossed,
  canonicalEvent,
  canonicalGeneral,
  chain,
  checkpointMessage,
  createChainVerifier,
  firstMissingCheckpoint,
  GENESIS_HASH,
  hashEvent,
} from "./audit.rules.js";
import * as auditStore from "./audit.store.js";
import type { AuditEvent } from "./audit.types.js";
import { NO_CONTEXT, SYSTEM, type Actor } from "../authz/authz.types.js";

const alice: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-000000000001",
  name: "alice",
  principalKind: "user",
  roles: ["user"],
};

function makeChain(n: number): AuditEvent[] {
  const events: AuditEvent[] = [];
  let prev = { seq: 0, hash: GENESIS_HASH };
  for (let i = 0; i < n; i++) {
    const e = chain(
      {
        id: `id-${i}`,
        time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        actor: "alice",
        actorId: null,
        action: "user.create",
        subject: `user:u${i}`,
        outcome: "success",
        reason: null,
        correlationId: "c",
        sourceIp: "127.0.0.1",
        userAgent: null,
        details: { i },
      },
      prev,
    );
    events.push(e);
    prev = e;
  }
  return events;
}

/** Two events as Stint hashed them before verify's fast paths (the hashes computed by that code). */
/** Any audit event (hash aside): each string field from `text` (null or not where nullable), details from `details`. */
function anyEvent(text: fc.Arbitrary<string>, details: fc.Arbitrary<Record<string, unknown>>) {
  const maybe = fc.option(text, { nil: null });
  return fc.record({
    seq: fc.nat(),
    id: text,
    time: text,
    actor: text,
    actorId: maybe,
    action: text,
    subject: maybe,
    outcome: fc.constantFrom("success" as const, "denied" as const, "failed" as const),
    reason: maybe,
    correlationId: maybe,
    sourceIp: maybe,
    userAgent: maybe,
    details,
    prevHash: text,
  });
}

const OLD_CHAIN: [AuditEvent, string][] = [
  [
    {
      seq: 1,
      id: "0190d000-0000-7000-8000-000000000001",
      time: "2026-01-01T00:00:00.000Z",
      actor: "alice",
      actorId: "0190d000-0000-7000-8000-00000000a11c",
      action: "role.activate",
      subject: "role:db-admin",
      outcome: "success",
      reason: null,
      correlationId: "c1",
      sourceIp: "192.0.2.1",
      userAgent: "curl/8.0",
      details: { role: "db-admin", grantId: "g1", durationSeconds: 3600, flags: [true, null, 1.5] },
      prevHash: GENESIS_HASH,
      hash: "d7b458eb9bf320b4b86eb51d94c781d9d02ed4e50168a4f840180b4be424143e",
    },
    "d7b458eb9bf320b4b86eb51d94c781d9d02ed4e50168a4f840180b4be424143e",
  ],
  [
    {
      seq: 2,
      id: "0190d000-0000-7000-8000-000000000002",
      time: "2026-01-01T00:00:00.123456Z",
      actor: 'bob "the \\ admin"\n\t\u0001\u001f\u007f é 😀',
      actorId: null,
      action: "x",
      subject: null,
      outcome: "denied",
      reason: "line1\nline2 \u2028",
      correlationId: null,
      sourceIp: null,
      userAgent: null,
      details: { "10": 1, "9": 2, b: { z: "\u001e", a: "é😀" }, a: [], "": "" },
      prevHash: "d7b458eb9bf320b4b86eb51d94c781d9d02ed4e50168a4f840180b4be424143e",
      hash: "923060eff3c6e7aac688e7fa38273732a2cf1f5610db34fc2726bb41c7806438",
    },
    "923060eff3c6e7aac688e7fa38273732a2cf1f5610db34fc2726bb41c7806438",
  ],
];

describe("audit chain rules", () => {
  it("hash is independent of key order and covers every field", () => {
    const [e] = makeChain(1) as [AuditEvent];
    const reordered = Object.fromEntries(Object.entries(e).reverse()) as unknown as AuditEvent;
    expect(hashEvent(reordered)).toBe(e.hash);
    for (const field of ["actor", "action", "subject", "outcome", "reason", "time", "sourceIp", "prevHash"] as const) {
      expect(hashEvent({ ...e, [field]: "x" })).not.toBe(e.hash);
    }
    expect(hashEvent({ ...e, details: { i: 1 } })).not.toBe(e.hash);
  });

  it("the fast canonical encoding is exactly the general RFC 8785 one, for any event", () => {
    const text = fc.string({ unit: "binary" });
    fc.assert(
      fc.property(anyEvent(text, fc.dictionary(text, fc.jsonValue())), (event) => {
        expect(canonicalEvent(event)).toBe(canonicalGeneral(event));
      }),
      { numRuns: 2000 },
    );
  });

  it("the encoding is byte for byte the one every chain so far was hashed with", () => {
    // Before verify's fast paths: JSON.stringify for each top-level string, the canonicalizer for details.
    const before = (e: Omit<AuditEvent, "hash">) => {
      const j = (v: string | null) => JSON.stringify(v);
      const details = canonicalize(e.details);
      if (details === undefined) throw new Error("audit event cannot be encoded");
      return (
        `{"action":${j(e.action)},"actor":${j(e.actor)},"actorId":${j(e.actorId)},` +
        `"correlationId":${j(e.correlationId)},"details":${details},"id":${j(e.id)},` +
        `"outcome":${j(e.outcome)},"prevHash":${j(e.prevHash)},"reason":${j(e.reason)},"seq":${e.seq},` +
        `"sourceIp":${j(e.sourceIp)},"subject":${j(e.subject)},"time":${j(e.time)},"userAgent":${j(e.userAgent)}}`
      );
    };
    const outcome = (f: () => string) => {
      try {
        return f();
      } catch (error) {
        return `throws ${(error as Error).message}`;
      }
    };
    // Characters JSON escapes or may (quote, backslash, controls, lone and paired surrogates), and keys
    // JavaScript orders apart from the others (integer-like ones).
    const tricky = fc.string({
      unit: fc.constantFrom(
        "a",
        "b",
        "é",
        '"',
        "\\",
        "\n",
        "\u0000",
        "\u001f",
        "\u007f",
        "\u2028",
        "\ud800",
        "\udc00",
        "😀",
        "1",
        "10",
        "9",
      ),
    });
    const text = fc.oneof(tricky, fc.string({ unit: "binary" }));
    const value = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small" },
        fc.jsonValue(),
        text,
        fc.double(),
        fc.array(tie("value")),
        fc.dictionary(text, tie("value")),
      ),
    })).value;
    fc.assert(
      fc.property(
        anyEvent(
          text,
          fc.oneof(fc.dictionary(text, value), fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.jsonValue())),
        ),
        (event) => {
          expect(outcome(() => canonicalEvent(event))).toBe(outcome(() => before(event)));
        },
      ),
      { numRuns: 3000 },
    );
    // Hashes written before the change, with every kind of character an event can hold.
    for (const [event, hash] of OLD_CHAIN) expect(hashEvent(event)).toBe(hash);
  });

  it("any single change, deletion or swap is found at the right seq", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 30 }),
        fc.nat(),
        fc.constantFrom("edit", "delete", "swap"),
        (n, pick, kind) => {
          const events = makeChain(n);
          const k = pick % (n - 1); // index of the tampered event (not the last, for swap)
          const tampered = [...events];
          if (kind === "edit") tampered[k] = { ...tampered[k]!, reason: "changed" };
          if (kind === "delete") tampered.splice(k, 1);
          if (kind === "swap") [tampered[k], tampered[k + 1]] = [tampered[k + 1]!, tampered[k]!];
          const verifier = createChainVerifier();
          for (const e of tampered) if (!verifier.push(e)) break;
          const last = events.at(-1)!;
          const result = verifier.finish({ seq: last.seq, hash: last.hash });
          expect(result.ok).toBe(false);
          if (!result.ok) expect(result.brokenSeq).toBe(k + 1);
        },
      ),
    );
  });

  it("an intact chain verifies with its count", () => {
    const events = makeChain(50);
    const verifier = createChainVerifier();
    events.forEach((e) => verifier.push(e));
    expect(verifier.finish({ seq: 50, hash: events.at(-1)!.hash })).toEqual({
      ok: true,
      count: 50,
      headSeq: 50,
      checkpoints: 0,
    });
  });
});

describe("required checkpoints", () => {
  it("an append signs at exactly every multiple of N it crosses", () => {
    expect(boundariesCrossed(0, 4, 5)).toEqual([]);
    expect(boundariesCrossed(4, 5, 5)).toEqual([5]);
    expect(boundariesCrossed(3, 17, 5)).toEqual([5, 10, 15]);
    expect(boundariesCrossed(5, 9, 5)).toEqual([]);
  });

  /** What the signer writes: a checkpoint at every multiple of the interval in force, plus head checkpoints. */
  const signerRun = fc
    .array(
      fc.record({
        events: fc.integer({ min: 1, max: 40 }),
        every: fc.integer({ min: 1, max: 12 }),
        headCheckpoint: fc.boolean(),
      }),
      { minLength: 1, maxLength: 8 },
    )
    .map((runs) => {
      const checkpoints = new Map<number, number>();
      let head = 0;
      for (const [index, run] of runs.entries()) {
        // A starting node states its interval first (AuditLog.anchor({ starting })): it signs the head it
        // found, or, when that is signed under another interval, records the change as an event and signs that.
        if (index > 0 && head > 0) {
          if (!checkpoints.has(head)) checkpoints.set(head, run.every);
          else if (checkpoints.get(head) !== run.every) checkpoints.set(++head, run.every);
        }
        for (const seq of boundariesCrossed(head, head + run.events, run.every)) checkpoints.set(seq, run.every);
        head += run.events;
        // The first run's head is signed before any restart (by the anchor writer's tick): a node that crashes
        // before the log's first checkpoint and restarts with another interval is the one case verify
        // reports falsely.
        if ((run.headCheckpoint || index === 0) && !checkpoints.has(head)) checkpoints.set(head, run.every);
      }
      const list = [...checkpoints].map(([seq, every]) => ({ seq, every })).sort((a, b) => a.seq - b.seq);
      return { checkpoints: list, head, every: runs.at(-1)!.every };
    });

  it("nothing is missing from what the signer writes, across interval changes between runs", () => {
    fc.assert(
      fc.property(signerRun, ({ checkpoints, head, every }) => {
        expect(firstMissingCheckpoint(checkpoints, head, every)).toBeUndefined();
      }),
    );
  });

  it("deleting any required checkpoint of a log is found at its seq (or an earlier missing one)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 200 }),
        fc.array(fc.integer({ min: 1, max: 200 })),
        fc.nat(),
        (every, head, headCheckpoints, pick) => {
          fc.pre(head >= every);
          // Boundaries, and the head checkpoints the anchor writer adds between them.
          const seqs = new Set([...boundariesCrossed(0, head, every), ...headCheckpoints.filter((seq) => seq <= head)]);
          const checkpoints = [...seqs].sort((a, b) => a - b).map((seq) => ({ seq, every }));
          expect(firstMissingCheckpoint(checkpoints, head, every)).toBeUndefined();
          const boundaries = boundariesCrossed(0, head, every);
          const removed = boundaries[pick % boundaries.length]!;
          const missing = firstMissingCheckpoint(
            checkpoints.filter((cp) => cp.seq !== removed),
            head,
            every,
          );
          expect(missing).toBe(removed);
        },
      ),
    );
  });

  it("a log with no checkpoint at all needs one once it reaches N events", () => {
    expect(firstMissingCheckpoint([], 999, 1000)).toBeUndefined();
    expect(firstMissingCheckpoint([], 1000, 1000)).toBe(1000);
    expect(firstMissingCheckpoint([], 2500, 1000)).toBe(1000);
  });

  it("checkpoints signed before v2 (no interval) are checked with the interval that follows them", () => {
    const legacy = [{ seq: 1003, every: null }];
    expect(firstMissingCheckpoint(legacy, 1999, 1000)).toBeUndefined();
    expect(firstMissingCheckpoint(legacy, 2000, 1000)).toBe(2000);
    expect(firstMissingCheckpoint([...legacy, { seq: 2000, every: 1000 }], 2400, 1000)).toBeUndefined();
  });

  it("the v2 message binds the interval and the time; v1 reads as before", () => {
    const base = { seq: 5, hash: "a".repeat(64), every: 5, signedAt: "2026-03-01T09:00:00.000Z" };
    expect(checkpointMessage(base)).toBe(`stint-audit-checkpoint:v2:5:${"a".repeat(64)}:5:2026-03-01T09:00:00.000Z`);
    expect(checkpointMessage({ ...base, every: null })).toBe(`stint-audit-checkpoint:v1:5:${"a".repeat(64)}`);
  });

  it("the verifier names a missing required checkpoint at its seq, and an anchor the chain no longer holds", () => {
    const events = makeChain(12);
    const valid = (seq: number) => ({ seq, hash: events[seq - 1]!.hash, every: 5, signatureValid: true });
    const run = (checkpoints: ReturnType<typeof valid>[], options: Parameters<typeof createChainVerifier>[1]) => {
      const verifier = createChainVerifier(checkpoints, options);
      for (const e of events) if (!verifier.push(e)) break;
      return verifier.finish({ seq: 12, hash: events[11]!.hash });
    };
    expect(run([valid(5), valid(10)], { every: 5 })).toMatchObject({ ok: true, checkpoints: 2 });
    expect(run([valid(10)], { every: 5 })).toMatchObject({ ok: false, brokenSeq: 5 });
    expect(run([valid(5)], { every: 5 })).toMatchObject({ ok: false, brokenSeq: 10 });
    const anchor = { seq: 12, hash: events[11]!.hash, signatureValid: true };
    expect(run([valid(5), valid(10)], { every: 5, anchor })).toMatchObject({ ok: true, anchorSeq: 12 });
    expect(run([valid(5), valid(10)], { every: 5, anchor: { ...anchor, hash: "0".repeat(64) } })).toMatchObject({
      ok: false,
      brokenSeq: 12,
    });
    expect(run([valid(5), valid(10)], { every: 5, anchor: { ...anchor, seq: 14 } })).toMatchObject({
      ok: false,
      brokenSeq: 13,
    });
    expect(run([valid(5), valid(10)], { every: 5, anchor: { ...anchor, signatureValid: false } })).toMatchObject({
      ok: false,
      brokenSeq: 12,
    });
  });
});

describe.each(ENGINES)("audit log on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>> | undefined;
  afterEach(async () => {
    await h?.cleanup();
    h = undefined;
  });

  it("appends in the caller's transaction: a failed change leaves no event", async () => {
    h = await auditHarness(engine);
    const { store, audit } = h;
    await audit.record(alice, NO_CONTEXT, { action: "thing.done", outcome: "success", subject: "thing:1" });
    await expect(
      store.transaction(async (tx) => {
        await audit.append(tx, alice, NO_CONTEXT, { action: "thing.done", outcome: "success", subject: "thing:2" });
        throw new Error("the change failed");
      }),
    ).rejects.toThrow();
    const events = await audit.read({});
    expect(events.map((e) => e.subject)).toEqual(["thing:1"]);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 1 });
  });

  it("concurrent appends form one gapless chain", async () => {
    h = await auditHarness(engine, { checkpointEvery: 25 });
    const { audit } = h;
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        audit.record(i % 2 ? alice : SYSTEM, { ...NO_CONTEXT, correlationId: `c${i}` }, [
          { action: "a.one", outcome: "success" },
          { action: "a.two", outcome: "denied", reason: "because" },
        ]),
      ),
    );
    const result = await audit.verify();
    expect(result).toEqual({ ok: true, count: 200, headSeq: 200, checkpoints: 8 });
  });

  it("appendMany writes many calls' events in the caller's transaction, each with its own actor and context", async () => {
    h = await auditHarness(engine, { checkpointEvery: 3 });
    const { store, audit } = h;
    const written = await store.transaction((tx) =>
      audit.appendMany(tx, [
        {
          actor: alice,
          context: { ...NO_CONTEXT, correlationId: "r1" },
          events: { action: "secret.read", outcome: "success", subject: "secret:a" },
        },
        { actor: SYSTEM, context: { ...NO_CONTEXT, correlationId: "r2" }, events: [] },
        {
          actor: SYSTEM,
          context: { ...NO_CONTEXT, correlationId: "r3" },
          events: [
            { action: "secret.read", outcome: "success", subject: "secret:b" },
            { action: "secret.read", outcome: "denied", subject: "secret:c", reason: "no" },
          ],
        },
      ]),
    );
    expect(written.map((events) => events.length)).toEqual([1, 0, 2]);
    // A batch whose transaction fails leaves none of its events.
    await expect(
      store.transaction(async (tx) => {
        await audit.appendMany(tx, [
          { actor: alice, context: NO_CONTEXT, events: { action: "lost", outcome: "success" } },
        ]);
        throw new Error("the batch failed");
      }),
    ).rejects.toThrow();
    await audit.catchUp();
    const events = await audit.read({});
    expect(events.map((e) => [e.actor, e.correlationId, e.subject, e.outcome])).toEqual([
      ["alice", "r1", "secret:a", "success"],
      ["system:system", "r3", "secret:b", "success"],
      ["system:system", "r3", "secret:c", "denied"],
    ]);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 3, checkpoints: 1 });
  });

  it("reports a time moved by less than a millisecond with raw SQL", async () => {
    h = await auditHarness(engine);
    const { audit, store } = h;
    for (let i = 0; i < 5; i++)
      await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success", subject: `s${i}` });
    await audit.catchUp();
    expect(await audit.verify()).toMatchObject({ ok: true, count: 5 });
    await sql`update audit_events set time = time + interval '1 microsecond' where seq = 3`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 3 });
  });

  it("names the seq of a row changed or deleted with raw SQL", async () => {
    h = await auditHarness(engine, { checkpointEvery: 10 });
    const { audit, store } = h;
    for (let i = 0; i < 30; i++)
      await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success", subject: `s${i}` });
    await audit.catchUp(); // chained (the sequencer's work on PostgreSQL) before the rows are edited
    await sql`update audit_events set reason = 'nothing to see' where seq = 17`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 17 });
    await sql`delete from audit_events where seq = 5`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 5 });
  });

  it("finds deleted tail events and a rewritten chain through the head and signed checkpoints", async () => {
    h = await auditHarness(engine, { checkpointEvery: 10 });
    const { audit, store } = h;
    for (let i = 0; i < 25; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    await audit.catchUp();
    await sql`delete from audit_events where seq > 22`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 23 });
    // An attacker who rewrites the head too is still caught by the checkpoint at 20.
    await sql`delete from audit_events where seq > 18`.execute(store.db);
    await sql`update audit_head set seq = 18, hash = (select hash from audit_events where seq = 18)`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 19 });
  });

  it("a checkpoint signed with another key does not verify", async () => {
    h = await auditHarness(engine);
    const { audit, store } = h;
    await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    await audit.checkpoint();
    await sql`update audit_checkpoints set signature = ${"A".repeat(86)}`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 1 });
  });

  it("a batch crossing two boundaries signs both, at exactly the multiples", async () => {
    h = await auditHarness(engine, { checkpointEvery: 4 });
    const { audit, store } = h;
    await audit.record(
      alice,
      NO_CONTEXT,
      Array.from({ length: 9 }, () => ({ action: "x", outcome: "success" as const })),
    );
    await audit.catchUp();
    const rows = await store.db.selectFrom("audit_checkpoints").select(["seq", "every"]).orderBy("seq").execute();
    expect(rows.map((row) => [Number(row.seq), row.every])).toEqual([
      [4, 4],
      [8, 4],
    ]);
    expect(await audit.verify()).toMatchObject({ ok: true, count: 9, checkpoints: 2 });
  });

  it("anchor() signs the head once it moved, and only then", async () => {
    h = await auditHarness(engine, { checkpointEvery: 100 });
    const { audit } = h;
    expect(await audit.anchor()).toBeNull();
    await audit.record(alice, NO_CONTEXT, [
      { action: "x", outcome: "success" },
      { action: "y", outcome: "success" },
    ]);
    const first = await audit.anchor();
    expect(first).toMatchObject({ format: "stint-audit-anchor/v1", seq: 2, every: 100 });
    expect(await audit.anchor()).toEqual(first);
    expect(await audit.latestAnchor()).toEqual(first);
    expect(await audit.verify({ anchor: first! })).toMatchObject({ ok: true, anchorSeq: 2, checkpoints: 1 });
  });

  it("a node restarting with another interval states it first; verify reads each stretch with its own", async () => {
    h = await auditHarness(engine, { checkpointEvery: 5 });
    const { store, keyring, clock } = h;
    // Each node chains what it writes before it stops (its sequencer), so each stretch is chained under its interval.
    const record = async (log: AuditLog, n: number) => {
      await log.record(
        alice,
        NO_CONTEXT,
        Array.from({ length: n }, () => ({ action: "x", outcome: "success" as const })),
      );
      await log.catchUp();
    };
    await record(h.audit, 7);
    await h.audit.anchor(); // the shutdown checkpoint at 7, under interval 5
    const wider = createAuditLog({ store, keyring, clock, checkpointEvery: 8 });
    expect(await wider.anchor({ starting: true })).toMatchObject({ seq: 8, every: 8 });
    const change = (await wider.read({ afterSeq: 7 }))[0]!;
    expect(change).toMatchObject({
      action: "audit.checkpoint_interval",
      actor: "system:audit",
      details: { from: 5, to: 8 },
    });
    await record(wider, 13); // 9..21: a checkpoint at 16 only
    // Crash (no shutdown checkpoint), then back to 5: the head is signed under 5 before anything is written.
    const narrower = createAuditLog({ store, keyring, clock, checkpointEvery: 5 });
    expect(await narrower.anchor({ starting: true })).toMatchObject({ seq: 21, every: 5 });
    await record(narrower, 6);
    for (const log of [h.audit, wider, narrower]) expect(await log.verify()).toMatchObject({ ok: true, count: 27 });
    const seqs = await store.db.selectFrom("audit_checkpoints").select("seq").orderBy("seq").execute();
    expect(seqs.map((row) => Number(row.seq))).toEqual([5, 7, 8, 16, 21, 25]);
  });

  it("a log with checkpoints signed before v2 still verifies", async () => {
    h = await auditHarness(engine, { checkpointEvery: 1000 });
    const { audit, store, keyring } = h;
    for (let i = 0; i < 3; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
    const event = (await audit.read({})).at(-1)!;
    const { keyId, signature } = keyring.signDetached(
      "audit",
      checkpointMessage({ seq: 3, hash: event.hash, every: null, signedAt: "" }),
    );
    await sql`insert into audit_checkpoints (seq, hash, key_id, signature, signed_at) values (3, ${event.hash}, ${keyId}, ${signature}, now())`.execute(
      store.db,
    );
    expect(await audit.verify()).toMatchObject({ ok: true, checkpoints: 1 });
    // A v1 checkpoint serves no anchor: only v2 signs the interval and time an anchor carries.
    expect(await audit.latestAnchor()).toBeNull();
  });

  it("a chain written before verify's fast paths still verifies, whatever its events hold", async () => {
    h = await auditHarness(engine);
    const { audit, store } = h;
    for (const [e] of OLD_CHAIN)
      await sql`insert into audit_events (seq, id, time, actor, actor_id, action, subject, outcome, reason,
          correlation_id, source_ip, user_agent, details, prev_hash, hash)
        values (${e.seq}, ${e.id}, ${e.time}, ${e.actor}, ${e.actorId}, ${e.action}, ${e.subject}, ${e.outcome},
          ${e.reason}, ${e.correlationId}, ${e.sourceIp}, ${e.userAgent}, ${JSON.stringify(e.details)}, ${e.prevHash},
          ${e.hash})`.execute(store.db);
    const last = OLD_CHAIN.at(-1)![0];
    await sql`update audit_head set seq = ${last.seq}, hash = ${last.hash}`.execute(store.db);
    expect(await audit.verify()).toEqual({ ok: true, count: 2, headSeq: 2, checkpoints: 0 });
    expect(await audit.read({})).toEqual(OLD_CHAIN.map(([e]) => e));
  });

  it("verify reads every event as written, across pages and fields holding its separators", async () => {
    h = await auditHarness(engine, { checkpointEvery: 4 });
    const { audit, store } = h;
    const odd = ["plain", 'a "quoted" \\ path', "tab\tnew\nline", "unit\u001fsep", "rec\u001esep", "é 😀 \u2028", ""];
    for (let i = 0; i < 14; i++) {
      const text = odd[i % odd.length]!;
      await audit.record(
        alice,
        { correlationId: text, sourceIp: i % 2 ? "192.0.2.1" : null, userAgent: text },
        {
          action: `x.${i}`,
          outcome: "success",
          subject: i % 4 ? text : null,
          reason: i % 5 ? null : text,
          details: { [text]: text, "10": i, "9": [text, null, 1.25], nested: { z: 1, a: text } },
        },
      );
    }
    await audit.catchUp();
    const written = await audit.read({});
    expect(written).toHaveLength(14);
    expect(await audit.verify()).toEqual({ ok: true, count: 14, headSeq: 14, checkpoints: 3 });
    // Small pages: boundaries everywhere, and pages whose texts do not split (read again as columns).
    for (const pageSize of [1, 3, 5, 20]) {
      const visited: AuditEvent[] = [];
      const pages: number[] = [];
      await auditStore.visitForVerify(
        store.db,
        14,
        (e) => visited.push(e) > 0,
        (seq) => pages.push(seq),
        pageSize,
      );
      expect(visited).toEqual(written);
      expect(pages.at(-1)).toBe(14);
    }
    // A visitor that stops is not called again; events past the head are not visited.
    const seen: number[] = [];
    await auditStore.visitForVerify(store.db, 14, (e) => seen.push(e.seq) < 6, undefined, 4);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6]);
    seen.length = 0;
    await auditStore.visitForVerify(store.db, 9, (e) => seen.push(e.seq) > 0, undefined, 4);
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("names the seq of a row a database writer made ambiguous to read", async () => {
    h = await auditHarness(engine);
    const { audit, store } = h;
    for (let i = 0; i < 12; i++)
      await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success", subject: i % 2 ? `s${i}` : null });
    await audit.catchUp();
    expect(await audit.verify()).toMatchObject({ ok: true, count: 12 });
    // A separator inside a field (the row splits into one field too many).
    await sql`update audit_events set action = action || chr(31) || 'y' where seq = 11`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 11 });
    // A NULL where the schema forbids one (its constraint dropped first).
    await sql`alter table audit_events alter column actor drop not null`.execute(store.db);
    await sql`update audit_events set actor = null where seq = 8`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 8 });
    await sql`alter table audit_events alter column details drop not null, alter column time drop not null`.execute(
      store.db,
    );
    await sql`update audit_events set details = null where seq = 7`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 7 });
    await sql`update audit_events set time = null where seq = 6`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 6 });
    // NULL and empty are different values.
    await sql`update audit_events set subject = '' where seq = 5`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 5 });
    await sql`update audit_events set correlation_id = null where seq = 2`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 2 });
  });

  it("refuses to load the keyring under a different master key", async () => {
    h = await auditHarness(engine);
    await expect(
      loadKeyring({ store: h.store, masterKey: Buffer.alloc(32, 7), clock: h.clock }),
    ).rejects.toBeInstanceOf(MasterKeyMismatchError);
  });
});
