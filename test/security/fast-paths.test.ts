/**
 * Attacks on today's fast paths (issue 14): what the speed-ups skip must not open a way around Stint's
 * guarantees. Each case failed on the code it names before its fix (or, where another helper owns the code,
 * documents the finding in docs/security.md).
 */
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { sql } from "kysely";
import { seedUser } from "../../src/testing/pim.js";
import { testServer, type TestServer } from "../../src/testing/server.js";
import { createPgDatabase, ENGINES } from "../../src/testing/engines.js";
import { alice, sequencerFixture } from "../../src/testing/audit-sequencer.js";
import { NO_CONTEXT } from "../../src/modules/authz/authz.types.js";
import { armFailpoint, disarmFailpoints } from "../../src/lib/failpoints.js";

describe.each(ENGINES)("audit chaining pass without a lock on %s", (engine) => {
  const fixture = sequencerFixture();

  // Finding 28 (docs/security.md): the move inserts the pending rows as the table holds them at the move, under
  // the hash of what the pass read and MAC-checked; it is bound to the row versions read since migration 0035.
  it("a database writer changing a pending row between the pass's read and its move does not get its text chained", async () => {
    const h = await fixture.harness(engine, { checkpointEvery: 50, sequencing: "background" });
    const { audit } = h;
    await audit.record(alice, NO_CONTEXT, { action: "secret.read", outcome: "success", subject: "secret:db" });
    // The pass read the row and checked its MAC; the writer (no keys) now rewrites what the row says.
    // Once: a pass run again under the head lock (and, once fixed, with the pending rows locked) meets the
    // failpoint inside its transaction, where a second write would wait for that transaction.
    let edits = 0;
    const armed = armFailpoint("audit.sequence.before-commit", async () => {
      if (edits++ > 0) return;
      await sql`update audit_pending set subject = 'secret:other', actor = 'carol'`.execute(h.store.db);
    });
    try {
      await audit.chainPending();
    } finally {
      disarmFailpoints();
    }
    expect(armed.fired).toBeGreaterThanOrEqual(1);
    await audit.catchUp();
    const events = await audit.read({});
    // Never the writer's text under the hash of the genuine event: either the genuine event (what was
    // MAC-checked) is chained, or the altered row is rejected as any altered pending row is.
    expect(events.some((e) => e.subject === "secret:other" || e.actor === "carol")).toBe(false);
    expect(await audit.verify()).toMatchObject({ ok: true });
  });
});

describe("a secret read's HTTP fast path answers only what the route would", () => {
  const SECRET = "ledger/db/reader";
  const PLAIN = `/v1/secrets/${encodeURIComponent(SECRET)}/value`;
  let server: TestServer;
  let port: number;
  const fastAnswers: string[] = [];

  beforeAll(async () => {
    server = await testServer("pglite");
    await seedUser(server, "fp-rita");
    const put = await server.app.inject({
      method: "PUT",
      url: PLAIN.replace(/\/value$/, ""),
      headers: { authorization: server.adminAuth },
      payload: { kind: "password", value: "fp-secret-value", platformRoles: ["user"] },
    });
    expect(put.statusCode).toBe(200);
    server.app.observeFastAnswers((route) => fastAnswers.push(route.url));
    await server.app.listen({ host: "127.0.0.1", port: 0 });
    port = (server.app.server.address() as AddressInfo).port;
  }, 60_000);
  afterAll(async () => {
    await server?.cleanup();
  });

  /** A request sent as it is written (no client normalising the path). */
  function raw(method: string, path: string, headers: Record<string, string>) {
    return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, method, path, headers }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      });
      req.on("error", reject);
      req.end();
    });
  }
  const comparable = (body: string) => body.replace(/"correlationId":"[^"]*"/, '"correlationId":"…"');

  it("odd spellings of the URL and other methods: the fast path answers none, or exactly as the route", async () => {
    const rita = await server.login("fp-rita");
    await raw("GET", PLAIN, { authorization: rita }); // token and secret now in memory
    const variants = [
      PLAIN,
      PLAIN.replace(/%2F/g, "%2f"),
      `/${PLAIN}`,
      `${PLAIN}/`,
      `${PLAIN}?`,
      `${PLAIN}?version=1`,
      `${PLAIN};x`,
      PLAIN.replace("/value", "/VALUE"),
      PLAIN.replace("/value", "/%76alue"),
      PLAIN.replace("/v1/", "/V1/"),
      PLAIN.replace("/v1/secrets/", "/v1//secrets/"),
      PLAIN.replace("ledger", "%2e%2e%2Fledger"),
      PLAIN.replace("ledger", "..%2Fledger"),
      PLAIN.replace("ledger", "./ledger"),
      PLAIN.replace("ledger", "Ledger"),
      PLAIN.replace("ledger", "le\u0301dger"),
      PLAIN.replace("%2Fdb%2F", "%2F%2Fdb%2F"),
      PLAIN.replace("%2Freader", "%2Freader%2F"),
      `/v1/secrets/${"a".repeat(101)}/value`,
    ];
    for (const method of ["GET", "HEAD"])
      for (const url of variants) {
        const before = fastAnswers.length;
        const http = await raw(method, encodeURI(url).replace(/%25/g, "%"), { authorization: rita });
        const fast = fastAnswers.length > before;
        const what = `${method} ${url}`;
        // Only the two plain spellings of the path are the fast path's; everything else Fastify answers itself.
        expect(fast, what).toBe(method === "GET" && (url === PLAIN || url === variants[1]));
        if (!fast) continue;
        const ref = await server.app.inject({ method: "GET", url, headers: { authorization: rita } });
        expect(http.status, what).toBe(ref.statusCode);
        expect(comparable(http.body), what).toBe(comparable(ref.body));
        for (const h of ["cache-control", "x-content-type-options", "content-type"])
          expect(http.headers[h], `${what} ${h}`).toEqual(ref.headers[h]);
      }
  });

  it("a fast read's audit event carries the caller's address, user agent and request id as the route's does", async () => {
    const rita = await server.login("fp-rita");
    // X-Forwarded-For from a client no trusted proxy stands for (none configured) names no one.
    const headers = {
      authorization: rita,
      "user-agent": "fp-agent/1",
      "x-request-id": "fp-request-0001",
      "x-forwarded-for": "203.0.113.9",
    };
    await raw("GET", PLAIN, { authorization: rita }); // this token now known in memory
    const before = fastAnswers.length;
    expect((await raw("GET", PLAIN, headers)).headers["x-request-id"]).toBe("fp-request-0001");
    expect(fastAnswers.length).toBe(before + 1);
    await raw("GET", `${PLAIN}?version=1`, { ...headers, "x-request-id": "fp-request-0002" });
    expect(fastAnswers.length).toBe(before + 1);
    const events = await server.audit.read({ action: "secret.read", limit: 10_000 });
    const pick = (id: string) => {
      const e = events.find((event) => event.correlationId === id);
      return e && { actor: e.actor, subject: e.subject, sourceIp: e.sourceIp, userAgent: e.userAgent };
    };
    expect(pick("fp-request-0001")).toEqual({
      actor: "fp-rita",
      subject: `secret:${SECRET}`,
      sourceIp: "127.0.0.1",
      userAgent: "fp-agent/1",
    });
    expect(pick("fp-request-0001")).toEqual(pick("fp-request-0002"));
  });
});

describe("statements marked PREPARED (lib/db.ts) on two nodes", () => {
  it("a name means one statement text on every node: a pooler sharing server connections cannot bind one node's parameters to another's statement", async () => {
    const database = await createPgDatabase();
    const closing: (() => Promise<void>)[] = [];
    try {
      // Two nodes: two instances of the module, each marking statements in its own order (what runs first).
      const seen = new Map<string, string>();
      for (const order of [
        ["a", "b"],
        ["b", "a"],
      ]) {
        vi.resetModules();
        const db = await import("../../src/lib/db.js");
        const store = await db.openStore<Record<string, never>>({ databaseUrl: database.url, poolSize: 1 });
        closing.push(() => store.close());
        const named = await store.transaction(async (tx) => {
          for (const which of order)
            await sql`select ${sql.raw(db.PREPARED)} ${which}::text || ${sql.raw(`'-${which}'`)} as v`.execute(tx);
          const { rows } = await sql<{ name: string; statement: string }>`select name, statement
            from pg_prepared_statements`.execute(tx);
          return rows;
        });
        expect(named).toHaveLength(2);
        for (const { name, statement } of named) {
          expect(seen.get(name) ?? statement, name).toBe(statement);
          seen.set(name, statement);
        }
      }
    } finally {
      for (const close of closing) await close();
      await database.drop();
    }
  });
});
