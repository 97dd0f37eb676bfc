import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { sql } from "kysely";
import { auditHarness } from "../../testing/harness.js";
import type { Actor } from "../authz/authz.types.js";
import { createAuditLog } from "./audit.service.js";
import { createChainVerifier } from "./audit.rules.js";
import * as auditStore from "./audit.store.js";
import type { VerifyResult } from "./audit.types.js";
import { visitInParallel } from "./audit.verify.js";

const alice: Actor = {
  kind: "principal",
  id: "0190d000-0000-7000-8000-0000000a11ce",
  name: "alice",
  principalKind: "user",
  roles: [],
};

/**
 * On PostgreSQL the workers read their pages over connections of their own (keyset ranges of seq): each
 * tampering (an edit at several places in a page, a deleted row, a seq moved away, an inserted event, a
 * duplicate seq) must be named at the exact event, as the serial verify names it, and the connections
 * must be gone after each run.
 */
describe("audit verify with workers reading their own pages on postgres", () => {
  let h: Awaited<ReturnType<typeof auditHarness>>;
  const TOTAL = 1300;
  const EVERY = 100;
  let readByWorkers = 0;
  let fromWorkers = 0;

  beforeAll(async () => {
    h = await auditHarness("postgres", { checkpointEvery: EVERY });
    for (let n = 0; n < TOTAL; n += 100)
      await h.audit.record(
        alice,
        { correlationId: "readers", sourceIp: null, userAgent: n % 200 ? null : 'a "quoted" \\ agent' },
        Array.from({ length: 100 }, (_, k) => ({
          action: "x.page",
          outcome: "success" as const,
          subject: k % 3 ? `thing:${n + k}` : null,
          details: { n: n + k },
        })),
      );
    await h.audit.catchUp();
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  /** The verify workers' connections open on this database. */
  const readers = async () =>
    Number(
      (
        await sql<{ n: string }>`select count(*) as n from pg_stat_activity
          where datname = current_database() and application_name = 'stint audit verify'`.execute(h.store.db)
      ).rows[0]!.n,
    );

  /**
   * The chain checked serially, and by workers reading pages of 100 and of verify's own sizes: all the same,
   * or, given `alike`, each as it asks (rows of one seq come in no defined order).
   */
  async function check(alike?: (result: VerifyResult) => void): Promise<VerifyResult> {
    const { db } = h.store;
    const head = await auditStore.readHead(db);
    const checkpoints = (await auditStore.listCheckpoints(db)).map((cp) => ({
      seq: Number(cp.seq),
      hash: cp.hash,
      every: cp.every,
      signatureValid: true,
    }));
    const serial = createChainVerifier(checkpoints, { every: EVERY });
    await auditStore.visitForVerify(db, head.seq, serial.push);
    const expected = serial.finish(head);
    alike?.(expected);
    for (const pageSize of [100, undefined]) {
      const verifier = createChainVerifier(checkpoints, { every: EVERY });
      const counts = await visitInParallel(db, head.seq, verifier, undefined, pageSize, h.store.connectionUrl);
      readByWorkers += counts.pagesReadByWorkers;
      fromWorkers += counts.pagesFromWorkers;
      if (alike) alike(verifier.finish(head));
      else expect(verifier.finish(head)).toEqual(expected);
      // The workers' connections are closed when the run ends (their backends leave pg_stat_activity soon after).
      await vi.waitFor(async () => expect(await readers()).toBe(0), { timeout: 5000, interval: 20 });
    }
    // The log's own verify takes the same path (from the first event on).
    const log = createAuditLog({
      store: h.store,
      keyring: h.keyring,
      clock: h.clock,
      checkpointEvery: EVERY,
      verifyInParallelFrom: 1,
    });
    if (alike) alike(await log.verify());
    else expect(await log.verify()).toEqual(await h.audit.verify());
    return expected;
  }

  const run = (statement: string) => sql.raw(statement).execute(h.store.db);

  it("verifies the intact chain from pages the workers read", async () => {
    expect(h.store.connectionUrl).toMatch(/^postgres/);
    expect(await check()).toEqual({ ok: true, count: TOTAL, headSeq: TOTAL, checkpoints: TOTAL / EVERY });
    expect(readByWorkers).toBeGreaterThan(13);
    expect(fromWorkers).toBe(readByWorkers);
  });

  it("names each tampering at its exact event, the latest first", async () => {
    // Edits at the head, then at the first, a middle and the last event of a page of 100.
    for (const seq of [1300, 1201, 1150, 1100]) {
      await run(`update audit_events set details = '{"n": -1}' where seq = ${seq}`);
      expect(await check()).toMatchObject({ ok: false, brokenSeq: seq });
    }
    // An event inserted after 1000: the later ones moved up a seq, a forged one in the gap.
    await run(`update audit_events set seq = seq + 100000 where seq > 1000`);
    await run(`update audit_events set seq = seq - 99999 where seq > 100000`);
    await run(`insert into audit_events select 1001, gen_random_uuid(), time, actor, actor_id, action, 'forged',
      outcome, reason, correlation_id, source_ip, user_agent, details, hash, hash from audit_events where seq = 1000`);
    expect(await check()).toMatchObject({ ok: false, brokenSeq: 1001 });
    // A second row with seq 800 (the primary key dropped by whoever inserts it): named at event 800, as an
    // edit or as duplicated, as the two rows come (in no defined order, the serial path's included).
    await run(`alter table audit_events drop constraint audit_events_pkey`);
    await run(`insert into audit_events select seq, gen_random_uuid(), time, actor, actor_id, action, 'twin',
      outcome, reason, correlation_id, source_ip, user_agent, details, prev_hash, hash from audit_events where seq = 800`);
    await check((result) =>
      expect([
        {
          ok: false,
          count: 799,
          brokenSeq: 800,
          problem: "event 800 was altered: its content does not match its hash",
        },
        { ok: false, count: 800, brokenSeq: 800, problem: "event 800 is duplicated: a second row has seq 800" },
      ]).toContainEqual(result),
    );
    // A row moved out of its place (a gap at 640), then a deleted one.
    await run(`update audit_events set seq = 100640 where seq = 640`);
    expect(await check()).toMatchObject({ ok: false, brokenSeq: 640, problem: "event 640 is missing" });
    await run(`delete from audit_events where seq = 500`);
    expect(await check()).toMatchObject({ ok: false, brokenSeq: 500, problem: "event 500 is missing" });
    // An edit in the first page.
    await run(`update audit_events set reason = 'nothing to see' where seq = 2`);
    expect(await check()).toMatchObject({ ok: false, brokenSeq: 2 });
  });
});
