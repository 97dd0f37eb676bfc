/**
 * `stint db proxy ROLE --port N`: a local listener that lets a local PostgreSQL client through to
 * Stint's PostgreSQL proxy. Loopback is shared by every user of the machine, so each client must first
 * give `localPassword` (the tunnel's own, drawn per run, never the Stint token); then the tunnel signs in
 * to the proxy as `user` ("alice%pg-read") with the Stint token from `password()` and relays bytes both
 * ways; the client sees the proxy's AuthenticationOk and everything after as the proxy sent it.
 */
import { once } from "node:events";
import { connect as tlsConnect } from "node:tls";
import { createServer, type AddressInfo, type Socket } from "node:net";
import type { Logger } from "../../lib/logger.js";
import { constantTimeEqual } from "../../lib/security.js";
import {
  encodeAuthenticationCleartextPassword,
  encodeErrorResponse,
  encodePasswordMessage,
  encodeSslRequest,
  encodeSslResponse,
  encodeStartupMessage,
  parseBackendMessage,
  parseStartupBody,
  type FrontendMessage,
} from "../../lib/pg-wire.js";
import { connectTcp, createFrameInbox, createFrameScanner, forward, frameBytes } from "./wire-stream.js";

export interface LocalTunnelOptions {
  listenHost?: string;
  /** 0: any free port. */
  listenPort: number;
  proxyHost: string;
  proxyPort: number;
  /** The Stint user and role, "alice%pg-read". */
  user: string;
  /** The Stint database token, asked for each new connection. */
  password: () => Promise<string>;
  /** What a local client must answer the tunnel's password request with (another local user does not know it). */
  localPassword: string;
  /**
   * The SHA-256 of the proxy's certificate ("AB:CD:…", as the server names it): the proxy must then offer TLS
   * and show that certificate, or the connection ends before the token is asked for. Absent: not checked.
   */
  proxyCertificateSha256?: string;
  /** Told each refusal of the proxy (PROXY_CERT_MISMATCH), a sentence for the user. */
  onProxyRefused?: (message: string) => void;
  connectTimeoutMs?: number;
  logger?: Logger;
}

export interface LocalTunnel {
  listen(): Promise<{ port: number }>;
  close(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 30_000;

function fatal(code: string, message: string): Buffer {
  return encodeErrorResponse({ severity: "FATAL", code, message });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** "AB:CD:…" or "abcd…": the same certificate hash either way. */
function sameHash(a: string, b: string): boolean {
  const plain = (hash: string) => hash.replace(/:/g, "").toLowerCase();
  return constantTimeEqual(plain(a), plain(b));
}

/** The proxy is not the one the Stint server names: nothing more goes to it. */
class ProxyRefused extends Error {}

export function createLocalTunnel(options: LocalTunnelOptions): LocalTunnel {
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  const proxyAddress = `${options.proxyHost}:${options.proxyPort}`;
  const sockets = new Set<Socket>();
  const track = <T extends Socket>(socket: T): T => {
    sockets.add(socket);
    socket.on("error", (error) => options.logger?.debug({ error: error.message }, "tunnel socket error"));
    socket.once("close", () => sockets.delete(socket));
    return socket;
  };

  const server = createServer((client) => {
    track(client).setNoDelay(true);
    handle(client).catch((error: unknown) => {
      options.logger?.warn({ error: errorMessage(error) }, "tunnel connection failed");
      client.destroy();
    });
  });

  /**
   * Asks the proxy for TLS and upgrades when it agrees (a proxy with a certificate accepts nothing
   * else). With `proxyCertificateSha256` the proxy must agree and show that certificate (pinned: no CA
   * involved); without it, like psql's sslmode=require, the certificate is not checked.
   */
  async function secureIfOffered(socket: Socket): Promise<Socket> {
    const pinned = options.proxyCertificateSha256;
    socket.write(encodeSslRequest());
    const [answer] = (await once(socket, "data")) as [Buffer];
    if (answer.length !== 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e))
      throw new Error("the Stint proxy answered the TLS request with something else");
    if (answer[0] === 0x4e) {
      if (pinned === undefined) return socket;
      throw new ProxyRefused(
        `PROXY_CERT_MISMATCH: the Stint proxy at ${proxyAddress} declined TLS, though the Stint server says it has a certificate; nothing was sent (someone may be answering for the proxy).`,
      );
    }
    const secure = track(tlsConnect({ socket, rejectUnauthorized: false }));
    await once(secure, "secureConnect");
    const shown = secure.getPeerCertificate().fingerprint256;
    if (pinned !== undefined && !(typeof shown === "string" && sameHash(shown, pinned))) {
      secure.destroy();
      throw new ProxyRefused(
        `PROXY_CERT_MISMATCH: the Stint proxy at ${proxyAddress} showed a certificate (SHA-256 ${shown || "none"}) other than the one the Stint server names (${pinned}); nothing was sent (someone may be answering for the proxy).`,
      );
    }
    return secure;
  }

  /** Asks the local client for the tunnel's password; a wrong or missing one ends the connection. */
  async function localClientKnowsPassword(
    client: Socket,
    inbox: ReturnType<typeof createFrameInbox>,
  ): Promise<boolean> {
    client.write(encodeAuthenticationCleartextPassword());
    const frame = await inbox.next(STARTUP_TIMEOUT_MS);
    const end = frame.type === "p" ? frame.body.indexOf(0) : -1;
    const given = end === frame.body.length - 1 ? frame.body.toString("utf8", 0, end) : null;
    if (given !== null && constantTimeEqual(given, options.localPassword)) return true;
    client.end(
      fatal("28P01", "password authentication failed for the Stint tunnel (its password is printed by stint db proxy)"),
    );
    return false;
  }

  async function handle(client: Socket): Promise<void> {
    const scanner = createFrameScanner({ startup: true });
    const inbox = createFrameInbox(client, scanner);
    let startup: Extract<FrontendMessage, { kind: "StartupMessage" }> | null = null;
    while (startup === null) {
      const frame = await inbox.next(STARTUP_TIMEOUT_MS);
      const message = parseStartupBody(frame.body);
      if (message.kind === "SSLRequest" || message.kind === "GSSENCRequest") {
        client.write(encodeSslResponse(false));
      } else if (message.kind === "CancelRequest") {
        // The proxy knows the key it handed out; pass the request on as is.
        const proxy = track(await connectTcp(options.proxyHost, options.proxyPort, timeoutMs));
        proxy.end(frameBytes(frame));
        client.destroy();
        return;
      } else if (message.kind === "StartupMessage") {
        startup = message;
      }
    }
    if (!(await localClientKnowsPassword(client, inbox))) return;

    let proxy: Socket;
    try {
      proxy = await secureIfOffered(track(await connectTcp(options.proxyHost, options.proxyPort, timeoutMs)));
    } catch (error) {
      if (error instanceof ProxyRefused) {
        options.onProxyRefused?.(error.message);
        client.end(fatal("08006", error.message));
      } else client.end(fatal("08006", `could not reach the Stint proxy at ${proxyAddress}: ${errorMessage(error)}`));
      return;
    }
    if (client.destroyed) {
      proxy.destroy();
      return;
    }
    const proxyScanner = createFrameScanner({ startup: false });
    const proxyInbox = createFrameInbox(proxy, proxyScanner);
    proxy.write(encodeStartupMessage({ ...startup.parameters, user: options.user }, startup.protocolVersion));
    try {
      for (;;) {
        const frame = await proxyInbox.next(timeoutMs);
        if (frame.type === "R") {
          if (parseBackendMessage("R", frame.body).kind !== "AuthenticationCleartextPassword") {
            throw new Error("the Stint proxy asked for an authentication method the tunnel does not answer");
          }
          let token: string;
          try {
            token = await options.password();
          } catch (error) {
            client.end(fatal("28000", `could not get a Stint database token: ${errorMessage(error)}`));
            proxy.destroy();
            return;
          }
          proxy.write(encodePasswordMessage(token));
          break;
        }
        // A refusal (or a notice) before the password request goes to the client as sent.
        client.write(frameBytes(frame));
        if (frame.type === "E") {
          client.end();
          proxy.end();
          return;
        }
      }
    } catch (error) {
      client.end(fatal("08006", `the Stint proxy at ${proxyAddress}: ${errorMessage(error)}`));
      proxy.destroy();
      return;
    }

    const fromProxy = proxyInbox.detach();
    const fromClient = inbox.detach();
    proxy.on("data", (chunk: Buffer) => forward(proxy, client, chunk));
    client.on("data", (chunk: Buffer) => forward(client, proxy, chunk));
    proxy.once("close", () => client.end());
    client.once("close", () => proxy.end());
    // Paused by their inboxes (more than 1 MiB held unread): read again, now that the bytes go on.
    if (client.isPaused()) client.resume();
    if (proxy.isPaused()) proxy.resume();
    for (const frame of fromClient) proxy.write(frameBytes(frame));
    const clientPartial = scanner.pending();
    if (clientPartial.length > 0) proxy.write(clientPartial);
    for (const frame of fromProxy) client.write(frameBytes(frame));
    const proxyPartial = proxyScanner.pending();
    if (proxyPartial.length > 0) client.write(proxyPartial);
    if (client.destroyed) proxy.end();
    if (proxy.destroyed) client.end();
  }

  return {
    listen: () =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.listenPort, options.listenHost ?? "127.0.0.1", () => {
          server.off("error", reject);
          resolve({ port: (server.address() as AddressInfo).port });
        });
      }),
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
