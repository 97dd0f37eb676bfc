/**
 * The PostgreSQL session proxy: a client signs in with its Stint user%role and a Stint database
 * token as password; the sessions module (the gate) decides and hands back the upstream credential;
 * the proxy signs in upstream with it (over TLS, by SCRAM-SHA-256-PLUS unless the target opted into
 * less) and from then on relays bytes unchanged both ways, logging queries. See README.md for the invariants.
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import type { Logger } from "../../lib/logger.js";
import {
  PgWireError,
  decodePasswordMessage,
  encodeAuthenticationCleartextPassword,
  encodeAuthenticationOk,
  encodeBackendKeyData,
  encodeErrorResponse,
  encodeSslResponse,
  encodeStartupMessage,
  encodeTerminate,
  parseBackendMessage,
  parseStartupBody,
  type FrontendMessage,
} from "../../lib/pg-wire.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type SessionEnd,
  type SessionGate,
  type UpstreamPostgres,
} from "../../modules/sessions/sessions.types.js";
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
import { createQueryGuard } from "./query-guard.js";
import {
  BACKEND_READ,
  FRONTEND_READ,
  TRACKED_BY_TYPE,
  backendMessage,
  createQueryLogTracker,
  frontendMessage,
} from "./query-log.js";
import { loadQueryParser } from "./query-policy.js";
import { forwardedParameters } from "./pg-startup.js";
import { unsafeClientEncoding } from "./query-policy.rules.js";
import {
  UpstreamFailure,
  authenticate,
  createCancelRegistry,
  sendCancel,
  upstreamRefusal,
  type CancelTarget,
} from "./pg-upstream.js";
import { streamedClientFrames } from "./streamed-frames.js";
import { startUpstreamTls } from "./upstream-tls.js";
import {
  DEFAULT_MAX_CLIENT_FRAME,
  DEFAULT_MAX_SERVER_FRAME,
  FrameTooLargeError,
  connectTcp,
  createFrameInbox,
  createFrameScanner,
  createRelayScanner,
  forward,
  frameBytes,
  type DirectReader,
  type FrameInbox,
  type FrameScanner,
} from "./wire-stream.js";

/**
 * The listener settings (session-listener.ts). `tls`: when given, SSLRequest is answered 'S' and a
 * startup without TLS is refused: the token never crosses the network in clear. Connection caps
 * answer 53300 at accept.
 */
export interface PgProxyDeps extends SessionListenerOptions {
  gate: Pick<SessionGate, "openPostgres">;
  logger: Logger;
  /** Connecting and signing in upstream, until its first ReadyForQuery. */
  connectTimeoutMs?: number;
  /**
   * Bounds on a message the relay holds whole (a client's Query/Parse/…, a server's ErrorResponse,
   * rows under a row limit): longer ends the session with FATAL 54000 at its header, except a Bind or
   * (without a query policy) a FunctionCall, read in pieces instead (streamed-frames.ts).
   */
  maxClientFrame?: number;
  maxServerFrame?: number;
}

export type PgProxy = SessionProxy;

export { md5PasswordAnswer } from "./pg-upstream.js";

export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
} from "../session-listener.js";

/** On a kill, how long to wait for the server's current message to end before cutting the client off. */
const KILL_FLUSH_MS = 2_000;

function fatal(code: string, message: string): Buffer {
  return encodeErrorResponse({ severity: "FATAL", code, message });
}

const SYNC_TYPE = 0x53; // 'S'
const TERMINATE = 0x58; // 'X'
const SYNC: FrontendMessage = Object.freeze({ kind: "Sync" });

export function createPgProxy(deps: PgProxyDeps): PgProxy {
  const log = deps.logger.child({ component: "pg-proxy" });
  const connectTimeoutMs = deps.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const maxClientFrame = deps.maxClientFrame ?? DEFAULT_MAX_CLIENT_FRAME;
  const maxServerFrame = deps.maxServerFrame ?? DEFAULT_MAX_SERVER_FRAME;
  const cancels = createCancelRegistry(log, connectTimeoutMs);
  const listener = createSessionListener({
    deps,
    log,
    name: "postgres",
    metricPrefix: "stint_pg_proxy",
    product: "PostgreSQL",
    countHandshakeTimeouts: true,
    tooManyConnections: fatal("53300", "sorry, too many clients already"),
    handle: (client) => handleClient(client),
    // The query policy's parser (WebAssembly): loaded before the first session can need it.
    beforeListen: loadQueryParser,
  });
  const secureContext = listener.secureContext;

  function refuse(client: Socket, code: string, message: string): void {
    endWith(client, fatal(code, message));
  }

  async function handleClient(raw: Socket): Promise<void> {
    const clientAddress = raw.remoteAddress ?? "unknown";
    let client: Socket = raw;
    let scanner = createFrameScanner({ startup: true });
    let inbox = createFrameInbox(client, scanner);
    // The deadline ends a stalled client (and counts it); reads wait a little longer so it is the one.
    const { remaining, clear: clearDeadline } = listener.handshakeDeadline(raw, clientAddress, 1_000);

    let startup: Extract<FrontendMessage, { kind: "StartupMessage" }> | null = null;
    let password: string;
    let forwarded: Record<string, string>;
    try {
      while (startup === null) {
        const message = parseStartupBody((await inbox.next(remaining())).body);
        if (message.kind === "SSLRequest" && secureContext && client === raw) {
          // Bytes sent after the SSLRequest, before the handshake, would be read as if they came over TLS: refuse.
          if (inbox.detach().length > 0 || scanner.pending().length > 0) {
            raw.destroy();
            return;
          }
          raw.write(encodeSslResponse(true));
          client = acceptTls(raw, secureContext, log);
          scanner = createFrameScanner({ startup: true });
          inbox = createFrameInbox(client, scanner);
        } else if (message.kind === "SSLRequest" || message.kind === "GSSENCRequest") {
          client.write(encodeSslResponse(false));
        } else if (message.kind === "CancelRequest") {
          cancels.forward(message.processId, message.secretKey);
          client.destroy();
          return;
        } else if (message.kind === "StartupMessage") {
          startup = message;
        }
      }
      const { user, replication } = startup.parameters;
      if (secureContext && client === raw) {
        refuse(client, "28000", "the Stint proxy accepts only TLS connections: connect with sslmode=require");
        return;
      }
      if (user === undefined || user === "") {
        refuse(client, "28000", "no user name in the startup packet (connect as user%role)");
        return;
      }
      if (replication !== undefined && !["false", "off", "no", "0"].includes(replication.toLowerCase())) {
        refuse(client, "0A000", "replication connections are not supported through the Stint proxy");
        return;
      }
      const parameters = forwardedParameters(startup.parameters);
      if ("refused" in parameters) {
        refuse(client, "42501", parameters.refused);
        return;
      }
      if (parameters.dropped.length > 0) log.debug({ dropped: parameters.dropped }, "startup parameters not passed on");
      forwarded = parameters.forwarded;
      client.write(encodeAuthenticationCleartextPassword());
      const answer = await inbox.next(remaining());
      if (answer.type === "X") {
        // The client gave up before signing in (node-postgres' connect-then-end): goodbye, silently.
        client.destroy();
        return;
      }
      if (answer.type !== "p") {
        refuse(client, "08P01", `expected a password message, got '${answer.type ?? "?"}'`);
        return;
      }
      password = decodePasswordMessage(answer.body);
      clearDeadline();
    } catch {
      // A malformed or truncated startup, a closed socket or the deadline: PostgreSQL closes without a word.
      client.destroy();
      return;
    }

    if (startup === null) return;
    const { user = "", database } = startup.parameters;
    let session: BrokeredSession<UpstreamPostgres>;
    try {
      session = await deps.gate.openPostgres({ user, password, database: database ?? null, clientAddress });
    } catch (error) {
      if (error instanceof SessionRefusedError) {
        log.info({ user, clientAddress, code: error.code }, "postgres session refused");
        const sqlstate = error.code === "BAD_CREDENTIALS" || error.code === "NOT_ACTIVE" ? "28P01" : "28000";
        refuse(client, sqlstate, error.message);
      } else {
        log.error({ user, clientAddress, error: errorMessage(error) }, "opening a postgres session failed");
        refuse(client, "XX000", "the Stint proxy could not open the session");
      }
      return;
    }
    if (await listener.admit(raw, client, session))
      startSession(client, inbox, scanner, session, forwarded, startup.protocolVersion);
  }

  function startSession(
    client: Socket,
    clientInbox: FrameInbox,
    clientScanner: FrameScanner,
    session: BrokeredSession<UpstreamPostgres>,
    parameters: Record<string, string>,
    protocolVersion: number,
  ): void {
    const slog = sessionLogger(log, session);
    const target = session.upstream;
    const where = `${target.host}:${target.port}`;
    const tracker = createQueryLogTracker({
      keepParameters: session.policy.queryParameters,
      sent: (statement) => logSent(statement),
    });
    let phase: "handshake" | "relay" | "killing" | "closed" = "handshake";
    let upstream: Socket | null = null;
    /** Where the streams' frames end: the handshake's scanners, then (in session) the relay's. */
    let upstreamScanner: Pick<FrameScanner, "remainingInFrame"> | null = null;
    let clientFrames: Pick<FrameScanner, "remainingInFrame"> = clientScanner;
    let cancelTarget: CancelTarget | null = null;
    let realKey: { processId: number; secretKey: Buffer } | null = null;
    let deliverKill: (() => void) | null = null;
    let killEnd: SessionEnd | null = null;
    /** The client sent Terminate: whichever socket closes first, the client ended the session. */
    let clientTerminated = false;
    /** A client chunk is being relayed: its bytes are not all passed on yet, so the server may be mid-message. */
    let relayingClient = false;

    const finish = (reason: EndReason, detail?: string): void => {
      if (phase === "closed") return;
      phase = "closed";
      if (cancelTarget !== null) cancels.remove(cancelTarget);
      // A statement still running when the session ended (a close, not only a kill) is logged, marked interrupted.
      for (const logged of tracker.interrupt(reason)) record(logged);
      entry.close(client, upstream, reason, detail);
    };

    const kill = (end: SessionEnd): void => {
      if (phase === "closed" || phase === "killing") return;
      const wasRelay = phase === "relay";
      phase = "killing";
      killEnd = end;
      slog.info({ reason: end.reason }, "ending postgres session");
      if (realKey !== null && tracker.pending() > 0)
        sendCancel(slog, { ...realKey, host: target.address, port: target.port }, connectTimeoutMs);
      // What was running when the session was ended is logged too, marked interrupted.
      if (wasRelay) for (const logged of tracker.interrupt(end.reason)) record(logged);
      if (upstream !== null) {
        // Inside a client chunk (a statement the recording refused) the server may hold part of a message.
        if (clientFrames.remainingInFrame() === 0 && !relayingClient) upstream.end(encodeTerminate());
        else upstream.destroy();
      }
      deliverKill = () => {
        if (phase !== "killing") return;
        client.end(fatal("57P01", end.message));
        finish(end.reason);
      };
      // The FATAL message must not land inside a message the server is halfway through sending.
      if (!wasRelay || upstreamScanner?.remainingInFrame() === 0) {
        deliverKill();
        return;
      }
      setTimeout(() => {
        if (phase !== "killing") return;
        client.destroy();
        finish(end.reason);
      }, KILL_FLUSH_MS).unref();
    };

    const entry = listener.liveSession(session, slog, kill);
    const countBytes = entry.countBytes;

    const failProtocol = (side: string, error: unknown): void => {
      if (!(error instanceof FrameTooLargeError)) {
        finish("error", malformedStream(slog, side, error, client, upstream));
        return;
      }
      // Held whole, it could exhaust memory: refused at its header, before any of its body is kept.
      const whose = side === "client" ? "the client's" : "the server's";
      const message = `${whose} '${error.frameType}' message of ${error.claimed} bytes exceeds the Stint proxy's limit of ${error.limit} bytes`;
      slog.warn(
        { side, type: error.frameType, claimed: error.claimed, limit: error.limit },
        "message too large; ending the session",
      );
      endWith(client, fatal("54000", message));
      client.pause(); // the rest of the flood is not read (the socket closes LINGER_MS later)
      upstream?.destroy();
      finish("error", message);
    };

    const { record, logSent } = queryLogWriters(session, client, kill);
    /** A client message in session: the query log reads what it needs (see FRONTEND_READ). */
    const trackFrontend = (type: number, body: Buffer | null): void => {
      if (phase !== "relay") return;
      if (type === SYNC_TYPE) tracker.frontend(SYNC);
      else if (type === TERMINATE) clientTerminated = true;
      else if (body !== null && FRONTEND_READ[type] === 1) tracker.frontend(frontendMessage(type, body));
    };
    /** A server message in session: most are followed by their type alone (see BACKEND_READ). */
    const trackBackend = (type: number, body: Buffer | null): void => {
      if (phase !== "relay") return;
      const message = body !== null && BACKEND_READ[type] === 1 ? backendMessage(type, body) : TRACKED_BY_TYPE[type];
      if (message === undefined) return;
      const logged = tracker.backend(message);
      for (let i = 0; i < logged.length; i++) record(logged[i]!);
    };
    /** A Bind (or FunctionCall) past maxClientFrame: read in pieces as it passes, its summary to the query log. */
    const streamed = streamedClientFrames({
      keepValues: session.policy.queryParameters,
      maxKept: maxClientFrame,
      deliver: tracker.frontend, // the relay scanners read only in session
    });
    /** Under a query policy both directions go through the guard's scanners (query-guard.ts), else plain ones. */
    const rules = session.policy.queries;
    const guard =
      rules === undefined
        ? null
        : createQueryGuard({
            rules,
            keepClient: FRONTEND_READ,
            keepServer: BACKEND_READ,
            maxClientFrame,
            maxServerFrame,
            streamClient: streamed,
            onClientFrame: trackFrontend,
            onServerFrame: trackBackend,
            onRefusal: (refusal) => {
              slog.info({ rule: refusal.rule, protocol: refusal.protocol }, "statement refused by the query policy");
              session.queryRefused?.({ ...refusal, statement: refusal.statement.slice(0, 2_000) });
            },
          });
    /** Client bytes on their way upstream, server bytes on their way to the client. */
    const clientRelay =
      guard?.client ??
      createRelayScanner({
        keep: FRONTEND_READ,
        onFrame: trackFrontend,
        maxKeptLength: maxClientFrame,
        stream: streamed,
      });
    const upstreamRelay =
      guard?.server ?? createRelayScanner({ keep: BACKEND_READ, onFrame: trackBackend, maxKeptLength: maxServerFrame });
    /** A plain TCP upstream is read into a buffer of ours (connectTcp), a new one while the last read may be referred to. */
    const upstreamReader: DirectReader | null =
      target.tls !== null
        ? null
        : {
            sink: null,
            retained: () =>
              guard !== null ||
              client instanceof TLSSocket ||
              client.writableLength > 0 ||
              upstreamRelay.remainingInFrame() !== 0,
          };
    /** Where the relay's pieces go in session (set with the upstream socket). */
    let toUpstream: (piece: Buffer) => void = () => undefined;
    let toClient: (piece: Buffer) => void = () => undefined;

    const onClientData = (chunk: Buffer): void => {
      if (phase !== "relay" || upstream === null) return;
      relayingClient = true;
      try {
        clientRelay.push(chunk, toUpstream);
        countBytes("up", chunk.length);
      } catch (error) {
        failProtocol("client", error);
      }
      relayingClient = false;
    };

    const onUpstreamData = (chunk: Buffer): void => {
      if (upstream === null) return;
      if (phase === "killing") {
        // Pass on only the rest of the message in flight, then the FATAL.
        let offset = 0;
        while (offset < chunk.length && upstreamRelay.remainingInFrame() !== 0) {
          const slice = chunk.subarray(offset, offset + (upstreamRelay.remainingInFrame() ?? 1));
          try {
            upstreamRelay.push(slice, (piece) => client.write(piece));
          } catch {
            break;
          }
          offset += slice.length;
        }
        if (upstreamRelay.remainingInFrame() === 0) deliverKill?.();
        return;
      }
      if (phase !== "relay") return;
      try {
        upstreamRelay.push(chunk, toClient);
      } catch (error) {
        failProtocol("server", error);
        return;
      }
      countBytes("down", chunk.length);
    };

    const startRelay = (socket: Socket, scanner: FrameScanner, inbox: FrameInbox): void => {
      phase = "relay";
      const fromServer = inbox.detach();
      const fromClient = clientInbox.detach();
      // From here on the relay's scanners follow the streams, from where the handshake's stopped.
      clientFrames = clientRelay;
      upstreamScanner = upstreamRelay;
      // Nothing more goes upstream once the session ends (a statement its recording refused ends it mid-chunk).
      toUpstream = (piece) => phase === "relay" && forward(client, socket, piece);
      toClient = (piece) => forward(socket, client, piece);
      if (upstreamReader !== null) upstreamReader.sink = onUpstreamData;
      else socket.on("data", onUpstreamData);
      client.on("data", onClientData);
      // Paused by their handshake inboxes past its bound: read again, before the held bytes go on (forward may re-pause).
      if (client.isPaused()) client.resume();
      if (socket.isPaused()) socket.resume();
      try {
        // Whatever arrived during the handshake after its last message goes on, in order.
        relayingClient = true;
        for (const frame of fromClient) clientRelay.push(frameBytes(frame), toUpstream);
        const clientPartial = clientScanner.pending();
        if (clientPartial.length > 0) clientRelay.push(clientPartial, toUpstream);
        relayingClient = false;
        for (const frame of fromServer) upstreamRelay.push(frameBytes(frame), toClient);
        const serverPartial = scanner.pending();
        if (serverPartial.length > 0) upstreamRelay.push(serverPartial, toClient);
      } catch (error) {
        relayingClient = false;
        failProtocol("handshake", error);
        return;
      }
      slog.info("postgres session relaying");
    };

    const connectUpstream = async (): Promise<void> => {
      const encoding = parameters.client_encoding;
      if (rules !== undefined && encoding !== undefined && unsafeClientEncoding(encoding))
        throw new UpstreamFailure(
          "42501",
          `client encoding ${encoding} is not allowed under this role's query policy; use UTF8 (PGCLIENTENCODING=UTF8)`,
        );
      const deadline = Date.now() + connectTimeoutMs;
      const remaining = () => Math.max(1, deadline - Date.now());
      let socket: Socket;
      try {
        // The address the gate resolved and judged (no second lookup); TLS below checks the name.
        socket = await connectTcp(target.address, target.port, connectTimeoutMs, upstreamReader ?? undefined);
      } catch (error) {
        throw new UpstreamFailure("08006", `could not connect to the database at ${where}: ${errorMessage(error)}`);
      }
      if (target.tls !== null) {
        const plain = socket;
        plain.on("error", (error) => slog.debug({ error: error.message }, "upstream socket error"));
        upstream = plain;
        try {
          socket = await startUpstreamTls(plain, target.host, target.tls, remaining());
        } catch (error) {
          plain.destroy();
          throw new UpstreamFailure(
            "08006",
            `no secure connection to the database at ${where}: ${errorMessage(error)}`,
          );
        }
      }
      socket.on("error", (error) => slog.debug({ error: error.message }, "upstream socket error"));
      socket.on("close", () => {
        if (phase === "relay") finish(clientTerminated ? "client_closed" : "upstream_closed");
        if (phase !== "killing" || killEnd === null) return;
        if (upstreamScanner?.remainingInFrame() === 0) deliverKill?.();
        else {
          client.destroy();
          finish(killEnd.reason);
        }
      });
      upstream = socket;
      if (phase !== "handshake") {
        socket.destroy();
        return;
      }
      const scanner = createFrameScanner({ startup: false });
      upstreamScanner = scanner;
      const inbox = createFrameInbox(socket, scanner);
      socket.write(
        encodeStartupMessage(
          {
            ...parameters,
            // Under a query policy the server reads SQL text as the policy's parser does (whatever
            // the role's or database's defaults), and a read-only policy is enforced by the server too.
            ...(rules !== undefined
              ? { standard_conforming_strings: "on", client_encoding: "UTF8", ...parameters }
              : {}),
            ...(rules !== undefined && !rules.allow.includes("dml") ? { default_transaction_read_only: "on" } : {}),
            user: target.user,
            database: target.database,
          },
          protocolVersion,
        ),
      );
      try {
        await authenticate(socket, inbox, remaining, target, (bytes) => client.write(bytes));
        client.write(encodeAuthenticationOk());
        for (;;) {
          const frame = await inbox.next(remaining());
          if (frame.type === "E") throw upstreamRefusal(frame, where);
          if (frame.type === "K") {
            const key = parseBackendMessage("K", frame.body);
            if (key.kind !== "BackendKeyData") continue;
            realKey = { processId: key.processId, secretKey: key.secretKey };
            // The real process id (pg_backend_pid(), NOTIFY's sender, pg_terminate_backend agree with
            // it); only the secret is ours, so the server's key never leaves the proxy.
            const secret = randomBytes(key.secretKey.length);
            cancelTarget = { secret, host: target.address, port: target.port, ...realKey };
            cancels.add(cancelTarget);
            client.write(encodeBackendKeyData(key.processId, secret));
            continue;
          }
          client.write(frameBytes(frame));
          if (frame.type === "Z") break;
        }
      } catch (error) {
        if (error instanceof UpstreamFailure || phase !== "handshake") throw error;
        if (error instanceof PgWireError) {
          throw new UpstreamFailure("08P01", `the database at ${where} answered badly: ${error.message}`);
        }
        throw new UpstreamFailure(
          "08006",
          `the database at ${where} did not complete the sign-in: ${errorMessage(error)}`,
        );
      }
      if (phase === "handshake") startRelay(socket, scanner, inbox);
    };

    client.on("close", () => finish("client_closed"));
    if (!entry.start(client.remoteAddress)) return;
    connectUpstream().catch((error: unknown) => {
      if (phase !== "handshake") return;
      const failure =
        error instanceof UpstreamFailure
          ? error
          : new UpstreamFailure("08006", `the database at ${where} failed: ${errorMessage(error)}`);
      slog.warn({ error: failure.message }, "upstream sign-in failed");
      client.end(fatal(failure.sqlstate, failure.message));
      upstream?.destroy();
      finish("error", failure.message);
    });
  }

  return { listen: listener.listen, close: listener.close, liveSessions: listener.liveSessions };
}
