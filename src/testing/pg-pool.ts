/**
 * Test support: PostgreSQL test databases used again instead of copied from the template anew. CREATE DATABASE …
 * TEMPLATE and DROP DATABASE cost ~1–1.5 s of the server's CPU on the 2-core machine; putting a used database back
 * as the template left it costs ~0.1 s. A test process (and a `src` worker, whose modules live across files) keeps
 * a few idle databases.
 *
 * A database given back is first cut from every connection still open to it and renamed: whatever a test left
 * running with the old name (a pool that would reconnect) finds no database, never the next test's. Then its schema
 * and contents are reset as template-reset.ts says; one whose schema a test changed, or whose reset fails, is
 * dropped. Idle databases are named after their process: a process drops those of processes that have ended.
 */
import pg from "pg";
import { randomBytes } from "node:crypto";
import { readPristine, restoreScript, schemaFingerprint, type Pristine, type Query } from "./template-reset.js";

const IDLE_LIMIT = 2;
const PREFIX = "stint_pooled_";

/** How this process's databases came (tests of the pool read it). */
export const pgCounts = { created: 0, reused: 0, discarded: 0 };

const idle: string[] = [];
let pristine: Promise<Pristine> | undefined;
let swept: Promise<void> | undefined;

/** Connects to `url`, runs `work`, disconnects. */
async function withClient<T>(url: string, work: (query: Query, client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const query: Query = async <R>(text: string, parameters?: unknown[]) => ({
      rows: (await client.query(text, parameters)).rows as R[],
    });
    return await work(query, client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Drops the idle databases of test processes that have ended (they cannot give them back any more). */
async function sweep(adminUrl: string): Promise<void> {
  await withClient(adminUrl, async (query) => {
    const { rows } = await query<{ datname: string }>("select datname from pg_database where datname like $1", [
      `${PREFIX}%`,
    ]);
    for (const { datname } of rows) {
      const pid = Number(datname.slice(PREFIX.length).split("_")[0]);
      if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
      await query(`drop database if exists ${datname} with (force)`).catch(() => undefined);
    }
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Cuts every connection to database `from` and renames it `to` (terminated backends take a moment to go). */
async function renameAlone(query: Query, from: string, to: string): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    await query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [from]);
    try {
      await query(`alter database ${from} rename to ${to}`);
      return true;
    } catch (error) {
      // 55006 object_in_use: a backend has not exited yet.
      if ((error as { code?: string }).code !== "55006" || attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * The name of a database as the template left it: an idle one reset earlier, or a new copy of the template
 * (`create` makes it and gives its name).
 */
export async function takePgDatabase(
  adminUrl: string,
  urlOf: (name: string) => string,
  create: () => Promise<string>,
): Promise<string> {
  swept ??= sweep(adminUrl).catch(() => undefined);
  await swept;
  const reused = idle.pop();
  if (reused) {
    pgCounts.reused++;
    return reused;
  }
  pgCounts.created++;
  const name = await create();
  pristine ??= withClient(urlOf(name), (query) => readPristine(query, false));
  await pristine;
  return name;
}

/** Gives database `name` back (its store closed): reset and kept under a new name, or dropped. */
export async function givePgDatabase(adminUrl: string, urlOf: (name: string) => string, name: string): Promise<void> {
  const template = pristine ? await pristine : undefined;
  const next = `${PREFIX}${process.pid}_${randomBytes(6).toString("hex")}`;
  const kept =
    template !== undefined &&
    idle.length < IDLE_LIMIT &&
    (await withClient(adminUrl, (query) => renameAlone(query, name, next)).catch(() => false)) &&
    (await withClient(urlOf(next), async (query, client) => {
      if ((await schemaFingerprint(query, false)) !== template.schema) return false;
      await client.query(restoreScript(template, "delete"));
      return true;
    }).catch(() => false));
  if (kept) {
    idle.push(next);
    return;
  }
  pgCounts.discarded++;
  await withClient(adminUrl, async (query) => {
    for (const candidate of [name, next]) await query(`drop database if exists ${candidate} with (force)`);
  });
}
