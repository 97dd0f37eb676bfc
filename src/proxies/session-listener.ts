/**
 * What the database session proxies (PostgreSQL, MariaDB/MySQL) share around their protocols: the
 * listener with its connection caps and handshake deadline, the registry of live sessions and their
 * kill-on-abort wiring, relayed-byte sums, and the shutdown that drains them. Setup and teardown
 * only: each proxy's relay reads and writes its sockets itself (no indirection per chunk).
 */
import { createServer, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket, createSecureContext, type SecureContext } from "node:tls";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../lib/logger.js";
import type {
  BrokeredSession,
  EndReason,
  QueryLogResult,
  SentStatement,
  SessionEnd,
} from "../modules/sessions/sessions.types.js";
import { holdForRecording } from "./pg/wire-stream.js";

/** A client gets this long from accept to send its startup packet and its password. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 50;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Relayed byte counts reach the sessions module (metrics, the session's totals) at most this late. */
export const BYTES_FLUSH_MS = 250;
/** Sockets still open this long after their end are destroyed. */
export const LINGER_MS = 5_000;

export const SHUTDOWN: SessionEnd = { reason: "shutdown", message: "the Stint proxy is shutting down" };

/** The listener settings both database proxies take. */
export interface SessionListenerOptions {
  /** Listen address; 127.0.0.1 unless told. */
  host?: string;
  /** 0: any free port. */
  port: number;
  /** TLS for clients (PEM certificate chain and key). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** From accept to the client's password: one deadline, whatever the client sends meanwhile. */
  handshakeTimeoutMs?: number;
  /** Open client connections (signing in or in session) at most; more are refused at accept. */
  maxConnections?: number;
  /** The same, per client IP address. */
  maxConnectionsPerAddress?: number;
  /** Where the proxy's connection gauge and refusal counter go. */
  registry?: Registry;
}

export interface SessionProxy {
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting, ends every live session with reason "shutdown" and waits for their end. */
  close(): Promise<void>;
  liveSessions(): number;
}

export interface LiveSession {
  stop(end: SessionEnd): Promise<void>;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function isSessionEnd(value: unknown): value is SessionEnd {
  return typeof value === "object" && value !== null && "reason" in value && "message" in value;
}

/** The registry's metric of that name, or a new one (several proxies may share a registry in tests). */
export function metric<T>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => T): T {
  const existing = registry?.getSingleMetric(name);
  return (existing as T | undefined) ?? make(registry ? [registry] : []);
}

/**
 * A database proxy's query log: `record` a result; `logSent` a statement before its last byte goes on. One a
 * required recording refused ends the session (`kill`) before that; while the recording is backlogged (its
 * disk behind) the client is not read after either, its next statements waiting in its own socket.
 */
export function queryLogWriters(
  session: Pick<BrokeredSession, "recorder" | "policy" | "signal">,
  client: Socket,
  kill: (end: SessionEnd) => void,
): { record(entry: QueryLogResult): void; logSent(statement: SentStatement): void } {
  const { recorder } = session;
  return {
    record(entry) {
      recorder.query(entry);
      holdForRecording(client, recorder);
    },
    logSent(statement) {
      if (recorder.sent?.(statement) === false && session.policy.recording === "required")
        kill(unrecordedEnd(session.signal));
      else holdForRecording(client, recorder);
    },
  };
}

/**
 * Why a session ends when its required recording did not take a statement: the signal's reason (the
 * recording's failure aborted it: its size limit, a failed disk), else this proxy's own sentence.
 */
export function unrecordedEnd(signal: AbortSignal): SessionEnd {
  const reason: unknown = signal.reason;
  if (signal.aborted && isSessionEnd(reason)) return reason;
  return {
    reason: "recording_failed",
    message:
      "This statement could not be recorded and recording is required for this role: it was not run, and the session is ended.",
  };
}

/** Ends a connection with a last message; the socket is destroyed LINGER_MS later whatever the client does. */
export function endWith(client: Socket, bytes: Buffer): void {
  if (!client.destroyed) client.end(bytes);
  setTimeout(() => client.destroy(), LINGER_MS).unref();
}

/** The server side of TLS over an accepted socket; its errors are only logged (the close follows). */
export function acceptTls(socket: Duplex, secureContext: SecureContext, log: Logger): TLSSocket {
  const secure = new TLSSocket(socket, { isServer: true, secureContext });
  secure.on("error", (error) => log.debug({ error: error.message }, "client TLS error"));
  return secure;
}

export interface SessionListener extends SessionProxy {
  readonly secureContext: SecureContext | null;
  /**
   * The handshake deadline from accept: a client still signing in when it passes is destroyed
   * (and counted, with `countHandshakeTimeouts`). `remaining()` is what is left of it plus
   * `slackMs`, for reads.
   */
  handshakeDeadline(raw: Socket, clientAddress: string, slackMs: number): { remaining(): number; clear(): void };
  /**
   * The client signed in and the gate opened its session: false (the session ended, the client
   * destroyed) when the proxy is closing or the client left meanwhile.
   */
  admit(raw: Socket, client: Socket, session: Pick<BrokeredSession, "end">): Promise<boolean>;
  /**
   * The registration of a session in the live set, its kill on `session.signal` (and on shutdown),
   * its relayed-byte sums and its end.
   */
  liveSession(
    session: Pick<BrokeredSession, "signal" | "end" | "countBytes">,
    slog: Logger,
    kill: (end: SessionEnd) => void,
  ): LiveEntry;
}

export interface LiveEntry {
  /** Per relayed chunk: summed, handed to the sessions module at most BYTES_FLUSH_MS late. */
  countBytes(direction: "up" | "down", n: number): void;
  /** Joins the live set and listens for the abort; kills at once (and returns false) when aborted already. */
  start(clientAddress: string | undefined): boolean;
  /**
   * The end (call it once): the byte sums flushed, out of the live set and the abort, both sockets
   * ended (destroyed LINGER_MS later), then `session.end` (failures logged); `stop()` resolves after it.
   */
  close(client: Socket, upstream: Socket | null, reason: EndReason, detail?: string): void;
}

/** A session's logger: every line names the session, its user, role and target. */
export function sessionLogger(log: Logger, session: Pick<BrokeredSession, "id" | "user" | "role" | "target">): Logger {
  return log.child({ sessionId: session.id, user: session.user, role: session.role, target: session.target });
}

export function createSessionListener(options: {
  deps: SessionListenerOptions;
  log: Logger;
  /** In log lines: "postgres", "mysql". */
  name: string;
  /** Metric names' prefix ("stint_pg_proxy") and the product in their help ("PostgreSQL"). */
  metricPrefix: string;
  product: string;
  /** A `<prefix>_handshake_timeouts_total` counter of clients cut off by the handshake deadline. */
  countHandshakeTimeouts?: boolean;
  /** What a connection refused at accept (a cap reached) gets before it is closed. */
  tooManyConnections: Buffer;
  /** The protocol's handshake, from accept; a rejection destroys the client (logged). */
  handle(client: Socket): Promise<void>;
  /** Awaited before listening (e.g. loading a parser). */
  beforeListen?: () => Promise<void>;
}): SessionListener {
  const { deps, log, name } = options;
  const handshakeTimeoutMs = deps.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const maxConnections = deps.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxPerAddress = deps.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  const connectionsGauge = metric(
    deps.registry,
    `${options.metricPrefix}_connections`,
    (registers) =>
      new Gauge({
        name: `${options.metricPrefix}_connections`,
        help: `Client connections the ${options.product} proxy holds (signed in or not)`,
        registers,
      }),
  );
  const refusals = metric(
    deps.registry,
    `${options.metricPrefix}_connections_refused_total`,
    (registers) =>
      new Counter({
        name: `${options.metricPrefix}_connections_refused_total`,
        help: `Connections the ${options.product} proxy closed at accept because a cap was reached (overall, per_address)`,
        labelNames: ["reason"],
        registers,
      }),
  );
  const handshakeTimeouts = options.countHandshakeTimeouts
    ? metric(
        deps.registry,
        `${options.metricPrefix}_handshake_timeouts_total`,
        (registers) =>
          new Counter({
            name: `${options.metricPrefix}_handshake_timeouts_total`,
            help: `${options.product} proxy connections cut off because they had not signed in by the handshake deadline`,
            registers,
          }),
      )
    : null;
  /** Open client connections per source address, for the per-source cap. */
  const perSource = new Map<string, number>();
  let openConnections = 0;
  const handshaking = new Set<Socket>();
  const inflight = new Set<Promise<void>>();
  const live = new Set<LiveSession>();
  let closing = false;
  const secureContext = deps.tls ? createSecureContext({ cert: deps.tls.cert, key: deps.tls.key }) : null;
  const server = createServer((client) => accept(client));
  // Errors after the listener is up; a failure to listen rejects listen() instead (the caller reports it).
  const onServerError = (error: Error) => log.error({ error: error.message }, `${name} proxy listener error`);

  function accept(client: Socket): void {
    client.setNoDelay(true);
    client.on("error", (error) => log.debug({ error: error.message }, "client socket error"));
    if (closing) {
      client.destroy();
      return;
    }
    const source = client.remoteAddress ?? "unknown";
    const fromSource = perSource.get(source) ?? 0;
    if (openConnections >= maxConnections || fromSource >= maxPerAddress) {
      const reason = openConnections >= maxConnections ? "overall" : "per_address";
      refusals.inc({ reason });
      log.warn({ clientAddress: source, reason }, `${name} proxy connection refused: too many connections`);
      // The server's own answer when it is full; the socket goes at once, holding nothing.
      client.end(options.tooManyConnections);
      setTimeout(() => client.destroy(), 1_000).unref();
      return;
    }
    openConnections += 1;
    perSource.set(source, fromSource + 1);
    connectionsGauge.inc();
    client.once("close", () => {
      openConnections -= 1;
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
      connectionsGauge.dec();
    });
    handshaking.add(client);
    client.once("close", () => handshaking.delete(client));
    const task = options
      .handle(client)
      .catch((error: unknown) => {
        log.error({ error: errorMessage(error) }, `${name} client connection failed`);
        client.destroy();
      })
      .finally(() => inflight.delete(task));
    inflight.add(task);
  }

  return {
    secureContext,
    handshakeDeadline: (raw, clientAddress, slackMs) => {
      // One deadline from accept: SSLRequests, TLS and trickled bytes all count against it.
      const deadline = Date.now() + handshakeTimeoutMs;
      const timer = setTimeout(() => {
        if (!handshaking.has(raw)) return;
        handshakeTimeouts?.inc();
        log.info({ clientAddress }, `${name} client did not sign in in time; closing`);
        raw.destroy();
      }, handshakeTimeoutMs);
      timer.unref();
      raw.once("close", () => clearTimeout(timer));
      return { remaining: () => Math.max(1, deadline - Date.now()) + slackMs, clear: () => clearTimeout(timer) };
    },
    admit: async (raw, client, session) => {
      handshaking.delete(raw);
      if (!closing && !client.destroyed) return true;
      client.destroy();
      await session.end(closing ? "shutdown" : "client_closed");
      return false;
    },
    liveSession: (session, slog, kill) => {
      let resolveDone: () => void = () => {};
      const done = new Promise<void>((resolve) => (resolveDone = resolve));
      const onAbort = (): void => {
        const reason: unknown = session.signal.reason;
        kill(isSessionEnd(reason) ? reason : { reason: "killed", message: "the session was ended" });
      };
      const entry: LiveSession = {
        stop: (end) => {
          kill(end);
          return done;
        },
      };
      const bytes = createByteCounter(session);
      return {
        countBytes: bytes.count,
        start: (clientAddress) => {
          live.add(entry);
          session.signal.addEventListener("abort", onAbort);
          slog.info({ clientAddress }, `${name} session opened`);
          if (!session.signal.aborted) return true;
          onAbort();
          return false;
        },
        close: (client, upstream, reason, detail) => {
          bytes.flush();
          session.signal.removeEventListener("abort", onAbort);
          live.delete(entry);
          client.end();
          upstream?.end();
          setTimeout(() => {
            client.destroy();
            upstream?.destroy();
          }, LINGER_MS).unref();
          slog.info({ reason }, `${name} session ended`);
          session
            .end(reason, detail)
            .catch((error: unknown) => slog.error({ error: errorMessage(error) }, "ending the session failed"))
            .finally(resolveDone);
        },
      };
    },
    listen: async () => {
      await options.beforeListen?.();
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(deps.port, deps.host ?? "127.0.0.1", () => {
          server.off("error", reject);
          server.on("error", onServerError);
          const address = server.address() as AddressInfo;
          log.info({ host: address.address, port: address.port }, `${name} proxy listening`);
          resolve({ host: address.address, port: address.port });
        });
      });
    },
    close: async () => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of handshaking) socket.destroy();
      const stopping = [...live].map((session) => session.stop(SHUTDOWN));
      await Promise.allSettled([...inflight]);
      // Sessions opened while the gate was still answering.
      stopping.push(...[...live].map((session) => session.stop(SHUTDOWN)));
      await Promise.all(stopping);
      await closed;
    },
    liveSessions: () => live.size,
  };
}

/**
 * Relayed bytes, counted per chunk and handed to the sessions module in sums (a metric update per
 * chunk costs as much as relaying it): at most BYTES_FLUSH_MS late, and all of them on `flush()`.
 */
export function createByteCounter(session: Pick<BrokeredSession, "countBytes">): {
  count(direction: "up" | "down", n: number): void;
  flush(): void;
} {
  const relayed = { up: 0, down: 0 };
  let timer: NodeJS.Timeout | null = null;
  const flush = (): void => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (relayed.up > 0) session.countBytes("up", relayed.up);
    if (relayed.down > 0) session.countBytes("down", relayed.down);
    relayed.up = 0;
    relayed.down = 0;
  };
  const count = (direction: "up" | "down", n: number): void => {
    relayed[direction] += n;
    if (timer === null) {
      timer = setTimeout(flush, BYTES_FLUSH_MS);
      timer.unref();
    }
  };
  return { count, flush };
}

/** A stream that cannot be read any more: logged, both sockets destroyed; the detail for `session.end`. */
export function malformedStream(
  slog: Logger,
  side: string,
  error: unknown,
  client: Socket,
  upstream: Socket | null,
): string {
  slog.warn({ side, error: errorMessage(error) }, "malformed protocol stream; ending the session");
  client.destroy();
  upstream?.destroy();
  return `malformed ${side} protocol stream: ${errorMessage(error)}`;
}
