/**
 * Class: rewritable audit log by a database writer (issue 12, finding 7).
 *
 * The attacker can run any SQL against Stint's database but holds neither the master key (which seals the
 * audit signing key) nor the operator's shipped copies of the anchor. They know the hash format, so they
 * can re-chain whatever they edit. Each test rewrites the log the way such an attacker would, then asks a
 * real server (in-process, real store on PGlite and on the machine's PostgreSQL) to verify it.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { CompiledQuery } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { ENGINES } from "../../src/testing/engines.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { rewriteReason, truncateAfter, type Row } from "../../src/testing/audit-writer.js";
import { NO_CONTEXT, SYSTEM } from "../../src/modules/authz/authz.types.js";

const EVERY = 5;

/** SQL as the attacker runs it: a separate connection on PostgreSQL, the store's own on PGlite (single-process). */
async function databaseWriter(server: TestServer) {
  if (server.databaseUrl) {
    const client = new pg.Client({ connectionString: server.databaseUrl });
    await client.connect();
    return {
      query: async (text: string, params: unknown[] = []) => (await client.query(text, params)).rows as Row[],
      close: () => client.end(),
    };
  }
  return {
    query: async (text: string, params: unknown[] = []) =>
      (await server.store.db.executeQuery(CompiledQuery.raw(text, params))).rows as Row[],
    close: async () => undefined,
  };
}
type Writer = Awaited<ReturnType<typeof databaseWriter>>;

async function headSeq(db: Writer): Promise<number> {
  return Number((await db.query("select seq from audit_head where id = 1"))[0]!.seq);
}

describe.each(ENGINES)("rewritable audit log by a database writer (finding 7) on %s", (engine) => {
  let server: TestServer | undefined;
  let writer: Writer | undefined;
  let work: string | undefined;
  afterEach(async () => {
    await writer?.close();
    await server?.cleanup();
    if (work) await rm(work, { recursive: true, force: true });
    server = writer = work = undefined;
  });

  /** A server signing a checkpoint every 5 events, with 17 events in its log and the head anchored at 17. */
  async function anchoredLog() {
    work = await mkdtemp(path.join(tmpdir(), "stint-anchor-"));
    const anchorFile = path.join(work, "audit-anchor.json");
    server = await testServer(engine, {
      env: {
        STINT_AUDIT_CHECKPOINT_EVERY: String(EVERY),
        STINT_AUDIT_ANCHOR_FILE: anchorFile,
        STINT_AUDIT_ANCHOR_INTERVAL: "1h",
      },
    });
    writer = await databaseWriter(server);
    // One event at a time, each chained before the next (on PostgreSQL the sequencer chains in the background).
    while ((await headSeq(writer)) < 17) {
      await server.audit.record(SYSTEM, NO_CONTEXT, { action: "thing.done", outcome: "success", reason: "routine" });
      await server.audit.catchUp();
    }
    await server.auditAnchor.write();
    const anchor = JSON.parse(await readFile(anchorFile, "utf8")) as Record<string, unknown>;
    return { server, db: writer, anchor };
  }

  async function verify(s: TestServer, anchor?: unknown) {
    const res =
      anchor === undefined
        ? await s.app.inject({ method: "GET", url: "/v1/audit/verify", headers: { authorization: s.adminAuth } })
        : await s.app.inject({
            method: "POST",
            url: "/v1/audit/verify",
            headers: { authorization: s.adminAuth },
            payload: { anchor },
          });
    expect(res.statusCode).toBe(200);
    return res.json<{ ok: boolean; brokenSeq?: number; problem?: string; anchorSeq?: number }>();
  }

  it("an untouched log verifies, alone and against its anchor; the anchor file, endpoint and export agree", async () => {
    const { server: s, anchor } = await anchoredLog();
    expect(anchor).toMatchObject({ format: "stint-audit-anchor/v1", seq: 17, every: EVERY });
    expect(anchor).toHaveProperty("signature");
    expect(anchor).toHaveProperty("keyId");
    expect(anchor).toHaveProperty("time");
    expect(await verify(s)).toMatchObject({ ok: true, headSeq: 17, checkpoints: 4 });
    expect(await verify(s, anchor)).toMatchObject({ ok: true, anchorSeq: 17 });

    const served = await s.app.inject({
      method: "GET",
      url: "/v1/audit/anchor",
      headers: { authorization: s.adminAuth },
    });
    expect(served.statusCode).toBe(200);
    expect(served.json()).toEqual(anchor);

    // The SIEM stream carries every signed head, right after the event it covers.
    const exported = await s.app.inject({
      method: "GET",
      url: "/v1/audit/export?format=jsonl",
      headers: { authorization: s.adminAuth },
    });
    const lines = exported.body
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const heads = lines.filter((line) => line.format === "stint-audit-anchor/v1");
    expect(heads.map((head) => head.seq)).toEqual([5, 10, 15, 17]);
    expect(heads.at(-1)).toEqual(anchor);
    expect(lines.at(-2)).toMatchObject({ seq: 17 });
    for (const format of ["cef", "ocsf"]) {
      const other = await s.app.inject({
        method: "GET",
        url: `/v1/audit/export?format=${format}`,
        headers: { authorization: s.adminAuth },
      });
      expect(other.body).toContain(String(anchor.signature));
    }
  });

  it("deleting every checkpoint and re-chaining an edit fails verification: a checkpoint is required every N events", async () => {
    const { server: s, db } = await anchoredLog();
    await db.query("delete from audit_checkpoints");
    await rewriteReason(db.query, 3, "it never happened");
    const result = await verify(s);
    expect(result).toMatchObject({ ok: false, brokenSeq: 5 });
    expect(result.problem).toMatch(/checkpoint/);
  });

  it("deleting one required checkpoint in the middle fails verification", async () => {
    const { server: s, db } = await anchoredLog();
    await db.query("delete from audit_checkpoints where seq = 10");
    expect(await verify(s)).toMatchObject({ ok: false, brokenSeq: 10 });
  });

  it("an event edited after the last checkpoint, its tail re-chained, fails against the anchor", async () => {
    const { server: s, db, anchor } = await anchoredLog();
    await db.query("delete from audit_checkpoints where seq > 15");
    await rewriteReason(db.query, 16, "nothing to see");
    // Inside the database the rewrite is consistent: only the anchor held outside can tell.
    expect(await verify(s)).toMatchObject({ ok: true });
    const result = await verify(s, anchor);
    expect(result).toMatchObject({ ok: false, brokenSeq: 17 });
    expect(result.problem).toMatch(/anchor/);
  });

  it("truncating the tail after the anchored head fails against the anchor", async () => {
    const { server: s, db, anchor } = await anchoredLog();
    await truncateAfter(db.query, 15);
    expect(await verify(s)).toMatchObject({ ok: true });
    const result = await verify(s, anchor);
    expect(result).toMatchObject({ ok: false, brokenSeq: 16 });
    expect(result.problem).toMatch(/anchor/);
  });

  it("forged checkpoint signatures fail, even with the attacker's public key in signing_keys", async () => {
    const { server: s, db } = await anchoredLog();
    await rewriteReason(db.query, 2, "forged");
    const attacker = generateKeyPairSync("ed25519");
    const jwk = attacker.publicKey.export({ format: "jwk" });
    const keys = await db.query("select id from signing_keys where purpose = 'audit'");
    // The stored public half is the attacker's now; the sealed private half cannot be replaced without the master key.
    await db.query("update signing_keys set public_jwk = $1 where purpose = 'audit'", [
      JSON.stringify({ ...jwk, kid: keys[0]!.id, alg: "EdDSA", use: "sig" }),
    ]);
    for (const cp of await db.query("select * from audit_checkpoints order by seq")) {
      const event = await db.query("select hash from audit_events where seq = $1", [cp.seq]);
      const hash = event[0]!.hash as string;
      const signedAt = new Date(cp.signed_at as string).toISOString();
      const message = `stint-audit-checkpoint:v2:${String(cp.seq)}:${hash}:${String(cp.every)}:${signedAt}`;
      await db.query("update audit_checkpoints set hash = $1, signature = $2 where seq = $3", [
        hash,
        sign(null, Buffer.from(message), attacker.privateKey).toString("base64url"),
        cp.seq,
      ]);
    }
    const result = await verify(s);
    expect(result).toMatchObject({ ok: false, brokenSeq: 5 });
    expect(result.problem).toMatch(/signature/);
  });

  it("an anchor not signed by this Stint is refused", async () => {
    const { server: s, anchor } = await anchoredLog();
    const result = await verify(s, { ...anchor, signature: "A".repeat(86) });
    expect(result).toMatchObject({ ok: false, brokenSeq: 17 });
    expect(result.problem).toMatch(/anchor/);
    // A rewritten head passed off with a genuine signature of another head is refused the same way.
    const other = await verify(s, { ...anchor, hash: "f".repeat(64) });
    expect(other).toMatchObject({ ok: false });
  });
});
