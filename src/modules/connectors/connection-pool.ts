/**
 * A small pool of signed-in admin connections per target, so that an operation does not pay for a new
 * connection each time (TCP, TLS, a SCRAM sign-in, a server process or thread). The connectors that use it
 * (PostgreSQL, MariaDB) open connections only inside a call, with that call's credential, after the address
 * policy has passed that call (connectorFor's wrapper); the pool keeps connections, never the credential.
 *
 * - Keyed by target and by a fingerprint of everything the connection was opened with (address, options,
 *   credential): a call with a rotated credential or a changed address gets a new pool, and the old one is
 *   retired (its idle connections closed now, its busy ones when they come back).
 * - At most `max` connections per target; a call that finds them all busy waits for one (or its abort).
 * - An idle connection is closed after `idleMs`, and while idle it does not keep the process alive.
 * - A connection that dies while idle (the server ended it) is dropped at once; a failure that says the
 *   connection was dead when it was taken from the pool is retried once on a new connection (every connector
 *   operation is idempotent). After any failure the connection is closed rather than reused: its state
 *   (an open transaction, a statement still running) is not known.
 */
import { createHmac, randomBytes } from "node:crypto";

export interface PoolSettings {
  /** Connections per target at most (busy and idle together). */
  max: number;
  /** An idle connection is closed after this long. */
  idleMs: number;
}

/** Four matches the outbox runner's default lane concurrency: one target's jobs never wait for a connection. */
export const DEFAULT_POOL_SETTINGS: Readonly<PoolSettings> = Object.freeze({ max: 4, idleMs: 30_000 });

/** What a pool needs to know about one kind of connection. */
export interface PoolDriver<C> {
  /** Ends the connection; never throws, and settles soon even when the peer does not answer. */
  close(connection: C): Promise<void>;
  /** Calls `lost` when the connection dies by itself (the server ended it, the network failed). */
  watch(connection: C, lost: () => void): void;
  /** Whether the connection can take work now (open, and in no transaction). */
  reusable(connection: C): boolean;
  /** Whether a failure says the connection was already dead, so that a new one may succeed. */
  lostConnection(error: unknown): boolean;
  /** Lets the process exit while the connection idles (false), and holds it again when it is used (true). */
  hold?(connection: C, held: boolean): void;
}

/** Which pool a call belongs to: its target, and the fingerprint of what it connects with. */
export interface PoolKey {
  scope: string;
  identity: string;
}

/** Per process: fingerprints cannot be compared across processes or used to guess a credential offline. */
const FINGERPRINT_KEY = randomBytes(32);

/**
 * The pool key of a call at `target`: one pool per target name, and a new one whenever the address, the
 * options or the credential differ (a rotation, `stint apply` of a new address). Only a keyed digest of the
 * credential is kept.
 */
export function poolKey(
  kind: string,
  target: { name: string; address: string; options: Record<string, unknown>; credential: string | null },
): PoolKey {
  const identity = createHmac("sha256", FINGERPRINT_KEY)
    .update(JSON.stringify([kind, target.address, target.options, target.credential]))
    .digest("base64url");
  return { scope: `${kind}:${target.name}`, identity };
}

export class PoolAbortedError extends Error {
  constructor() {
    super("the call was aborted while waiting for a connection");
    this.name = "PoolAbortedError";
  }
}

interface Idle<C> {
  connection: C;
  timer: NodeJS.Timeout;
}

interface Pool<C> {
  key: PoolKey;
  idle: Idle<C>[];
  busy: Set<C>;
  /** Connections being opened, counted against `max`. */
  opening: number;
  waiters: (() => void)[];
  retired: boolean;
}

export interface PoolStats {
  scope: string;
  idle: number;
  busy: number;
}

export interface ConnectionPools<C> {
  /**
   * Runs `work` on a connection of the pool of `key`: an idle one, or a new one from `open` (called with this
   * call's signal) while the pool has room. Closes the connection after a failure; retries once on a new
   * connection when a connection taken from the pool turns out dead.
   */
  use<T>(
    key: PoolKey,
    open: (signal: AbortSignal | undefined) => Promise<C>,
    work: (connection: C) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T>;
  /** Closes every idle connection now and every busy one when its call ends (server shutdown). */
  closeAll(): Promise<void>;
  /** Changes the settings for connections released from now on (tests shorten `idleMs`). */
  configure(settings: Partial<PoolSettings>): void;
  stats(): PoolStats[];
}

export function createConnectionPools<C>(
  driver: PoolDriver<C>,
  initial: PoolSettings = DEFAULT_POOL_SETTINGS,
): ConnectionPools<C> {
  const settings: PoolSettings = { ...initial };
  /** By scope: the current pool of each target. */
  const pools = new Map<string, Pool<C>>();
  const closing = new Set<Promise<void>>();

  const close = (connection: C) => {
    const done = driver.close(connection).catch(() => undefined);
    closing.add(done);
    void done.finally(() => closing.delete(done));
    return done;
  };

  function wakeOne(pool: Pool<C>) {
    pool.waiters.shift()?.();
  }

  function retire(pool: Pool<C>) {
    pool.retired = true;
    if (pools.get(pool.key.scope) === pool) pools.delete(pool.key.scope);
    for (const idle of pool.idle.splice(0)) {
      clearTimeout(idle.timer);
      void close(idle.connection);
    }
    // Waiters go on in the retired pool: they hold the credential they came with, and open what they need.
    for (const waiter of pool.waiters.splice(0)) waiter();
  }

  function poolFor(key: PoolKey): Pool<C> {
    const current = pools.get(key.scope);
    if (current && current.key.identity === key.identity) return current;
    if (current) retire(current);
    const pool: Pool<C> = { key, idle: [], busy: new Set(), opening: 0, waiters: [], retired: false };
    pools.set(key.scope, pool);
    return pool;
  }

  function dropIdle(pool: Pool<C>, connection: C) {
    const at = pool.idle.findIndex((idle) => idle.connection === connection);
    if (at < 0) return;
    clearTimeout(pool.idle[at]!.timer);
    pool.idle.splice(at, 1);
    void close(connection);
    // Room for a waiter to open a new one.
    wakeOne(pool);
    // A target nobody calls any more is forgotten with its last connection.
    const empty = pool.idle.length === 0 && pool.busy.size === 0 && pool.opening === 0 && pool.waiters.length === 0;
    if (empty && pools.get(pool.key.scope) === pool) pools.delete(pool.key.scope);
  }

  function closeIdle(pool: Pool<C>) {
    for (const idle of pool.idle.splice(0)) {
      clearTimeout(idle.timer);
      void close(idle.connection);
    }
  }

  async function waitForRoom(pool: Pool<C>, signal: AbortSignal | undefined): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const at = pool.waiters.indexOf(wake);
        if (at >= 0) pool.waiters.splice(at, 1);
        reject(new PoolAbortedError());
      };
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      pool.waiters.push(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  async function acquire(
    pool: Pool<C>,
    open: (signal: AbortSignal | undefined) => Promise<C>,
    signal: AbortSignal | undefined,
  ): Promise<{ connection: C; reused: boolean }> {
    for (;;) {
      if (signal?.aborted) throw new PoolAbortedError();
      // The most recently used first, so that under light load the others reach their idle timeout.
      const idle = pool.idle.pop();
      if (idle) {
        clearTimeout(idle.timer);
        if (!driver.reusable(idle.connection)) {
          void close(idle.connection);
          continue;
        }
        driver.hold?.(idle.connection, true);
        pool.busy.add(idle.connection);
        return { connection: idle.connection, reused: true };
      }
      if (pool.busy.size + pool.opening < settings.max) {
        pool.opening += 1;
        let connection: C;
        try {
          connection = await open(signal);
        } catch (error) {
          wakeOne(pool);
          throw error;
        } finally {
          pool.opening -= 1;
        }
        pool.busy.add(connection);
        driver.watch(connection, () => {
          if (!pool.busy.has(connection)) dropIdle(pool, connection);
        });
        return { connection, reused: false };
      }
      await waitForRoom(pool, signal);
    }
  }

  function release(pool: Pool<C>, connection: C, healthy: boolean) {
    pool.busy.delete(connection);
    if (healthy && !pool.retired && driver.reusable(connection)) {
      driver.hold?.(connection, false);
      const timer = setTimeout(() => dropIdle(pool, connection), settings.idleMs);
      timer.unref();
      pool.idle.push({ connection, timer });
    } else {
      void close(connection);
    }
    wakeOne(pool);
  }

  return {
    async use(key, open, work, signal) {
      const pool = poolFor(key);
      for (let attempt = 1; ; attempt++) {
        const { connection, reused } = await acquire(pool, open, signal);
        let result: Awaited<ReturnType<typeof work>>;
        try {
          result = await work(connection);
        } catch (error) {
          release(pool, connection, false);
          if (attempt === 1 && reused && !signal?.aborted && driver.lostConnection(error)) {
            // Whatever ended this one (a restart, a failover) most likely ended its idle siblings too.
            closeIdle(pool);
            continue;
          }
          throw error;
        }
        release(pool, connection, true);
        return result;
      }
    },
    async closeAll() {
      for (const pool of [...pools.values()]) retire(pool);
      await Promise.all([...closing]);
    },
    configure(changes) {
      Object.assign(settings, changes);
    },
    stats() {
      return [...pools.values()].map((pool) => ({
        scope: pool.key.scope,
        idle: pool.idle.length,
        busy: pool.busy.size,
      }));
    },
  };
}
