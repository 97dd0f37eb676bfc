/**
 * The PostgreSQL connector's admin connections: signed in by SCRAM (or what the target opted into) over the TLS its
 * sslmode asks for, pooled per target (../connection-pool.ts), and given up at once when the call aborts.
 */
import pg from "pg";
import { createConnectionPools, poolKey } from "../connection-pool.js";
import { refused, unavailable, type CallOptions, type ConnectorTarget } from "../connector.types.js";
import { classifyFailure, parseAddress, upstreamSecurity, type UpstreamSecurity } from "./postgres.rules.js";

const CONNECT_TIMEOUT_MS = 5_000;
const QUERY_TIMEOUT_MS = 30_000;
const LOCK_TIMEOUT_MS = 10_000;
/** How often the server checks that our socket is still open while a statement runs. */
const CONNECTION_CHECK_MS = 1_000;
/** How long closing a pooled client waits for the server's goodbye before cutting the socket. */
const CLOSE_WAIT_MS = 1_000;

interface ClientOptions<T> {
  /** Connect as this login instead of the target's admin (verifyPassword). */
  as?: { user: string; password: string };
  /** Strings to remove from every error message, besides the target's credential. */
  secrets?: string[];
  /** Turns a failure into a result (verifyPassword's "wrong password"), or undefined to classify it. */
  recover?: (error: unknown) => T | undefined;
}

/** node-postgres' TLS settings for a target's sslmode: libpq's meaning of each mode. */
function sslConfig(security: UpstreamSecurity): pg.ClientConfig["ssl"] {
  const tls = security.tls;
  if (tls === null) return false;
  const ca = tls.ca === null ? {} : { ca: tls.ca };
  if (tls.mode === "require") return { ...ca, rejectUnauthorized: false };
  if (tls.mode === "verify-ca") return { ...ca, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  return { ...ca, rejectUnauthorized: true };
}

/**
 * Keeps the password from a server that asks for it in a form the target did not opt into
 * (cleartext, MD5, SCRAM without channel binding over TLS): node-postgres answers whatever is asked,
 * so the password is a function that refuses once such a request has been seen. The connection's
 * events fire before node-postgres asks for the password (our listeners are attached first).
 */
function guardedPassword(client: pg.Client, security: UpstreamSecurity, where: string, password: string | undefined) {
  let refusal: string | null = null;
  const connection = (client as unknown as { connection: NodeJS.EventEmitter }).connection;
  connection.on("authenticationCleartextPassword", () => {
    if (!security.allow.includes("password"))
      refusal = `${where} asks for the password in clear; Stint sends it only by SCRAM-SHA-256 (opt in with options.auth.allow: [password])`;
  });
  connection.on("authenticationMD5Password", () => {
    if (!security.allow.includes("md5"))
      refusal = `${where} asks for an MD5 password; Stint signs in only by SCRAM-SHA-256 (opt in with options.auth.allow: [md5])`;
  });
  connection.on("authenticationSASL", (message: { mechanisms: string[] }) => {
    const bound = security.tls !== null && message.mechanisms.includes("SCRAM-SHA-256-PLUS");
    if (!bound && !security.allow.includes("scram-sha-256"))
      refusal = `${where} offers SCRAM-SHA-256 without channel binding over TLS (opt in with options.auth.allow: [scram-sha-256])`;
  });
  return async (): Promise<string | undefined> => {
    if (refusal !== null) throw refused(refusal);
    return password;
  };
}

/** SQLSTATEs and messages that say the connection itself is gone (pg_terminate_backend, a restart, a reset). */
const LOST_CODES = ["57P01", "57P02", "57P03", "ECONNRESET", "EPIPE"];
const LOST_MESSAGE = /^Connection terminated|not queryable|connection error/;

function connectionLost(error: unknown): boolean {
  const { code, message } = (typeof error === "object" && error !== null ? error : {}) as {
    code?: unknown;
    message?: unknown;
  };
  if (typeof code === "string" && (LOST_CODES.includes(code) || code.startsWith("08"))) return true;
  return typeof message === "string" && LOST_MESSAGE.test(message);
}

/** server_version_num of each client, asked once when it connects. */
export const serverVersion = new WeakMap<pg.Client, number>();

type PgInternals = {
  _queryable?: boolean;
  _ending?: boolean;
  _ended?: boolean;
  connection: { stream: { ref?(): void; unref?(): void; destroy?(): void } };
};
const internals = (client: pg.Client) => client as unknown as PgInternals;

/**
 * The pools of admin connections (see ../connection-pool.ts). A pooled client is signed in already: it keeps
 * no password (guardedPassword's function is replaced once connected), and it is in no transaction when idle.
 */
export const postgresPools = createConnectionPools<pg.Client>({
  close: async (client) => {
    // end() waits for the socket to close; a server that never answers must not hold a shutdown.
    let timer: NodeJS.Timeout | undefined;
    const cut = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        internals(client).connection.stream.destroy?.();
        resolve();
      }, CLOSE_WAIT_MS);
    });
    await Promise.race([client.end().catch(() => {}), cut]);
    clearTimeout(timer);
  },
  watch: (client, lost) => {
    client.on("error", lost);
    client.on("end", lost);
  },
  reusable: (client) => {
    const state = internals(client);
    return state._queryable !== false && !state._ending && !state._ended && client.getTransactionStatus() === "I";
  },
  lostConnection: connectionLost,
  hold: (client, held) => {
    const stream = internals(client).connection.stream;
    if (held) stream.ref?.();
    else stream.unref?.();
  },
});

interface Endpoint {
  address: ReturnType<typeof parseAddress>;
  security: UpstreamSecurity;
  where: string;
}

function endpointOf(target: ConnectorTarget): Endpoint {
  const address = parseAddress(target.address);
  const security = upstreamSecurity(address, target.options);
  const where = address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  return { address, security, where };
}

/** Rejects with "aborted" when `signal` aborts (never when there is none); `stop` removes the listener. */
function abortion(target: ConnectorTarget, signal: AbortSignal | undefined, onAbort: () => void = () => {}) {
  let stop = () => {};
  const aborted = new Promise<never>((_, reject) => {
    if (!signal) return;
    const listener = () => {
      reject(unavailable(`${target.name}: the call was aborted`));
      onAbort();
    };
    signal.addEventListener("abort", listener, { once: true });
    stop = () => signal.removeEventListener("abort", listener);
  });
  aborted.catch(() => {});
  return { aborted, stop };
}

/**
 * Opens and signs in one client (as the target's admin, or as `as`). Settles when the call aborts, closing the
 * client: pg never settles connect() when the client is ended mid-handshake, so the abort must win a race.
 */
async function openClient(
  target: ConnectorTarget,
  { address, security, where }: Endpoint,
  signal: AbortSignal | undefined,
  as?: { user: string; password: string },
): Promise<pg.Client> {
  if (signal?.aborted) throw unavailable(`${target.name}: the call was aborted before connecting`);
  const client = new pg.Client({
    host: address.host,
    port: address.port,
    user: as?.user ?? address.user,
    database: address.database,
    ssl: sslConfig(security),
    // SCRAM-SHA-256-PLUS (bound to the TLS channel) whenever the server offers it over TLS.
    enableChannelBinding: security.tls !== null,
    application_name: address.applicationName,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
    statement_timeout: QUERY_TIMEOUT_MS,
    lock_timeout: LOCK_TIMEOUT_MS,
  });
  // Given here, never in a URL, so it cannot surface in a message that echoes the address.
  client.password = guardedPassword(
    client,
    security,
    where,
    as ? as.password : (target.credential ?? undefined),
  ) as unknown as string;
  // A client whose backend goes away emits 'error'; the pending query rejects too, which is where we handle it.
  client.on("error", () => {});
  const { aborted, stop } = abortion(target, signal, () => void client.end().catch(() => {}));
  try {
    const ready = (async () => {
      await client.connect();
      // Signed in: the password is not needed again, and a pooled client must not keep it.
      client.password = (async () => {
        throw refused(`${where} asks for the password again`);
      }) as unknown as string;
      // Closing the socket does not stop a statement already running (say, waiting for a lock), so an
      // aborted grant could still commit later; PostgreSQL 14+ can notice the closed socket and cancel it.
      const version = await client.query<{ num: number }>(
        `SELECT current_setting('server_version_num')::int AS num,
                CASE WHEN current_setting('server_version_num')::int >= 140000
                     THEN set_config('client_connection_check_interval', '${CONNECTION_CHECK_MS}', false) END AS checked`,
      );
      serverVersion.set(client, version.rows[0]!.num);
    })();
    ready.catch(() => {}); // when the abort wins, whatever `ready` does later is of no interest
    await Promise.race([ready, aborted]);
    return client;
  } catch (error) {
    void client.end().catch(() => {});
    throw error;
  } finally {
    stop();
  }
}

/**
 * Runs `work` on a client of the target's admin: a pooled one (see postgresPools), or, signing in as another
 * login (verifyPassword), a client of its own that is always closed. On abort the call fails at once and the
 * client is closed, which also cancels a statement in flight (PostgreSQL 14+).
 */
export async function withClient<T>(
  target: ConnectorTarget,
  call: CallOptions | undefined,
  work: (client: pg.Client) => Promise<T>,
  options: ClientOptions<T> = {},
): Promise<T> {
  const endpoint = endpointOf(target);
  const signal = call?.signal;
  if (signal?.aborted) throw unavailable(`${target.name}: the call was aborted before connecting`);
  const run = async (client: pg.Client) => {
    const { aborted, stop } = abortion(target, signal);
    try {
      const working = work(client);
      working.catch(() => {}); // when the abort wins, whatever `work` does later is of no interest
      return await Promise.race([working, aborted]);
    } finally {
      stop();
    }
  };
  try {
    if (options.as) {
      const client = await openClient(target, endpoint, signal, options.as);
      try {
        return await run(client);
      } finally {
        await client.end().catch(() => {});
      }
    }
    return await postgresPools.use(
      poolKey("postgres", target),
      (opening) => openClient(target, endpoint, opening),
      run,
      signal,
    );
  } catch (error) {
    if (signal?.aborted) throw unavailable(`${target.name}: the call was aborted`);
    const recovered = options.recover?.(error);
    if (recovered !== undefined) return recovered;
    throw classifyFailure(error, { where: endpoint.where, credential: target.credential, secrets: options.secrets });
  }
}
