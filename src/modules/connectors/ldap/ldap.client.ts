/**
 * The LDAP connector's connections: bound admin connections pooled per target (../connection-pool.ts), a
 * connection of its own to bind as a login (verifyPassword), aborts, and one classification of whatever fails.
 * The operations (ldap.connector.ts) run inside `withDirectory`, on a `Directory`: the three LDAP operations
 * they use, each refused on a connection that has closed (ldapts would otherwise reconnect by itself, unbound
 * and without StartTLS) and each marking the connection as in doubt when its answer says nothing certain.
 */
import type { Socket } from "node:net";
import { Client, ResultCodeError } from "ldapts";
import { abortion } from "../call-abort.js";
import { createConnectionPools, poolKey } from "../connection-pool.js";
import { ConnectorError, refused, unavailable, type CallOptions, type ConnectorTarget } from "../connector.types.js";
import {
  RESULT,
  describeResult,
  isTransientResult,
  leavesConnectionAsItWas,
  settingsOf,
  type LdapSettings,
} from "./ldap.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
/** Each request's answer; a pooled connection whose server went silent is given up after it (and not reused). */
const OPERATION_TIMEOUT_MS = 15_000;
/** How long closing a connection waits for its unbind to be written before the socket goes regardless. */
const CLOSE_WAIT_MS = 250;

/** The LDAP operations the connector uses, on one bound connection. */
export type Directory = Pick<Client, "search" | "modify" | "exop">;

/** One connection, bound as the target's admin (pooled) or as a login (verifyPassword). */
interface LdapConnection {
  client: Client;
  /** The connection's socket once set up (the TLS socket after StartTLS). */
  socket: Socket;
  closed: boolean;
  /** An answer left the connection's state unknown: closed when its call ends, never pooled. */
  doubtful: boolean;
}

/** The connection closed under a call, or its server stopped answering: a new connection may succeed. */
class ConnectionLost extends ConnectorError {
  constructor(message: string) {
    super("unavailable", message);
  }
}

/** The server refused the bind itself (wrong DN or password): verifyPassword's `false`. */
class BindRefused extends ConnectorError {
  constructor(message: string) {
    super("refused", message);
  }
}

/** The LDAP result code of an error the server sent, or null for anything else (a socket error, a timeout). */
export function resultCode(error: unknown): number | null {
  return error instanceof ResultCodeError ? error.code : null;
}

/** Removes the credential (and any other secret of the call) from text, in case a server or library echoes it. */
function scrub(text: string, target: ConnectorTarget, extra: string[] = []): string {
  return [target.credential ?? "", ...extra]
    .filter((secret) => secret.length >= 4)
    .reduce((clean, secret) => clean.split(secret).join("[redacted]"), text);
}

/** The server's own words for a result, one line. */
export function serverWords(error: ResultCodeError, target: ConnectorTarget, extra: string[] = []): string {
  return scrub(describeResult(error.code, error.message), target, extra);
}

/** Where the connector connects, without user info, path or query. */
export function endpointOf(address: string): { url: string; host: string } {
  const url = new URL(address);
  const secure = url.protocol === "ldaps:";
  const port = url.port || (secure ? "636" : "389");
  return { url: `${url.protocol}//${url.hostname}:${port}`, host: `${url.hostname}:${port}` };
}

/** Any failure as a ConnectorError: the server's "no" is refused; anything else is unavailable, safely worded. */
function classify(error: unknown, target: ConnectorTarget, doing: string, extra: string[] = []): ConnectorError {
  if (error instanceof ConnectorError) return new ConnectorError(error.reason, scrub(error.message, target, extra));
  const code = resultCode(error);
  if (code !== null) {
    const words = serverWords(error as ResultCodeError, target, extra);
    return isTransientResult(code)
      ? unavailable(`${target.name}: ${doing}: ${words}`)
      : refused(`${target.name}: ${doing}: ${words}`);
  }
  const message = error instanceof Error ? error.message : "";
  const known =
    /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|timeout|timed out|closed|socket|certificate|TLS|SSL/i;
  const firstLine = message.split("\n")[0]!;
  const detail =
    firstLine === "Connection timeout"
      ? `: no connection within ${CONNECT_TIMEOUT_MS / 1000} s`
      : /Operation timed out/.test(firstLine)
        ? `: no answer within ${OPERATION_TIMEOUT_MS / 1000} s`
        : known.test(message)
          ? `: ${scrub(firstLine, target, extra)}`
          : "";
  return unavailable(`${target.name}: ${doing}: the LDAP server did not answer${detail}`);
}

/** The checked endpoint of a target: refused for an address that is not ldap(s)://, or StartTLS on ldaps://. */
function checkedEndpoint(target: ConnectorTarget, settings: LdapSettings) {
  let endpoint: { url: string; host: string };
  try {
    endpoint = endpointOf(target.address);
  } catch {
    throw refused(`${target.name}: the address is not an ldap:// or ldaps:// URL`);
  }
  if (settings.startTls && endpoint.url.startsWith("ldaps:"))
    throw refused(`${target.name}: options.startTls is for ldap:// addresses; ldaps:// is encrypted already`);
  if (settings.ca !== null && !settings.startTls && !endpoint.url.startsWith("ldaps:"))
    throw refused(
      `${target.name}: options.tls is for an ldaps:// address or options.startTls: true; over ${endpoint.url} nothing is encrypted`,
    );
  return endpoint;
}

async function closeConnection(connection: LdapConnection): Promise<void> {
  if (!connection.closed && !connection.socket.destroyed)
    // A polite unbind (written, not answered), a short wait at most, then the socket goes regardless.
    await Promise.race([
      connection.client.unbind().catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, CLOSE_WAIT_MS).unref()),
    ]);
  connection.closed = true;
  connection.socket.destroy();
}

/**
 * The pools of bound admin connections (see ../connection-pool.ts), keyed by the target's address, options and
 * admin password: a rotated password gets new connections and binds, and the old password's connections are
 * closed. A pooled connection keeps no password (ldapts needs it only for the bind).
 */
export const ldapPools = createConnectionPools<LdapConnection>({
  close: closeConnection,
  watch: (connection, lost) => connection.socket.once("close", lost),
  reusable: (connection) => !connection.closed && !connection.doubtful && !connection.socket.destroyed,
  lostConnection: (error) => error instanceof ConnectionLost,
  hold: (connection, held) => (held ? connection.socket.ref() : connection.socket.unref()),
});

/**
 * Connects (TLS checked against `options.tls.ca`, else Node's CAs, and the host name for ldaps://), upgrades
 * with StartTLS when the options say so (the same checks; a refused StartTLS ends the call before any bind:
 * the password never goes in clear), and binds as `dn`; an abort destroys the connection and wins the race.
 */
async function openConnection(
  target: ConnectorTarget,
  settings: LdapSettings,
  as: { dn: string; password: string },
  doing: string,
  signal: AbortSignal | undefined,
): Promise<LdapConnection> {
  const endpoint = checkedEndpoint(target, settings);
  if (signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
  const tlsOptions = settings.ca === null ? {} : { ca: settings.ca };
  const client = new Client({
    url: endpoint.url,
    connectTimeout: CONNECT_TIMEOUT_MS,
    timeout: OPERATION_TIMEOUT_MS,
    ...(endpoint.url.startsWith("ldaps:") ? { tlsOptions } : {}),
  });
  const socketOf = () => (client as unknown as { socket?: Socket }).socket;
  const cancelled = () => unavailable(`${target.name}: ${doing}: cancelled`);
  const { aborted, stop } = abortion(signal, () => socketOf()?.destroy(), cancelled);
  const setUp = async () => {
    if (settings.startTls)
      try {
        await client.startTLS({ ...tlsOptions, servername: new URL(target.address).hostname });
      } catch (error) {
        throw classify(error, target, `StartTLS with ${endpoint.host}`);
      }
    try {
      await client.bind(as.dn, as.password);
    } catch (error) {
      if (resultCode(error) === RESULT.invalidCredentials)
        throw new BindRefused(`${target.name}: cannot bind as ${as.dn}: invalid credentials (wrong DN or password)`);
      throw classify(error, target, `binding as ${as.dn} at ${endpoint.host}`, [as.password]);
    }
  };
  try {
    await Promise.race([setUp(), aborted]);
  } catch (error) {
    socketOf()?.destroy();
    throw error;
  } finally {
    stop();
  }
  const socket = socketOf();
  if (!socket || socket.destroyed) throw unavailable(`${target.name}: ${doing}: the LDAP server closed the connection`);
  const connection: LdapConnection = { client, socket, closed: false, doubtful: false };
  socket.once("close", () => (connection.closed = true));
  return connection;
}

/**
 * The connection's operations for one call: refused once the connection has closed (never reconnected), raced
 * against `gone` (the connection closing, the call's abort), and an answer that is not a definite one about the
 * operation's object marks the connection in doubt. A socket failure or a timeout is ConnectionLost (and the
 * connection is destroyed), so that the pool retries an operation that met a dead pooled connection.
 */
function directoryOn(
  connection: LdapConnection,
  gone: Promise<never>,
  target: ConnectorTarget,
  doing: string,
): Directory {
  const step = async <R>(send: () => Promise<R>): Promise<R> => {
    // Checked in the same tick as the call: ldapts would otherwise connect again, unbound and in clear.
    if (connection.closed || connection.socket.destroyed)
      throw new ConnectionLost(`${target.name}: ${doing}: the LDAP connection closed`);
    try {
      return await Promise.race([send(), gone]);
    } catch (error) {
      const code = resultCode(error);
      if (code === null || !leavesConnectionAsItWas(code)) connection.doubtful = true;
      if (code !== null || error instanceof ConnectorError) throw error;
      connection.socket.destroy();
      throw new ConnectionLost(classify(error, target, doing).message);
    }
  };
  const { client } = connection;
  return {
    search: (...args) => step(() => client.search(...args)),
    modify: (...args) => step(() => client.modify(...args)),
    exop: (...args) => step(() => client.exop(...args)),
  };
}

/** Runs `work` on the connection with the call's abort, and the connection's closing, raced against each step. */
async function run<T>(
  connection: LdapConnection,
  target: ConnectorTarget,
  doing: string,
  signal: AbortSignal | undefined,
  work: (directory: Directory) => Promise<T>,
): Promise<T> {
  const cancelled = () => unavailable(`${target.name}: ${doing}: cancelled`);
  const { aborted, stop } = abortion(signal, () => connection.socket.destroy(), cancelled);
  // Listeners of this call only, removed at its end: a pooled connection serves many calls.
  let onClose = () => {};
  const closed = new Promise<never>((_, reject) => {
    onClose = () => reject(new ConnectionLost(`${target.name}: ${doing}: the LDAP connection closed`));
  });
  connection.socket.once("close", onClose);
  const gone = Promise.race([closed, aborted]);
  gone.catch(() => undefined);
  try {
    return await Promise.race([work(directoryOn(connection, gone, target, doing)), gone]);
  } finally {
    stop();
    connection.socket.removeListener("close", onClose);
  }
}

/**
 * Runs `work` on a bound admin connection of the target's pool (see ldapPools) and classifies whatever fails,
 * with the credential and `secrets` scrubbed. On abort the call fails at once and its connection is destroyed.
 */
export async function withDirectory<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  doing: string,
  work: (directory: Directory, settings: LdapSettings) => Promise<T>,
  secrets: string[] = [],
): Promise<T> {
  const settings = settingsOf(target.options);
  const signal = call?.signal;
  if (signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
  if (!target.credential)
    // An empty password would make the bind anonymous (RFC 4513 §5.1.2) instead of failing.
    throw refused(`${target.name}: no credential is set: store the password of ${settings.bindDn} as its credential`);
  const admin = { dn: settings.bindDn, password: target.credential };
  checkedEndpoint(target, settings);
  try {
    return await ldapPools.use(
      poolKey("ldap", target),
      (opening) => openConnection(target, settings, admin, doing, opening),
      (connection) => run(connection, target, doing, signal, (directory) => work(directory, settings)),
      signal,
    );
  } catch (error) {
    if (signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
    throw classify(error, target, doing, secrets);
  }
}

/**
 * Binds as `dn` with `password` on a connection of its own (same address and StartTLS), never pooled, and
 * closes it. `true` when the bind succeeds, `false` when the server says invalid credentials.
 */
export async function canBind(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  dn: string,
  password: string,
): Promise<boolean> {
  const settings = settingsOf(target.options);
  const doing = `signing in as ${dn}`;
  let connection: LdapConnection;
  try {
    connection = await openConnection(target, settings, { dn, password }, doing, call?.signal);
  } catch (error) {
    if (call?.signal?.aborted) throw unavailable(`${target.name}: ${doing}: cancelled`);
    if (error instanceof BindRefused) return false;
    throw classify(error, target, doing, [password]);
  }
  await closeConnection(connection);
  return true;
}
