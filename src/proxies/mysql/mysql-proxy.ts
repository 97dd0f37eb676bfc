/**
 * The MariaDB/MySQL session proxy: a client signs in as `user%role` with a Stint database token as
 * its password, which the proxy asks for in clear (an AuthSwitchRequest to mysql_clear_password: the
 * scramble of mysql_native_password would hide it), only over TLS or from this machine. The gate
 * (sessions module) decides and hands back the upstream login; the proxy signs in upstream with it
 * (mysql_native_password or caching_sha2_password) and from then on relays packets, following each
 * command's answer for the query log. See README.md for the invariants.
 */
import { randomBytes } from "node:crypto";
import { isIP, createServer, type AddressInfo, type Socket } from "node:net";
import { TLSSocket, createSecureContext } from "node:tls";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../../lib/logger.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type QueryLogEntry,
  type SessionEnd,
  type SessionGate,
  type UpstreamMysql,
} from "../../modules/sessions/sessions.types.js";
import { connectTcp, forward } from "../pg/wire-stream.js";
import {
  MAX_HANDSHAKE_PACKET,
  UTF8MB4,
  UpstreamFailure,
  createPacketInbox,
  killUpstreamQuery,
  signInUpstream,
  withPrefix,
} from "./mysql-upstream.js";
import { MAX_LOGGED_STATEMENT, SERVER_KEEP, createMysqlSession, type MysqlSession } from "./mysql-session.js";
import {
  CLEAR_PASSWORD,
  CLIENT,
  MysqlWireError,
  NATIVE_PASSWORD,
  PROXY_CAPABILITIES,
  SERVER_STATUS,
  createPacketRelay,
  encodeAuthSwitch,
  encodeErr,
  encodeGreeting,
  isSslRequest,
  packet,
  parseHandshakeResponse,
  type PacketRelay,
} from "./mysql-wire.js";

export interface MysqlProxyDeps {
  gate: Pick<SessionGate, "openMysql">;
  logger: Logger;
  /** Listen address; 127.0.0.1 unless told. */
  host?: string;
  /** 0: any free port. */
  port: number;
  /** Connecting and signing in upstream. */
  connectTimeoutMs?: number;
  /** TLS for clients (PEM). With it, clients may sign in from other machines (over TLS only). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** From accept to the client's token: one deadline. */
  handshakeTimeoutMs?: number;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  registry?: Registry;
}

export interface MysqlProxy {
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting, ends every live session with reason "shutdown" and waits for their end. */
  close(): Promise<void>;
  liveSessions(): number;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 50;
/** The version the proxy announces before it knows the server (SELECT VERSION() tells the real one). */
export const PROXY_SERVER_VERSION = "8.0.99-Stint-proxy";
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const BYTES_FLUSH_MS = 250;
const LINGER_MS = 5_000;
const SHUTDOWN: SessionEnd = { reason: "shutdown", message: "the Stint proxy is shutting down" };

/** MySQL error numbers the proxy answers with. */
const ER = {
  ACCESS_DENIED: 1045,
  HANDSHAKE: 1043,
  CON_COUNT: 1040,
  CONNECTION_KILLED: 1927,
  UPSTREAM: 2013,
} as const;

interface LiveSession {
  stop(end: SessionEnd): Promise<void>;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isSessionEnd(value: unknown): value is SessionEnd {
  return typeof value === "object" && value !== null && "reason" in value && "message" in value;
}

/** Loopback: 127.0.0.0/8, ::1, and IPv4-mapped loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith("::ffff:") ? address.slice(7) : address;
  if (isIP(v4) === 4) return v4.startsWith("127.");
  return address === "::1";
}

/** A 20-byte nonce of printable, non-NUL bytes, as servers send it. */
function scramble(): Buffer {
  const bytes = randomBytes(20);
  for (let i = 0; i < bytes.length; i++) bytes[i] = 0x21 + (bytes[i]! % 0x5e);
  return bytes;
}

function metric<T>(registry: Registry | undefined, name: string, make: (registers: Registry[]) => T): T {
  const existing = registry?.getSingleMetric(name);
  return (existing as T | undefined) ?? make(registry ? [registry] : []);
}

export function createMysqlProxy(deps: MysqlProxyDeps): MysqlProxy {
  const log = deps.logger.child({ component: "mysql-proxy" });
  const connectTimeoutMs = deps.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const handshakeTimeoutMs = deps.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const maxConnections = deps.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxPerAddress = deps.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  const connectionsGauge = metric(
    deps.registry,
    "stint_mysql_proxy_connections",
    (registers) =>
      new Gauge({
        name: "stint_mysql_proxy_connections",
        help: "Client connections the MySQL proxy holds (signed in or not)",
        registers,
      }),
  );
  const refusals = metric(
    deps.registry,
    "stint_mysql_proxy_connections_refused_total",
    (registers) =>
      new Counter({
        name: "stint_mysql_proxy_connections_refused_total",
        help: "Connections the MySQL proxy closed at accept because a cap was reached (overall, per_address)",
        labelNames: ["reason"],
        registers,
      }),
  );
  const perSource = new Map<string, number>();
  let openConnections = 0;
  let nextConnectionId = 1;
  const handshaking = new Set<Socket>();
  const inflight = new Set<Promise<void>>();
  const live = new Set<LiveSession>();
  let closing = false;
  const secureContext = deps.tls ? createSecureContext({ cert: deps.tls.cert, key: deps.tls.key }) : null;
  const server = createServer((client) => accept(client));
  const onServerError = (error: Error) => log.error({ error: error.message }, "mysql proxy listener error");

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
      log.warn({ clientAddress: source, reason }, "mysql proxy connection refused: too many connections");
      client.end(packet(0, encodeErr(ER.CON_COUNT, "08004", "Too many connections")));
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
    const task = handleClient(client)
      .catch((error: unknown) => {
        log.error({ error: errorMessage(error) }, "mysql client connection failed");
        client.destroy();
      })
      .finally(() => inflight.delete(task));
    inflight.add(task);
  }

  function refuse(client: Socket, seq: number, code: number, sqlstate: string, message: string): void {
    if (!client.destroyed) client.end(packet(seq, encodeErr(code, sqlstate, message)));
    setTimeout(() => client.destroy(), LINGER_MS).unref();
  }

  async function handleClient(raw: Socket): Promise<void> {
    const clientAddress = raw.remoteAddress ?? "unknown";
    let client: Socket = raw;
    const deadline = Date.now() + handshakeTimeoutMs;
    const remaining = () => Math.max(1, deadline - Date.now());
    const timer = setTimeout(() => {
      if (!handshaking.has(raw)) return;
      log.info({ clientAddress }, "mysql client did not sign in in time; closing");
      raw.destroy();
    }, handshakeTimeoutMs);
    timer.unref();
    raw.once("close", () => clearTimeout(timer));

    const nonce = scramble();
    const connectionId = nextConnectionId++;
    raw.write(
      packet(
        0,
        encodeGreeting({
          serverVersion: PROXY_SERVER_VERSION,
          connectionId,
          scramble: nonce,
          capabilities: PROXY_CAPABILITIES | (secureContext ? CLIENT.SSL : 0),
          charset: UTF8MB4,
          status: SERVER_STATUS.AUTOCOMMIT,
          authPlugin: NATIVE_PASSWORD,
        }),
      ),
    );
    let inbox = createPacketInbox(raw, MAX_HANDSHAKE_PACKET);
    let seq: number;
    let response: ReturnType<typeof parseHandshakeResponse>;
    let password: string;
    try {
      let first = await inbox.next(remaining());
      if (isSslRequest(first.payload)) {
        // The client starts TLS right after its SSLRequest (no answer comes first in MySQL): bytes
        // already read behind the request are its ClientHello and go to the TLS layer first.
        const hello = inbox.detach();
        if (!secureContext) {
          raw.destroy();
          return;
        }
        const secure = new TLSSocket(hello.length > 0 ? withPrefix(raw, hello) : raw, {
          isServer: true,
          secureContext,
        });
        secure.on("error", (error) => log.debug({ error: error.message }, "client TLS error"));
        client = secure;
        inbox = createPacketInbox(secure, MAX_HANDSHAKE_PACKET);
        first = await inbox.next(remaining());
      }
      seq = first.seq;
      response = parseHandshakeResponse(first.payload);
      const [stintUser, role, ...rest] = response.user.split("%");
      if (!stintUser || !role || rest.length > 0) {
        refuse(
          client,
          seq + 1,
          ER.ACCESS_DENIED,
          "28000",
          `Connect as <user>%<role> with the password \`stint db login ROLE\` prints (not "${response.user.slice(0, 64)}").`,
        );
        return;
      }
      // The token travels in clear from here: only inside TLS, or on this machine.
      if (!(client instanceof TLSSocket) && !isLoopback(clientAddress)) {
        refuse(
          client,
          seq + 1,
          ER.ACCESS_DENIED,
          "28000",
          secureContext
            ? "The Stint proxy takes your token only over TLS from another machine: connect with --ssl (ssl-mode=REQUIRED)."
            : "The Stint proxy takes your token only from this machine, since it has no TLS certificate configured (STINT_MYSQL_PROXY_TLS_CERT).",
        );
        return;
      }
      if (response.authPlugin === CLEAR_PASSWORD && response.authResponse.length > 0) {
        password = response.authResponse.toString("utf8").replace(/\0$/, "");
      } else {
        client.write(packet(seq + 1, encodeAuthSwitch(CLEAR_PASSWORD, Buffer.alloc(0))));
        const answer = await inbox.next(remaining());
        seq = answer.seq;
        password = answer.payload.toString("utf8").replace(/\0$/, "");
      }
      clearTimeout(timer);
    } catch (error) {
      // A malformed or oversized handshake, a closed socket or the deadline.
      log.debug({ clientAddress, error: errorMessage(error) }, "mysql handshake failed");
      if (!client.destroyed && error instanceof MysqlWireError)
        refuse(client, 2, ER.HANDSHAKE, "08S01", "Bad handshake");
      else client.destroy();
      return;
    }

    let session: BrokeredSession<UpstreamMysql>;
    try {
      session = await deps.gate.openMysql({
        user: response.user,
        password,
        database: response.database,
        clientAddress,
      });
    } catch (error) {
      if (error instanceof SessionRefusedError) {
        log.info({ user: response.user, clientAddress, code: error.code }, "mysql session refused");
        refuse(client, seq + 1, ER.ACCESS_DENIED, "28000", error.message);
      } else {
        log.error({ user: response.user, clientAddress, error: errorMessage(error) }, "opening a mysql session failed");
        refuse(client, seq + 1, ER.ACCESS_DENIED, "HY000", "the Stint proxy could not open the session");
      }
      return;
    }
    handshaking.delete(raw);
    const leftover = inbox.detach();
    if (closing || client.destroyed) {
      client.destroy();
      await session.end(closing ? "shutdown" : "client_closed");
      return;
    }
    startSession(client, leftover, session, response, seq + 1);
  }

  function startSession(
    client: Socket,
    leftover: Buffer,
    session: BrokeredSession<UpstreamMysql>,
    hello: ReturnType<typeof parseHandshakeResponse>,
    okSeq: number,
  ): void {
    const slog = log.child({ sessionId: session.id, user: session.user, role: session.role, target: session.target });
    const target = session.upstream;
    const where = `${target.host}:${target.port}`;
    let phase: "handshake" | "relay" | "killing" | "closed" = "handshake";
    let upstream: Socket | null = null;
    let tracker: MysqlSession | null = null;
    let serverRelay: PacketRelay | null = null;
    let deliverKill: (() => void) | null = null;
    let upstreamConnectionId: number | null = null;
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    const pendingClient: Buffer[] = leftover.length > 0 ? [leftover] : [];

    const relayed = { up: 0, down: 0 };
    let bytesTimer: NodeJS.Timeout | null = null;
    const flushBytes = (): void => {
      if (bytesTimer !== null) clearTimeout(bytesTimer);
      bytesTimer = null;
      if (relayed.up > 0) session.countBytes("up", relayed.up);
      if (relayed.down > 0) session.countBytes("down", relayed.down);
      relayed.up = 0;
      relayed.down = 0;
    };
    const countBytes = (direction: "up" | "down", n: number): void => {
      relayed[direction] += n;
      if (bytesTimer === null) {
        bytesTimer = setTimeout(flushBytes, BYTES_FLUSH_MS);
        bytesTimer.unref();
      }
    };
    const record = (entry: QueryLogEntry): void => session.recorder.query(entry);

    const finish = (reason: EndReason, detail?: string): void => {
      if (phase === "closed") return;
      phase = "closed";
      flushBytes();
      session.signal.removeEventListener("abort", onAbort);
      live.delete(entry);
      client.end();
      upstream?.end();
      setTimeout(() => {
        client.destroy();
        upstream?.destroy();
      }, LINGER_MS).unref();
      if (tracker !== null) for (const logged of tracker.interrupt()) record(logged);
      slog.info({ reason }, "mysql session ended");
      session
        .end(reason, detail)
        .catch((error: unknown) => slog.error({ error: errorMessage(error) }, "ending the session failed"))
        .finally(resolveDone);
    };

    const kill = (end: SessionEnd): void => {
      if (phase === "closed" || phase === "killing") return;
      const wasRelay = phase === "relay";
      phase = "killing";
      slog.info({ reason: end.reason }, "ending mysql session");
      if (wasRelay && tracker !== null) {
        // A statement still running upstream is stopped there too (closing the socket alone would not).
        if (tracker.pending() > 0 && upstreamConnectionId !== null)
          killUpstreamQuery(target, upstreamConnectionId, connectTimeoutMs).catch((error: unknown) =>
            slog.warn({ error: errorMessage(error) }, "could not stop the running statement upstream"),
          );
        for (const logged of tracker.interrupt()) record(logged);
      }
      upstream?.destroy();
      deliverKill = () => {
        if (phase !== "killing") return;
        const seq = wasRelay && tracker !== null ? tracker.nextClientSeq() : okSeq;
        client.end(packet(seq, encodeErr(ER.CONNECTION_KILLED, "70100", end.message)));
        finish(end.reason);
      };
      if (!wasRelay || serverRelay === null || serverRelay.remainingInPacket() === 0) {
        deliverKill();
        return;
      }
      // Mid-packet: the client would read the error as the rest of a row; cut it off instead.
      client.destroy();
      finish(end.reason);
    };

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

    const failProtocol = (side: string, error: unknown): void => {
      slog.warn({ side, error: errorMessage(error) }, "malformed protocol stream; ending the session");
      client.destroy();
      upstream?.destroy();
      finish("error", `malformed ${side} protocol stream: ${errorMessage(error)}`);
    };

    const startRelay = (socket: Socket, fromServer: Buffer): void => {
      phase = "relay";
      const session_ = createMysqlSession({
        allowLocalInfile: session.policy.loadDataLocal === true,
        record,
        toServer: (bytes) => socket.write(bytes),
        toClient: (bytes) => client.write(bytes),
        onRefused: ({ command, reason, statement }) => {
          slog.info({ command, reason }, "mysql command refused");
          // Audited as the PostgreSQL proxy's policy refusals are (session.query_refused, capped per session).
          session.queryRefused?.({
            rule: command === "LOAD DATA LOCAL" ? "load_data_local" : "command_refused",
            message: reason,
            statement: statement.slice(0, 2_000),
            protocol: "simple",
          });
        },
      });
      tracker = session_;
      const clientRelay = createPacketRelay({
        keep: MAX_LOGGED_STATEMENT + 1,
        decide: (head) => session_.decideClient(head),
        complete: (head, body, emit) => session_.completeClient(head, body, emit),
      });
      const toServer = createPacketRelay({
        keep: SERVER_KEEP,
        need: (head) => session_.needServer(head),
        decide: (head) => session_.decideServer(head),
        complete: (head, body, emit) => session_.completeServer(head, body, emit),
      });
      serverRelay = toServer;
      const onClientData = (chunk: Buffer): void => {
        if (phase !== "relay") return;
        let pieces: Buffer[];
        try {
          pieces = clientRelay.push(chunk);
        } catch (error) {
          failProtocol("client", error);
          return;
        }
        countBytes("up", chunk.length);
        for (const piece of pieces) forward(client, socket, piece);
      };
      const onServerData = (chunk: Buffer): void => {
        if (phase !== "relay") return;
        let pieces: Buffer[];
        try {
          pieces = toServer.push(chunk);
        } catch (error) {
          failProtocol("server", error);
          return;
        }
        countBytes("down", chunk.length);
        if (pieces.length === 1) forward(socket, client, pieces[0]!);
        else if (pieces.length > 1) {
          client.cork();
          for (const piece of pieces) forward(socket, client, piece);
          process.nextTick(() => client.uncork());
        }
      };
      socket.on("data", onServerData);
      client.on("data", onClientData);
      if (fromServer.length > 0) onServerData(fromServer);
      for (const chunk of pendingClient.splice(0)) onClientData(chunk);
      slog.info("mysql session relaying");
    };

    const connectUpstream = async (): Promise<void> => {
      let socket: Socket;
      try {
        socket = await connectTcp(target.address, target.port, connectTimeoutMs);
      } catch (error) {
        throw new UpstreamFailure(`could not connect to the database at ${where}: ${errorMessage(error)}`);
      }
      socket.on("error", (error) => slog.debug({ error: error.message }, "upstream socket error"));
      socket.on("close", () => {
        if (phase === "relay") finish(tracker?.quit() ? "client_closed" : "upstream_closed");
      });
      upstream = socket;
      if (phase !== "handshake") {
        socket.destroy();
        return;
      }
      let signedIn: { ok: Buffer; rest: Buffer; connectionId: number };
      try {
        signedIn = await signInUpstream(socket, target, hello, {
          timeoutMs: connectTimeoutMs,
          loadDataLocal: session.policy.loadDataLocal === true,
          database: target.database,
        });
      } catch (error) {
        if (error instanceof UpstreamFailure) throw error;
        throw new UpstreamFailure(`the database at ${where} did not complete the sign-in: ${errorMessage(error)}`);
      }
      if (phase !== "handshake") return;
      upstreamConnectionId = signedIn.connectionId;
      // The server's own OK (its status flags), with the client's sequence id.
      client.write(packet(okSeq, signedIn.ok));
      startRelay(socket, signedIn.rest);
    };

    // Bytes the client sends before the relay starts wait for it (a client may pipeline its first query).
    const holdClient = (chunk: Buffer) => {
      if (phase === "handshake") pendingClient.push(chunk);
    };
    client.on("data", holdClient);
    live.add(entry);
    client.on("close", () => {
      client.off("data", holdClient);
      finish("client_closed");
    });
    session.signal.addEventListener("abort", onAbort);
    slog.info({ clientAddress: client.remoteAddress }, "mysql session opened");
    if (session.signal.aborted) {
      onAbort();
      return;
    }
    connectUpstream()
      .then(() => client.off("data", holdClient))
      .catch((error: unknown) => {
        client.off("data", holdClient);
        if (phase !== "handshake") return;
        const message =
          error instanceof UpstreamFailure ? error.message : `the database at ${where} failed: ${errorMessage(error)}`;
        slog.warn({ error: message }, "upstream sign-in failed");
        client.end(packet(okSeq, encodeErr(ER.UPSTREAM, "08S01", message)));
        upstream?.destroy();
        finish("error", message);
      });
  }

  return {
    listen: () =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(deps.port, deps.host ?? "127.0.0.1", () => {
          server.off("error", reject);
          server.on("error", onServerError);
          const address = server.address() as AddressInfo;
          log.info({ host: address.address, port: address.port }, "mysql proxy listening");
          resolve({ host: address.address, port: address.port });
        });
      }),
    close: async () => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of handshaking) socket.destroy();
      const stopping = [...live].map((session) => session.stop(SHUTDOWN));
      await Promise.allSettled([...inflight]);
      stopping.push(...[...live].map((session) => session.stop(SHUTDOWN)));
      await Promise.all(stopping);
      await closed;
    },
    liveSessions: () => live.size,
  };
}
