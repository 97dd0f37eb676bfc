/**
 * Class: statements that ran at the database and are in no recording because the recordings disk failed
 * after the recorder took their lines (finding 88). The PostgreSQL and MySQL proxies send a statement once
 * its line is taken (finding 84), and the blob writer writes lines in 64 KiB / 100 ms batches: a write that
 * fails (EIO, ENOSPC) loses its batch and what waits behind it. The session then ends `recording_failed`,
 * but the INSERTs of that batch had run: the server held rows the recording had no INSERT for, and nothing
 * said so. Now the lines the disk lost are kept with the recording (`unwritten`: counts, and the statements
 * as the query log holds them), in `session.ended`: recording and `unwritten` together hold every statement
 * that ran.
 *
 * Real PostgreSQL and MariaDB, the real proxies, recorder and blob store; the disk fails at the write
 * system call (every write to a file of the recordings directory rejects with ENOSPC from a given moment,
 * as a full or failing volume answers), then a whole Stint server's `session.ended` event.
 */
import { readlinkSync } from "node:fs";
import { open, readdir, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UnwrittenLines } from "../../src/modules/sessions/recording-unwritten.js";
import { holdMariadb } from "../../src/testing/mariadb.js";
import { pgProxyHarness, type PgProxyHarness } from "../../src/testing/pg-proxy-harness.js";
import {
  recordedDbProxies,
  recordedDbSessions,
  type RecordedDbProxies,
  type RecordedDbSessions,
} from "../../src/testing/recorded-db-sessions.js";

/**
 * From now on every write to a file under `dir` rejects with ENOSPC (FileHandle.write, which the blob
 * writer uses; other files of the process are untouched). Returns the repair.
 */
async function failDisk(dir: string): Promise<() => void> {
  const probe = await open(path.join(tmpdir(), `stint-fail-disk-${randomBytes(4).toString("hex")}`), "w");
  const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const write = proto.write;
  proto.write = function (this: { fd: number }, ...args: unknown[]) {
    let file = "";
    try {
      file = readlinkSync(`/proc/self/fd/${this.fd}`);
    } catch {
      // not a file we know: written as usual
    }
    if (file.startsWith(`${dir}${path.sep}`))
      return Promise.reject(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }));
    return write.apply(this, args);
  };
  return () => void (proto.write = write);
}

/** The live session's .partial file under `dir` holds `text` (its lines reached the disk). */
async function onDisk(dir: string, text: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const files = (await readdir(dir, { recursive: true })).map(String).filter((f) => f.endsWith(".partial"));
    for (const file of files) if ((await readFile(path.join(dir, file), "utf8")).includes(text)) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`never reached the disk: ${text}`);
}

let recordings: RecordedDbSessions;
let proxies: RecordedDbProxies;
let releaseMariadb: () => Promise<void>;

beforeAll(async () => {
  releaseMariadb = await holdMariadb();
  recordings = recordedDbSessions();
  proxies = await recordedDbProxies(() => recordings);
}, 60_000);

afterAll(async () => {
  await proxies?.close();
  recordings?.cleanup();
  await releaseMariadb?.();
}, 60_000);

interface Database {
  /** Through the proxy. */
  query(sql: string): Promise<unknown>;
  /** Straight to the server: the `i` column of a query. */
  numbers(sql: string): Promise<number[]>;
  run(sql: string): Promise<unknown>;
  /** What the proxied connection reported on its own: a FATAL that came between two queries lands here. */
  errors: Error[];
  table: string;
  end(): Promise<void>;
}

async function postgres(): Promise<Database> {
  const proxied = await proxies.pgClient();
  const errors: Error[] = [];
  proxied.on("error", (error: Error) => errors.push(error));
  const direct = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" });
  await direct.connect();
  return {
    query: (sql) => proxied.query(sql),
    numbers: async (sql) => (await direct.query<{ i: number }>(sql)).rows.map((row) => Number(row.i)),
    run: (sql) => direct.query(sql),
    errors,
    table: `public.stint_lost_${randomBytes(4).toString("hex")}`,
    end: async () => {
      await proxied.end().catch(() => undefined);
      await direct.end();
    },
  };
}

async function mariadb(): Promise<Database> {
  const proxied = await proxies.mysqlClient();
  const errors: Error[] = [];
  (proxied as unknown as NodeJS.EventEmitter).on("error", (error: Error) => errors.push(error));
  const direct = await mysql.createConnection({ host: "127.0.0.1", port: 3306, user: "root" });
  await direct.query("CREATE DATABASE IF NOT EXISTS stint_recording_lost");
  return {
    query: (sql) => proxied.query(sql),
    numbers: async (sql) => ((await direct.query(sql))[0] as { i: number }[]).map((row) => Number(row.i)),
    run: (sql) => direct.query(sql),
    errors,
    table: `stint_recording_lost.t_${randomBytes(4).toString("hex")}`,
    end: async () => {
      await proxied.end().catch(() => undefined);
      await direct.end();
    },
  };
}

const insertNumber = (table: string) => (statement: string) =>
  statement.startsWith(`INSERT INTO ${table} `) ? Number(/VALUES \((\d+)\)/.exec(statement)![1]) : null;
const numbersIn = (statements: string[], table: string) =>
  statements.map(insertNumber(table)).filter((i): i is number => i !== null);

describe.each([
  ["PostgreSQL", postgres],
  ["MariaDB", mariadb],
] as const)("%s proxy: the recordings disk fails after the recorder took lines", (_name, connect) => {
  it("every INSERT that ran is in the recording or in its `unwritten` statements", async () => {
    const db = await connect();
    const { table } = db;
    await db.run(`CREATE TABLE ${table} (i INT PRIMARY KEY)`);
    let repair = () => undefined as void;
    try {
      const ended = recordings.ended.at(-1)!;
      for (let i = 1; i <= 5; i++) await db.query(`INSERT INTO ${table} VALUES (${i})`);
      await onDisk(recordings.dir, `INSERT INTO ${table} VALUES (5)`);
      repair = await failDisk(recordings.dir);
      let failure: Error | undefined;
      for (let i = 6; i <= 5000 && !failure; i++)
        await db.query(`INSERT INTO ${table} VALUES (${i})`).catch((error: Error) => (failure = error));
      expect(failure).toBeDefined();
      // The session's end tells why: as the failing query's error, or, when the disk failed while no query ran
      // (the batch is written in the background), as the connection's own error before the next query.
      expect([failure, ...db.errors].map((error) => error?.message).join("\n")).toMatch(/Recording is required/);
      const end = await ended;
      repair();
      expect(end.reason).toBe("recording_failed");
      expect(end.recording).toMatchObject({ partial: true });

      const ran = await db.numbers(`SELECT i FROM ${table} ORDER BY i`);
      const recorded = numbersIn(
        recordings.entries(end.recording!).map((entry) => entry.statement),
        table,
      );
      // The loss is real: rows the server holds whose INSERT the recording lacks.
      expect(ran.length).toBeGreaterThan(recorded.length);
      const unwritten = end.recording!.unwritten;
      // Before: no `unwritten`; the INSERTs of the failed batch ran and were recorded nowhere.
      expect(unwritten?.lines).toBeGreaterThan(0);
      const kept = numbersIn(
        (unwritten?.statements ?? []).map((s) => s.statement),
        table,
      );
      expect([...recorded, ...kept].sort((a, b) => a - b)).toEqual(ran);
    } finally {
      repair();
      await db.run(`DROP TABLE ${table}`).catch(() => undefined);
      await db.end();
    }
  }, 120_000);
});

describe("a Stint server: session.ended keeps the statements the disk lost", () => {
  let pgh: PgProxyHarness;
  beforeAll(async () => {
    pgh = await pgProxyHarness({ recording: "required" });
  }, 120_000);
  afterAll(async () => {
    await pgh?.close();
  });

  it("`recording.unwritten` names the statements that ran after the last line on the disk", async () => {
    const dir = path.join(pgh.h.server.config.blobDir, "recordings");
    const client = new pg.Client(pgh.clientConfig(await pgh.token()));
    client.on("error", () => undefined);
    await client.connect();
    let repair = () => undefined as void;
    try {
      await client.query("SELECT 1 AS marker_before_failure");
      await onDisk(dir, "marker_before_failure");
      repair = await failDisk(path.resolve(dir));
      const answered: string[] = [];
      for (let i = 0; i < 5000; i++) {
        const sql = `SELECT ${i} AS lost_${i}`;
        const ok = await client.query(sql).then(
          () => true,
          () => false,
        );
        if (!ok) break;
        answered.push(sql);
      }
      expect(answered.length).toBeGreaterThan(0);
      const event = await until(async () => {
        const res = await pgh.h.admin("GET", "/v1/audit/events?limit=100&action=session.ended&order=desc");
        const items = res.body.items as { details: { endReason: string; recording: Record<string, unknown> } }[];
        return items.find((e) => e.details.endReason === "recording_failed");
      });
      repair();
      const recording = event.details.recording as { partial?: true; unwritten?: UnwrittenLines };
      expect(recording.partial).toBe(true);
      // Before: no `unwritten`; the answered statements after the marker were in no recording nor event.
      const kept = (recording.unwritten?.statements ?? []).map((s) => s.statement);
      for (const sql of answered) expect(kept).toContain(sql);
    } finally {
      repair();
      await client.end().catch(() => undefined);
    }
  }, 120_000);
});

async function until<T>(probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
