/**
 * The PostgreSQL proxy against real servers and real clients: psql and node-postgres, through the
 * proxy to a throwaway cluster that checks passwords with SCRAM-SHA-256, compared with the same
 * clients connected directly. The only stand-in is the SessionGate (the sessions module's decision),
 * a few lines below that map one Stint user and token to the cluster and keep what gets recorded.
 */
import { execFile, spawn } from "node:child_process";
import { X509Certificate, createHash, randomUUID } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/logger.js";
import {
  GSSENC_REQUEST_CODE,
  encodeAuthenticationCleartextPassword,
  encodeCancelRequest,
  encodeSslRequest,
  encodeStartupMessage,
} from "../../lib/pg-wire.js";
import { int32, untyped } from "../../lib/pg-wire/buffers.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type QueryLogEntry,
  type SessionEnd,
  type SessionGate,
  type UpstreamPostgres,
} from "../../modules/sessions/sessions.types.js";
import { queryRules, type QueryRules } from "../../contract/query-policy.js";
import { PG_ADMIN_URL } from "../../testing/engines.js";
import { startPostgres, type PostgresInstance } from "../../testing/postgres-instance.js";
import { createLocalTunnel } from "./local-tunnel.js";
import { createPgProxy, type PgProxy } from "./pg-proxy.js";

const STINT_USER = "alice%pg-read";
const TOKEN = `stint-db-${randomUUID()}`;
const TUNNEL_PASSWORD = `tunnel-${randomUUID()}`;
const UPSTREAM_USER = "app_user";
const UPSTREAM_PASSWORD = `upstream-${randomUUID()}`;
const DATABASE = "appdb";
const REFUSAL = "the Stint token is not valid (expired or revoked); run `stint db token pg-read`";

interface TestSession {
  session: BrokeredSession<UpstreamPostgres>;
  controller: AbortController;
  queries: QueryLogEntry[];
  ends: { reason: EndReason; detail?: string }[];
  bytes: { up: number; down: number };
}

/** The sessions module's part, reduced to: one user, one token, one upstream (changeable per test). */
function createTestGate(upstream: () => UpstreamPostgres, queries: () => QueryRules | undefined = () => undefined) {
  const calls: { user: string; password: string; database: string | null; clientAddress: string }[] = [];
  const sessions: TestSession[] = [];
  const gate: Pick<SessionGate, "openPostgres"> = {
    openPostgres: async (input) => {
      calls.push({ ...input });
      if (input.user !== STINT_USER) throw new SessionRefusedError("NOT_ACTIVE", `no active role for ${input.user}`);
      if (input.password !== TOKEN) throw new SessionRefusedError("BAD_CREDENTIALS", REFUSAL);
      const controller = new AbortController();
      const record: TestSession = {
        controller,
        queries: [],
        ends: [],
        bytes: { up: 0, down: 0 },
        session: {
          id: randomUUID(),
          user: "alice",
          role: "pg-read",
          target: "app-db",
          policy: { recording: "required", portForwarding: false, queryParameters: true, queries: queries() },
          upstream: { ...upstream(), database: input.database ?? UPSTREAM_USER },
          recorder: {
            output: () => {},
            input: () => {},
            resize: () => {},
            event: () => {},
            query: (entry) => record.queries.push(entry),
          },
          signal: controller.signal,
          countBytes: (direction, n) => {
            record.bytes[direction] += n;
          },
          end: async (reason, detail) => {
            record.ends.push(detail === undefined ? { reason } : { reason, detail });
          },
        },
      };
      sessions.push(record);
      return record.session;
    },
  };
  return { gate, calls, sessions };
}

async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function psql(
  port: number,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<Run> & {
  child: ReturnType<typeof spawn>;
} {
  const child = spawn(
    "psql",
    ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-d", DATABASE, ...args],
    {
      env: {
        PATH: process.env.PATH,
        PGUSER: STINT_USER,
        PGPASSWORD: TOKEN,
        PGCONNECT_TIMEOUT: "10",
        PGSSLMODE: "prefer",
        PGPASSFILE: "/nonexistent/stint-test-pgpass",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return Object.assign(done, { child });
}

/** What node-postgres keeps of BackendKeyData (not in its types). */
function backendKey(client: pg.ClientBase): { processId: number; secretKey: number } {
  const { processID, secretKey } = client as unknown as { processID: number; secretKey: number };
  return { processId: processID, secretKey };
}

/** A CancelRequest sent by hand with the key the client received, as libpq's PQcancel does. */
async function sendCancel(port: number, key: { processId: number; secretKey: number }): Promise<void> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  socket.end(encodeCancelRequest(key.processId, int32(key.secretKey)));
  await once(socket, "close");
}

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

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

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

describe("PostgreSQL proxy", () => {
  let instance: PostgresInstance;
  let proxy: PgProxy;
  let proxyPort: number;
  let upstream: UpstreamPostgres;
  let admin: pg.Client;
  const logLines: string[] = [];
  const testGate = createTestGate(() => upstream);
  const logger = createLogger({ level: "debug", destination: { write: (line: string) => logLines.push(line) } });

  beforeAll(async () => {
    instance = await startPostgres({ tls: true });
    admin = new pg.Client({
      host: "127.0.0.1",
      port: instance.port,
      user: "postgres",
      password: instance.adminPassword,
      database: "postgres",
      ssl: { ca: instance.tls!.ca },
    });
    await admin.connect();
    await admin.query(`CREATE ROLE ${UPSTREAM_USER} LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    await admin.query(`CREATE DATABASE ${DATABASE} OWNER ${UPSTREAM_USER}`);
    upstream = {
      kind: "postgres",
      host: "127.0.0.1",
      address: "127.0.0.1",
      port: instance.port,
      database: DATABASE,
      user: UPSTREAM_USER,
      password: UPSTREAM_PASSWORD,
      tls: { mode: "verify-full", ca: instance.tls!.ca },
      allowAuth: [],
    };
    proxy = createPgProxy({ gate: testGate.gate, logger, port: 0 });
    proxyPort = (await proxy.listen()).port;
  });

  afterAll(async () => {
    await proxy?.close();
    await admin?.end();
    await instance?.stop();
  });

  const sessionsSince = (count: number) => testGate.sessions.slice(count);

  it("psql runs queries through the proxy, signed in upstream with SCRAM; the query log lists them", async () => {
    const before = testGate.sessions.length;
    const run = await psql(
      proxyPort,
      [
        "-c",
        "SELECT current_user",
        "-c",
        "CREATE TABLE items (id int PRIMARY KEY, name text)",
        "-c",
        "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "-c",
        "SELECT count(*) FROM items",
        "-c",
        "SHOW application_name",
      ],
      { PGAPPNAME: "stint-test" },
    );
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toBe("app_user\n3\nstint-test\n");

    expect(testGate.calls.at(-1)).toEqual({
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
      clientAddress: "127.0.0.1",
    });
    const [record] = sessionsSince(before);
    expect(record).toBeDefined();
    if (record === undefined) return;
    await waitFor("the session's end", () => record.ends.length > 0);
    expect(record.ends).toEqual([{ reason: "client_closed" }]);
    expect(record.queries.map(({ statement, command, rows, error }) => ({ statement, command, rows, error }))).toEqual([
      { statement: "SELECT current_user", command: "SELECT", rows: 1, error: null },
      {
        statement: "CREATE TABLE items (id int PRIMARY KEY, name text)",
        command: "CREATE TABLE",
        rows: null,
        error: null,
      },
      { statement: "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')", command: "INSERT", rows: 3, error: null },
      { statement: "SELECT count(*) FROM items", command: "SELECT", rows: 1, error: null },
      { statement: "SHOW application_name", command: "SHOW", rows: null, error: null },
    ]);
    for (const entry of record.queries) expect(entry.durationMs).toBeGreaterThanOrEqual(0);
    expect(record.bytes.up).toBeGreaterThan(0);
    expect(record.bytes.down).toBeGreaterThan(0);
    expect(proxy.liveSessions()).toBe(0);
  });

  it("psql COPY FROM STDIN and TO STDOUT, and an error, through the proxy", async () => {
    const before = testGate.sessions.length;
    const child = spawn(
      "psql",
      ["-X", "-q", "-h", "127.0.0.1", "-p", String(proxyPort), "-d", DATABASE, "-c", "COPY items FROM STDIN"],
      { env: { PATH: process.env.PATH, PGUSER: STINT_USER, PGPASSWORD: TOKEN }, stdio: ["pipe", "pipe", "pipe"] },
    );
    child.stdin.end("10\tten\n11\televen\n");
    const [code] = (await once(child, "close")) as [number];
    expect(code).toBe(0);
    const out = await psql(proxyPort, ["-c", "COPY (SELECT * FROM items WHERE id >= 10 ORDER BY id) TO STDOUT"]);
    expect(out.stdout).toBe("10\tten\n11\televen\n");
    const failed = await psql(proxyPort, ["-c", "SELECT 1/0"]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain("division by zero");

    const queries = sessionsSince(before).flatMap((s) => s.queries);
    expect(queries.map(({ command, rows, error }) => ({ command, rows, error }))).toEqual([
      { command: "COPY", rows: 2, error: null },
      { command: "COPY", rows: 2, error: null },
      { command: null, rows: null, error: "22012: division by zero" },
    ]);
  });

  it("answers SSLRequest and GSSENCRequest with 'N', then asks for the password in clear", async () => {
    const socket = connect({ host: "127.0.0.1", port: proxyPort });
    await once(socket, "connect");
    const read = async () => (await once(socket, "data"))[0] as Buffer;
    socket.write(untyped(int32(GSSENC_REQUEST_CODE)));
    expect((await read()).toString("latin1")).toBe("N");
    socket.write(encodeSslRequest());
    expect((await read()).toString("latin1")).toBe("N");
    socket.write(encodeStartupMessage({ user: STINT_USER, database: DATABASE }));
    expect(await read()).toEqual(encodeAuthenticationCleartextPassword());
    socket.destroy();
  });

  it("with a certificate: psql with sslmode=require is served over TLS, a plaintext startup is refused", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "stint-pg-tls-"));
    const run = promisify(execFile);
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      path.join(dir, "key.pem"),
      "-out",
      path.join(dir, "cert.pem"),
    ]);
    const secure = createPgProxy({
      gate: testGate.gate,
      logger,
      port: 0,
      tls: { cert: await readFile(path.join(dir, "cert.pem")), key: await readFile(path.join(dir, "key.pem")) },
    });
    const { port } = await secure.listen();
    try {
      const before = testGate.sessions.length;
      const ok = await psql(
        port,
        ["-c", "select ssl from pg_stat_ssl where pid = pg_backend_pid()", "-c", "select 'over tls'"],
        {
          PGSSLMODE: "require",
        },
      );
      expect(ok.stderr).toBe("");
      expect(ok.stdout).toContain("over tls");
      expect(testGate.sessions.length).toBe(before + 1);
      const plain = await psql(port, ["-c", "select 1"], { PGSSLMODE: "disable" });
      expect(plain.code).not.toBe(0);
      expect(plain.stderr).toContain("accepts only TLS connections");
      expect(testGate.sessions.length).toBe(before + 1);
      // `stint db proxy`'s tunnel asks for TLS and gets it.
      const tunnel = createLocalTunnel({
        listenPort: 0,
        proxyHost: "127.0.0.1",
        proxyPort: port,
        user: STINT_USER,
        password: () => Promise.resolve(TOKEN),
        localPassword: TUNNEL_PASSWORD,
        // As the server names it (src/proxies/index.ts): the proxy shows that certificate, so it passes.
        proxyCertificateSha256: new X509Certificate(await readFile(path.join(dir, "cert.pem"))).fingerprint256,
      });
      const tunnelPort = (await tunnel.listen()).port;
      try {
        const viaTunnel = await psql(tunnelPort, ["-w", "-c", "SELECT 'tunnelled'"], {
          PGPASSWORD: TUNNEL_PASSWORD,
          PGSSLMODE: "disable",
        });
        expect(viaTunnel.stderr).toBe("");
        expect(viaTunnel.stdout).toBe("tunnelled\n");
      } finally {
        await tunnel.close();
      }
      // The proxy answers 'S'.
      const socket = connect({ host: "127.0.0.1", port });
      await once(socket, "connect");
      socket.write(encodeSslRequest());
      expect(((await once(socket, "data"))[0] as Buffer).toString("latin1")).toBe("S");
      socket.destroy();
    } finally {
      await secure.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a wrong token: psql fails with the gate's message and no session is opened", async () => {
    const upstreamBackends = async () =>
      (await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [UPSTREAM_USER]))
        .rows[0] as { n: number };
    await waitFor("earlier sessions' backends to exit", async () => (await upstreamBackends()).n === 0);
    const before = testGate.sessions.length;
    const calls = testGate.calls.length;
    const run = await psql(proxyPort, ["-c", "SELECT 1"], { PGPASSWORD: "not-the-token" });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(REFUSAL);
    expect(testGate.calls.slice(calls)).toMatchObject([{ user: STINT_USER, password: "not-the-token" }]);
    expect(testGate.sessions.length).toBe(before);
    expect(await upstreamBackends()).toEqual({ n: 0 });
  });

  it("a pool of 10 gets the same results through the proxy as directly", async () => {
    const before = testGate.sessions.length;
    const viaProxy = new pg.Pool({
      host: "127.0.0.1",
      port: proxyPort,
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
      max: 10,
    });
    const direct = new pg.Pool({
      host: upstream.host,
      port: upstream.port,
      user: upstream.user,
      password: upstream.password,
      database: upstream.database,
      ssl: { ca: instance.tls!.ca },
      max: 10,
    });
    try {
      const [proxied, straight] = [await workload(viaProxy, proxyPort), await workload(direct, instance.port)];
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

    const opened = sessionsSince(before);
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
    const before = testGate.sessions.length;
    const client = new pg.Client({
      host: "127.0.0.1",
      port: proxyPort,
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
      pipeline: true,
    });
    await client.connect();
    try {
      const results = await Promise.all(
        range(20).map((i) => client.query("SELECT $1::int + 1 AS next", [i]).then((r) => r.rows[0] as unknown)),
      );
      expect(results).toEqual(range(20).map((i) => ({ next: i + 1 })));
    } finally {
      await client.end();
    }
    const [record] = sessionsSince(before);
    expect(record?.queries.map((q) => q.parameters)).toEqual(range(20).map((i) => [String(i)]));
  });

  it("backpressure: a client that stops reading stops the proxy reading from the server", async () => {
    const before = testGate.sessions.length;
    const client = new pg.Client({
      host: "127.0.0.1",
      port: proxyPort,
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
    });
    await client.connect();
    try {
      const record = sessionsSince(before)[0];
      const socket = (client as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
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
    const before = testGate.sessions.length;
    const run = psql(proxyPort, ["-c", "SELECT pg_sleep(30)"]);
    const record = await waitFor("the session", () => sessionsSince(before)[0]);
    await waitFor("pg_sleep upstream", async () => {
      const { rows } = await admin.query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
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
      const { rows } = await admin.query("SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
      return rows.length === 0;
    });
  });

  it("aborting an idle node-postgres session: the client gets the FATAL message", async () => {
    const before = testGate.sessions.length;
    const client = new pg.Client({
      host: "127.0.0.1",
      port: proxyPort,
      user: STINT_USER,
      password: TOKEN,
      database: DATABASE,
    });
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.message));
    await client.connect();
    await client.query("SELECT 1");
    const record = sessionsSince(before)[0];
    record?.controller.abort({ reason: "activation_ended", message: "your activation of pg-read expired" });
    await waitFor("the client's error", () => errors.length > 0);
    expect(errors[0]).toContain("your activation of pg-read expired");
    await waitFor("the end", () => (record?.ends.length ?? 0) > 0);
    expect(record?.ends).toEqual([{ reason: "activation_ended" }]);
    await client.end().catch(() => {});
  });

  it("an upstream that refuses the credential: a clear error, never the upstream password", async () => {
    const saved = upstream;
    upstream = { ...saved, password: "wrong-upstream-password" };
    const before = testGate.sessions.length;
    try {
      const run = await psql(proxyPort, ["-c", "SELECT 1"]);
      expect(run.code).not.toBe(0);
      expect(run.stderr).toContain(`the database at 127.0.0.1:${instance.port} refused the session`);
      expect(run.stderr).toContain("password authentication failed");
      expect(run.stderr).not.toContain("wrong-upstream-password");
      upstream = { ...saved, port: 1 };
      const unreachable = await psql(proxyPort, ["-c", "SELECT 1"]);
      expect(unreachable.stderr).toContain("could not connect to the database at 127.0.0.1:1");
    } finally {
      upstream = saved;
    }
    const opened = sessionsSince(before);
    await waitFor("both ends", () => opened.every((s) => s.ends.length > 0));
    expect(opened.map((s) => s.ends[0]?.reason)).toEqual(["error", "error"]);
  });

  it("signs in upstream with MD5 or a cleartext password only when the target opted into it (finding 2)", async () => {
    const hbaFile = ((await admin.query("SHOW hba_file")).rows[0] as { hba_file: string }).hba_file;
    const original = await readFile(hbaFile, "utf8");
    await writeFile(
      hbaFile,
      `host all md5_user 127.0.0.1/32 md5\nhost all clear_user 127.0.0.1/32 password\n${original}`,
    );
    await admin.query("SELECT pg_reload_conf()");
    await admin.query("SET password_encryption = 'md5'");
    await admin.query(`CREATE ROLE md5_user LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    await admin.query("RESET password_encryption");
    await admin.query(`CREATE ROLE clear_user LOGIN PASSWORD '${UPSTREAM_PASSWORD}'`);
    const stored = await admin.query(
      "SELECT rolname, left(rolpassword, 3) AS kind FROM pg_authid WHERE rolname IN ('md5_user', 'clear_user') ORDER BY rolname",
    );
    expect(stored.rows).toEqual([
      { rolname: "clear_user", kind: "SCR" },
      { rolname: "md5_user", kind: "md5" },
    ]);
    await delay(300); // the reload is asynchronous
    const saved = upstream;
    try {
      for (const [user, method] of [
        ["md5_user", "md5"],
        ["clear_user", "password"],
      ] as const) {
        upstream = { ...saved, user };
        const refused = await psql(proxyPort, ["-c", "SELECT current_user"]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain(`options.auth.allow: [${method}]`);
        upstream = { ...saved, user, allowAuth: [method] };
        const run = await psql(proxyPort, ["-c", "SELECT current_user"]);
        expect(run.stderr).toBe("");
        expect(run.stdout).toBe(`${user}\n`);
      }
    } finally {
      upstream = saved;
    }
  });

  it("the local tunnel: psql with the tunnel's own password, never the token", async () => {
    const tunnel = createLocalTunnel({
      listenPort: 0,
      proxyHost: "127.0.0.1",
      proxyPort,
      user: STINT_USER,
      password: () => Promise.resolve(TOKEN),
      localPassword: TUNNEL_PASSWORD,
    });
    const { port } = await tunnel.listen();
    try {
      const run = await psql(port, ["-w", "-c", "SELECT current_user"], {
        PGPASSWORD: TUNNEL_PASSWORD,
        PGUSER: "alice",
      });
      expect(run.stderr).toBe("");
      expect(run.stdout).toBe("app_user\n");
      expect(testGate.calls.at(-1)).toMatchObject({ user: STINT_USER, password: TOKEN });
      const calls = testGate.calls.length;
      const without = await psql(port, ["-w", "-c", "SELECT 1"], { PGPASSWORD: undefined, PGUSER: "alice" });
      expect(without.code).not.toBe(0);
      expect(testGate.calls.length).toBe(calls);

      // A cancel through the tunnel reaches the server.
      const client = new pg.Client({
        host: "127.0.0.1",
        port,
        user: "alice",
        password: TUNNEL_PASSWORD,
        database: DATABASE,
      });
      await client.connect();
      const sleeping = client.query("SELECT pg_sleep(30)").then(
        () => "not cancelled",
        (e: pg.DatabaseError) => e.code,
      );
      await delay(300);
      await sendCancel(port, backendKey(client));
      expect(await sleeping).toBe("57014");
      await client.end();
    } finally {
      await tunnel.close();
    }
  });

  it("close() ends live sessions with reason shutdown", async () => {
    const gate = createTestGate(() => upstream);
    const own = createPgProxy({ gate: gate.gate, logger, port: 0 });
    const { port } = await own.listen();
    const client = new pg.Client({ host: "127.0.0.1", port, user: STINT_USER, password: TOKEN, database: DATABASE });
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.message));
    await client.connect();
    expect(own.liveSessions()).toBe(1);
    await own.close();
    expect(own.liveSessions()).toBe(0);
    expect(gate.sessions[0]?.ends).toEqual([{ reason: "shutdown" }]);
    await waitFor("the client's error", () => errors.length > 0);
    expect(errors[0]).toContain("shutting down");
    await client.end().catch(() => {});
  });

  it("never logs the token or the upstream password", () => {
    expect(logLines.length).toBeGreaterThan(0);
    const all = logLines.join("");
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain(UPSTREAM_PASSWORD);
  });
});

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
      const socket = (client as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
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
      const socket = (client as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
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
