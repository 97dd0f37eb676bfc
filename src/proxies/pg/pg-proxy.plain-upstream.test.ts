/**
 * The PostgreSQL proxy over a plain TCP upstream (the machine's PostgreSQL): the relay reads into its own
 * buffer, reused only while nothing refers to the last read; clients that stop reading must still get
 * exactly the server's bytes. The stand-in gate is src/testing/pg-proxy-gate.ts's.
 */
import { createHash } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/logger.js";
import type { UpstreamPostgres } from "../../modules/sessions/sessions.types.js";
import { queryRules, type QueryRules } from "../../contract/query-policy.js";
import { PG_ADMIN_URL } from "../../testing/engines.js";
import { STINT_USER, TOKEN, clientSocket, createTestGate, range } from "../../testing/pg-proxy-gate.js";
import { createPgProxy, type PgProxy } from "./pg-proxy.js";

describe("PostgreSQL proxy over a plain TCP upstream (reads into the relay's own buffer)", () => {
  let queries: QueryRules | undefined;
  const testGate = createTestGate(
    () => upstream,
    () => queries,
  );
  let upstream: UpstreamPostgres;
  let proxy: PgProxy;
  let proxyPort: number;

  beforeAll(async () => {
    const url = new URL(PG_ADMIN_URL);
    upstream = {
      kind: "postgres",
      host: url.hostname,
      address: url.hostname,
      port: Number(url.port || 5432),
      database: "postgres",
      user: decodeURIComponent(url.username || "postgres"),
      password: decodeURIComponent(url.password),
      tls: null,
      allowAuth: ["scram-sha-256", "md5", "password"],
    };
    proxy = createPgProxy({ gate: testGate.gate, logger: createLogger({ level: "silent" }), port: 0 });
    proxyPort = (await proxy.listen()).port;
  });

  afterAll(async () => {
    await proxy?.close();
  });

  it("a client that stops reading mid-result, then reads on, gets exactly the server's rows; the query log has them", async () => {
    const before = testGate.sessions.length;
    const client = proxiedClient();
    await client.connect();
    try {
      const socket = clientSocket(client);
      // 24 MiB of rows at once (more than the kernel's buffers hold), then small rows one by one (the
      // server's reads come small and apart): while the client stalls, the proxy's writes to it wait.
      const [big, rows] = [48, 448];
      const query = client.query<{ i: number; h: string }>(
        `SELECT i, CASE WHEN i <= ${big} THEN repeat(md5(i::text), 16384)
           ELSE repeat(md5(i::text), 64) || pg_sleep(0.0005)::text END AS h
         FROM generate_series(1, ${rows}) i`,
      );
      let done = false;
      void query.finally(() => (done = true)).catch(() => undefined);
      socket.pause();
      await delay(300);
      for (let stalls = 0; !done && stalls < 300; stalls++) {
        socket.resume();
        await delay(1);
        socket.pause();
        await delay(8);
      }
      socket.resume();
      const result = await query;
      expect(result.rows.map((row) => row.i)).toEqual(range(rows).map((i) => i + 1));
      const md5 = (i: number) => createHash("md5").update(String(i)).digest("hex");
      const wrong = result.rows.filter((row) => row.h !== md5(row.i).repeat(row.i <= big ? 16384 : 64));
      expect(wrong.map((row) => row.i)).toEqual([]);
      const again = await client.query("SELECT 'still in step' AS s");
      expect(again.rows).toEqual([{ s: "still in step" }]);
      expect(testGate.sessions.slice(before)[0]?.queries.map((q) => q.rows)).toEqual([rows, 1]);
    } finally {
      await client.end();
    }
  });
  const proxiedClient = () =>
    new pg.Client({ host: "127.0.0.1", port: proxyPort, user: STINT_USER, password: TOKEN, database: "postgres" });

  /**
   * Runs `sql` through the proxy while its client stops reading for 1.5 s, and directly meanwhile; the
   * proxied session must then still be in step. `watch` sees both clients before the query (listeners).
   */
  async function stalledAndDirect<R extends pg.QueryResultRow>(
    sql: string,
    watch: (clients: { direct: pg.Client; proxied: pg.Client }) => void = () => undefined,
  ): Promise<{ direct: pg.QueryResult<R>; proxied: pg.QueryResult<R> }> {
    const direct = new pg.Client({ connectionString: PG_ADMIN_URL });
    const client = proxiedClient();
    await Promise.all([direct.connect(), client.connect()]);
    watch({ direct, proxied: client });
    // A stream the proxy garbled ends the connection, or leaves the client waiting for a length it read in
    // overwritten bytes: fail then, rather than wait for an answer that never comes.
    const broken = new Promise<never>((_resolve, reject) => {
      client.on("error", reject);
      setTimeout(() => reject(new Error("no answer through the proxy in 20 s")), 20_000).unref();
    });
    try {
      const socket = clientSocket(client);
      const proxying = client.query<R>(sql);
      socket.pause();
      const [expected] = await Promise.all([direct.query<R>(sql), delay(1_500)]);
      socket.resume();
      const proxied = await Promise.race([proxying, broken]);
      expect((await client.query("SELECT 'still in step' AS s")).rows).toEqual([{ s: "still in step" }]);
      return { direct: expected, proxied };
    } finally {
      await Promise.all([client.end().catch(() => undefined), direct.end()]);
    }
  }

  // The relay's read buffer is reused only while nothing refers to the last read. Here the server's rows come
  // in reads of about 8 KiB (PostgreSQL's send buffer, a pause every 8 rows) while the client does not read:
  // once the kernel's buffers are full (some 4 MiB), a write to the client waits, still queued, and the next
  // reads come while the queue is under the high-water mark. A buffer reused then would overwrite queued
  // bytes before they are sent: rows differ from the direct query's, or the stream no longer parses.
  it.each([
    ["no query policy", undefined],
    ["a query policy (the guard counts rows)", queryRules.parse({ maxRows: 1_000_000 })],
  ])(
    "with %s: a client that stops reading while small reads arrive gets the bytes a direct query gets",
    async (_label, rules) => {
      queries = rules;
      try {
        const { direct, proxied } = await stalledAndDirect<{ i: number; h: string }>(
          `SELECT i, repeat(md5(i::text), 32) || CASE WHEN i % 8 = 0 THEN pg_sleep(0.0002)::text ELSE '' END AS h
           FROM generate_series(1, 8000) i`,
        );
        expect(proxied.rows.length).toBe(direct.rows.length);
        const differing = proxied.rows.filter((row, n) => row.i !== direct.rows[n]!.i || row.h !== direct.rows[n]!.h);
        expect(differing.map((row) => row.i)).toEqual([]);
      } finally {
        queries = undefined;
      }
    },
    30_000,
  );
  it("a client that stops reading while whole messages arrive (notices, flushed one by one) gets what a direct session gets", async () => {
    // Each NoticeResponse is sent (flushed) on its own, so reads end on message boundaries: nothing but the
    // queued write to the stalled client refers to the last read when the next one comes.
    const notices = { direct: [] as string[], proxied: [] as string[] };
    await stalledAndDirect(
      `DO $$ BEGIN FOR i IN 1..2000 LOOP RAISE NOTICE '%', repeat(md5(i::text), 100); PERFORM pg_sleep(0.0001); END LOOP; END $$`,
      (clients) => {
        for (const side of ["direct", "proxied"] as const)
          clients[side].on("notice", (notice) => notices[side].push(notice.message ?? ""));
      },
    );
    expect(notices.proxied.length).toBe(notices.direct.length);
    const differing = notices.proxied.flatMap((text, n) => (text === notices.direct[n] ? [] : [n]));
    expect(differing).toEqual([]);
  }, 30_000);
});
