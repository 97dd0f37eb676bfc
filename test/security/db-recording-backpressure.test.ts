/**
 * Class: a user with a recorded database session filling the proxy's memory while the recordings disk is
 * behind (a hung NFS mount, a saturated volume), and a query log growing without a size limit.
 *
 * The query log is written through the blob writer, which takes every line and reports a backlog past
 * 4 MiB waiting for the disk; the SSH proxy holds its streams back then (finding 72), the database proxies
 * read on. A client streaming large statements had every one of them run, answered and queued in memory
 * for the disk. Now the client is not read while the recording is backlogged (its statements wait in its
 * own socket): nothing is dropped, and everything runs once the disk caught up. And the recording's size
 * limit (STINT_RECORDING_MAX_BYTES) ends a `recording: required` session as `recording_failed`.
 *
 * Finding 84: a statement was logged when its result came, so the one whose entry passed the size limit
 * had already run at the server and was in no recording. Now a statement is logged before it is sent,
 * and one the recording cannot take is never sent: every row the server holds has its INSERT recorded.
 *
 * Real PostgreSQL and MariaDB, the real proxies, the real recorder and blob store; the disk stalled with a
 * failpoint after the recording's first write.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { armFailpoint, disarmFailpoints } from "../../src/lib/failpoints.js";
import { holdMariadb } from "../../src/testing/mariadb.js";
import {
  recordedDbProxies,
  recordedDbSessions,
  type RecordedDbProxies,
  type RecordedDbSessions,
} from "../../src/testing/recorded-db-sessions.js";

/** Statements of 512 KiB (the MySQL proxy refuses one of 1 MiB it could not log whole). */
const STATEMENT_BYTES = 512 * 1024;
const STATEMENTS = 60;
const LIMIT = 4 * 1024 * 1024;
const statementOf = (i: number) => `SELECT ${i} AS i, LENGTH('${"x".repeat(STATEMENT_BYTES)}') AS n`;
const TIGHT_LIMIT = 24 * 1024;
const insertOf = (table: string, i: number) => `INSERT INTO ${table} VALUES (${i}, '${"y".repeat(400)}')`;

let unlimited: RecordedDbSessions;
let limited: RecordedDbSessions;
/** A limit reached after some dozens of small INSERTs. */
let tight: RecordedDbSessions;
/** Which recordings the gates hand out. */
let sessions: () => RecordedDbSessions;
let proxies: RecordedDbProxies;
let releaseMariadb: () => Promise<void>;

beforeAll(async () => {
  releaseMariadb = await holdMariadb();
  unlimited = recordedDbSessions();
  limited = recordedDbSessions({ maxBytes: LIMIT });
  tight = recordedDbSessions({ maxBytes: TIGHT_LIMIT });
  sessions = () => unlimited;
  proxies = await recordedDbProxies(() => sessions());
}, 60_000);

afterAll(async () => {
  disarmFailpoints();
  await proxies?.close();
  unlimited?.cleanup();
  limited?.cleanup();
  tight?.cleanup();
  await releaseMariadb?.();
}, 60_000);

interface Client {
  query(sql: string): Promise<unknown>;
  end(): Promise<void>;
}

// A killed session's connection reports an error event: the helper takes it (the query's rejection says it).
async function pgClient(): Promise<Client> {
  const client = await proxies.pgClient();
  return { query: (sql) => client.query(sql), end: () => client.end() };
}

async function mysqlClient(): Promise<Client> {
  const connection = await proxies.mysqlClient();
  return { query: (sql) => connection.query(sql), end: () => connection.end() };
}

/** The database itself, not through the proxy: what ran there. */
interface Direct {
  run(sql: string): Promise<void>;
  numbers(sql: string): Promise<number[]>;
  /** A new table's qualified name. */
  table: string;
  end(): Promise<void>;
}

async function pgDirect(): Promise<Direct> {
  const client = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await client.connect();
  return {
    run: async (sql) => void (await client.query(sql)),
    numbers: async (sql) => (await client.query<{ i: number }>(sql)).rows.map((row) => Number(row.i)),
    table: `public.stint_limit_${randomBytes(4).toString("hex")}`,
    end: () => client.end(),
  };
}

async function mysqlDirect(): Promise<Direct> {
  const connection = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root" });
  await connection.query("CREATE DATABASE IF NOT EXISTS stint_recording_limit");
  return {
    run: async (sql) => void (await connection.query(sql)),
    numbers: async (sql) => ((await connection.query(sql))[0] as { i: number }[]).map((row) => Number(row.i)),
    table: `stint_recording_limit.t_${randomBytes(4).toString("hex")}`,
    end: () => connection.end(),
  };
}

/** Polls until `done()` or the value stops changing for 3 s (60 looks 50 ms apart); never a timing assert. */
async function untilSteady(value: () => number, done: () => boolean, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  let last = -1;
  let steady = 0;
  while (Date.now() < deadline) {
    const now = value();
    steady = now === last ? steady + 1 : 0;
    last = now;
    if (done() || steady >= 60) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("the statements never stopped nor finished");
}

describe.each([
  ["PostgreSQL", pgClient, pgDirect],
  ["MariaDB", mysqlClient, mysqlDirect],
] as const)("%s proxy: the query log's disk stalls, and its size limit", (_name, connect, direct) => {
  it("while the disk stalls the client is held back: the proxy does not queue the statements, and loses none", async () => {
    sessions = () => unlimited;
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((resolve) => (release = resolve));
    // The first batch of the recording reaches the disk, then the disk takes nothing more until released.
    armFailpoint("session.recording.after-write", () => stalled);
    try {
      const client = await connect();
      const ended = unlimited.ended.at(-1)!;
      let answered = 0;
      const running = (async () => {
        for (let i = 0; i < STATEMENTS; i++) {
          await client.query(statementOf(i));
          answered += 1;
        }
      })();
      running.catch(() => undefined);
      await untilSteady(
        () => answered,
        () => answered === STATEMENTS,
      );
      // Before: all 60 ran and were answered, 30 MiB of query log waiting in the proxy's memory.
      expect(answered).toBeLessThan(STATEMENTS / 2);
      release();
      await running;
      expect(answered).toBe(STATEMENTS);
      await client.end();
      const end = await ended;
      expect(end.reason).toBe("client_closed");
      const logged = unlimited.entries(end.recording!).filter((entry) => entry.statement.length > STATEMENT_BYTES);
      expect(logged.map((entry) => entry.statement)).toEqual(
        Array.from({ length: STATEMENTS }, (_, i) => statementOf(i)),
      );
    } finally {
      release();
      disarmFailpoints();
    }
  }, 180_000);

  it("a query log that reaches STINT_RECORDING_MAX_BYTES ends a `recording: required` session, saying why", async () => {
    sessions = () => limited;
    const client = await connect();
    const ended = limited.ended.at(-1)!;
    let failure: Error | undefined;
    for (let i = 0; i < 4 * (LIMIT / STATEMENT_BYTES) && !failure; i++) {
      await client.query(statementOf(i)).catch((error: Error) => (failure = error));
    }
    expect(failure?.message).toMatch(/size limit/);
    const end = await ended;
    expect(end.reason).toBe("recording_failed");
    expect(end.recording).toMatchObject({ partial: true, limit: LIMIT });
    expect(end.recording!.bytes).toBeLessThanOrEqual(LIMIT);
    expect(limited.entries(end.recording!).length).toBeGreaterThan(0);
    await client.end().catch(() => undefined);
  }, 120_000);

  it("the statement that would pass the size limit never reaches the server: every statement that ran is recorded", async () => {
    sessions = () => tight;
    const database = await direct();
    const { table } = database;
    await database.run(`CREATE TABLE ${table} (i INT PRIMARY KEY, pad TEXT)`);
    try {
      const client = await connect();
      const ended = tight.ended.at(-1)!;
      let failure: Error | undefined;
      for (let i = 1; i <= 1000 && !failure; i++)
        await client.query(insertOf(table, i)).catch((error: Error) => (failure = error));
      expect(failure?.message).toMatch(/size limit/);
      const end = await ended;
      expect(end.reason).toBe("recording_failed");
      expect(end.recording!.bytes).toBeLessThanOrEqual(TIGHT_LIMIT);
      await client.end().catch(() => undefined);
      const ran = await database.numbers(`SELECT i FROM ${table} ORDER BY i`);
      const recorded = tight
        .entries(end.recording!)
        .filter((entry) => entry.statement.startsWith(`INSERT INTO ${table} `))
        .map((entry) => Number(/VALUES \((\d+),/.exec(entry.statement)![1]));
      expect(ran.length).toBeGreaterThan(10);
      // Before: the server held one more row than the recording had INSERTs (the last, whose entry passed the limit).
      expect(recorded).toEqual(ran);
    } finally {
      await database.run(`DROP TABLE ${table}`).catch(() => undefined);
      await database.end();
    }
  }, 120_000);
});
