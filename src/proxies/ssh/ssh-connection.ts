/**
 * One client connection through the proxy: certificate sign-in, the brokered session and the target's
 * connection, port forwards, and the end (killed, closed by either side, shut down) reached once.
 */
import type { Duplex } from "node:stream";
import type { AuthContext, Connection, ServerChannel, Client as SshClient } from "ssh2";
import type { Logger } from "../../lib/logger.js";
import type {
  BrokeredSession,
  EndReason,
  SessionEnd,
  SessionGate,
  SshCertificateLogin,
  UpstreamSsh,
} from "../../modules/sessions/sessions.types.js";
import { createAuthTries } from "./auth-tries.js";
import { createChannelBudget, createConnectionHold, type ChannelLimits } from "./channel-limits.js";
import { moderationAdmits } from "./live-moderation.js";
import { endOf, endSession, safely } from "./session-end.js";
import {
  CERTIFICATE_ALGORITHMS,
  certificateKeyType,
  refusalText,
  sendAuthBanner,
  sendAuthDisconnect,
  userauthSignatureValid,
} from "./ssh-auth.js";
import { relaySession, type ChannelContext } from "./ssh-channels.js";
import { countPerTick, relayStream } from "./ssh-relay.js";
import { connectUpstream } from "./ssh-upstream.js";

/** How long the user has to read the kill message before both connections close. */
const KILL_GRACE_MS = 250;
/** After asking both sides to close, sockets still open are destroyed. */
const FORCE_CLOSE_MS = 2000;

export interface ConnectionDeps {
  gate: Pick<SessionGate, "checkSshCertificate" | "openSsh">;
  logger: Logger;
  upstreamTimeoutMs: number;
  /** What one connection may hold open at once (channel-limits.ts). */
  limits: ChannelLimits;
  /** Userauth refusals one connection gets; the last closes it (OpenSSH's MaxAuthTries). */
  maxAuthTries: number;
  /** The client is signed in: its handshake deadline no longer applies. */
  signedIn(): void;
}

export interface ProxiedConnection {
  /** Resolves once both connections are closed and the session (if any) has ended. */
  closed: Promise<void>;
  hasSession(): boolean;
  shutdown(): void;
}

export interface Live {
  session: BrokeredSession<UpstreamSsh>;
  upstream: SshClient;
  /** Open client-side session channels (where a kill message goes). */
  channels: Set<ServerChannel>;
  /** Session channels opened so far: each is numbered in the recording (1, 2, …). */
  opened: number;
}

export function proxyConnection(client: Connection, clientAddress: string, deps: ConnectionDeps): ProxiedConnection {
  const { gate } = deps;
  let log = deps.logger.child({ clientAddress });
  let live: Live | undefined;
  let clientClosed = false;
  let ending = false;
  /** Set when Stint ends the session: a channel the client opens during the grace period gets the message too. */
  let killing: SessionEnd | undefined;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let sessionEnded: Promise<void> = Promise.resolve();

  /**
   * A required recording failed: the kill's grace period still tells the client why, but nothing more
   * is relayed or opened (no recording could hold it).
   */
  const unrecorded = () => killing?.reason === "recording_failed";
  const holdConnection = createConnectionHold(client);
  /** Past a cap an open is refused; the first refusal of each kind is logged, recorded and audited. */
  const budget = createChannelBudget(deps.limits, (kind, limit, sentence) => {
    log.warn({ kind, limit }, "ssh channel limit reached; refusing more of this kind on this connection");
    live?.session.recorder.event("channel_limit", { kind, limit });
    live?.session.channelRefused?.({ subsystem: kind, reason: sentence });
  });
  /** Remote forwards the target listens on for this connection, by "address:port": their releases. */
  const listeners = new Map<string, () => void>();
  const state: ChannelContext = {
    holdForRecording: () => {
      if (live) holdConnection(live.session.recorder);
    },
    get log() {
      return log;
    },
    get ending() {
      return ending || unrecorded();
    },
    get killing() {
      return killing;
    },
  };

  let forwards = 0;
  /** The relay stops the moment the session starts to end, before its recording is closed. */
  const relaying = () => !ending && !unrecorded();

  client.on("error", (error: Error) => log.debug({ err: error }, "ssh client connection error"));
  client.on("close", () => {
    clientClosed = true;
    finish("client_closed");
    void sessionEnded.then(resolveClosed);
  });

  /**
   * Userauth attempts on this connection (auth-tries.ts): refusals as OpenSSH counts them (not the client's
   * opening `none`), and key queries answered yes whose signature never came (probes, which OpenSSH does not
   * count). At `maxAuthTries` the connection is closed instead, so one connection cannot go on guessing,
   * asking which certificates would do, nor repeating refusals that are logged or audited, until its deadline.
   */
  const tries = createAuthTries(deps.maxAuthTries);
  const closeForTries = (ctx: AuthContext): void => {
    log.warn(tries.summary(), "too many ssh authentication failures; closing the connection");
    const message = `Stint: too many authentication failures (${deps.maxAuthTries} per connection, STINT_SSH_PROXY_MAX_AUTH_TRIES).`;
    sendAuthBanner(ctx, message);
    sendAuthDisconnect(ctx, message);
    safely(() => client.end());
  };
  client.on("authentication", (ctx) => {
    if (tries.exhausted) return; // closing: nothing more is tried
    if (!tries.begin(ctx)) return closeForTries(ctx);
    const refuse = (): void => {
      if (tries.exhausted) return; // closing already
      if (tries.refuse()) return ctx.reject(["publickey"]);
      closeForTries(ctx);
    };
    const answerYes = (): void => {
      tries.answeredYes(ctx);
      ctx.accept();
    };
    authenticate(ctx, refuse, answerYes).catch((error: unknown) => {
      log.error({ err: error }, "ssh authentication failed unexpectedly");
      safely(refuse);
    });
  });
  client.on("close", () => {
    const summary = tries.summary();
    if (!live && !tries.exhausted && (summary.failures > 0 || summary.unsigned > 0))
      log.info(summary, "ssh connection closed before signing in");
  });

  async function authenticate(ctx: AuthContext, refuse: () => void, answerYes: () => void): Promise<void> {
    if (ctx.method !== "publickey" || live || ending) return refuse();
    if (!CERTIFICATE_ALGORITHMS.has(ctx.key.algo)) return refuse();
    let login: SshCertificateLogin;
    try {
      login = gate.checkSshCertificate({
        username: ctx.username,
        algorithm: certificateKeyType(ctx.key.algo),
        key: ctx.key.data,
      });
    } catch (error) {
      log.info({ username: ctx.username, reason: refusalText(error) }, "ssh certificate refused");
      return refuse();
    }
    // An offer without a signature: the client asks whether this key would do before signing (a yes its
    // signature does not follow is counted as a failure: auth-tries.ts).
    if (!ctx.signature || !ctx.blob) return answerYes();
    if (!userauthSignatureValid(ctx, login.publicKey)) {
      log.warn({ user: login.user, serial: login.serial }, "ssh certificate offered without a valid signature");
      return refuse();
    }

    let session: BrokeredSession<UpstreamSsh>;
    try {
      session = await gate.openSsh(login, { clientAddress });
    } catch (error) {
      log.info({ user: login.user, target: login.target, reason: refusalText(error) }, "ssh session refused");
      sendAuthBanner(ctx, `Stint: ${refusalText(error)}`);
      return refuse();
    }
    log = log.child({ sessionId: session.id, user: session.user, target: session.target });

    let upstream: SshClient;
    try {
      upstream = await connectUpstream(session.upstream, deps.upstreamTimeoutMs);
    } catch (error) {
      const reason = (error as Error).message;
      log.warn({ reason }, "ssh target unreachable");
      sendAuthBanner(ctx, `Stint: cannot open ${session.target}: ${reason}`);
      refuse();
      await endSession(session, "error", reason, log);
      return;
    }
    if (clientClosed || session.signal.aborted) {
      upstream.end();
      const reason = session.signal.aborted ? endOf(session.signal).reason : "client_closed";
      await endSession(session, reason, undefined, log);
      if (!clientClosed) refuse();
      return;
    }

    live = { session, upstream, channels: new Set(), opened: 0 };
    deps.signedIn();
    ctx.accept();
    log.info({ role: session.role, serial: login.serial, keyId: login.keyId }, "ssh session opened");
    watchUpstream(live);
    session.signal.addEventListener("abort", () => kill(endOf(session.signal)), { once: true });
  }

  function watchUpstream({ upstream }: Live): void {
    upstream.on("error", (error: Error) => log.debug({ err: error }, "ssh target connection error"));
    upstream.on("close", () => finish("upstream_closed"));
    // Remote forwarding: the target tells of a connection to a port it listens on for us.
    upstream.on("tcp connection", (details, accept, reject) => {
      if (ending) return reject();
      const release = budget.take("forwarded-tcpip");
      if (!release) return reject();
      client.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (error, channel) => {
        if (error) {
          release();
          return reject();
        }
        const forward = { kind: "tcpip-forward", host: details.destIP, port: details.destPort };
        relayForward(channel, accept(), forward, release);
      });
    });
  }

  client.on("session", (accept, reject) => {
    if (!live || state.ending) return reject();
    const release = budget.take("session");
    if (!release) return rejectProhibited(client, reject, budget.refusal("session"));
    relaySession(state, accept(), live, { client, release });
  });

  client.on("tcpip", (accept, reject, info) => {
    if (!live || state.ending) return reject();
    const { session, upstream } = live;
    if (!moderationAdmits(session))
      return rejectProhibited(client, reject, "Stint: no moderator has joined this session yet");
    const allowed = session.policy.portForwarding;
    const release = allowed ? budget.take("direct-tcpip") : null;
    if (allowed && !release) return rejectProhibited(client, reject, budget.refusal("direct-tcpip"));
    session.recorder.event("forward", { kind: "direct-tcpip", host: info.destIP, port: info.destPort, allowed });
    state.holdForRecording();
    if (!release) return rejectProhibited(client, reject, `Stint: port forwarding is not allowed for ${session.role}`);
    upstream.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (error, channel) => {
      if (error) {
        release();
        return reject();
      }
      relayForward(accept(), channel, { kind: "direct-tcpip", host: info.destIP, port: info.destPort }, release);
    });
  });

  client.on("request", (accept, reject, name, info) => {
    if (!live || state.ending || (name !== "tcpip-forward" && name !== "cancel-tcpip-forward")) return reject?.();
    const { session, upstream } = live;
    if (name === "cancel-tcpip-forward") {
      upstream.unforwardIn(info.bindAddr, info.bindPort, (error) => {
        if (error) return reject?.();
        listeners.get(`${info.bindAddr}:${info.bindPort}`)?.();
        listeners.delete(`${info.bindAddr}:${info.bindPort}`);
        accept?.();
      });
      return;
    }
    if (!moderationAdmits(session)) return reject?.();
    const allowed = session.policy.portForwarding;
    const release = allowed ? budget.take("tcpip-forward") : null;
    if (allowed && !release) return reject?.();
    session.recorder.event("forward", { kind: "tcpip-forward", host: info.bindAddr, port: info.bindPort, allowed });
    state.holdForRecording();
    if (!release) return reject?.();
    upstream.forwardIn(info.bindAddr, info.bindPort, (error, port) => {
      if (error) {
        release();
        return reject?.();
      }
      const key = `${info.bindAddr}:${info.bindPort === 0 ? port : info.bindPort}`;
      listeners.get(key)?.();
      listeners.set(key, release);
      accept?.(port);
    });
  });

  /**
   * A forwarded TCP connection: bytes both ways, counted and recorded (`forward_data` events, base64), so a
   * tunnel carries nothing the recording does not hold.
   */
  function relayForward(
    local: Duplex,
    remote: Duplex,
    forward: { kind: string; host: string; port: number },
    /** Its place in the connection's budget, given back once it closed. */
    release: () => void,
  ): void {
    const session = live?.session;
    const id = ++forwards;
    const observe = (direction: "up" | "down") => {
      const count = countPerTick((bytes) => session?.countBytes(direction, bytes));
      return (data: Buffer) => {
        count(data.length);
        session?.recorder.event("forward_data", { id, ...forward, direction, data: data.toString("base64") });
      };
    };
    relayStream(remote, local, observe("down"), relaying, undefined, session?.recorder);
    relayStream(local, remote, observe("up"), relaying, undefined, session?.recorder);
    local.on("end", () => safely(() => remote.end()));
    remote.on("end", () => safely(() => local.end()));
    for (const side of [local, remote]) {
      side.on("error", (error: Error) => log.debug({ err: error }, "ssh forward channel error"));
      side.on("close", () => {
        release();
        safely(() => local.destroy());
        safely(() => remote.destroy());
      });
    }
  }

  function kill(end: SessionEnd): void {
    if (ending || !live || killing) return;
    killing = end;
    log.info({ reason: end.reason }, "ssh session ended by Stint");
    for (const channel of live.channels) {
      safely(() => channel.stderr.write(`\r\nStint: ${end.message}\r\n`));
    }
    setTimeout(() => finish(end.reason, end.message), KILL_GRACE_MS);
  }

  /** Ends both connections and the session, once, with the first reason that came. */
  function finish(reason: EndReason, detail?: string): void {
    if (ending) return;
    ending = true;
    const current = live;
    if (current) {
      safely(() => current.upstream.end());
      sessionEnded = endSession(current.session, reason, detail, log);
    }
    if (!clientClosed) {
      safely(() => client.end());
      setTimeout(() => {
        if (current) safely(() => current.upstream.destroy());
        if (!clientClosed) safely(() => (client as unknown as { _sock?: { destroy(): void } })._sock?.destroy());
      }, FORCE_CLOSE_MS).unref();
    }
  }

  return {
    closed,
    hasSession: () => live !== undefined && !ending,
    shutdown: () => {
      if (live && !ending) {
        kill({ reason: "shutdown", message: "the Stint SSH proxy is shutting down." });
      } else {
        finish("shutdown");
      }
    },
  };
}

const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;

/**
 * Refuses a channel open as SSH_OPEN_ADMINISTRATIVELY_PROHIBITED (RFC 4254 §5.1) with a description, so
 * the client says "administratively prohibited: <why>". ssh2's reject() always sends CONNECT_FAILED and
 * no text, so for the one synchronous call the connection's protocol object sends ours instead; if
 * ssh2's internals ever change shape, the channel is still refused (with ssh2's code).
 */
function rejectProhibited(client: Connection, reject: () => void, description: string): void {
  type Fail = (remote: number, reason: number, description: string) => void;
  const protocol = (client as unknown as { _protocol?: { channelOpenFail?: Fail } })._protocol;
  const original = protocol?.channelOpenFail;
  if (!protocol || typeof original !== "function") return reject();
  const own = Object.hasOwn(protocol, "channelOpenFail");
  protocol.channelOpenFail = (remote: number) =>
    original.call(protocol, remote, OPEN_ADMINISTRATIVELY_PROHIBITED, description);
  try {
    reject();
  } finally {
    if (own) protocol.channelOpenFail = original;
    else delete protocol.channelOpenFail;
  }
}
