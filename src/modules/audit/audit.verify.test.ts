import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "kysely";
import { ENGINES } from "../../testing/engines.js";
import { auditHarness } from "../../testing/harness.js";
import type { Actor } from "../authz/authz.types.js";
import { createAuditLog } from "./audit.service.js";
import { createChainVerifier } from "./audit.rules.js";
import * as auditStore from "./audit.store.js";
import type { VerifyResult } from "./audit.types.js";
import { PARALLEL_PAGE, pageSizeFor, visitInParallel } from "./audit.verify.js";

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

  it("stays exact when the server prints times in another DateStyle (each page read again as columns)", async () => {
    const serial = await check(false, 7);
    const rolledBack = new Error("rolled back");
    const inSqlStyle = h.store.transaction(async (tx) => {
      // The text read prints each time as "12/06/2026 07:17:54.733": never decoded, read again as columns.
      await sql`set local datestyle = 'SQL, DMY'`.execute(tx);
      const visit = async () => {
        const checkpoints = (await auditStore.listCheckpoints(tx)).map((cp) => ({
          seq: Number(cp.seq),
          hash: cp.hash,
          every: cp.every,
          signatureValid: true,
        }));
        const head = await auditStore.readHead(tx);
        const verifier = createChainVerifier(checkpoints, { every: EVERY });
        await auditStore.visitForVerify(tx, head.seq, verifier.push, undefined, 7);
        return verifier.finish(head);
      };
      expect(await visit()).toEqual(serial);
      // A time moved by a microsecond is still an edit.
      await sql`update audit_events set time = time + interval '1 microsecond' where seq = 9`.execute(tx);
      expect(await visit()).toMatchObject({ ok: false, brokenSeq: 9 });
      throw rolledBack;
    });
    await expect(inSqlStyle).rejects.toBe(rolledBack);
    expect(await check(false, 7)).toEqual(serial);
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

/** Pages of the sizes verify picks itself: an edit in a page near the head (smaller pages there) is named exactly. */
describe.each(ENGINES)("parallel audit verify with its own page sizes on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>>;
  const TOTAL = 1300;
  let pagesFromWorkers = 0;

  beforeAll(async () => {
    h = await auditHarness(engine, { checkpointEvery: 100 });
    for (let n = 0; n < TOTAL; n += 100)
      await h.audit.record(
        alice,
        { correlationId: "pages", sourceIp: null, userAgent: null },
        Array.from({ length: 100 }, (_, k) => ({
          action: "x.page",
          outcome: "success" as const,
          details: { n: n + k },
        })),
      );
    await h.audit.catchUp();
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  async function both(): Promise<VerifyResult[]> {
    const db = h.store.db;
    const head = await auditStore.readHead(db);
    const results: VerifyResult[] = [];
    for (const parallel of [false, true]) {
      const checkpoints = (await auditStore.listCheckpoints(db)).map((cp) => ({
        seq: Number(cp.seq),
        hash: cp.hash,
        every: cp.every,
        signatureValid: true,
      }));
      const verifier = createChainVerifier(checkpoints, { every: 100 });
      if (parallel) pagesFromWorkers = (await visitInParallel(db, head.seq, verifier)).pagesFromWorkers;
      else await auditStore.visitForVerify(db, head.seq, verifier.push);
      results.push(verifier.finish(head));
    }
    return results;
  }

  it("verifies the chain and names an edit near the head as the serial verify does", async () => {
    const [serial, parallel] = await both();
    expect(serial).toEqual({ ok: true, count: TOTAL, headSeq: TOTAL, checkpoints: 13 });
    expect(parallel).toEqual(serial);
    // Several pages, every one hashed by the workers.
    expect(pagesFromWorkers).toBeGreaterThan(3);
    await sql`update audit_events set details = '{"n": -1}' where seq = 1234`.execute(h.store.db);
    const [serialEdited, parallelEdited] = await both();
    expect(serialEdited).toMatchObject({ ok: false, brokenSeq: 1234 });
    expect(parallelEdited).toEqual(serialEdited);
  });
});

/**
 * A database writer who drops the table's primary key (and the unique id) and adds a second row of a seq, an
 * exact copy that hashes right, or removes a row: named with its seq by every read of verify, wherever the row
 * falls on a page (the first or last row of a page, the middle, the head), the constraints whatever they are.
 */
describe.each(ENGINES)("duplicate and missing seqs at page edges on %s", (engine) => {
  let h: Awaited<ReturnType<typeof auditHarness>>;
  const TOTAL = 60;
  const PAGE = 10;

  beforeAll(async () => {
    h = await auditHarness(engine);
    await h.audit.record(
      alice,
      { correlationId: "edges", sourceIp: null, userAgent: null },
      Array.from({ length: TOTAL }, (_, n) => ({ action: "x.edge", outcome: "success" as const, details: { n } })),
    );
    await h.audit.catchUp();
    await sql
      .raw(
        `create table audit_events_intact as select * from audit_events;
      alter table audit_events drop constraint audit_events_pkey;
      alter table audit_events drop constraint audit_events_id_key`,
      )
      .execute(h.store.db);
  });
  afterAll(async () => {
    await h?.cleanup();
  });

  /** Every read verify has (serial, parallel from this thread, workers reading on PostgreSQL), pages of `PAGE`. */
  async function everyRead(): Promise<VerifyResult[]> {
    const { db } = h.store;
    const head = await auditStore.readHead(db);
    const results: VerifyResult[] = [];
    const serial = createChainVerifier([], {});
    await auditStore.visitForVerify(db, head.seq, serial.push, undefined, PAGE);
    results.push(serial.finish(head));
    for (const url of engine === "postgres" ? [undefined, h.store.connectionUrl] : [undefined]) {
      const verifier = createChainVerifier([], {});
      await visitInParallel(db, head.seq, verifier, undefined, PAGE, url);
      results.push(verifier.finish(head));
    }
    return results;
  }

  async function attacked(statement: string): Promise<VerifyResult[]> {
    await sql
      .raw(
        `delete from audit_events; insert into audit_events select * from audit_events_intact;
      ${statement}`,
      )
      .execute(h.store.db);
    return everyRead();
  }

  const twin = (seq: number) => `insert into audit_events select * from audit_events where seq = ${seq}`;

  it("reports a second row of a seq at the last and first row of a page, in the middle and at the head", async () => {
    expect(new Set((await everyRead()).map((r) => JSON.stringify(r)))).toEqual(
      new Set([JSON.stringify({ ok: true, count: TOTAL, headSeq: TOTAL, checkpoints: 0 })]),
    );
    for (const seq of [PAGE, PAGE + 1, 2 * PAGE + PAGE / 2, TOTAL, 1, 3 * PAGE]) {
      const expected = {
        ok: false,
        count: seq,
        brokenSeq: seq,
        problem: `event ${seq} is duplicated: a second row has seq ${seq}`,
      };
      for (const result of await attacked(twin(seq))) expect(result, `a second row of seq ${seq}`).toEqual(expected);
    }
  });

  it("reports a second row that does not decode as text (read again as columns) with its seq", async () => {
    // A separator in its action: the page is read again as columns from the seq last visited.
    for (const seq of [PAGE + 3, PAGE, TOTAL]) {
      const odd = `insert into audit_events select seq, id, time, actor, actor_id, action || chr(31), subject, outcome,
        reason, correlation_id, source_ip, user_agent, details, prev_hash, hash from audit_events where seq = ${seq}`;
      for (const result of await attacked(odd))
        // Named as an edit or as a second row, as the two rows come (in no defined order).
        expect(result, `an odd second row of seq ${seq}`).toMatchObject({
          ok: false,
          brokenSeq: seq,
          problem: expect.stringMatching(new RegExp(`^event ${seq} (was altered|is duplicated)`)),
        });
    }
  });

  it("reports a row removed at a page edge with its seq", async () => {
    for (const seq of [PAGE, PAGE + 1, 4 * PAGE]) {
      const expected = { ok: false, count: seq - 1, brokenSeq: seq, problem: `event ${seq} is missing` };
      for (const result of await attacked(`delete from audit_events where seq = ${seq}`))
        expect(result, `seq ${seq} removed`).toEqual(expected);
    }
    for (const result of await attacked(`delete from audit_events where seq = ${TOTAL}`))
      expect(result).toMatchObject({
        ok: false,
        brokenSeq: TOTAL,
        problem: `events ${TOTAL}..${TOTAL} are missing from the end of the log`,
      });
  });

  it("the log's verify names a second row at the edge of its own pages, serial and parallel", async () => {
    // The log's verify reads pages of VERIFY_PAGE serially; past PARALLEL_FROM pages of `pageSizeFor`.
    const { db } = h.store;
    await sql.raw(`delete from audit_events; insert into audit_events select * from audit_events_intact`).execute(db);
    await h.audit.record(
      alice,
      { correlationId: "edges", sourceIp: null, userAgent: null },
      Array.from({ length: auditStore.VERIFY_PAGE + 5 - TOTAL }, (_, n) => ({
        action: "x.edge",
        outcome: "success" as const,
        details: { n },
      })),
    );
    await h.audit.catchUp();
    const head = auditStore.VERIFY_PAGE + 5;
    const parallelLog = createAuditLog({ store: h.store, keyring: h.keyring, clock: h.clock, verifyInParallelFrom: 1 });
    expect(await h.audit.verify()).toMatchObject({ ok: true, headSeq: head });
    for (const [log, seq] of [
      [h.audit, auditStore.VERIFY_PAGE],
      [parallelLog, pageSizeFor(0, head)],
    ] as const) {
      await sql.raw(twin(seq)).execute(db);
      expect(await log.verify()).toEqual({
        ok: false,
        count: seq,
        brokenSeq: seq,
        problem: `event ${seq} is duplicated: a second row has seq ${seq}`,
      });
      await sql
        .raw(
          `delete from audit_events where seq = ${seq}; insert into audit_events
        select * from audit_events_intact where seq = ${seq}`,
        )
        .execute(db);
    }
  });
});

describe("parallel verify page sizes", () => {
  it("start small, stay at most PARALLEL_PAGE, shrink near the head and read exactly to it", () => {
    for (const total of [1, 499, 38_050, 100_000, 1_000_003]) {
      const sizes: number[] = [];
      for (let read = 0; read < total;) {
        const size = pageSizeFor(sizes.length, total - read);
        expect(size).toBeGreaterThanOrEqual(1);
        expect(size).toBeLessThanOrEqual(Math.min(PARALLEL_PAGE, total - read));
        sizes.push(size);
        read += size;
      }
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(total);
      expect(sizes[0]).toBeLessThan(PARALLEL_PAGE);
      if (total > 50_000) {
        expect(Math.max(...sizes)).toBe(PARALLEL_PAGE);
        // The last pages are smaller than the largest: shared among the workers.
        expect(sizes[sizes.length - 2]!).toBeLessThan(PARALLEL_PAGE);
      }
    }
  });
});
