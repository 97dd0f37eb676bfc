/**
 * Socket-side helpers of the MySQL proxy: whole packets during a handshake (with a deadline and a size
 * cap), the upstream sign-in, KILL QUERY on a fresh connection (what ends a running statement), and the
 * stream a TLS layer starts on when the ClientHello came in behind the SSLRequest.
 */
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import type { UpstreamMysql } from "../../modules/sessions/sessions.types.js";
import { tlsHandshake } from "../pg/upstream-tls.js";
import { connectTcp } from "../pg/wire-stream.js";
import {
  CACHING_SHA2_PASSWORD,
  CLIENT,
  COM,
  MAX_PAYLOAD,
  MysqlWireError,
  NATIVE_PASSWORD,
  PROXY_CAPABILITIES,
  encodeHandshakeResponse,
  encodeSslRequest,
  packet,
  parseAuthSwitch,
  parseErr,
  parseGreeting,
} from "./mysql-wire.js";
import { cachingSha2Scramble, nativePasswordScramble, rsaEncryptedPassword } from "./mysql-scramble.js";

/** Handshake packets are small; a longer one before sign-in ends the connection. */
export const MAX_HANDSHAKE_PACKET = 64 * 1024;
/** utf8mb4_general_ci: what the greeting offers until the client names its own. */
export const UTF8MB4 = 45;

/** The upstream could not be signed in to; the message is for the client (never the password). */
export class UpstreamFailure extends Error {}

/** Whole packets during a handshake, with a deadline; the bytes after them for the relay. */
export interface PacketInbox {
  next(timeoutMs: number): Promise<{ seq: number; payload: Buffer }>;
  /** Stops reading; returns the bytes received and not yet taken. */
  detach(): Buffer;
}

export function createPacketInbox(socket: Socket, maxLength: number): PacketInbox {
  let buffer: Buffer = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  let failure: Error | null = null;
  /** More than two whole packets waiting unread: the socket is paused until they are taken (or for good). */
  const highWater = 2 * (4 + maxLength);
  const onData = (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    if (buffer.length > highWater) socket.pause();
    waiter?.();
  };
  const onEnd = () => {
    failure ??= new Error("the connection closed");
    waiter?.();
  };
  socket.on("data", onData);
  socket.on("close", onEnd);
  socket.on("end", onEnd);
  const take = (): { seq: number; payload: Buffer } | null => {
    if (buffer.length < 4) return null;
    const length = buffer.readUIntLE(0, 3);
    if (length > maxLength) throw new MysqlWireError(`a ${length}-byte packet during the handshake`);
    if (buffer.length < 4 + length) return null;
    const payload = buffer.subarray(4, 4 + length);
    const seq = buffer[3]!;
    buffer = buffer.subarray(4 + length);
    if (buffer.length <= highWater && socket.isPaused()) socket.resume();
    return { seq, payload };
  };
  return {
    async next(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = take();
        if (got) return got;
        if (failure) throw failure;
        const wait = deadline - Date.now();
        if (wait <= 0) throw new Error("timed out");
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          waiter = () => {
            clearTimeout(timer);
            waiter = null;
            resolve();
          };
        });
      }
    },
    detach() {
      socket.off("data", onData);
      socket.off("close", onEnd);
      socket.off("end", onEnd);
      const rest = buffer;
      buffer = Buffer.alloc(0);
      return rest;
    },
  };
}

/**
 * Signs in upstream with the gate's login: the client's capabilities as negotiated with the proxy (less
 * what the proxy keeps to itself), by mysql_native_password or caching_sha2_password (fast path, or the
 * full one with the server's RSA key). Returns the server's OK payload, the bytes after it and the
 * server's connection id (for KILL QUERY), and the socket to relay on (a TLS socket over `socket` when
 * the target asks for TLS).
 *
 * TLS (`target.tls`): after the greeting the SSLRequest (32 bytes with CLIENT_SSL), then the handshake
 * on the same socket, checked as the target's sslmode says; the sign-in goes inside. A server that does
 * not offer SSL, or sends anything before the handshake, is refused before anything derived from the
 * password is sent.
 */
export async function signInUpstream(
  socket: Socket,
  target: UpstreamMysql,
  hello: { capabilities: number; maxPacketSize: number; charset: number },
  options: { timeoutMs: number; loadDataLocal: boolean; database: string | null },
): Promise<{ ok: Buffer; rest: Buffer; connectionId: number; socket: Socket }> {
  const where = `${target.host}:${target.port}`;
  let inbox = createPacketInbox(socket, MAX_HANDSHAKE_PACKET);
  const deadline = Date.now() + options.timeoutMs;
  const remaining = () => Math.max(1, deadline - Date.now());
  const greeting = await inbox.next(remaining());
  const server = parseGreeting(greeting.payload);
  let seq = greeting.seq + 1;
  const tls = target.tls;
  let channel: Socket = socket;
  if (tls !== null) {
    if ((server.capabilities & CLIENT.SSL) === 0)
      throw new UpstreamFailure(
        `the database at ${where} does not offer TLS, and its target requires it (sslmode=${tls.mode}); nothing was sent`,
      );
    // Bytes after the greeting, before TLS, could be an attacker's in clear: refused.
    if (inbox.detach().length > 0)
      throw new UpstreamFailure(`the database at ${where} sent more than its greeting before TLS`);
    socket.write(packet(seq, encodeSslRequest(CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION, hello.charset)));
    seq += 1;
    try {
      channel = await tlsHandshake(socket, target.host, tls, remaining());
    } catch (error) {
      throw new UpstreamFailure(
        `TLS to the database at ${where} failed: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    // A TLS error ends the connection: the raw socket's close tells its owner.
    channel.on("error", () => {});
    inbox = createPacketInbox(channel, MAX_HANDSHAKE_PACKET);
  }
  let capabilities =
    (hello.capabilities & PROXY_CAPABILITIES & server.capabilities) |
    CLIENT.PROTOCOL_41 |
    CLIENT.SECURE_CONNECTION |
    CLIENT.PLUGIN_AUTH |
    (server.capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA);
  capabilities &= ~(CLIENT.CONNECT_ATTRS | CLIENT.SSL | CLIENT.CONNECT_WITH_DB);
  if (tls !== null) capabilities |= CLIENT.SSL;
  // The server itself refuses LOAD DATA LOCAL unless the policy allows it (the relay refuses it too).
  if (!options.loadDataLocal) capabilities &= ~CLIENT.LOCAL_FILES;
  if (options.database !== null) capabilities |= CLIENT.CONNECT_WITH_DB;
  let plugin = server.authPlugin === CACHING_SHA2_PASSWORD ? CACHING_SHA2_PASSWORD : NATIVE_PASSWORD;
  let nonce = server.scramble;
  const answerFor = (name: string, data: Buffer): Buffer => {
    if (name === NATIVE_PASSWORD) return nativePasswordScramble(target.password, data);
    if (name === CACHING_SHA2_PASSWORD) return cachingSha2Scramble(target.password, data);
    throw new UpstreamFailure(
      `the database at ${where} asks for the ${name.slice(0, 64)} sign-in; Stint signs in there by mysql_native_password or caching_sha2_password`,
    );
  };
  channel.write(
    packet(
      seq,
      encodeHandshakeResponse({
        capabilities,
        maxPacketSize: hello.maxPacketSize || MAX_PAYLOAD,
        charset: hello.charset,
        user: target.user,
        authResponse: answerFor(plugin, nonce),
        database: options.database,
        authPlugin: plugin,
      }),
    ),
  );
  for (;;) {
    const reply = await inbox.next(remaining());
    seq = reply.seq + 1;
    const first = reply.payload[0];
    if (first === 0x00)
      return { ok: reply.payload, rest: inbox.detach(), connectionId: server.connectionId, socket: channel };
    if (first === 0xff) {
      const err = parseErr(reply.payload);
      throw new UpstreamFailure(`the database at ${where} refused the session: ${err.message}`);
    }
    if (first === 0xfe) {
      const change = parseAuthSwitch(reply.payload);
      plugin = change.plugin;
      nonce = change.data;
      channel.write(packet(seq, answerFor(plugin, nonce)));
      continue;
    }
    if (first === 0x01 && plugin === CACHING_SHA2_PASSWORD) {
      const data = reply.payload.subarray(1);
      if (data.length === 1 && data[0] === 0x03) continue; // fast path: the OK follows
      if (data.length === 1 && data[0] === 0x04) {
        // The full path hands the password to whoever holds the key the server sends: only to a verified server.
        if (tls === null || tls.mode === "require")
          throw new UpstreamFailure(
            `the database at ${where} asks for the password itself (caching_sha2_password's full authentication) over a connection that does not verify the server (sslmode=${tls?.mode ?? "disable"}); Stint sends it only with verify-ca or verify-full`,
          );
        channel.write(packet(seq, Buffer.from([0x02]))); // full authentication: the server's public key, please
        continue;
      }
      if (data.toString("latin1").includes("BEGIN PUBLIC KEY")) {
        channel.write(packet(seq, rsaEncryptedPassword(target.password, nonce, data.toString("latin1"))));
        continue;
      }
    }
    throw new UpstreamFailure(`unexpected sign-in packet from the database at ${where}`);
  }
}

/** KILL QUERY on a fresh connection with the same login: a statement running when its session is ended stops. */
export async function killUpstreamQuery(target: UpstreamMysql, connectionId: number, timeoutMs: number): Promise<void> {
  const socket = await connectTcp(target.address, target.port, timeoutMs);
  socket.on("error", () => {});
  try {
    const { socket: channel } = await signInUpstream(
      socket,
      target,
      { capabilities: PROXY_CAPABILITIES, maxPacketSize: MAX_PAYLOAD, charset: UTF8MB4 },
      { timeoutMs, loadDataLocal: false, database: null },
    );
    const inbox = createPacketInbox(channel, MAX_HANDSHAKE_PACKET);
    channel.write(packet(0, Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(`KILL QUERY ${connectionId}`)])));
    await inbox.next(timeoutMs);
    channel.end(packet(0, Buffer.from([COM.QUIT])));
  } finally {
    setTimeout(() => socket.destroy(), 1_000).unref();
  }
}

/** `raw` as a stream that first yields `prefix` (bytes already read from it), for a TLS layer on top. */
export function withPrefix(raw: Socket, prefix: Buffer): Duplex {
  const stream = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Buffer, _encoding, callback) => void raw.write(chunk, callback),
    final: (callback) => void raw.end(callback),
    destroy: (error, callback) => {
      raw.destroy(error ?? undefined);
      callback(error);
    },
  });
  stream.push(prefix);
  raw.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) raw.pause();
  });
  raw.on("end", () => stream.push(null));
  raw.on("close", () => stream.destroy());
  return stream;
}
