/**
 * The upstream sign-in against a scripted server (MariaDB here speaks mysql_native_password only):
 * caching_sha2_password's fast path and its full path with the server's RSA key, a switch to
 * mysql_native_password, and the sign-ins Stint refuses before anything derived from the password
 * leaves (mysql_clear_password, client_ed25519). The server checks every answer as MySQL would.
 */
import { constants, generateKeyPairSync, privateDecrypt } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import type { UpstreamMysql } from "../../modules/sessions/sessions.types.js";
import { createTestCa, type TestCa } from "../../testing/postgres-instance.js";
import { UpstreamFailure, signInUpstream, withPrefix } from "./mysql-upstream.js";
import {
  CACHING_SHA2_PASSWORD,
  CLIENT,
  NATIVE_PASSWORD,
  PROXY_CAPABILITIES,
  encodeAuthSwitch,
  encodeGreeting,
  packet,
  isSslRequest,
  parseHandshakeResponse,
} from "./mysql-wire.js";
import { cachingSha2Scramble, nativePasswordScramble } from "./mysql-scramble.js";

const PASSWORD = "upstream-secret-ü";
const NONCE = Buffer.from("abcdefghij0123456789");
const OK = Buffer.from([0, 0, 0, 2, 0, 0, 0]);
const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });

let server: Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

/**
 * A server that greets with `plugin` and then runs `script` on the client's packets; with `identity`,
 * it offers SSL and runs the script inside TLS after the client's SSLRequest.
 */
async function scripted(
  plugin: string,
  script: (
    read: () => Promise<{ seq: number; payload: Buffer }>,
    write: (seq: number, p: Buffer) => void,
  ) => Promise<void>,
  identity?: { cert: string; key: string },
): Promise<{ port: number; done: Promise<string[]>; packets: () => number }> {
  let received = 0;
  let settle: (log: string[]) => void = () => {};
  const done = new Promise<string[]>((resolve) => (settle = resolve));
  server = createServer((raw: Socket) => {
    const log: string[] = [];
    let buffer = Buffer.alloc(0);
    let wake: (() => void) | null = null;
    let socket: Socket = raw;
    const take = (c: Buffer) => {
      buffer = Buffer.concat([buffer, c]);
      wake?.();
    };
    if (identity === undefined) raw.on("data", take);
    else
      raw.once("data", (first: Buffer) => {
        socket = new TLSSocket(withPrefix(raw, first.subarray(36)) as Socket, { isServer: true, ...identity });
        socket.on("data", take);
      });
    const read = async () => {
      for (;;) {
        if (buffer.length >= 4 && buffer.length >= 4 + buffer.readUIntLE(0, 3)) {
          const length = buffer.readUIntLE(0, 3);
          const out = { seq: buffer[3]!, payload: buffer.subarray(4, 4 + length) };
          received += 1;
          buffer = buffer.subarray(4 + length);
          return out;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    };
    const write = (seq: number, p: Buffer) => socket.write(packet(seq, p));
    write(
      0,
      encodeGreeting({
        serverVersion: "8.4.0-test",
        connectionId: 77,
        scramble: NONCE,
        capabilities: PROXY_CAPABILITIES | (identity === undefined ? 0 : CLIENT.SSL),
        charset: 45,
        status: 2,
        authPlugin: plugin,
      }),
    );
    script(read, write).then(
      () => settle(log),
      (error: Error) => settle([error.message]),
    );
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { port: (server!.address() as { port: number }).port, done, packets: () => received };
}

const target = (port: number): UpstreamMysql => ({
  kind: "mysql",
  host: "db.test",
  address: "127.0.0.1",
  port,
  database: "shop",
  user: "stint_app",
  password: PASSWORD,
  tls: null,
});
const HELLO = { capabilities: PROXY_CAPABILITIES | CLIENT.CONNECT_WITH_DB, maxPacketSize: 1 << 24, charset: 45 };

async function signIn(port: number, loadDataLocal = false) {
  const socket = connect({ host: "127.0.0.1", port });
  await new Promise((resolve) => socket.once("connect", resolve));
  try {
    return await signInUpstream(socket, target(port), HELLO, { timeoutMs: 5_000, loadDataLocal, database: "shop" });
  } finally {
    socket.destroy();
  }
}

describe("upstream sign-in", () => {
  it("caching_sha2_password, fast path: the scramble, then OK; no local files, no attributes upstream", async () => {
    const { port, done } = await scripted(CACHING_SHA2_PASSWORD, async (read, write) => {
      const { seq, payload } = await read();
      const hello = parseHandshakeResponse(payload);
      expect(hello).toMatchObject({ user: "stint_app", database: "shop", authPlugin: CACHING_SHA2_PASSWORD });
      expect(hello.capabilities & CLIENT.LOCAL_FILES).toBe(0);
      expect(hello.capabilities & CLIENT.CONNECT_ATTRS).toBe(0);
      expect(hello.authResponse.equals(cachingSha2Scramble(PASSWORD, NONCE))).toBe(true);
      write(seq + 1, Buffer.from([1, 3]));
      write(seq + 2, OK);
    });
    const result = await signIn(port);
    expect(result.connectionId).toBe(77);
    expect(result.ok.equals(OK)).toBe(true);
    expect(await done).toEqual([]);
  });

  it("a switch to mysql_native_password with a new nonce is answered with that nonce", async () => {
    const fresh = Buffer.from("ZYXWVUTSRQponmlkjihg");
    const { port, done } = await scripted(CACHING_SHA2_PASSWORD, async (read, write) => {
      const first = await read();
      write(first.seq + 1, encodeAuthSwitch(NATIVE_PASSWORD, Buffer.concat([fresh, Buffer.from([0])])));
      const answer = await read();
      expect(answer.payload.equals(nativePasswordScramble(PASSWORD, fresh))).toBe(true);
      write(answer.seq + 1, OK);
    });
    await signIn(port);
    expect(await done).toEqual([]);
  });

  it.each(["mysql_clear_password", "client_ed25519", "sha256_password"])(
    "a switch to %s is refused before anything is sent",
    async (plugin) => {
      const { port, packets } = await scripted(NATIVE_PASSWORD, async (read, write) => {
        const first = await read();
        write(first.seq + 1, encodeAuthSwitch(plugin, Buffer.from("nonce-nonce-nonce-12\0")));
        await read();
      });
      const failure = await signIn(port).catch((error: unknown) => error);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(packets()).toBe(1); // the handshake response only
      expect(failure).toBeInstanceOf(UpstreamFailure);
      expect((failure as Error).message).toContain(plugin);
      expect((failure as Error).message).not.toContain(PASSWORD);
    },
  );

  it("the server's refusal is passed on without the password", async () => {
    const { port } = await scripted(NATIVE_PASSWORD, async (read, write) => {
      const first = await read();
      write(
        first.seq + 1,
        Buffer.concat([Buffer.from([0xff, 0x15, 0x04]), Buffer.from("#28000Access denied for user 'stint_app'")]),
      );
    });
    await expect(signIn(port)).rejects.toThrow(/refused the session: Access denied/);
  });

  it("LOAD DATA LOCAL allowed by policy: the local-file capability goes upstream", async () => {
    const { port, done } = await scripted(NATIVE_PASSWORD, async (read, write) => {
      const first = await read();
      expect(parseHandshakeResponse(first.payload).capabilities & CLIENT.LOCAL_FILES).toBe(CLIENT.LOCAL_FILES);
      write(first.seq + 1, OK);
    });
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise((resolve) => socket.once("connect", resolve));
    await signInUpstream(
      socket,
      target(port),
      { ...HELLO, capabilities: HELLO.capabilities | CLIENT.LOCAL_FILES },
      {
        timeoutMs: 5_000,
        loadDataLocal: true,
        database: null,
      },
    );
    socket.destroy();
    expect(await done).toEqual([]);
  });
});

/**
 * A server offering SSL: reads the SSLRequest in clear, then TLS with `cert`/`key`, then the sign-in
 * inside (mysql_native_password, checked). Reports what it saw in clear and inside.
 */
async function tlsServer(identity: { cert: string; key: string }): Promise<{
  port: number;
  seen: Promise<{ sslRequest: boolean; signedIn: boolean; error?: string }>;
}> {
  let report: (seen: { sslRequest: boolean; signedIn: boolean; error?: string }) => void = () => {};
  const seen = new Promise<{ sslRequest: boolean; signedIn: boolean; error?: string }>((resolve) => (report = resolve));
  server = createServer((socket: Socket) => {
    socket.write(
      packet(
        0,
        encodeGreeting({
          serverVersion: "11.8.0-MariaDB-test",
          connectionId: 78,
          scramble: NONCE,
          capabilities: PROXY_CAPABILITIES | CLIENT.SSL,
          charset: 45,
          status: 2,
          authPlugin: NATIVE_PASSWORD,
        }),
      ),
    );
    socket.once("data", (first: Buffer) => {
      const sslRequest = first.length >= 36 && first[3] === 1 && isSslRequest(first.subarray(4, 36));
      // The ClientHello may come in the same chunk: TLS reads it first (as the proxy does for its clients).
      const secure = new TLSSocket(withPrefix(socket, first.subarray(36)) as Socket, {
        isServer: true,
        cert: identity.cert,
        key: identity.key,
      });
      secure.on("error", (error: Error) => report({ sslRequest, signedIn: false, error: error.message }));
      socket.on("close", () => report({ sslRequest, signedIn: false, error: "closed" }));
      secure.once("data", (inside: Buffer) => {
        const hello = parseHandshakeResponse(inside.subarray(4));
        const signedIn =
          inside[3] === 2 &&
          (hello.capabilities & CLIENT.SSL) !== 0 &&
          hello.authResponse.equals(nativePasswordScramble(PASSWORD, NONCE));
        secure.write(packet(3, OK));
        report({ sslRequest, signedIn });
      });
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { port: (server!.address() as { port: number }).port, seen };
}

describe("upstream TLS (the target's sslmode)", () => {
  let ca: TestCa;
  let otherCa: TestCa;
  let identity: { cert: string; key: string };

  async function signInTls(port: number, tls: NonNullable<UpstreamMysql["tls"]>, host = "db.test") {
    const socket = connect({ host: "127.0.0.1", port });
    await new Promise((resolve) => socket.once("connect", resolve));
    try {
      const result = await signInUpstream(socket, { ...target(port), host, tls }, HELLO, {
        timeoutMs: 5_000,
        loadDataLocal: false,
        database: "shop",
      });
      return { encrypted: (result.socket as Socket & { encrypted?: boolean }).encrypted === true, ok: result.ok };
    } finally {
      socket.destroy();
    }
  }

  it("verify-full: SSLRequest after the greeting, then the sign-in inside TLS; the relay socket is the TLS one", async () => {
    ca ??= await createTestCa();
    identity ??= await ca.issue(["db.test"]);
    const { port, seen } = await tlsServer(identity);
    const result = await signInTls(port, { mode: "verify-full", ca: ca.cert });
    expect(result.encrypted).toBe(true);
    expect(result.ok.equals(OK)).toBe(true);
    expect(await seen).toEqual({ sslRequest: true, signedIn: true });
  }, 30_000);

  it("caching_sha2_password, full path, verify-full: the password under the server's RSA key (OAEP), never in clear", async () => {
    ca ??= await createTestCa();
    identity ??= await ca.issue(["db.test"]);
    const { port, done } = await scripted(
      CACHING_SHA2_PASSWORD,
      async (read, write) => {
        const first = await read();
        write(first.seq + 1, Buffer.from([1, 4]));
        const ask = await read();
        expect([...ask.payload]).toEqual([2]);
        write(
          ask.seq + 1,
          Buffer.concat([Buffer.from([1]), Buffer.from(publicKey.export({ type: "spki", format: "pem" }))]),
        );
        const sealed = await read();
        expect(sealed.payload.includes(Buffer.from(PASSWORD))).toBe(false);
        const plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, sealed.payload);
        const password = Buffer.from(plain.map((b, i) => b ^ NONCE[i % NONCE.length]!));
        expect(password.toString("utf8")).toBe(`${PASSWORD}\0`);
        write(sealed.seq + 1, OK);
      },
      identity,
    );
    expect((await signInTls(port, { mode: "verify-full", ca: ca.cert })).encrypted).toBe(true);
    expect(await done).toEqual([]);
  }, 30_000);

  it("a certificate from another CA is refused (verify-ca, verify-full), and nothing is signed in", async () => {
    ca ??= await createTestCa();
    otherCa ??= await createTestCa("Another CA");
    identity ??= await ca.issue(["db.test"]);
    for (const mode of ["verify-ca", "verify-full"] as const) {
      const { port, seen } = await tlsServer(identity);
      await expect(signInTls(port, { mode, ca: otherCa.cert })).rejects.toThrow(
        /TLS to the database at db.test:\d+ failed: TLS failed: .*(self.signed|unable to verify|local issuer)/i,
      );
      expect((await seen).signedIn).toBe(false);
      server?.close();
    }
  }, 30_000);

  it("another server name is refused with verify-full, accepted with verify-ca and require", async () => {
    ca ??= await createTestCa();
    identity ??= await ca.issue(["db.test"]);
    {
      const { port, seen } = await tlsServer(identity);
      await expect(signInTls(port, { mode: "verify-full", ca: ca.cert }, "evil.test")).rejects.toThrow(
        /TLS failed: .*(altnames|Hostname)/i,
      );
      expect((await seen).signedIn).toBe(false);
      server?.close();
    }
    for (const mode of ["verify-ca", "require"] as const) {
      const { port, seen } = await tlsServer(identity);
      expect((await signInTls(port, { mode, ca: mode === "require" ? null : ca.cert }, "evil.test")).encrypted).toBe(
        true,
      );
      expect((await seen).signedIn).toBe(true);
      server?.close();
    }
  }, 30_000);

  it("TLS required, the server offers no SSL: refused before any packet is sent (no password-derived data in clear)", async () => {
    const { port, packets } = await scripted(NATIVE_PASSWORD, async (read) => {
      await read();
    });
    await expect(
      (async () => {
        const socket = connect({ host: "127.0.0.1", port });
        await new Promise((resolve) => socket.once("connect", resolve));
        try {
          return await signInUpstream(socket, { ...target(port), tls: { mode: "require", ca: null } }, HELLO, {
            timeoutMs: 5_000,
            loadDataLocal: false,
            database: "shop",
          });
        } finally {
          socket.destroy();
        }
      })(),
    ).rejects.toThrow(/does not offer TLS, and its target requires it \(sslmode=require\); nothing was sent/);
    // The refusal comes before any write: nothing can still be on its way.
    expect(packets()).toBe(0);
  });
});
