/**
 * The MariaDB/MySQL session proxy: a client signs in as `user%role` with a Stint database token as
 * its password, which the proxy asks for in clear (an AuthSwitchRequest to mysql_clear_password: the
 * scramble of mysql_native_password would hide it), only over TLS or from this machine. The gate
 * (sessions module) decides and hands back the upstream login; the proxy signs in upstream with it
 * (mysql_native_password or caching_sha2_password) and from then on relays packets, following each
 * command's answer for the query log. See README.md for the invariants.
 */
import { randomBytes } from "node:crypto";
import { isIP, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Logger } from "../../lib/logger.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type SessionEnd,
  type SessionGate,
  type UpstreamMysql,
} from "../../modules/sessions/sessions.types.js";
import { connectTcp, forward } from "../pg/wire-stream.js";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  acceptTls,
  sessionLogger,
  createSessionListener,
  endWith,
  errorMessage,
  malformedStream,
  queryLogWriters,
  type SessionListenerOptions,
  type SessionProxy,
} from "../session-listener.js";
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

/**
 * The listener settings (session-listener.ts); `tls`: with it, clients may sign in from other
 * machines (over TLS only). Connection caps answer 1040 at accept.
 */
export interface MysqlProxyDeps extends SessionListenerOptions {
  gate: Pick<SessionGate, "openMysql">;
  logger: Logger;
  /** Connecting and signing in upstream. */
  connectTimeoutMs?: number;
}

export type MysqlProxy = SessionProxy;

/** Client bytes held while the proxy signs in upstream (a pipelined first query); past this the client is paused. */
export const MAX_PENDING_CLIENT = 1024 * 1024;

export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
} from "../session-listener.js";
/** The version the proxy announces before it knows the server (SELECT VERSION() tells the real one). */
export const PROXY_SERVER_VERSION = "8.0.99-Stint-proxy";

/** MySQL error numbers the proxy answers with. */
const ER = {
  ACCESS_DENIED: 1045,
  HANDSHAKE: 1043,
  CON_COUNT: 1040,
  CONNECTION_KILLED: 1927,
  UPSTREAM: 2013,
} as const;

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

export function createMysqlProxy(deps: MysqlProxyDeps): MysqlProxy {
  const log = deps.logger.child({ component: "mysql-proxy" });
  const connectTimeoutMs = deps.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let nextConnectionId = 1;
  const listener = createSessionListener({
    deps,
    log,
    name: "mysql",
    metricPrefix: "stint_mysql_proxy",
    product: "MySQL",
    tooManyConnections: packet(0, encodeErr(ER.CON_COUNT, "08004", "Too many connections")),
    handle: (client) => handleClient(client),
  });
  const secureContext = listener.secureContext;

  function refuse(client: Socket, seq: number, code: number, sqlstate: string, message: string): void {
    endWith(client, packet(seq, encodeErr(code, sqlstate, message)));
  }

  async function handleClient(raw: Socket): Promise<void> {
    const clientAddress = raw.remoteAddress ?? "unknown";
    let client: Socket = raw;
    const { remaining, clear: clearDeadline } = listener.handshakeDeadline(raw, clientAddress, 0);

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
        const secure = acceptTls(hello.length > 0 ? withPrefix(raw, hello) : raw, secureContext, log);
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
      clearDeadline();
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
    if (await listener.admit(raw, client, session)) startSession(client, inbox.detach(), session, response, seq + 1);
  }

  function startSession(
    client: Socket,
    leftover: Buffer,
    session: BrokeredSession<UpstreamMysql>,
    hello: ReturnType<typeof parseHandshakeResponse>,
    okSeq: number,
  ): void {
    const slog = sessionLogger(log, session);
    const target = session.upstream;
    const where = `${target.host}:${target.port}`;
    let phase: "handshake" | "relay" | "killing" | "closed" = "handshake";
    let upstream: Socket | null = null;
    let tracker: MysqlSession | null = null;
    let serverRelay: PacketRelay | null = null;
    let deliverKill: (() => void) | null = null;
    let upstreamConnectionId: number | null = null;
    const pendingClient: Buffer[] = leftover.length > 0 ? [leftover] : [];
    const { record, logSent } = queryLogWriters(session, client, (end) => kill(end));

    const finish = (reason: EndReason, detail?: string): void => {
      if (phase === "closed") return;
      phase = "closed";
      if (tracker !== null) for (const logged of tracker.interrupt()) record(logged);
      entry.close(client, upstream, reason, detail);
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

    const entry = listener.liveSession(session, slog, kill);
    const countBytes = entry.countBytes;

    const failProtocol = (side: string, error: unknown): void =>
      finish("error", malformedStream(slog, side, error, client, upstream));

    const startRelay = (socket: Socket, fromServer: Buffer): void => {
      phase = "relay";
      const session_ = createMysqlSession({
        allowLocalInfile: session.policy.loadDataLocal === true,
        record,
        sent: logSent,
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
        // A statement the recording refused ended the session inside this chunk: none of it goes on.
        if (phase !== "relay") return;
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
      // Paused while the sign-in went on (held bytes over the bound, or the handshake inbox's): read again.
      if (client.isPaused()) client.resume();
      if (socket.isPaused()) socket.resume();
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
      let signedIn: { ok: Buffer; rest: Buffer; connectionId: number; socket: Socket };
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
      // Over TLS (the target's sslmode) the relay runs on the TLS socket signInUpstream returns.
      upstream = signedIn.socket;
      startRelay(signedIn.socket, signedIn.rest);
    };

    // Bytes the client sends before the relay starts wait for it (a client may pipeline its first
    // query), up to MAX_PENDING_CLIENT: past that the client is not read until the relay starts.
    let pendingBytes = leftover.length;
    const holdClient = (chunk: Buffer) => {
      if (phase !== "handshake") return;
      pendingClient.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes > MAX_PENDING_CLIENT) client.pause();
    };
    client.on("data", holdClient);
    client.on("close", () => {
      client.off("data", holdClient);
      finish("client_closed");
    });
    if (!entry.start(client.remoteAddress)) return;
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

  return { listen: listener.listen, close: listener.close, liveSessions: listener.liveSessions };
}
