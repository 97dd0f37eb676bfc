/**
 * The PostgreSQL proxy with node-postgres clients (see pg-proxy.test.ts for the set-up): a pool gets
 * what a direct pool gets (COPY, notices, errors, a cancel), a pipelining client, backpressure, and a
 * session's signal ending psql and an idle client.
 */
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { describe, expect, it } from "vitest";
import type { SessionEnd } from "../../modules/sessions/sessions.types.js";
import {
  backendKey,
  clientSocket,
  psql,
  range,
  sendCancel,
  tlsUpstreamFixture,
  waitFor,
} from "../../testing/pg-proxy-gate.js";

/** node-postgres runs any object with submit() as a query: the COPY sub-protocol by hand. */
function copyQuery(
  client: pg.ClientBase,
  sql: string,
  rows: string[] = [],
): Promise<{ tag: string; data: string; error?: string }> {
  return new Promise((resolve) => {
    let tag = "";
    let error: string | undefined;
    const out: Buffer[] = [];
    interface Connection {
      query(text: string): void;
      sendCopyFromChunk(chunk: Buffer): void;
      endCopyFrom(): void;
    }
    const submittable = {
      submit: (connection: Connection) => connection.query(sql),
      handleCopyInResponse: (connection: Connection) => {
        for (const row of rows) connection.sendCopyFromChunk(Buffer.from(row));
        connection.endCopyFrom();
      },
      handleCopyData: (message: { chunk: Buffer }) => out.push(message.chunk),
      handleCommandComplete: (message: { text: string }) => (tag = message.text),
      // node-postgres forgets a query once it failed: no handleReadyForQuery follows an error.
      handleError: (err: Error & { code?: string }) => {
        error = `${err.code}: ${err.message}`;
        resolve({ tag, data: Buffer.concat(out).toString(), error });
      },
      handleReadyForQuery: () =>
        resolve({ tag, data: Buffer.concat(out).toString(), ...(error === undefined ? {} : { error }) }),
      handleRowDescription: () => {},
      handleDataRow: () => {},
      handleEmptyQuery: () => {},
      handlePortalSuspended: () => {},
    };
    void client.query(submittable as unknown as pg.QueryConfig);
  });
}

/** The same mixed workload, run through the proxy and directly; returns what a user would compare. */
async function workload(pool: pg.Pool, cancelPort: number) {
  const simple = await Promise.all(
    range(12).map((i) => pool.query(`SELECT ${i} AS i, repeat('x', ${i}) AS s`).then((r) => r.rows)),
  );
  const params = await Promise.all(
    range(24).map((i) =>
      pool
        .query("SELECT $1::int * 2 AS doubled, $2::text AS label, $3::text IS NULL AS is_null", [i, `é-${i}`, null])
        .then((r) => r.rows[0] as unknown),
    ),
  );
  const named = await Promise.all(
    range(40).map((i) =>
      pool
        .query({ name: "square", text: "SELECT $1::int * $1::int AS square", values: [i] })
        .then((r) => r.rows[0] as unknown),
    ),
  );
  const client = await pool.connect();
  try {
    await client.query("CREATE TEMP TABLE copy_t (id int, name text)");
    const copyIn = await copyQuery(client, "COPY copy_t FROM STDIN", ["1\tone\n2\ttwo\n", "3\tthree\n"]);
    const copyOut = await copyQuery(client, "COPY (SELECT * FROM copy_t ORDER BY id) TO STDOUT");
    const copyBad = await copyQuery(client, "COPY copy_t FROM STDIN", ["x\ty\n"]);
    const notices: string[] = [];
    const onNotice = (notice: { message?: string }) => notices.push(notice.message ?? "");
    client.on("notice", onNotice);
    await client.query("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$");
    client.off("notice", onNotice);
    const divide = await client.query("SELECT 1/0").then(
      () => null,
      (e: pg.DatabaseError) => ({ code: e.code, message: e.message }),
    );
    const badParam = await client.query("SELECT $1::int", ["abc"]).then(
      () => null,
      (e: pg.DatabaseError) => ({ code: e.code, message: e.message }),
    );
    await client.query("BEGIN");
    await client.query("INSERT INTO copy_t VALUES ($1, $2)", [4, "four"]);
    const inTransaction = (await client.query("SELECT count(*)::int AS n FROM copy_t")).rows;
    await client.query("ROLLBACK");
    const afterRollback = (await client.query("SELECT count(*)::int AS n FROM copy_t")).rows;
    const big = await client.query("SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g");
    const sleeping = client.query("SELECT pg_sleep(30)").then(
      () => "not cancelled",
      (e: pg.DatabaseError) => `${e.code}: ${e.message}`,
    );
    await delay(300);
    await sendCancel(cancelPort, backendKey(client));
    const cancelled = await sleeping;
    const stillUsable = (await client.query("SELECT 'ok' AS still")).rows;
    return {
      simple,
      params,
      named,
      copyIn,
      copyOut,
      copyBad,
      notices,
      divide,
      badParam,
      inTransaction,
      afterRollback,
      big: { count: big.rowCount, last: big.rows.at(-1) as unknown },
      cancelled,
      stillUsable,
    };
  } finally {
    client.release();
  }
}

describe("PostgreSQL proxy with node-postgres clients", () => {
  const fx = tlsUpstreamFixture();

  it("a pool of 10 gets the same results through the proxy as directly", async () => {
    const before = fx.gate.sessions.length;
    const viaProxy = new pg.Pool({ ...fx.proxied(), max: 10 });
    const direct = new pg.Pool({
      host: fx.upstream.host,
      port: fx.upstream.port,
      user: fx.upstream.user,
      password: fx.upstream.password,
      database: fx.upstream.database,
      ssl: { ca: fx.instance.tls!.ca },
      max: 10,
    });
    try {
      const [proxied, straight] = [await workload(viaProxy, fx.proxyPort), await workload(direct, fx.instance.port)];
      expect(proxied).toEqual(straight);
      // And they are what they should be, not just equal.
      expect(proxied.copyIn.tag).toBe("COPY 3");
      expect(proxied.copyOut.data).toBe("1\tone\n2\ttwo\n3\tthree\n");
      expect(proxied.copyBad.error).toMatch(/^22P02: invalid input syntax for type integer/);
      expect(proxied.notices).toEqual(["hello 42"]);
      expect(proxied.divide?.code).toBe("22012");
      expect(proxied.badParam?.code).toBe("22P02");
      expect(proxied.cancelled).toBe("57014: canceling statement due to user request");
      expect(proxied.big.count).toBe(20000);
      expect(proxied.named.at(7)).toEqual({ square: 49 });

      // The client holds the server's real process id (pg_backend_pid() agrees), with a secret of the proxy's.
      const client = await viaProxy.connect();
      try {
        const { rows } = await client.query("SELECT pg_backend_pid() AS pid");
        expect(backendKey(client).processId).toBe((rows[0] as { pid: number }).pid);
      } finally {
        client.release();
      }
    } finally {
      await Promise.all([viaProxy.end(), direct.end()]);
    }

    const opened = fx.sessionsSince(before);
    expect(opened.length).toBeGreaterThanOrEqual(1);
    expect(opened.length).toBeLessThanOrEqual(10);
    await waitFor("every pooled session's end", () => opened.every((s) => s.ends.length === 1));
    const queries = opened.flatMap((s) => s.queries);
    expect(queries).toContainEqual(
      expect.objectContaining({
        statement: "SELECT $1::int * $1::int AS square",
        parameters: ["7"],
        command: "SELECT",
        rows: 1,
        error: null,
      }),
    );
    expect(queries).toContainEqual(
      expect.objectContaining({ statement: "COPY copy_t FROM STDIN", command: "COPY", rows: 3 }),
    );
    expect(queries).toContainEqual(
      expect.objectContaining({
        statement: "SELECT $1::int",
        parameters: ["abc"],
        error: expect.stringMatching(/^22P02/),
      }),
    );
    expect(queries).toContainEqual(
      expect.objectContaining({
        statement: "SELECT pg_sleep(30)",
        error: "57014: canceling statement due to user request",
      }),
    );
    expect(queries.filter((q) => q.statement === "SELECT $1::int * $1::int AS square")).toHaveLength(40);
    for (const q of queries) expect(q.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("a pipelining client: the query log keeps the order and the parameters", async () => {
    const before = fx.gate.sessions.length;
    const client = new pg.Client({ ...fx.proxied(), pipeline: true });
    await client.connect();
    try {
      const results = await Promise.all(
        range(20).map((i) => client.query("SELECT $1::int + 1 AS next", [i]).then((r) => r.rows[0] as unknown)),
      );
      expect(results).toEqual(range(20).map((i) => ({ next: i + 1 })));
    } finally {
      await client.end();
    }
    const [record] = fx.sessionsSince(before);
    expect(record?.queries.map((q) => q.parameters)).toEqual(range(20).map((i) => [String(i)]));
  });

  it("backpressure: a client that stops reading stops the proxy reading from the server", async () => {
    const before = fx.gate.sessions.length;
    const client = new pg.Client(fx.proxied());
    await client.connect();
    try {
      const record = fx.sessionsSince(before)[0];
      const socket = clientSocket(client);
      const total = 64 * 1024 * 1024;
      const query = client.query("SELECT repeat('x', 1048576) AS chunk FROM generate_series(1, 64)");
      socket.pause();
      await delay(1_500);
      // Without backpressure the whole 64 MiB would have passed by now; kernel buffers hold a few MiB.
      expect(record?.bytes.down).toBeLessThan(total / 2);
      socket.resume();
      const result = await query;
      expect(result.rowCount).toBe(64);
      // Byte counts reach the session in sums, a moment after the bytes passed.
      await waitFor("the bytes counted", () => (record?.bytes.down ?? 0) > total);
    } finally {
      await client.end();
    }
  });

  it("aborting the session's signal ends psql at once with the message; end is called once", async () => {
    const before = fx.gate.sessions.length;
    const run = psql(fx.proxyPort, ["-c", "SELECT pg_sleep(30)"]);
    const record = await waitFor("the session", () => fx.sessionsSince(before)[0]);
    await waitFor("pg_sleep upstream", async () => {
      const { rows } = await fx.admin.query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
      return rows.length > 0;
    });
    const started = Date.now();
    const end: SessionEnd = { reason: "killed", message: "your session was ended by carol: INC-7" };
    record.controller.abort(end);
    const result = await run;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("your session was ended by carol: INC-7");
    await waitFor("the end", () => record.ends.length > 0);
    await delay(200);
    expect(record.ends).toEqual([{ reason: "killed" }]);
    // The query is stopped upstream too, not left running.
    await waitFor("pg_sleep gone upstream", async () => {
      const { rows } = await fx.admin.query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
      return rows.length === 0;
    });
  });

  it("aborting an idle node-postgres session: the client gets the FATAL message", async () => {
    const before = fx.gate.sessions.length;
    const client = new pg.Client(fx.proxied());
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.message));
    await client.connect();
    await client.query("SELECT 1");
    const record = fx.sessionsSince(before)[0];
    record?.controller.abort({ reason: "activation_ended", message: "your activation of pg-read expired" });
    await waitFor("the client's error", () => errors.length > 0);
    expect(errors[0]).toContain("your activation of pg-read expired");
    await waitFor("the end", () => (record?.ends.length ?? 0) > 0);
    expect(record?.ends).toEqual([{ reason: "activation_ended" }]);
    await client.end().catch(() => {});
  });
});
