import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { ENGINES } from "../../testing/engines.js";
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
 * Verify on worker threads must find what the serial verify finds, and name it the same way: the same
 * edits are checked both ways, across page boundaries (small pages) and rows that do not decode as text.
 */
describe.each(ENGINES)("parallel audit verify on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>>;
  const EVERY = 5;

  beforeAll(async () => {
    h = await auditHarness(engine, { checkpointEvery: EVERY });
    const odd = ["plain", 'a "quoted" \\ path', "unit\u001fsep", "rec\u001esep", "é 😀 \u2028", ""];
    for (let i = 0; i < 40; i++) {
      const text = odd[i % odd.length]!;
      await h.audit.record(
        alice,
        { correlationId: text, sourceIp: i % 2 ? "192.0.2.1" : null, userAgent: text },
        { action: `x.${i}`, outcome: "success", subject: i % 4 ? text : null, details: { [text]: i, b: [text] } },
      );
    }
    await h.audit.catchUp();
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  /** The chain checked with the given visit, as `verify` checks it (checkpoint signatures taken as valid). */
  let fromWorkers = 0;
  async function check(parallel: boolean, pageSize: number): Promise<VerifyResult> {
    const db = h.store.db;
    const checkpoints = (await auditStore.listCheckpoints(db)).map((cp) => ({
      seq: Number(cp.seq),
      hash: cp.hash,
      every: cp.every,
      signatureValid: true,
    }));
    const head = await auditStore.readHead(db);
    const verifier = createChainVerifier(checkpoints, { every: EVERY });
    const pages: number[] = [];
    if (parallel)
      fromWorkers += (await visitInParallel(db, head.seq, verifier, (seq) => pages.push(seq), pageSize))
        .pagesFromWorkers;
    else await auditStore.visitForVerify(db, head.seq, verifier.push, undefined, pageSize);
    // Progress is reported in order, up to where the visit ended.
    expect(pages).toEqual([...pages].sort((a, b) => a - b));
    return verifier.finish(head);
  }

  async function sameBothWays(): Promise<VerifyResult> {
    const serial = await check(false, 7);
    for (const pageSize of [1, 3, 7, 100]) expect(await check(true, pageSize)).toEqual(serial);
    // The log's own verify, with workers from the first event on.
    const parallelLog = createAuditLog({
      store: h.store,
      keyring: h.keyring,
      clock: h.clock,
      checkpointEvery: EVERY,
      verifyInParallelFrom: 1,
    });
    expect(await parallelLog.verify()).toEqual(await h.audit.verify());
    return serial;
  }

  it("verifies an intact chain, separators inside fields included", async () => {
    expect(await sameBothWays()).toEqual({ ok: true, count: 40, headSeq: 40, checkpoints: 8 });
    // The worker threads did the hashing (not the one-by-one fallback throughout).
    expect(fromWorkers).toBeGreaterThan(0);
  });

  it("names the first edit, deletion and forged checkpoint as the serial verify does", async () => {
    const { db } = h.store;
    const record = async (statement: string) => {
      await sql.raw(statement).execute(db);
      return sameBothWays();
    };
    expect(await record(`update audit_events set reason = 'nothing to see' where seq = 33`)).toMatchObject({
      ok: false,
      brokenSeq: 33,
    });
    // A separator added inside a field: read again as columns, still an edit.
    expect(await record(`update audit_events set action = action || chr(31) || 'y' where seq = 27`)).toMatchObject({
      ok: false,
      brokenSeq: 27,
    });
    expect(await record(`update audit_checkpoints set hash = repeat('0', 64) where seq = 20`)).toMatchObject({
      ok: false,
      brokenSeq: 20,
    });
    expect(await record(`delete from audit_events where seq = 12`)).toMatchObject({
      ok: false,
      brokenSeq: 12,
      problem: "event 12 is missing",
    });
    expect(await record(`update audit_events set details = '{"x": 1}' where seq = 4`)).toMatchObject({
      ok: false,
      brokenSeq: 4,
    });
    expect(await record(`update audit_events set prev_hash = repeat('1', 64) where seq = 2`)).toMatchObject({
      ok: false,
      brokenSeq: 2,
    });
  });
});
