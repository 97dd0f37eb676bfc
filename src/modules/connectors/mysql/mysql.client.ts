/**
 * MariaDB/MySQL connector's connections: the admin pool per target (../connection-pool.ts), a connection of
 * its own to sign in as another account, aborts, and one classification of whatever fails — the operations
 * (mysql.connector.ts) run inside `withSession`.
 */
import mysql from "mysql2/promise";
import { abortion } from "../call-abort.js";
import { createConnectionPools, poolKey } from "../connection-pool.js";
import type { Connection, RowDataPacket } from "mysql2/promise";
import { refused, unavailable, type CallOptions, type ConnectorTarget } from "../connector.types.js";
import {
  classifyError,
  parseAddress,
  upstreamTls,
  type MysqlAddress,
  readOptions,
  type MysqlOptions,
} from "./mysql.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
export const QUERY_TIMEOUT_MS = 30_000;
/** How long closing a pooled connection waits for the server's goodbye before cutting the socket. */
export const CLOSE_WAIT_MS = 1_000;
export const ER_NONEXISTING_GRANT = 1141;
export const ER_NONEXISTING_TABLE_GRANT = 1147;
export const ER_NO_SUCH_THREAD = 1094;
export const ER_CANNOT_USER = 1396;
/**
 * Access denied (wrong password: 1045; or 1698, the same refusal without "using password", which MariaDB
 * sometimes answers for an account that does not exist, e.g. just dropped); password expired, whether the
 * server disconnects (1862) or opens a session that may only change it (1820); account locked (MariaDB 4151,
 * MySQL 3118).
 */
const SIGN_IN_REFUSED = new Set([1045, 1698, 1862, 1820, 4151, 3118]);

export interface Session {
  target: ConnectorTarget;
  options: MysqlOptions;
  mariadb: boolean;
  /** Whether the session's sql_mode lets a backslash escape in a string literal (no NO_BACKSLASH_ESCAPES). */
  backslashEscapes: boolean;
  query(sql: string, values?: unknown[]): Promise<RowDataPacket[]>;
}

interface SessionSettings<T> {
  /** Sign in as this account instead of the admin (verifyPassword). */
  as?: { user: string; password: string };
  /** What to return when the server refuses the sign-in itself (wrong password, locked, expired). */
  whenSignInRefused?: T;
  /** Passwords the statements carry, scrubbed from every message. */
  secrets?: string[];
}

/** The driver's connection under mysql2's promise wrapper: its state, its socket, its settings. */
interface CoreConnection {
  state: string;
  stream?: { ref?(): void; unref?(): void; destroyed?: boolean };
  config: Record<string, unknown>;
  on(event: "error" | "end", listener: () => void): unknown;
}
export const core = (connection: Connection) => (connection as unknown as { connection: CoreConnection }).connection;

/** Errors that say the connection itself was gone (KILL, a restart, a reset), not that a statement failed. */
const LOST_CODES = new Set(["PROTOCOL_CONNECTION_LOST", "ECONNRESET", "EPIPE", "ER_CONNECTION_KILLED"]);
/** ER_CONNECTION_KILLED (MariaDB), CR_SERVER_GONE_ERROR, CR_SERVER_LOST. */
const LOST_ERRNOS = new Set([1927, 2006, 2013]);

export function connectionLost(error: unknown): boolean {
  const { code, errno, message } = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    errno?: unknown;
    message?: unknown;
  };
  if (typeof code === "string" && LOST_CODES.has(code)) return true;
  if (typeof errno === "number" && LOST_ERRNOS.has(errno)) return true;
  return typeof message === "string" && /closed state|connection lost/i.test(message);
}

/**
 * What each connection's server is (MariaDB or MySQL) and whether its session's sql_mode lets a backslash
 * escape in a string literal: asked once, when it is opened (nothing in a call changes the session's sql_mode).
 */
export const serverOf = new WeakMap<Connection, { mariadb: boolean; backslashEscapes: boolean }>();

/**
 * The pools of admin connections (see ../connection-pool.ts). A pooled connection is signed in already and
 * keeps no password (mysql2's copy is cleared once connected).
 */
export const mysqlPools = createConnectionPools<Connection>({
  close: async (connection) => {
    let timer: NodeJS.Timeout | undefined;
    const cut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        connection.destroy();
        resolve();
      }, CLOSE_WAIT_MS);
    });
    await Promise.race([connection.end().catch(() => connection.destroy()), cut]);
    clearTimeout(timer);
  },
  watch: (connection, lost) => {
    core(connection).on("error", lost);
    core(connection).on("end", lost);
  },
  reusable: (connection) => core(connection).state === "authenticated",
  lostConnection: connectionLost,
  hold: (connection, held) => {
    const stream = core(connection).stream;
    if (held) stream?.ref?.();
    else stream?.unref?.();
  },
});

/** The call's abort (see ../call-abort.ts), failing it as unavailable. */
function abortionOf(target: ConnectorTarget, signal: AbortSignal | undefined, onAbort: () => void = () => {}) {
  return abortion(signal, onAbort, () => unavailable(`${target.name}: call aborted`));
}

/** Opens and signs in one connection (as the admin, or as `as`); an abort destroys it and wins the race. */
export async function openConnection(
  target: ConnectorTarget,
  address: MysqlAddress,
  signal: AbortSignal | undefined,
  as?: { user: string; password: string },
): Promise<Connection> {
  if (signal?.aborted) throw unavailable(`${target.name}: call aborted`);
  // TLS as the address's sslmode says, checked as the session proxy checks it.
  const tls = upstreamTls(address, target.options);
  const connecting = mysql.createConnection({
    ...(tls === null
      ? {}
      : {
          ssl: {
            ...(tls.ca === null ? {} : { ca: tls.ca }),
            rejectUnauthorized: tls.mode !== "require",
            ...(tls.mode === "verify-full" ? {} : { checkServerIdentity: () => undefined }),
          },
        }),
    host: address.host,
    port: address.port,
    user: as?.user ?? address.user,
    password: as ? as.password : (target.credential ?? undefined),
    connectTimeout: CONNECT_TIMEOUT_MS,
    multipleStatements: false,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
  // A connection that completes after an abort is closed straight away.
  connecting.then((late) => (signal?.aborted ? late.destroy() : undefined)).catch(() => undefined);
  const { aborted, stop } = abortionOf(target, signal);
  try {
    const connection = await Promise.race([connecting, aborted]);
    // A server that drops the connection between queries reports it as an event; the next query fails anyway.
    connection.on("error", () => undefined);
    // Signed in: mysql2 keeps the password only for a later change of user, which Stint never does.
    const config = core(connection).config;
    for (const field of ["password", "password1", "password2", "password3", "passwordSha1"]) config[field] = undefined;
    try {
      const [rows] = await Promise.race([
        connection.query({ sql: "SELECT VERSION() AS version, @@SESSION.sql_mode AS mode", timeout: QUERY_TIMEOUT_MS }),
        aborted,
      ]);
      const row = (rows as RowDataPacket[])[0];
      serverOf.set(connection, {
        mariadb: /mariadb/i.test(String(row?.version)),
        backslashEscapes: !/NO_BACKSLASH_ESCAPES/i.test(String(row?.mode)),
      });
    } catch (error) {
      connection.destroy();
      throw error;
    }
    return connection;
  } finally {
    stop();
  }
}

/**
 * Runs `work` on an admin connection of the target's pool (see mysqlPools), or, signing in as another account
 * (verifyPassword), on a connection of its own that is always closed; classifies whatever fails. On abort the
 * call fails at once and the connection is destroyed.
 */
export async function withSession<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  work: (session: Session) => Promise<T>,
  settings: SessionSettings<T> = {},
): Promise<T> {
  const address = parseAddress(target.address);
  if ("problems" in address) throw refused(`${target.name}: ${address.problems.join("; ")}`);
  const context = {
    targetName: target.name,
    host: address.host,
    port: address.port,
    credential: target.credential,
    secrets: [...(settings.secrets ?? []), ...(settings.as ? [settings.as.password] : [])],
  };
  const signal = call?.signal;
  const run = async (connection: Connection) => {
    const { aborted, stop } = abortionOf(target, signal, () => connection.destroy());
    try {
      const query = async (sql: string, values?: unknown[]) => {
        const [rows] = await Promise.race([connection.query({ sql, values, timeout: QUERY_TIMEOUT_MS }), aborted]);
        return rows as RowDataPacket[];
      };
      const session = {
        target,
        options: readOptions(target.options),
        mariadb: serverOf.get(connection)?.mariadb ?? false,
        backslashEscapes: serverOf.get(connection)?.backslashEscapes ?? true,
        query,
      };
      return await Promise.race([work(session), aborted]);
    } finally {
      stop();
    }
  };
  try {
    if (settings.as) {
      const connection = await openConnection(target, address, signal, settings.as);
      try {
        return await run(connection);
      } finally {
        if (signal?.aborted) connection.destroy();
        else await connection.end().catch(() => connection.destroy());
      }
    }
    return await mysqlPools.use(
      poolKey("mysql", target),
      (opening) => openConnection(target, address, opening),
      run,
      signal,
    );
  } catch (error) {
    if (signal?.aborted) throw classifyError(unavailable(`${target.name}: call aborted`), context);
    const errno = (error as { errno?: unknown }).errno;
    if (settings.whenSignInRefused !== undefined && SIGN_IN_REFUSED.has(errno as number))
      return settings.whenSignInRefused;
    throw classifyError(error, context);
  }
}
