/**
 * The SSH session proxy: an SSH server that lets a user in with a Stint user certificate only, asks
 * the sessions module (SessionGate) for a brokered session, connects to the target with the vaulted
 * credential over a host-key-pinned SSH connection, and relays session channels (shell, exec, scp,
 * sftp and other subsystems) and, when the policy allows, port forwards, recording what happens.
 * Invariants are in README.md next to this file.
 */
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { Counter, Gauge, type Registry } from "prom-client";
import { Duplex } from "node:stream";
import ssh2 from "ssh2";
import type { Logger } from "../../lib/logger.js";
import type { SessionGate } from "../../modules/sessions/sessions.types.js";
import { DEFAULT_MAX_FORWARDS, DEFAULT_MAX_SESSIONS } from "./channel-limits.js";
import { DEFAULT_MAX_AUTH_TRIES } from "./ssh-auth.js";
import { proxyConnection, type ProxiedConnection } from "./ssh-connection.js";

// The proxy's pieces, importable from here as before the split.
export { createScpCounter, parseRsyncCommand, parseScpCommand } from "./exec-commands.js";
export { userauthSignatureValid } from "./ssh-auth.js";
export { countPerTick, writeBatch } from "./ssh-relay.js";
export { hostKeyFingerprint } from "./ssh-upstream.js";

// ssh2 is CommonJS: Node's ESM loader cannot import its classes by name.
const { Server } = ssh2;

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
  /** Session channels one connection holds open at once (default 10, OpenSSH's MaxSessions). */
  maxSessions?: number;
  /** Forwarded connections one connection holds open at once, and remote-forward listeners apart (default 32). */
  maxForwards?: number;
  /** Userauth refusals one connection gets; the last closes it (default 6, OpenSSH's MaxAuthTries). */
  maxAuthTries?: number;
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

export function createSshProxy(deps: SshProxyDeps): SshProxy {
  const { gate, logger } = deps;
  const host = deps.host ?? "127.0.0.1";
  const connections = new Set<ProxiedConnection>();
  let shuttingDown = false;
  const handshakeTimeoutMs = deps.handshakeTimeoutMs ?? 30_000;
  const maxConnections = deps.maxConnections ?? 1000;
  const maxPerAddress = deps.maxConnectionsPerAddress ?? 50;
  const limits = {
    sessions: deps.maxSessions ?? DEFAULT_MAX_SESSIONS,
    forwards: deps.maxForwards ?? DEFAULT_MAX_FORWARDS,
  };
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
        limits,
        maxAuthTries: deps.maxAuthTries ?? DEFAULT_MAX_AUTH_TRIES,
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
