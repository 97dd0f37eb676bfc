/**
 * One store over two engines: PGlite (embedded, a data directory) and
 * PostgreSQL (a `pg` pool). Both speak the same SQL; Kysely builds it.
 */
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Kysely, PostgresDialect, sql, type Transaction } from "kysely";
import type { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { ADVISORY_LOCKS } from "./advisory-locks.js";
import { lockDataDir } from "./data-dir-lock.js";
import { createSenderGate, SENDER_LOOKUP_SQL } from "./notify-senders.js";

export type Engine = "pglite" | "postgres";

export interface Store<DB> {
  readonly engine: Engine;
  readonly db: Kysely<DB>;
  /** Runs `fn` in one transaction: everything it writes commits together or not at all. */
  transaction<T>(fn: (tx: Transaction<DB>) => Promise<T>): Promise<T>;
  /** Applies pending migrations; safe when several nodes start at once. */
  migrate(dir: string): Promise<string[]>;
  ping(): Promise<void>;
  /**
   * Calls `onMessage` with the payload of every NOTIFY on `channel`, delivered when the notifying
   * transaction commits (never for one that rolls back). Returns the function that stops listening.
   * On PostgreSQL a dedicated connection listens and reconnects after a failure (a store restart,
   * a failover, a terminated backend). Notifications sent while it is down are lost, so
   * `onReconnect` is called each time it listens again: the caller looks for what it may have missed
   * (the outbox claims due jobs) instead of waiting for its slower safety-net poll.
   * On PostgreSQL only notifications sent by Stint's own database role are delivered (any role that can
   * connect may NOTIFY; see notify-senders.ts); others are dropped and told to `onNotifyRejected`. One whose
   * sender exited before it could be checked is dropped and `onUnverified` is called: the caller catches up
   * from the database as after a reconnect.
   */
  listen(
    channel: string,
    onMessage: (payload: string) => void,
    options?: { onReconnect?: () => void; onUnverified?: () => void },
  ): Promise<() => Promise<void>>;
  /**
   * Calls `listener` with the channel of every notification dropped as sent by another role. Returns the
   * unsubscribe. (Optional: wrappers of a store that pass `listen` on need not offer it.)
   */
  onNotifyRejected?(listener: (channel: string) => void): () => void;
  close(): Promise<void>;
  /**
   * PostgreSQL: the URL the store connects with (its TLS settings included), for a connection of a worker
   * thread's own (`audit verify`). Not enumerable, never logged: it may hold a password.
   */
  readonly connectionUrl?: string;
}

const CHANNEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function checkChannel(channel: string): void {
  if (!CHANNEL_NAME.test(channel)) throw new TypeError(`not a channel name: ${channel}`);
}

export interface StoreOptions {
  /** A postgres:// URL selects PostgreSQL; otherwise PGlite in `dataDir`. */
  databaseUrl?: string | undefined;
  /** PGlite data directory; `memory://` for an in-memory database. */
  dataDir?: string | undefined;
  poolSize?: number;
  /** Who opens an embedded data directory, named to a second server refused its lock. */
  lockOwner?: string | undefined;
}

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** bigint columns we use (sequence numbers, counters) fit in a JS number. */
function parseInt8(value: string): number {
  return Number(value);
}

export async function openStore<DB>(options: StoreOptions): Promise<Store<DB>> {
  if (options.databaseUrl) return openPostgres<DB>(options.databaseUrl, options.poolSize ?? 10);
  return openPglite<DB>(options.dataDir ?? "memory://", options.lockOwner ?? `stint (pid ${process.pid})`);
}

/** Told, once its transaction has ended, whether it committed. */
export type SettledHook = (committed: boolean) => void;
const settleHooks = new WeakMap<object, SettledHook[]>();

/**
 * Calls `hook` once `tx` has ended: `true` after its COMMIT succeeded, `false` after a rollback or a failed
 * COMMIT (whose outcome may be unknown: a caller must stay safe either way). Only for a transaction begun by a
 * store's `transaction` (wrappers that hand down its `tx` included, or a copy of it linked by `settlesWith`); for
 * any other it returns false and never calls `hook`. Hooks run in order, synchronously after the transaction
 * ends; one that throws is ignored.
 */
export function whenSettled(tx: object, hook: SettledHook): boolean {
  const hooks = settleHooks.get(tx);
  if (!hooks) return false;
  hooks.push(hook);
  return true;
}

/**
 * Makes `copy`, a new object for the same transaction as `tx` (Kysely's `tx.withPlugin(…)` is one), settle with
 * it: `whenSettled(copy, …)` then runs its hook when `tx` ends, with those registered on `tx`. A wrapper that
 * hands down such a copy (the tests' statement counter) must link it, or after-commit work would run at once
 * or not at all. For a `tx` no store began it links nothing. Returns `copy`.
 */
export function settlesWith<T extends object>(copy: T, tx: object): T {
  const hooks = settleHooks.get(tx);
  if (hooks) settleHooks.set(copy, hooks);
  return copy;
}

function settle(hooks: SettledHook[], committed: boolean): void {
  for (const hook of hooks) {
    try {
      hook(committed);
    } catch {
      // A hook's failure is its own; the transaction's outcome stands.
    }
  }
}

function makeStore<DB>(
  engine: Engine,
  db: Kysely<DB>,
  close: () => Promise<void>,
  listen: Store<DB>["listen"],
  rejected: Set<(channel: string) => void> = new Set(),
): Store<DB> {
  return {
    engine,
    db,
    listen,
    onNotifyRejected(listener) {
      rejected.add(listener);
      return () => rejected.delete(listener);
    },
    async transaction(fn) {
      const hooks: SettledHook[] = [];
      let result;
      try {
        result = await db.transaction().execute((tx) => {
          settleHooks.set(tx, hooks);
          return fn(tx);
        });
      } catch (error) {
        settle(hooks, false);
        throw error;
      }
      settle(hooks, true);
      return result;
    },
    migrate: (dir) => migrate(db, dir),
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    close,
  };
}

async function openPostgres<DB>(url: string, max: number): Promise<Store<DB>> {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    // While the store is unreachable a request fails within seconds instead of waiting for ever.
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    // Notices a peer that vanished without closing (a failover, a cut network) on an idle connection.
    keepAlive: true,
    types: {
      getTypeParser: ((oid: number, format?: "text" | "binary") =>
        oid === INT8_OID ? parseInt8 : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
    },
  });
  // A connection can die at any moment (pg_terminate_backend, a restart, a failover). The pool
  // listens for errors only on idle clients; a client checked out when its connection dies would
  // emit an unhandled 'error' and kill the process. So every client gets its own listener for
  // life: the query in flight still rejects (its caller answers 503 STORE_UNAVAILABLE), and the
  // pool discards the broken client when it is released and opens a fresh one on demand.
  pool.on("connect", (client) => client.on("error", () => undefined));
  pool.on("error", () => undefined);
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: checkedAfterLoss(pool) }) });
  const listeners = new Set<() => Promise<void>>();
  const rejected = new Set<(channel: string) => void>();
  const store = makeStore<DB>(
    "postgres",
    db,
    async () => {
      await Promise.all([...listeners].map((stop) => stop()));
      await db.destroy();
    },
    async (channel, onMessage, options) => {
      checkChannel(channel);
      const stop = await listenPostgres(url, channel, onMessage, {
        ...options,
        onRejected: () => {
          for (const listener of rejected) listener(channel);
        },
      });
      listeners.add(stop);
      return async () => {
        listeners.delete(stop);
        await stop();
      };
    },
    rejected,
  );
  return Object.defineProperty(store, "connectionUrl", { value: url, enumerable: false });
}

/**
 * The pool as Kysely sees it, handing out only connections that are alive after a loss. When the
 * server ends backends (pg_terminate_backend of all of them, a restart, a failover), the caller whose
 * statement failed learns it first, while the idle connections' own notices still wait in their
 * sockets: the pool would hand one of them to the very next statement (the outbox recording that
 * attempt's failure, say), which then fails as well. So every statement that fails for a lost
 * connection marks the idle ones suspect, and a suspect connection answers `select 1` before it is
 * handed out; one that cannot is discarded and the next taken (a fresh one once none is left).
 */
function checkedAfterLoss(pool: pg.Pool) {
  /** Bumped at every connection loss seen; a connection checked at an older one is suspect. */
  let losses = 0;
  const checkedAt = new WeakMap<pg.PoolClient, number>();
  const wrappers = new WeakMap<pg.PoolClient, pg.PoolClient>();
  const noteLoss = (error: unknown) => {
    if (isStoreUnavailable(error)) losses += 1;
  };
  pool.on("connect", (client) => {
    checkedAt.set(client, losses);
    client.on("error", noteLoss);
  });
  /** The client with a query() that notes a loss before its caller hears of it. */
  const wrap = (client: pg.PoolClient): pg.PoolClient => {
    let wrapper = wrappers.get(client);
    if (!wrapper) {
      wrapper = Object.create(client) as pg.PoolClient;
      wrapper.query = ((...args: Parameters<pg.PoolClient["query"]>) => {
        const result = (client.query as (...a: unknown[]) => unknown)(...preparedIfMarked(args));
        if (result instanceof Promise) result.catch(noteLoss);
        return result;
      }) as pg.PoolClient["query"];
      wrapper.release = (error?: Error | boolean) => client.release(error);
      wrappers.set(client, wrapper);
    }
    return wrapper;
  };
  return {
    async connect(): Promise<pg.PoolClient> {
      // Each idle connection is tried at most once; then the pool opens a fresh one (or fails to).
      for (let tries = 0; ; tries++) {
        const client = await pool.connect();
        const seen = losses;
        if ((checkedAt.get(client) ?? -1) >= seen) return wrap(client);
        try {
          await client.query("select 1");
          checkedAt.set(client, seen);
          return wrap(client);
        } catch (error) {
          client.release(true);
          if (!isStoreUnavailable(error) || tries >= pool.options.max) throw error;
        }
      }
    },
    end: () => pool.end(),
  };
}

const LISTEN_RETRY_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;

/** SQLSTATEs that mean the connection or the server went away, not that the statement was wrong. */
const CONNECTION_LOST_STATES = new Set(["57P01", "57P02", "57P03", "53300"]);
const CONNECTION_LOST_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
const CONNECTION_LOST_MESSAGES =
  /^(Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|timeout exceeded when trying to connect|Connection ended unexpectedly)/;

/** Whether `error` is PostgreSQL's unique_violation (SQLSTATE 23505): the store's, PGlite's or a PostgreSQL target's. */
export function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown } | null | undefined)?.code === "23505";
}

/**
 * Whether `error` (or an error it wraps, via `cause`) says the store could not be reached or its
 * connection was lost: the statement may not have run, and trying again later is the remedy.
 */
export function isStoreUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      if (code.startsWith("08") && code.length === 5) return true; // connection_exception class
      if (CONNECTION_LOST_STATES.has(code) || CONNECTION_LOST_ERRNOS.has(code)) return true;
    }
    if (CONNECTION_LOST_MESSAGES.test(e.message)) return true;
  }
  return false;
}

async function listenPostgres(
  url: string,
  channel: string,
  onMessage: (payload: string) => void,
  hooks: { onReconnect?: () => void; onUnverified?: () => void; onRejected: () => void },
): Promise<() => Promise<void>> {
  const { onReconnect } = hooks;
  let client: pg.Client | null = null;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let listened = false;
  const drop = (c: pg.Client) => {
    if (client === c) client = null;
    c.end().catch(() => undefined);
    // A late 'end' of a connection already replaced must not open a second listener.
    if (stopped || retry || client) return;
    retry = setTimeout(() => {
      retry = undefined;
      void connect().catch(() => undefined);
    }, LISTEN_RETRY_MS);
    retry.unref();
  };
  const connect = async () => {
    // Named in pg_stat_activity, so that an operator (or a test) finds a channel's listening connection.
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      application_name: `stint listen ${channel}`,
    });
    // Only Stint's own role may speak on its channels: each sender is checked on this connection.
    const gate = createSenderGate({
      lookup: async (pid) => {
        const { rows } = await c.query<{ ours: boolean }>(SENDER_LOOKUP_SQL, [pid]);
        return rows[0] ? rows[0].ours : null;
      },
      // Nothing is told once stopped (a lookup may still be under way).
      deliver: (payload) => stopped || onMessage(payload),
      onRejected: () => stopped || hooks.onRejected(),
      onUnverified: () => stopped || hooks.onUnverified?.(),
    });
    c.on("notification", (message) => {
      if (message.channel === channel) gate.heard(message.processId, message.payload ?? "");
    });
    c.on("error", () => drop(c));
    c.on("end", () => drop(c));
    try {
      await c.connect();
      await c.query(`listen ${channel}`);
    } catch (error) {
      drop(c);
      throw error;
    }
    if (stopped) {
      await c.end().catch(() => undefined);
      return;
    }
    client = c;
    // Whatever was notified while no connection listened is lost: let the caller catch up.
    if (listened) onReconnect?.();
    listened = true;
  };
  await connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    const c = client;
    client = null;
    await c?.end().catch(() => undefined);
  };
}

/**
 * Marks a statement to be prepared on each PostgreSQL connection (a named statement: parsed and planned once
 * per connection, then only bound and executed), when its text is in it anywhere (a comment). Only for a hot
 * statement whose text is fixed (a fixed number of parameters) and whose result's columns do not depend on a
 * table's (no `*`): a prepared statement is planned again by PostgreSQL after a change of the tables it reads,
 * but refused if its result's type changed. The secret reads' audit INSERT costs PostgreSQL ~250 µs a batch
 * less CPU prepared (parse and plan of its unnest/jsonb text, ~0.9 ms of planning alone the first time).
 * Ignored on PGlite.
 */
export const PREPARED = "/* stint:prepared */";
/** At most this many texts get a name: a marked text that varies is a bug, and must not grow every connection. */
const MAX_PREPARED = 64;
const preparedNames = new Map<string, string>();

/**
 * A marked text's statement name: made from the text alone (its SHA-256), so that one name means one text on every
 * node and every release. Numbered in the order a process first met them, two nodes gave one name to two texts:
 * behind a pooler that shares server connections between clients (PgBouncer's transaction mode before its own
 * prepared-statement support), one node's Bind would have run the other's statement with its parameters; now it
 * can only fail (no such statement, or one that exists already), never run another text.
 */
export function preparedName(text: string): string {
  return `stint_${createHash("sha256").update(text).digest("hex").slice(0, 40)}`;
}

/** Kysely's `query(text, values)` as pg's named query when the text carries `PREPARED`. */
function preparedIfMarked(args: unknown[]): unknown[] {
  const [text, values] = args;
  if (typeof text !== "string" || args.length !== 2 || !text.includes(PREPARED)) return args;
  let name = preparedNames.get(text);
  if (name === undefined) {
    if (preparedNames.size >= MAX_PREPARED) return args;
    name = preparedName(text);
    preparedNames.set(text, name);
  }
  return [{ name, text, values }];
}

/**
 * PGlite is one connection. This pool hands it out to one holder at a time,
 * so a transaction owns it from BEGIN to COMMIT and others queue behind it.
 */
function pglitePool(pglite: PGlite) {
  let tail: Promise<void> = Promise.resolve();
  const client = {
    async query(text: string, parameters: readonly unknown[]) {
      // Without parameters use the simple protocol, which allows scripts of several statements.
      const result =
        parameters.length === 0
          ? ((await pglite.exec(text)).at(-1) ?? { rows: [], affectedRows: 0 })
          : await pglite.query(text, parameters as unknown[]);
      const command = /^\s*(insert|update|delete|merge)/i.exec(text)?.[1]?.toUpperCase() ?? "SELECT";
      return { command, rowCount: result.affectedRows ?? result.rows.length, rows: result.rows };
    },
    release: () => undefined as void,
  };
  return {
    async connect() {
      let release!: () => void;
      const next = new Promise<void>((resolve) => (release = resolve));
      const previous = tail;
      tail = previous.then(() => next);
      await previous;
      return { ...client, release };
    },
    end: async () => {
      await tail;
    },
  };
}

export const PGLITE_PARSERS = { [INT8_OID]: parseInt8, [NUMERIC_OID]: (v: string) => v };

async function openPglite<DB>(dataDir: string, lockOwner: string): Promise<Store<DB>> {
  const { PGlite } = await import("@electric-sql/pglite");
  if (dataDir === "memory://") return storeOverPglite<DB>(await PGlite.create(undefined, { parsers: PGLITE_PARSERS }));
  // PGlite is one process's database: a second process on the same files would silently lose writes.
  const lock = await lockWritableDataDir(dataDir, lockOwner);
  try {
    const pglite = await PGlite.create(dataDir, { parsers: PGLITE_PARSERS });
    return storeOverPglite<DB>(pglite, () => lock.release());
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** Creates the directory's parent if needed and takes the lock, naming an unwritable place plainly. */
async function lockWritableDataDir(dataDir: string, owner: string) {
  const resolved = path.resolve(dataDir);
  try {
    await mkdir(path.dirname(resolved), { recursive: true, mode: 0o700 });
    return lockDataDir(resolved, owner);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EROFS" || code === "EACCES" || code === "EPERM")
      throw new DataDirUnwritableError(
        `the data directory ${path.dirname(resolved)} is not writable (${code}${code === "EROFS" ? ": read-only file system" : ""}); ` +
          "the embedded database keeps its files there: point STINT_DATA_DIR at a writable directory",
      );
    if (code === "ENOSPC")
      throw new DataDirUnwritableError(
        `the data directory ${path.dirname(resolved)} is full (ENOSPC): free some space or point STINT_DATA_DIR elsewhere`,
      );
    throw error;
  }
}

/** The embedded data directory cannot be written (read-only, no permission, full). */
export class DataDirUnwritableError extends Error {
  override name = "DataDirUnwritableError";
}

/**
 * A store over an already open PGlite instance (tests clone a migrated template this way). Closing the store closes
 * the instance, or hands it to `release` (tests keep instances to use again).
 */
export function storeOverPglite<DB>(
  pglite: PGlite,
  onClosed?: () => void,
  release: (pglite: PGlite) => Promise<void> = (instance) => instance.close(),
): Store<DB> {
  const db = new Kysely<DB>({
    dialect: new PostgresDialect({ pool: pglitePool(pglite) as unknown as pg.Pool }),
  });
  return makeStore(
    "pglite",
    db,
    async () => {
      await db.destroy();
      try {
        await release(pglite);
      } finally {
        onClosed?.();
      }
    },
    async (channel, onMessage) => {
      checkChannel(channel);
      const unsubscribe = await pglite.listen(channel, onMessage);
      return async () => {
        if (!pglite.closed) await unsubscribe();
      };
    },
  );
}

/**
 * Applies `NNNN_name.sql` files from `dir` in order, each in its own
 * transaction, under an advisory lock so two nodes starting at once apply each
 * file exactly once.
 */
export async function migrate<DB>(db: Kysely<DB>, dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${ADVISORY_LOCKS.migration})`.execute(conn);
    try {
      await sql`create table if not exists schema_migrations (
        name text primary key,
        applied_at timestamptz not null default now()
      )`.execute(conn);
      const done = new Set(
        (await sql<{ name: string }>`select name from schema_migrations`.execute(conn)).rows.map((r) => r.name),
      );
      const applied: string[] = [];
      for (const file of files) {
        if (done.has(file)) continue;
        const text = await readFile(path.join(dir, file), "utf8");
        await conn.transaction().execute(async (tx) => {
          await sql.raw(text).execute(tx);
          await sql`insert into schema_migrations (name) values (${file})`.execute(tx);
        });
        applied.push(file);
      }
      return applied;
    } finally {
      await sql`select pg_advisory_unlock(${ADVISORY_LOCKS.migration})`.execute(conn);
    }
  });
}

/**
 * Held until the transaction ends: two nodes starting at once run a start's upgrade step (a change of the data
 * that follows the migrations, `audit/audit.upgrades.ts`) one after the other.
 */
export async function lockUpgrades<DB>(tx: Kysely<DB>): Promise<void> {
  await sql`select pg_advisory_xact_lock(${ADVISORY_LOCKS.upgrade})`.execute(tx);
}

/** Lists migrations that exist on disk but are not applied yet (for /readyz). */
export async function pendingMigrations<DB>(db: Kysely<DB>, dir: string): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  const rows = await sql<{ name: string }>`select name from schema_migrations`.execute(db).catch(() => ({ rows: [] }));
  const done = new Set(rows.rows.map((r) => r.name));
  return files.filter((f) => !done.has(f));
}
