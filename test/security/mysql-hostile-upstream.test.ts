/**
 * Class: a hostile MySQL server (or whoever answers at its address on a path the target does not
 * verify) taking the session login's password or a client's files through the MySQL proxy (the
 * PostgreSQL proxy's finding 2, held to the same here).
 *
 * - caching_sha2_password's full authentication sends the password under an RSA key the server
 *   itself sends: over plain TCP (sslmode=disable) or TLS that does not check the server
 *   (sslmode=require), the key is the answerer's and so is the password. Refused there.
 * - An auth switch to mysql_clear_password, mysql_old_password, sha256_password or dialog is refused
 *   before anything derived from the password leaves.
 * - A LOAD DATA LOCAL request (0xFB) the server sends while no command waits would be read by the
 *   client's next command as its answer, and the client would send the file: the session ends.
 * Real sockets; the servers are scripted listeners in this file that keep every byte they hear.
 */
import { constants, generateKeyPairSync, privateDecrypt } from "node:crypto";
import { connect, createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import type { BrokeredSession, UpstreamMysql } from "../../src/modules/sessions/sessions.types.js";
import { createMysqlProxy } from "../../src/proxies/mysql/mysql-proxy.js";
import { UpstreamFailure, signInUpstream } from "../../src/proxies/mysql/mysql-upstream.js";
import {
  CACHING_SHA2_PASSWORD,
  CLEAR_PASSWORD,
  CLIENT,
  COM,
  NATIVE_PASSWORD,
  PROXY_CAPABILITIES,
  encodeAuthSwitch,
  encodeGreeting,
  encodeHandshakeResponse,
  packet,
} from "../../src/proxies/mysql/mysql-wire.js";

const PASSWORD = "upstream-secret-41";
const NONCE = Buffer.from("abcdefghij0123456789");
const OK = Buffer.from([0, 0, 0, 2, 0, 0, 0]);
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PEM = Buffer.from(publicKey.export({ type: "spki", format: "pem" }));

let servers: Server[] = [];
afterEach(() => {
  for (const s of servers) s.close();
  servers = [];
});

/**
 * A server greeting with `plugin`; `answer(n, payload)` gives its reply to the client's n-th packet
 * (null: none; several packets in one write). Every payload it hears is kept.
 */
async function hostile(
  plugin: string,
  answer: (n: number, payload: Buffer) => Buffer | Buffer[] | null,
): Promise<{ port: number; heard: Buffer[] }> {
  const heard: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 4 && buffer.length >= 4 + buffer.readUIntLE(0, 3)) {
        const end = 4 + buffer.readUIntLE(0, 3);
        const seq = buffer[3]!;
        heard.push(Buffer.from(buffer.subarray(4, end)));
        buffer = buffer.subarray(end);
        const reply = answer(heard.length, heard.at(-1)!);
        if (reply === null) continue;
        const replies = Array.isArray(reply) ? reply : [reply];
        socket.write(Buffer.concat(replies.map((payload, i) => packet(seq + 1 + i, payload))));
      }
    });
    socket.write(
      packet(
        0,
        encodeGreeting({
          serverVersion: "8.4.0-hostile",
          connectionId: 9,
          scramble: NONCE,
          capabilities: PROXY_CAPABILITIES,
          charset: 45,
          status: 2,
          authPlugin: plugin,
        }),
      ),
    );
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as { port: number }).port, heard };
}

const upstream = (port: number): UpstreamMysql => ({
  kind: "mysql",
  host: "127.0.0.1",
  address: "127.0.0.1",
  port,
  database: null,
  user: "stint_app",
  password: PASSWORD,
  tls: null,
});

async function signIn(port: number): Promise<unknown> {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => undefined);
  await new Promise((resolve) => socket.once("connect", resolve));
  try {
    await signInUpstream(
      socket,
      upstream(port),
      { capabilities: PROXY_CAPABILITIES, maxPacketSize: 1 << 24, charset: 45 },
      { timeoutMs: 5_000, loadDataLocal: false, database: null },
    );
    return null;
  } catch (error) {
    return error;
  } finally {
    socket.destroy();
  }
}

/** Whether any payload the server heard is, or decrypts under its key to, the password. */
function recovered(heard: Buffer[]): boolean {
  return heard.some((payload) => {
    if (payload.includes(Buffer.from(PASSWORD))) return true;
    try {
      const plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, payload);
      return Buffer.from(plain.map((b, i) => b ^ NONCE[i % NONCE.length]!)).includes(Buffer.from(PASSWORD));
    } catch {
      return false;
    }
  });
}

describe("MySQL proxy: a hostile server's sign-in", () => {
  it("caching_sha2_password's full authentication with the server's own key, without a verified server: refused", async () => {
    const { port, heard } = await hostile(CACHING_SHA2_PASSWORD, (n) =>
      n === 1 ? Buffer.from([1, 4]) : n === 2 ? Buffer.concat([Buffer.from([1]), PEM]) : OK,
    );
    const error = await signIn(port);
    expect(error).toBeInstanceOf(UpstreamFailure);
    expect(String(error)).toMatch(/verify-ca or verify-full/);
    expect(recovered(heard)).toBe(false);
    expect(heard).toHaveLength(1); // the scramble only: not even the request for its key
  });

  it.each([CLEAR_PASSWORD, "mysql_old_password", "sha256_password", "dialog"])(
    "an auth switch to %s is refused before anything derived from the password leaves",
    async (weaker) => {
      const { port, heard } = await hostile(NATIVE_PASSWORD, (n) =>
        n === 1 ? encodeAuthSwitch(weaker, NONCE.subarray(0, 8)) : OK,
      );
      const error = await signIn(port);
      expect(error).toBeInstanceOf(UpstreamFailure);
      expect(String(error)).toContain(weaker);
      expect(recovered(heard)).toBe(false);
      expect(heard).toHaveLength(1);
    },
  );
});

describe("MySQL proxy: a file request the client did not wait for", () => {
  it("an unsolicited LOAD DATA LOCAL request never reaches the client: the session ends", async () => {
    const request = Buffer.concat([Buffer.from([0xfb]), Buffer.from("/home/ann/.ssh/id_ed25519")]);
    // Signs the proxy in and, in the same write, asks for a file before the client has sent anything.
    const { port: upstreamPort } = await hostile(NATIVE_PASSWORD, (n) => (n === 1 ? [OK, request] : OK));
    const ended: string[] = [];
    const proxy = createMysqlProxy({
      logger: createLogger({ level: "silent" }),
      port: 0,
      handshakeTimeoutMs: 5_000,
      connectTimeoutMs: 5_000,
      gate: {
        async openMysql() {
          const session: BrokeredSession<UpstreamMysql> = {
            id: "s-hostile",
            user: "ann",
            role: "app-maria",
            target: "maria",
            policy: { recording: "optional", portForwarding: false, queryParameters: false },
            upstream: upstream(upstreamPort),
            recorder: { query: () => undefined } as never,
            signal: new AbortController().signal,
            countBytes: () => undefined,
            end: async (reason) => void ended.push(reason),
          };
          return session;
        },
      },
    });
    const { port } = await proxy.listen();
    try {
      const client = connect({ host: "127.0.0.1", port });
      client.on("error", () => undefined);
      const received: Buffer[] = [];
      let packets = 0;
      let signedIn: () => void = () => {};
      const ok = new Promise<void>((resolve) => (signedIn = resolve));
      const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
      client.on("data", (chunk: Buffer) => {
        received.push(chunk);
        packets += 1;
        if (packets === 1) {
          client.write(
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
        } else if (chunk.includes(OK)) signedIn();
      });
      await ok;
      // The client's next command: with the request relayed, it would take it as the answer and send the file.
      client.write(packet(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from("SELECT 1")])));
      const answered = new Promise<void>((resolve) => client.once("data", () => resolve()));
      await Promise.race([closed, answered]);
      expect(Buffer.concat(received).includes(request)).toBe(false);
      await closed;
      expect(ended).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });
});
