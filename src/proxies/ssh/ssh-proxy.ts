/**
 * The SSH session proxy: an SSH server that lets a user in with a Stint user certificate only, asks
 * the sessions module (SessionGate) for a brokered session, connects to the target with the vaulted
 * credential over a host-key-pinned SSH connection, and relays session channels (shell, exec, scp,
 * sftp and other subsystems) and, when the policy allows, port forwards, recording what happens.
 * Invariants are in README.md next to this file.
 */
import { createHash, timingSafeEqual, verify, type KeyObject } from "node:crypto";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { Counter, Gauge, type Registry } from "prom-client";
import { Duplex, type Readable, type Writable } from "node:stream";
import ssh2 from "ssh2";
import type {
  AuthContext,
  ClientChannel,
  Connection,
  PseudoTtyInfo,
  PublicKeyAuthContext,
  ServerChannel,
  Session,
  Client as SshClient,
} from "ssh2";
import type { Logger } from "../../lib/logger.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type SessionEnd,
  type SessionGate,
  type SshCertificateLogin,
  type UpstreamSsh,
} from "../../modules/sessions/sessions.types.js";
import { execRefusal, fileChannel, refuseExec } from "./file-policy.js";
import { createSftpTracker } from "./sftp-log.js";
import { moderationAdmits, whenModerated } from "./live-moderation.js";

// ssh2 is CommonJS: Node's ESM loader cannot import its classes by name.
const { Server, Client } = ssh2;

export interface SshProxyDeps {
  gate: Pick<SessionGate, "checkSshCertificate" | "openSsh">;
  /** The proxy's host key, OpenSSH PEM private key. */
  hostKey: string;
  logger: Logger;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port (see listen()'s result). */
  port: number;
  /** Shown to clients before authentication. */
  banner?: string;
  /** One deadline from accept until the client is signed in, whatever it sends or not (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Connections held at once (default 1000); one more is closed at accept. */
  maxConnections?: number;
  /** Connections held at once from one source address (default 50). */
  maxConnectionsPerAddress?: number;
  /** Where the connection figures go (stint_ssh_proxy_*); none when absent. */
  registry?: Registry;
  /** Time the target has to accept the vaulted credential (default 15 s). */
  upstreamTimeoutMs?: number;
}

export interface SshProxy {
  listen(): Promise<{ host: string; port: number }>;
  /** Stops listening and ends every live session with reason "shutdown". */
  close(): Promise<void>;
  /** Brokered sessions currently relayed. */
  liveSessions(): number;
  /**
   * An SSH connection into this proxy without a socket, for an SSH client in this process (the browser
   * terminal, web-terminal.ts): the stream returned is the client's end; the proxy takes the other end
   * exactly as an accepted TCP connection (same certificate check, gate, recording and kill), with
   * `clientAddress` as its source. Within the overall cap and the handshake deadline; ended at once when
   * the proxy is closing or full.
   */
  connectLocal(clientAddress: string): Duplex;
}

/** Certificate key algorithms a client may offer (OpenSSH PROTOCOL.certkeys). */
const CERTIFICATE_ALGORITHMS = new Set([
  "ssh-ed25519-cert-v01@openssh.com",
  "ssh-rsa-cert-v01@openssh.com",
  "rsa-sha2-256-cert-v01@openssh.com",
  "rsa-sha2-512-cert-v01@openssh.com",
]);
/** How long the user has to read the kill message before both connections close. */
const KILL_GRACE_MS = 250;
/** After asking both sides to close, sockets still open are destroyed. */
const FORCE_CLOSE_MS = 2000;

export function createSshProxy(deps: SshProxyDeps): SshProxy {
  const { gate, logger } = deps;
  const host = deps.host ?? "127.0.0.1";
  const connections = new Set<ProxiedConnection>();
  let shuttingDown = false;
  const handshakeTimeoutMs = deps.handshakeTimeoutMs ?? 30_000;
  const maxConnections = deps.maxConnections ?? 1000;
  const maxPerAddress = deps.maxConnectionsPerAddress ?? 50;
  const metrics = proxyMetrics(deps.registry);
  const sockets = new Set<Socket>();
  const perAddress = new Map<string, number>();
  /** Deadlines of sockets not yet signed in, by "address|port" (what ssh2 tells of a connection). */
  const deadlines = new Map<string, NodeJS.Timeout>();
  let localConnections = 0;
  /** A local connection's "port": above 65535, so its deadline's key never meets a TCP peer's. */
  let localPort = 65_536;

  const server = new Server(
    { hostKeys: [deps.hostKey], ...(deps.banner ? { banner: deps.banner } : {}) },
    (client, info) => {
      if (shuttingDown) {
        client.end();
        return;
      }
      const peer = `${info.ip}|${info.port}`;
      const connection = proxyConnection(client, info.ip, {
        gate,
        logger,
        upstreamTimeoutMs: deps.upstreamTimeoutMs ?? 15_000,
        signedIn: () => {
          clearTimeout(deadlines.get(peer));
          deadlines.delete(peer);
        },
      });
      connections.add(connection);
      void connection.closed.then(() => connections.delete(connection));
    },
  );

  /**
   * Accepting is ours, not ssh2's: ssh2 only reports a connection once the client's version line came,
   * so a client that sends nothing would never be timed out. The caps and the one handshake deadline
   * start at accept; the socket then goes to ssh2.
   */
  const tcp = createTcpServer((socket) => {
    const address = socket.remoteAddress ?? "unknown";
    socket.on("error", () => undefined);
    if (shuttingDown) return void socket.destroy();
    if (sockets.size >= maxConnections) {
      metrics?.refused.inc({ reason: "overall" });
      return void socket.destroy();
    }
    const fromAddress = perAddress.get(address) ?? 0;
    if (fromAddress >= maxPerAddress) {
      metrics?.refused.inc({ reason: "per_address" });
      return void socket.destroy();
    }
    perAddress.set(address, fromAddress + 1);
    sockets.add(socket);
    metrics?.open.inc();
    const peer = `${address}|${socket.remotePort}`;
    const deadline = setTimeout(() => {
      deadlines.delete(peer);
      metrics?.timeouts.inc();
      logger.info({ clientAddress: address }, "ssh client did not sign in in time");
      socket.destroy();
    }, handshakeTimeoutMs);
    deadline.unref();
    deadlines.set(peer, deadline);
    socket.once("close", () => {
      clearTimeout(deadline);
      if (deadlines.get(peer) === deadline) deadlines.delete(peer);
      sockets.delete(socket);
      metrics?.open.dec();
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
    // The relay batches its writes itself (writeBatch); Nagle would hold a packet's tail for an ACK.
    socket.setNoDelay(true);
    server.injectSocket(socket);
  });
  // Errors after the listener is up; a failure to listen rejects listen() instead (the caller reports it).
  const onServerError = (error: Error) => logger.error({ err: error }, "ssh proxy server error");
  server.on("error", onServerError);

  return {
    listen: () =>
      new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(deps.port, host, () => {
          tcp.off("error", reject);
          tcp.on("error", onServerError);
          const address = tcp.address() as AddressInfo;
          resolve({ host: address.address, port: address.port });
        });
      }),
    close: async () => {
      shuttingDown = true;
      const stopped = new Promise<void>((resolve) => tcp.close(() => resolve()));
      const all = [...connections];
      for (const connection of all) connection.shutdown();
      await Promise.all(all.map((connection) => connection.closed));
      // Sockets that never became SSH connections (no version line yet).
      for (const socket of sockets) socket.destroy();
      await stopped;
    },
    liveSessions: () => [...connections].filter((connection) => connection.hasSession()).length,
    connectLocal: (clientAddress) => {
      const [ours, theirs] = duplexPair();
      if (shuttingDown || sockets.size + localConnections >= maxConnections) {
        if (!shuttingDown) metrics?.refused.inc({ reason: "overall" });
        ours.destroy();
        return theirs;
      }
      const port = localPort++;
      // What ssh2 reads of an injected socket to tell the connection handler who connected.
      Object.assign(ours, { remoteAddress: clientAddress, remotePort: port, remoteFamily: "local" });
      localConnections++;
      const peer = `${clientAddress}|${port}`;
      const deadline = setTimeout(() => {
        deadlines.delete(peer);
        metrics?.timeouts.inc();
        ours.destroy();
      }, handshakeTimeoutMs);
      deadline.unref();
      deadlines.set(peer, deadline);
      ours.once("close", () => {
        clearTimeout(deadline);
        if (deadlines.get(peer) === deadline) deadlines.delete(peer);
        localConnections--;
      });
      server.injectSocket(ours as unknown as Socket);
      return theirs;
    },
  };
}

/** Two connected in-memory streams (Node 20 has no stream.duplexPair): what one writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const side = (other: () => Duplex) =>
    new Duplex({
      read: () => undefined,
      write(chunk: Buffer, _encoding, callback) {
        if (!other().destroyed) other().push(chunk);
        callback();
      },
      final(callback) {
        if (!other().destroyed) other().push(null);
        callback();
      },
      destroy(error, callback) {
        if (!other().destroyed) other().destroy();
        callback(error);
      },
    });
  sides.push(
    side(() => sides[1]!),
    side(() => sides[0]!),
  );
  return [sides[0]!, sides[1]!];
}

// --- one client connection -----------------------------------------------------------------------

interface ConnectionDeps {
  gate: SshProxyDeps["gate"];
  logger: Logger;
  upstreamTimeoutMs: number;
  /** The client is signed in: its handshake deadline no longer applies. */
  signedIn(): void;
}

function proxyMetrics(registry: Registry | undefined) {
  if (!registry) return undefined;
  return {
    open: new Gauge({
      name: "stint_ssh_proxy_connections",
      help: "Connections the SSH proxy holds (signed in or not)",
      registers: [registry],
    }),
    refused: new Counter({
      name: "stint_ssh_proxy_connections_refused_total",
      help: "Connections the SSH proxy closed at accept because a cap was reached (overall, per_address)",
      labelNames: ["reason"],
      registers: [registry],
    }),
    timeouts: new Counter({
      name: "stint_ssh_proxy_handshake_timeouts_total",
      help: "Connections cut off because they were not signed in by the handshake deadline",
      registers: [registry],
    }),
  };
}

interface ProxiedConnection {
  /** Resolves once both connections are closed and the session (if any) has ended. */
  closed: Promise<void>;
  hasSession(): boolean;
  shutdown(): void;
}

interface Live {
  session: BrokeredSession<UpstreamSsh>;
  upstream: SshClient;
  /** Open client-side session channels (where a kill message goes). */
  channels: Set<ServerChannel>;
}

function proxyConnection(client: Connection, clientAddress: string, deps: ConnectionDeps): ProxiedConnection {
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

  let forwards = 0;
  /** The relay stops the moment the session starts to end, before its recording is closed. */
  const relaying = () => !ending;

  client.on("error", (error: Error) => log.debug({ err: error }, "ssh client connection error"));
  client.on("close", () => {
    clientClosed = true;
    finish("client_closed");
    void sessionEnded.then(resolveClosed);
  });

  client.on("authentication", (ctx) => {
    authenticate(ctx).catch((error: unknown) => {
      log.error({ err: error }, "ssh authentication failed unexpectedly");
      safely(() => ctx.reject(["publickey"]));
    });
  });

  async function authenticate(ctx: AuthContext): Promise<void> {
    if (ctx.method !== "publickey" || live || ending) return ctx.reject(["publickey"]);
    if (!CERTIFICATE_ALGORITHMS.has(ctx.key.algo)) return ctx.reject(["publickey"]);
    let login: SshCertificateLogin;
    try {
      login = gate.checkSshCertificate({
        username: ctx.username,
        algorithm: certificateKeyType(ctx.key.algo),
        key: ctx.key.data,
      });
    } catch (error) {
      log.info({ username: ctx.username, reason: refusalText(error) }, "ssh certificate refused");
      return ctx.reject(["publickey"]);
    }
    // An offer without a signature: the client asks whether this key would do before signing.
    if (!ctx.signature || !ctx.blob) return ctx.accept();
    if (!userauthSignatureValid(ctx, login.publicKey)) {
      log.warn({ user: login.user, serial: login.serial }, "ssh certificate offered without a valid signature");
      return ctx.reject(["publickey"]);
    }

    let session: BrokeredSession<UpstreamSsh>;
    try {
      session = await gate.openSsh(login, { clientAddress });
    } catch (error) {
      log.info({ user: login.user, target: login.target, reason: refusalText(error) }, "ssh session refused");
      sendAuthBanner(ctx, `Stint: ${refusalText(error)}`);
      return ctx.reject(["publickey"]);
    }
    log = log.child({ sessionId: session.id, user: session.user, target: session.target });

    let upstream: SshClient;
    try {
      upstream = await connectUpstream(session.upstream, deps.upstreamTimeoutMs);
    } catch (error) {
      const reason = (error as Error).message;
      log.warn({ reason }, "ssh target unreachable");
      sendAuthBanner(ctx, `Stint: cannot open ${session.target}: ${reason}`);
      ctx.reject(["publickey"]);
      await endSession(session, "error", reason, log);
      return;
    }
    if (clientClosed || session.signal.aborted) {
      upstream.end();
      const reason = session.signal.aborted ? endOf(session.signal).reason : "client_closed";
      await endSession(session, reason, undefined, log);
      if (!clientClosed) ctx.reject(["publickey"]);
      return;
    }

    live = { session, upstream, channels: new Set() };
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
      client.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (error, channel) => {
        if (error) return reject();
        relayForward(channel, accept(), { kind: "tcpip-forward", host: details.destIP, port: details.destPort });
      });
    });
  }

  client.on("session", (accept, reject) => {
    if (!live || ending) return reject();
    relaySession(accept(), live);
  });

  client.on("tcpip", (accept, reject, info) => {
    if (!live || ending) return reject();
    const { session, upstream } = live;
    if (!moderationAdmits(session))
      return rejectProhibited(client, reject, "Stint: no moderator has joined this session yet");
    const allowed = session.policy.portForwarding;
    session.recorder.event("forward", { kind: "direct-tcpip", host: info.destIP, port: info.destPort, allowed });
    if (!allowed) return rejectProhibited(client, reject, `Stint: port forwarding is not allowed for ${session.role}`);
    upstream.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (error, channel) => {
      if (error) return reject();
      relayForward(accept(), channel, { kind: "direct-tcpip", host: info.destIP, port: info.destPort });
    });
  });

  client.on("request", (accept, reject, name, info) => {
    if (!live || ending || (name !== "tcpip-forward" && name !== "cancel-tcpip-forward")) return reject?.();
    const { session, upstream } = live;
    if (name === "cancel-tcpip-forward") {
      upstream.unforwardIn(info.bindAddr, info.bindPort, (error) => (error ? reject?.() : accept?.()));
      return;
    }
    if (!moderationAdmits(session)) return reject?.();
    const allowed = session.policy.portForwarding;
    session.recorder.event("forward", { kind: "tcpip-forward", host: info.bindAddr, port: info.bindPort, allowed });
    if (!allowed) return reject?.();
    upstream.forwardIn(info.bindAddr, info.bindPort, (error, port) => (error ? reject?.() : accept?.(port)));
  });

  function relaySession(channelSession: Session, { session, upstream, channels }: Live): void {
    let pty: PseudoTtyInfo | undefined;
    const env: Record<string, string> = {};
    let remote: ClientChannel | undefined;
    let started = false;
    /** A window change came before the target's channel was open. */
    let resized = false;

    channelSession.on("pty", (accept, reject, info) => {
      if (started) return reject?.();
      pty = info;
      session.recorder.resize(info.cols, info.rows);
      accept?.();
    });
    channelSession.on("window-change", (accept, _reject, info) => {
      session.recorder.resize(info.cols, info.rows);
      if (pty) {
        pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
        resized = true;
      }
      safely(() => remote?.setWindow(info.rows, info.cols, info.height, info.width));
      accept?.();
    });
    channelSession.on("env", (accept, reject, info) => {
      if (started) return reject?.();
      env[info.key] = info.val;
      accept?.();
    });
    channelSession.on("signal", (accept, _reject, info) => {
      safely(() => remote?.signal(info.name));
      accept?.();
    });
    channelSession.on("auth-agent", (_accept, reject) => reject?.());
    channelSession.on("x11", (_accept, reject) => reject?.());

    /**
     * ssh2 must accept a shell/exec/subsystem request at once: a client EOF that follows (an empty
     * stdin) makes a later accept impossible. So the client's channel is accepted first and its data
     * waits, paused, until the target's channel is open; a target that refuses gets the client a
     * message and exit status 1.
     */
    const start = (kind: "shell" | "exec" | "subsystem", detail: string, open: (done: OpenCallback) => void) => {
      return (accept: () => ServerChannel | undefined, reject: () => void) => {
        if (started || ending) return reject();
        started = true;
        const local = accept();
        if (!local) return;
        local.pause();
        channels.add(local);
        if (killing) {
          const { message } = killing;
          safely(() => local.stderr.write(`\r\nStint: ${message}\r\n`));
        }
        local.on("close", () => channels.delete(local));
        local.on("error", (error: Error) => log.debug({ err: error }, "ssh client channel error"));
        const refuse = (reason: string | undefined) => {
          log.info({ kind, reason }, "ssh channel refused by the target");
          safely(() => local.stderr.write(`Stint: ${session.target} refused the ${kind} request.\r\n`));
          safely(() => local.exit(1));
          safely(() => local.end());
        };
        const openUpstream = () => {
          try {
            open((error, channel) => {
              if (error || !channel) return refuse(error?.message);
              if (ending || local.destroyed) return safely(() => channel.close());
              remote = channel;
              if (pty && resized) safely(() => channel.setWindow(pty!.rows, pty!.cols, pty!.height, pty!.width));
              relayChannel(local, channel, kind, detail, session, pty !== undefined);
            });
          } catch (error) {
            refuse((error as Error).message);
          }
        };
        // A moderated session opens nothing upstream before a moderator joined (live-moderation.ts).
        whenModerated(
          session,
          (text) => safely(() => local.stderr.write(text)),
          () => ending || local.destroyed,
          openUpstream,
        );
      };
    };
    const options = () => ({ ...(pty ? { pty: ptyOptions(pty) } : {}), env });

    channelSession.on(
      "shell",
      start("shell", "", (done) => upstream.shell(pty ? ptyOptions(pty) : false, { env }, done)),
    );
    channelSession.on("exec", (accept, reject, info) => {
      // The file-transfer policy (file-policy.ts): a denied scp/rsync/sftp-server never reaches the target.
      const scp = pty ? undefined : parseScpCommand(info.command);
      const refusal = execRefusal(
        session.policy.files,
        session.role,
        info.command,
        scp,
        pty ? undefined : parseRsyncCommand(info.command),
      );
      if (refusal && !started && !ending) {
        started = true;
        return refuseExec(session, accept, refusal);
      }
      start("exec", info.command, (done) => upstream.exec(info.command, options(), done))(accept, reject);
    });
    channelSession.on("subsystem", (accept, reject, info) => {
      // Only SFTP is understood (sftp-log.ts); any other subsystem could be a shell by another name.
      if (info.name !== "sftp") {
        session.recorder.event("subsystem", { name: info.name, allowed: false });
        log.info({ subsystem: info.name }, "ssh subsystem refused");
        return reject();
      }
      start("subsystem", info.name, (done) => upstream.subsys(info.name, done))(accept, reject);
    });
  }

  /**
   * Pipes one session channel both ways. Shell: output and input recorded. Exec: the output recorded,
   * then an `exec` event with the exit code; scp is an `scp` event instead, rsync an `rsync` event (file
   * data counted, not recorded). SFTP: `sftp` events.
   */
  function relayChannel(
    local: ServerChannel,
    remote: ClientChannel,
    kind: "shell" | "exec" | "subsystem",
    detail: string,
    session: BrokeredSession<UpstreamSsh>,
    withTerminal: boolean,
  ): void {
    const { recorder } = session;
    // scp's file bytes are counted, not recorded: only for a plain scp command without a terminal.
    const scp = kind === "exec" && !withTerminal ? parseScpCommand(detail) : undefined;
    // rsync's likewise: the command, the paths and the bytes its sending side sent.
    const rsync = kind === "exec" && !withTerminal && !scp ? parseRsyncCommand(detail) : undefined;
    let rsyncBytes = 0;
    const sftp = kind === "subsystem" && detail === "sftp" ? createSftpTracker() : undefined;
    const scpBytes = scp ? createScpCounter() : undefined;
    if (kind === "subsystem") recorder.event("subsystem", { name: detail });
    // The file-transfer policy, sizes and SHA-256s of SFTP and legacy scp (file-policy.ts).
    const files = fileChannel({ kind, detail, scp, session, local, remote });
    let exit: { exitCode?: number; signal?: string } = {};

    const recordOutput = kind === "shell" || (kind === "exec" && !scp && !rsync);
    const countDown = countPerTick((bytes) => session.countBytes("down", bytes));
    const countUp = countPerTick((bytes) => session.countBytes("up", bytes));
    const fromTarget = (data: Buffer) => {
      countDown(data.length);
      if (recordOutput) recorder.output(data);
      if (sftp) for (const event of sftp.fromServer(data)) recorder.event("sftp", { ...event });
      if (scp?.direction === "download") scpBytes?.feed(data);
      if (rsync?.direction === "download") rsyncBytes += data.length;
    };
    const fromClient = (data: Buffer) => {
      countUp(data.length);
      // A terminal's keystrokes, and an exec's stdin (`echo CMD | ssh host sh` runs what it carries).
      if (recordOutput) recorder.input(data);
      if (sftp) for (const event of sftp.fromClient(data)) recorder.event("sftp", { ...event });
      if (scp?.direction === "upload") scpBytes?.feed(data);
      if (rsync?.direction === "upload") rsyncBytes += data.length;
    };

    relayStream(remote, local, fromTarget, relaying, files?.fromServer);
    relayStream(remote.stderr, local.stderr, fromTarget, relaying);
    // The client's EOF goes on to the target; the target's EOF waits for its exit status (below).
    local.on("end", () => safely(() => remote.end()));
    relayStream(local, remote, fromClient, relaying, files?.fromClient);
    local.resume();
    remote.on("error", (error: Error) => log.debug({ err: error }, "ssh target channel error"));

    remote.on("exit", (code: number | null, signal?: string, coreDumped?: boolean, description?: string) => {
      if (typeof code === "number") {
        exit = { exitCode: code };
        safely(() => local.exit(code));
      } else if (signal) {
        exit = { signal: signal.replace(/^SIG/, "") };
        safely(() => local.exit(signal.replace(/^SIG/, ""), coreDumped === true, description ?? ""));
      }
    });
    let recorded = false;
    const recordEnd = () => {
      if (recorded) return;
      recorded = true;
      if (scp) {
        recorder.event("scp", { direction: scp.direction, path: scp.path, bytes: scpBytes?.bytes() ?? 0 });
      } else if (rsync) {
        const { direction, paths, options } = rsync;
        recorder.event("rsync", { command: detail, direction, paths, options, bytes: rsyncBytes, ...exit });
      } else if (kind === "exec") {
        recorder.event("exec", { command: detail, ...exit });
      }
      if (sftp) for (const event of sftp.end()) recorder.event("sftp", { ...event });
      files?.end();
    };
    remote.on("close", () => {
      recordEnd();
      safely(() => local.end());
    });
    local.on("close", () => {
      recordEnd();
      safely(() => remote.close());
    });
  }

  /**
   * A forwarded TCP connection: bytes both ways, counted and recorded (`forward_data` events, base64), so a
   * tunnel carries nothing the recording does not hold.
   */
  function relayForward(local: Duplex, remote: Duplex, forward: { kind: string; host: string; port: number }): void {
    const session = live?.session;
    const id = ++forwards;
    const observe = (direction: "up" | "down") => {
      const count = countPerTick((bytes) => session?.countBytes(direction, bytes));
      return (data: Buffer) => {
        count(data.length);
        session?.recorder.event("forward_data", { id, ...forward, direction, data: data.toString("base64") });
      };
    };
    relayStream(remote, local, observe("down"), relaying);
    relayStream(local, remote, observe("up"), relaying);
    local.on("end", () => safely(() => remote.end()));
    remote.on("end", () => safely(() => local.end()));
    for (const side of [local, remote]) {
      side.on("error", (error: Error) => log.debug({ err: error }, "ssh forward channel error"));
      side.on("close", () => {
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

type OpenCallback = (error: Error | undefined, channel: ClientChannel | undefined) => void;

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

// --- authentication ------------------------------------------------------------------------------

/**
 * The certificate type to hand the gate: the offered algorithm, except that RSA certificates signed
 * with SHA-2 are offered as rsa-sha2-256/512-cert-v01 while the certificate itself says ssh-rsa-cert-v01.
 */
function certificateKeyType(algorithm: string): string {
  return algorithm.startsWith("rsa-sha2-") ? "ssh-rsa-cert-v01@openssh.com" : algorithm;
}

/**
 * Whether the userauth request is signed by the key the certificate certifies. ssh2 leaves a
 * certificate's signature as the SSH signature blob (string algorithm, string signature); the
 * algorithm must match the certified key and the offered algorithm (no SHA-1 RSA).
 */
export function userauthSignatureValid(
  ctx: Pick<PublicKeyAuthContext, "key" | "signature" | "blob">,
  publicKey: KeyObject,
): boolean {
  if (!ctx.signature || !ctx.blob) return false;
  try {
    const offered = ctx.key.algo;
    if (publicKey.asymmetricKeyType === "ed25519") {
      if (offered !== "ssh-ed25519-cert-v01@openssh.com") return false;
      // OpenSSH names the plain key's algorithm in the blob; ssh2's client (the browser terminal's,
      // web-terminal.ts) repeats the certificate's name, and ssh2's server then hands over the bare 64-byte
      // signature (it strips a name equal to the offered algorithm). All are taken: Ed25519 has one signature
      // scheme, so the name picks nothing (RSA's picks the hash, and stays strict below), and the signature
      // must still verify with the certified key over this session's userauth data.
      const named = parseSignatureBlob(ctx.signature);
      if (named && !ED25519_SIGNATURE_NAMES.has(named.algorithm)) return false;
      const signature = named?.signature ?? ctx.signature;
      if (signature.length !== ED25519_SIGNATURE_BYTES) return false;
      return verify(null, ctx.blob, publicKey, signature);
    }
    const parsed = parseSignatureBlob(ctx.signature);
    if (!parsed) return false;
    const { algorithm, signature } = parsed;
    if (publicKey.asymmetricKeyType === "rsa") {
      const hash = algorithm === "rsa-sha2-256" ? "sha256" : algorithm === "rsa-sha2-512" ? "sha512" : undefined;
      if (!hash || offered !== `${algorithm}-cert-v01@openssh.com`) return false;
      return verify(hash, ctx.blob, publicKey, signature);
    }
    return false;
  } catch {
    return false;
  }
}

const ED25519_SIGNATURE_NAMES = new Set(["ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com"]);
const ED25519_SIGNATURE_BYTES = 64;

function parseSignatureBlob(blob: Buffer): { algorithm: string; signature: Buffer } | undefined {
  if (blob.length < 4) return undefined;
  const nameLength = blob.readUInt32BE(0);
  if (nameLength === 0 || nameLength > 64 || 4 + nameLength + 4 > blob.length) return undefined;
  const algorithm = blob.subarray(4, 4 + nameLength).toString("latin1");
  const signatureLength = blob.readUInt32BE(4 + nameLength);
  const start = 8 + nameLength;
  if (start + signatureLength !== blob.length) return undefined;
  return { algorithm, signature: blob.subarray(start) };
}

/** What ssh2's Protocol object must look like for sendAuthBanner (checked at run time). */
interface ProtocolInternals {
  _kexinit?: unknown;
  _queue?: Buffer[];
  _packetRW: { write: { allocStart: number; alloc(size: number): Buffer; finalize(packet: Buffer): Buffer } };
  _cipher: { encrypt(packet: Buffer): void };
}

const MESSAGE_USERAUTH_BANNER = 53;

/**
 * Sends SSH_MSG_USERAUTH_BANNER (RFC 4252 §5.4) so the client shows why it is refused. ssh2 only sends
 * the fixed banner of the server options, so this writes the packet through ssh2's own packet writer;
 * if ssh2's internals ever change shape, the client is refused without the message.
 */
function sendAuthBanner(ctx: AuthContext, message: string): void {
  const protocol = (ctx as unknown as { _protocol?: Partial<ProtocolInternals> })._protocol;
  if (
    !protocol ||
    typeof protocol._packetRW?.write.alloc !== "function" ||
    typeof protocol._packetRW.write.finalize !== "function" ||
    typeof protocol._cipher?.encrypt !== "function"
  ) {
    return;
  }
  const { write } = protocol._packetRW;
  const cipher = protocol._cipher;
  safely(() => {
    const text = Buffer.from(`${message.replace(/[\r\n]+$/, "")}\n`, "utf8");
    const start = write.allocStart;
    const packet = write.alloc(1 + 4 + text.length + 4);
    packet[start] = MESSAGE_USERAUTH_BANNER;
    packet.writeUInt32BE(text.length, start + 1);
    text.copy(packet, start + 5);
    packet.writeUInt32BE(0, start + 5 + text.length); // language tag
    const finalized = write.finalize(packet);
    if (protocol._kexinit !== undefined) {
      // A key exchange is running: queue it as ssh2 does.
      (protocol._queue ??= []).push(finalized);
    } else {
      cipher.encrypt(finalized);
    }
  });
}

function refusalText(error: unknown): string {
  if (error instanceof SessionRefusedError) return error.message;
  return "Stint could not open the session.";
}

// --- upstream ------------------------------------------------------------------------------------

/** "SHA256:<base64 without padding>" of an SSH public key blob, as `ssh-keygen -l` prints it. */
export function hostKeyFingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

function fingerprintMatches(keyBlob: Buffer, pinned: string): boolean {
  const seen = Buffer.from(hostKeyFingerprint(keyBlob));
  const expected = Buffer.from(pinned.trim());
  return seen.length === expected.length && timingSafeEqual(seen, expected);
}

/** Connects with the vaulted credential; refuses a target whose host key is not the pinned one. */
function connectUpstream(upstream: UpstreamSsh, timeoutMs: number): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const connection = new Client();
    let hostKeyMismatch = false;
    connection.once("ready", () => {
      // The caller adds its own listener; until then an error must not crash the process.
      connection.removeAllListeners("error");
      connection.on("error", () => undefined);
      resolve(connection);
    });
    connection.once("error", (error: Error & { level?: string }) => {
      connection.on("error", () => undefined);
      safely(() => connection.end());
      if (hostKeyMismatch) return reject(new Error("the target's host key does not match the pinned key"));
      if (error.level === "client-authentication") return reject(new Error("the target refused the credential"));
      if (error.level === "client-timeout") return reject(new Error("the target did not answer in time"));
      reject(new Error("the target cannot be reached"));
    });
    try {
      connection.connect({
        // The address the gate resolved and judged by the address policy: no second lookup.
        host: upstream.address,
        port: upstream.port,
        username: upstream.username,
        ...(upstream.privateKey !== undefined
          ? { privateKey: upstream.privateKey, authHandler: ["publickey"] }
          : { password: upstream.password, authHandler: ["password"] }),
        hostVerifier: (key: Buffer) => {
          const ok = fingerprintMatches(key, upstream.hostKey);
          if (!ok) hostKeyMismatch = true;
          return ok;
        },
        readyTimeout: timeoutMs,
        keepaliveInterval: 30_000,
      });
      // As on the client side: the relay batches its writes, Nagle would only hold back a packet's tail.
      connection.setNoDelay(true);
    } catch {
      reject(new Error("the target's connection settings are not usable"));
    }
  });
}

// --- relaying ------------------------------------------------------------------------------------

/**
 * Data from `from` to `to`, each chunk seen by `observe` first, with backpressure; no end propagation.
 * Once `relaying()` answers false (the session is ending and its recording closing) chunks are dropped:
 * nothing passes that the recording did not take.
 *
 * Flow control across the two hops (the cost of a jump host, not more):
 * - `from` stops (pause) only while `to` holds more than its high-water mark, and starts again on its
 *   `drain`; one listener each, not one per chunk.
 * - When `from` is an SSH channel, the window its sender may fill is topped up to RELAY_WINDOW as soon
 *   as a quarter of it has been passed on to a `to` that is not backed up (ssh2 alone keeps 2 MiB and
 *   grants more only once half is used): the sender never waits for the proxy while the proxy is busy
 *   or descheduled. While `to` is backed up nothing is granted, so what the proxy holds per direction
 *   stays bounded (RELAY_WINDOW + ssh2's 2 MiB readable and writable buffers).
 */
function relayStream(
  from: Readable,
  to: Writable,
  observe: (data: Buffer) => void,
  relaying: () => boolean,
  /** What to pass on instead of the chunk (the file-transfer policy); a filter that fails passes nothing. */
  transform?: (data: Buffer) => Buffer[],
): void {
  const window = channelWindow(from, RELAY_WINDOW);
  const batch = writeBatch(to);
  let waiting = false;
  to.on("drain", () => {
    if (!waiting) return;
    waiting = false;
    from.resume();
  });
  from.on("data", (data: Buffer) => {
    if (!relaying()) return;
    try {
      observe(data);
    } catch {
      // Recording never stops the relay (the recorder itself reports its failures).
    }
    if (!to.writable) return;
    batch?.cork();
    let passed = true;
    if (transform) {
      let parts: Buffer[] = [];
      try {
        parts = transform(data);
      } catch {
        // Fail closed: nothing the filter could not judge goes on.
      }
      for (const part of parts) passed = to.write(part) && passed;
    } else {
      passed = to.write(data);
    }
    if (passed) {
      window?.grant();
    } else if (!waiting) {
      waiting = true;
      from.pause();
    }
  });
}

/**
 * Byte counts summed over one turn of the event loop and handed on once: `session.countBytes` updates a
 * labelled metric (~1% of a transfer's CPU when called per 32 KiB chunk, and one read carries two). The
 * sum goes out on process.nextTick, before any I/O or timer of a later turn, so before the session ends.
 */
export function countPerTick(count: (bytes: number) => void): (bytes: number) => void {
  let pending = 0;
  const flush = () => {
    const bytes = pending;
    pending = 0;
    count(bytes);
  };
  return (bytes) => {
    if (bytes <= 0) return;
    if (pending === 0) process.nextTick(flush);
    pending += bytes;
  };
}

/**
 * Packets written to one destination during one turn of the event loop leave in one socket write: the
 * destination connection's socket is corked at the first chunk and uncorked once the turn's work is done
 * (process.nextTick), so nothing is held past the current tick. One read from the source's socket
 * (up to 64 KiB) carries up to two 32 KiB packets: they now cost one write system call, not two.
 * With this batching the sockets run without Nagle's algorithm (setNoDelay), which would otherwise hold
 * the tail of a batch until the peer acknowledges the previous segment.
 */
export function writeBatch(to: Writable): { cork(): void } | undefined {
  const socket = (to as unknown as { _client?: { _sock?: Writable } })._client?._sock;
  if (!socket || typeof socket.cork !== "function" || typeof socket.uncork !== "function") return undefined;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  return {
    cork() {
      if (corked) return;
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    },
  };
}

/**
 * How much one relayed channel direction lets its sender send ahead. ssh2 keeps 2 MiB (topped up at
 * half); OpenSSH's session channels keep 2 MiB topped up every 96 KiB. 4 MiB topped up every 1 MiB keeps
 * at least 3 MiB open. ssh2 cannot take packets over 35,000 bytes, so the packet size stays 32 KiB (what
 * OpenSSH uses for sessions too).
 */
const RELAY_WINDOW = 4 * 1024 * 1024;

/** What relayStream uses of an ssh2 channel (checked at run time; a stream without them is relayed as is). */
interface ChannelInternals {
  incoming?: { window: number };
  outgoing?: { id: number; state: string };
  _client?: { _protocol?: { channelWindowAdjust?(id: number, amount: number): void } };
}

/**
 * Grants the sender of an ssh2 channel more window (SSH_MSG_CHANNEL_WINDOW_ADJUST, RFC 4254 §5.2) the way
 * ssh2 does itself (its count first, then the message), up to `size`, once a quarter is used. ssh2 only
 * adjusts while its count is at or below 1 MiB and never above 2 MiB, so the two never disagree on the
 * count: if ssh2's internals ever change shape, the channel keeps ssh2's own window.
 */
function channelWindow(stream: Readable, size: number): { grant(): void } | undefined {
  const channel = stream as unknown as ChannelInternals;
  const { incoming, outgoing } = channel;
  const protocol = channel._client?._protocol;
  if (
    typeof incoming?.window !== "number" ||
    typeof outgoing?.id !== "number" ||
    typeof protocol?.channelWindowAdjust !== "function"
  ) {
    return undefined;
  }
  return {
    grant() {
      const missing = size - incoming.window;
      if (missing < size / 4 || outgoing.state === "closed") return;
      incoming.window += missing;
      protocol.channelWindowAdjust!(outgoing.id, missing);
    },
  };
}

function ptyOptions(info: PseudoTtyInfo) {
  return {
    term: info.term,
    cols: info.cols,
    rows: info.rows,
    width: info.width,
    height: info.height,
    modes: info.modes,
  };
}

// --- scp (the legacy rcp protocol: `scp -O`, or OpenSSH before 9.0) ------------------------------

/**
 * `scp -t PATH` (the client uploads to PATH) or `scp -f PATH` (the client downloads PATH), exactly as
 * an scp client sends it, or undefined. Read strictly, because an scp exec's bytes are counted, not
 * recorded: anything a shell could read as more than one plain scp command (an operator or expansion
 * in any word, a program word that merely ends in `/scp`) is an exec like any other, recorded whole.
 * The program is `scp` or an absolute path to it; the options are `-` and letters or digits, one of
 * them `t` or `f`; the path is one bare word, or one single-quoted string kept as written.
 */
export function parseScpCommand(command: string): { direction: "upload" | "download"; path: string } | undefined {
  const match = SCP_COMMAND.exec(command);
  if (!match) return undefined;
  const options = match[1]!.split(/[ \t]+/).filter((word) => word.length > 0);
  let direction: "upload" | "download" | undefined;
  for (const option of options) {
    if (option.includes("t")) direction = "upload";
    if (option.includes("f")) direction = "download";
  }
  if (!direction) return undefined;
  const path = match[2] ?? match[3]!;
  if (path.length === 0 || (match[3] !== undefined && SHELL_SYNTAX.test(path))) return undefined;
  return { direction, path };
}

/**
 * scp, its options (with an optional `--`), then one path: bare (group 3) or in single quotes with
 * no quote inside (group 2). Blanks are spaces and tabs only; a line break is a second command.
 */
const SCP_COMMAND =
  /^[ \t]*(?:\/[A-Za-z0-9_./-]*\/)?scp((?:[ \t]+-[A-Za-z0-9]+)+)(?:[ \t]+--)?[ \t]+(?:'([^'\n\r]*)'|([^\s']+))[ \t]*$/;

/** Characters that make a command line more than one plain command for the remote shell. */
const SHELL_SYNTAX = /[;&|`$<>(){}\\\n\r*?[\]!#~"']/;

// --- rsync (`rsync -e ssh`, which runs `rsync --server …` on the target) ---------------------------

/**
 * The command an rsync client runs on the target through ssh: `rsync --server [--sender] <options> .
 * <path>…` (`--sender`: the target sends, a download). Only what a real client sends is taken, and
 * nothing that could make the target's rsync run a program: no shell syntax in any word (so escaped
 * or quoted paths are not taken either), `e` only as the `e.<capabilities>` tail of a short-option
 * group, no `M`, and none of the long options (nor a prefix of one) that start a daemon, read its
 * configuration, run a remote shell or read a file list from elsewhere. Anything else is an exec like
 * any other, recorded whole.
 */
export function parseRsyncCommand(
  command: string,
): { direction: "upload" | "download"; paths: string[]; options: string[] } | undefined {
  // The whole line: a newline between two words is a second command for the remote shell.
  if (SHELL_SYNTAX.test(command)) return undefined;
  const words = command.trim().split(/\s+/);
  if (words[0] === undefined || !/(^|\/)rsync$/.test(words[0]) || words[1] !== "--server") return undefined;
  let direction: "upload" | "download" = "upload";
  const options: string[] = [];
  let index = 2;
  for (; index < words.length && words[index] !== "."; index++) {
    const word = words[index]!;
    if (word === "--sender") {
      direction = "download";
      continue;
    }
    if (word.startsWith("--")) {
      const name = word.slice(2).split("=", 1)[0]!;
      if (name.length === 0 || RSYNC_REFUSED.some((refused) => refused.startsWith(name))) return undefined;
      options.push(word);
      // `--link-dest DIR`, `--temp-dir DIR`: the value is the next word.
      if (!word.includes("=") && RSYNC_VALUE_WORD.has(name)) {
        const value = words[++index];
        if (value === undefined || value.startsWith("-") || value === ".") return undefined;
        options.push(value);
      }
      continue;
    }
    // Letters but `e` (a remote shell) and `M` (a remote option), then at most the `e.<capabilities>` tail.
    if (!/^-[A-LN-Za-df-z]*(e\.[A-Za-z]*)?$/.test(word) || word === "-") return undefined;
    options.push(word);
  }
  const paths = words.slice(index + 1);
  if (words[index] !== "." || paths.length === 0) return undefined;
  return { direction, paths, options };
}

/**
 * rsync long options a proxied rsync must not carry, refused by any prefix too (popt may take one):
 * daemon mode and its parameters and configuration (`pre-xfer exec` runs programs), remote shells, and
 * file lists or early input read from elsewhere.
 */
const RSYNC_REFUSED = [
  "daemon",
  "dparam",
  "config",
  "rsh",
  "rsync-path",
  "remote-option",
  "early-input",
  "files-from",
  "copy-as",
  "address",
  "port",
  "sockopts",
  "connect-program",
];
/** rsync long options a client sends with their value as the next word. */
const RSYNC_VALUE_WORD = new Set(["link-dest", "compare-dest", "copy-dest", "temp-dir", "partial-dir", "backup-dir"]);

/**
 * Counts the file bytes of the sending side of an scp stream: control lines ("C0644 12 name\n",
 * "D…", "E", "T…"), then for C the file's bytes and one status byte.
 */
export function createScpCounter(): { feed(data: Buffer): void; bytes(): number } {
  let line = 0;
  let header = "";
  let remaining = 0;
  let skipStatus = false;
  let total = 0;
  return {
    feed(data) {
      let offset = 0;
      while (offset < data.length) {
        if (remaining > 0) {
          const take = Math.min(remaining, data.length - offset);
          remaining -= take;
          total += take;
          offset += take;
          if (remaining === 0) skipStatus = true;
          continue;
        }
        if (skipStatus) {
          skipStatus = false;
          offset++;
          continue;
        }
        const byte = data[offset++]!;
        if (byte !== 0x0a) {
          if (line++ < 4096) header += String.fromCharCode(byte);
          continue;
        }
        const file = /^C[0-7]{4} (\d+) /.exec(header);
        line = 0;
        header = "";
        if (file) {
          remaining = Number(file[1]);
          if (remaining === 0) skipStatus = true;
        }
      }
    },
    bytes: () => total,
  };
}

// --- helpers -------------------------------------------------------------------------------------

function endOf(signal: AbortSignal): SessionEnd {
  const reason = signal.reason as Partial<SessionEnd> | undefined;
  return {
    reason: reason?.reason ?? "killed",
    message: typeof reason?.message === "string" ? reason.message : "the session was ended.",
  };
}

async function endSession(
  session: BrokeredSession,
  reason: EndReason,
  detail: string | undefined,
  log: Logger,
): Promise<void> {
  try {
    await session.end(reason, detail);
    log.info({ reason }, "ssh session ended");
  } catch (error) {
    log.error({ err: error }, "ending the ssh session failed");
  }
}

function safely(work: () => unknown): void {
  try {
    work();
  } catch {
    // A channel or connection already gone: nothing left to do.
  }
}
