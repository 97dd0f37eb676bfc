/**
 * Class: a client exhausting the MySQL proxy's memory before its session relays (trust review).
 *
 * Between the client's sign-in and the relay's start the proxy waits on the gate and on the upstream
 * sign-in (up to the connect timeout, longer with a slow server). Bytes the client sends meanwhile are
 * held for the relay (a pipelined first query): held without a bound, a client flooding while a
 * scripted server stays silent would have the proxy (also the API server) keep it all. The proxy holds
 * at most a bound and then stops reading the client (TCP backpressure), both while the gate decides
 * (the handshake inbox) and while the upstream signs in. And a client silent before sign-in, or one
 * byte at a time, is cut off at the handshake deadline. Real sockets both sides.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import type { BrokeredSession, UpstreamMysql } from "../../src/modules/sessions/sessions.types.js";
import { createMysqlProxy, type MysqlProxy } from "../../src/proxies/mysql/mysql-proxy.js";
import {
  CLEAR_PASSWORD,
  CLIENT,
  COM,
  PROXY_CAPABILITIES,
  encodeHandshakeResponse,
  packet,
} from "../../src/proxies/mysql/mysql-wire.js";

const MiB = 1024 * 1024;

describe("MySQL proxy: memory held for a client before its session relays", () => {
  let silent: Server;
  let silentPort: number;
  const upstreams: Socket[] = [];
  let proxy: MysqlProxy;
  let port: number;
  /** The gate answers when this resolves (a slow gate: the handshake inbox holds the client's bytes). */
  let gateOpen: Promise<void> = Promise.resolve();
  const ended: string[] = [];

  beforeAll(async () => {
    // A scripted server: accepts, reads nothing, says nothing (no greeting).
    silent = createServer((socket) => {
      socket.pause();
      socket.on("error", () => undefined);
      upstreams.push(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentPort = (silent.address() as { port: number }).port;
    proxy = createMysqlProxy({
      logger: createLogger({ level: "silent" }),
      port: 0,
      handshakeTimeoutMs: 1_500,
      connectTimeoutMs: 60_000,
      gate: {
        async openMysql(input) {
          await gateOpen;
          const upstream: UpstreamMysql = {
            kind: "mysql",
            host: "127.0.0.1",
            address: "127.0.0.1",
            port: silentPort,
            database: input.database,
            user: "app",
            password: "upstream-secret",
            tls: null,
          };
          const session: BrokeredSession<UpstreamMysql> = {
            id: `s-${ended.length}-${Math.random()}`,
            user: "ann",
            role: "app-maria",
            target: "maria",
            policy: { recording: "optional", portForwarding: false, queryParameters: false },
            upstream,
            recorder: { query: () => undefined } as never,
            signal: new AbortController().signal,
            countBytes: () => undefined,
            end: async (reason) => {
              ended.push(reason);
            },
          };
          return session;
        },
      },
    });
    port = (await proxy.listen()).port;
  });

  afterAll(async () => {
    await proxy?.close();
    for (const socket of upstreams) socket.destroy();
    await new Promise<void>((resolve) => silent?.close(() => resolve()));
  });

  /** Connects, reads the greeting, signs in with a token in clear; resolves with the socket. */
  async function signIn(): Promise<Socket> {
    const socket = connect({ host: "127.0.0.1", port });
    socket.on("error", () => undefined);
    await new Promise<void>((resolve) => socket.once("data", () => resolve()));
    socket.write(
      packet(
        1,
        encodeHandshakeResponse({
          capabilities: PROXY_CAPABILITIES & ~CLIENT.CONNECT_ATTRS,
          maxPacketSize: 1 << 24,
          charset: 45,
          user: "ann%app-maria",
          authResponse: Buffer.from("stint-token\0"),
          database: null,
          authPlugin: CLEAR_PASSWORD,
        }),
      ),
    );
    return socket;
  }

  /**
   * Writes up to `total` bytes of COM_QUERY packets; stops when the proxy stops reading (a drain that
   * does not come within a second). Returns what was written and how much the process's buffers grew.
   */
  async function flood(socket: Socket, total: number): Promise<{ written: number; grown: number }> {
    const body = Buffer.alloc(256 * 1024 - 4, 0x61);
    body[0] = COM.QUERY;
    const piece = packet(0, body);
    const before = process.memoryUsage().arrayBuffers;
    let written = 0;
    while (written < total && !socket.destroyed) {
      written += piece.length;
      if (!socket.write(piece)) {
        const drained = await Promise.race([
          new Promise<boolean>((resolve) => socket.once("drain", () => resolve(true))),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000)),
        ]);
        if (!drained) break;
      }
    }
    return { written, grown: process.memoryUsage().arrayBuffers - before };
  }

  it("while the upstream signs in (a silent server), the client is read up to the bound and then paused", async () => {
    const socket = await signIn();
    const { written, grown } = await flood(socket, 96 * MiB);
    // Unbounded, the proxy would read and keep all 96 MiB; held back, the flood stalls at the bound
    // plus the sockets' own buffers (generous margins, not timing).
    expect(written).toBeLessThan(64 * MiB);
    expect(grown).toBeLessThan(32 * MiB);
    socket.destroy();
  });

  it("while the gate decides, the handshake inbox pauses the client too", async () => {
    let open!: () => void;
    gateOpen = new Promise<void>((resolve) => (open = resolve));
    const socket = await signIn();
    try {
      const { written, grown } = await flood(socket, 96 * MiB);
      expect(written).toBeLessThan(64 * MiB);
      expect(grown).toBeLessThan(32 * MiB);
    } finally {
      open();
      gateOpen = Promise.resolve();
      socket.destroy();
    }
  });

  it("a client silent after the greeting, or sending one byte, is cut off at the handshake deadline", async () => {
    for (const send of [null, Buffer.from([0x01])]) {
      const socket = connect({ host: "127.0.0.1", port });
      socket.on("error", () => undefined);
      await new Promise<void>((resolve) => socket.once("data", () => resolve()));
      if (send !== null) socket.write(send);
      // Closed by the proxy (the deadline is 1.5 s; the test's own timeout is the only clock here).
      await new Promise<void>((resolve) => socket.once("close", () => resolve()));
      expect(socket.destroyed).toBe(true);
    }
  });
});
