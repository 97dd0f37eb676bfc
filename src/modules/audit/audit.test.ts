import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { sql } from "kysely";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import { loadKeyring, MasterKeyMismatchError } from "../keys/keys.service.js";
import { chain, createChainVerifier, GENESIS_HASH, hashEvent } from "./audit.rules.js";
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

  it("names the seq of a row changed or deleted with raw SQL", async () => {
    h = await auditHarness(engine, { checkpointEvery: 10 });
    const { audit, store } = h;
    for (let i = 0; i < 30; i++)
      await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success", subject: `s${i}` });
    await sql`update audit_events set reason = 'nothing to see' where seq = 17`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 17 });
    await sql`delete from audit_events where seq = 5`.execute(store.db);
    expect(await audit.verify()).toMatchObject({ ok: false, brokenSeq: 5 });
  });

  it("finds deleted tail events and a rewritten chain through the head and signed checkpoints", async () => {
    h = await auditHarness(engine, { checkpointEvery: 10 });
    const { audit, store } = h;
    for (let i = 0; i < 25; i++) await audit.record(alice, NO_CONTEXT, { action: "x", outcome: "success" });
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

  it("refuses to load the keyring under a different master key", async () => {
    h = await auditHarness(engine);
    await expect(
      loadKeyring({ store: h.store, masterKey: Buffer.alloc(32, 7), clock: h.clock }),
    ).rejects.toBeInstanceOf(MasterKeyMismatchError);
  });
});
