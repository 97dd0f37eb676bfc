/**
 * The SSH proxy's network edge, over real sockets: what a peer can send before it is signed in.
 * A real Stint server (testServer, PGlite) with its real session gate, SSH CA and an ssh-host target
 * on a real sshd (src/testing/ssh-sessions.ts), and two SSH proxies on it (src/proxies/ssh): one
 * with a 250 ms handshake deadline for raw bytes, one with the default deadline for sign-in attempts.
 *
 * Input layout: byte 0 even — raw: byte 1 bits 0–1 not both set half-close our side after writing
 * (else the proxy's deadline must end it), bits 2–7 the chunk size; the rest is written to the proxy as is (seeds: a real client's version line, KEXINIT
 * and key exchange). Byte 0 odd — sign-in: a real SSH handshake (ssh2's client), then up to four
 * publickey offers, each [flags, user length, user, certificate length (2 bytes), certificate]:
 * flags bits 0–1 the offered algorithm, bit 2 the user from the input (else the login the
 * certificate names), bit 3 the certificate from the input (else the one the API issued), bit 4 a
 * genuine signature (else one with a bit flipped, bits 5–7 say where).
 *
 * Properties: the process never sees an uncaught exception or unhandled rejection, and the proxy
 * logs no error; a raw connection is closed by the proxy within its deadline (plus a margin) whatever
 * it sends; a sign-in connection ends within 20 s, is signed in if and only if one offer is the
 * issued certificate, for its login, with a genuine signature under the ed25519 certificate
 * algorithm (no other offer signs in: not another user, a changed certificate or a changed
 * signature), unless an earlier offer named another user (the server then disconnects, as RFC 4252
 * allows); afterwards the proxy holds no connection and no live session.
 */
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import fc from "fast-check";
import { Registry } from "prom-client";
import ssh2 from "ssh2";
import { createLogger } from "../../src/lib/logger.js";
import { sshString } from "../../src/lib/ssh-wire.js";
import { createSshProxy, type SshProxy } from "../../src/proxies/ssh/ssh-proxy.js";
import { sshSessionsHarness, type SshSessionsHarness } from "../../src/testing/ssh-sessions.js";
import { FuzzFinding, describe, expect, feature, type AsyncFuzzTarget, type ValidInput } from "../harness.js";

const { Client, utils } = ssh2;

/** The raw proxy's handshake deadline; a raw connection must be closed within it plus this margin. */
const RAW_DEADLINE_MS = 250;
const RAW_MARGIN_MS = 5000;
/** A sign-in connection (handshake, offers, a session opened on the real sshd) must end within this. */
const SIGN_IN_MS = 20_000;
const MAX_OFFERS = 4;
const ALGORITHMS = [
  "ssh-ed25519-cert-v01@openssh.com",
  "rsa-sha2-512-cert-v01@openssh.com",
  "ssh-ed25519",
  "ssh-rsa-cert-v01@openssh.com",
];
const MESSAGE_USERAUTH_REQUEST = 50;

interface ParsedKey {
  sign(data: Buffer): Buffer | Error;
}

export interface Context {
  harness: SshSessionsHarness;
  raw: { proxy: SshProxy; port: number; registry: Registry };
  signIn: { proxy: SshProxy; port: number; registry: Registry };
  /** The login the certificate names (user%target), the certificate blob, and the key it certifies. */
  login: string;
  certificate: Buffer;
  userKey: ParsedKey;
  /** Any parsed private key: ssh2's client wants one before our own offers replace it. */
  placeholderKey: unknown;
  /** Uncaught exceptions, unhandled rejections and the proxies' error logs since the last input. */
  problems: string[];
  detach: () => void;
}

/** Error lines are problems; FUZZ_SSH_LOG=info (or debug) also prints the proxies' logs on stderr. */
function capturingLogger(problems: string[]) {
  return createLogger({
    level: process.env.FUZZ_SSH_LOG ?? "error",
    destination: {
      write: (line: string) => {
        if (process.env.FUZZ_SSH_LOG) process.stderr.write(line);
        if ((JSON.parse(line) as { level?: number }).level! >= 50) {
          problems.push(`the proxy logged an error: ${line.slice(0, 400)}`);
        }
      },
    },
  });
}

async function startProxy(harness: SshSessionsHarness, problems: string[], handshakeTimeoutMs?: number) {
  const registry = new Registry();
  const proxy = createSshProxy({
    gate: harness.server.sessions.gate,
    hostKey: await harness.server.sessions.proxyHostKey(),
    logger: capturingLogger(problems),
    port: 0,
    registry,
    maxConnections: 100_000,
    maxConnectionsPerAddress: 100_000,
    ...(handshakeTimeoutMs === undefined ? {} : { handshakeTimeoutMs }),
  });
  const { port } = await proxy.listen();
  return { proxy, port, registry };
}

async function setup(): Promise<Context> {
  const harness = await sshSessionsHarness();
  const problems: string[] = [];
  const onException = (error: unknown) => problems.push(`uncaught exception: ${describe(error)}`);
  const onRejection = (error: unknown) => problems.push(`unhandled rejection: ${describe(error)}`);
  process.on("uncaughtException", onException);
  process.on("unhandledRejection", onRejection);
  const user = harness.users[0]!;
  await harness.activate(user, "web-shell", "8h");
  const issued = await harness.certify(user);
  const userKey = utils.parseKey(readFileSync(issued.key)) as unknown as ParsedKey | Error;
  if (userKey instanceof Error) throw userKey;
  let placeholderKey: unknown;
  do placeholderKey = utils.parseKey(utils.generateKeyPairSync("ed25519").private);
  while (placeholderKey instanceof Error);
  return {
    harness,
    raw: await startProxy(harness, problems, RAW_DEADLINE_MS),
    signIn: await startProxy(harness, problems),
    login: issued.principals[0] ?? `${user}%web`,
    certificate: Buffer.from(issued.certificate.split(" ")[1] ?? "", "base64"),
    userKey,
    placeholderKey,
    problems,
    detach: () => {
      process.off("uncaughtException", onException);
      process.off("unhandledRejection", onRejection);
    },
  };
}

async function teardown(context: Context): Promise<void> {
  await context.raw.proxy.close();
  await context.signIn.proxy.close();
  context.detach();
  await context.harness.cleanup();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the proxy holds no connection and no live session (they close a moment after the peer). */
async function settled(proxy: { proxy: SshProxy; registry: Registry }, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const gauge = await proxy.registry.getSingleMetric("stint_ssh_proxy_connections")?.get();
    const open = gauge?.values[0]?.value ?? 0;
    const live = proxy.proxy.liveSessions();
    if (open === 0 && live === 0) return;
    if (Date.now() > deadline)
      throw new FuzzFinding(`${what}: the proxy still holds ${open} connections, ${live} sessions`);
    await sleep(10);
  }
}

function reportProblems(context: Context): void {
  if (context.problems.length === 0) return;
  const first = context.problems[0]!;
  context.problems.length = 0;
  throw new FuzzFinding(first);
}

// --- raw bytes ------------------------------------------------------------------------------------

async function checkRaw(context: Context, input: Buffer): Promise<void> {
  // Three in four half-close; the rest wait for the proxy's deadline (which takes its whole length).
  const halfClose = ((input[1] ?? 0) & 3) !== 3;
  const chunk = 1 + ((input[1] ?? 0) >> 2);
  const data = input.subarray(2);
  const socket = connect(context.raw.port, "127.0.0.1");
  socket.on("error", () => undefined);
  let received = 0;
  socket.on("data", (bytes: Buffer) => (received += bytes.length));
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await new Promise<void>((resolve) => {
    socket.once("connect", resolve);
    socket.once("close", resolve);
  });
  const started = Date.now();
  for (let at = 0; at < data.length && !socket.destroyed; at += chunk) {
    socket.write(data.subarray(at, at + chunk));
    if (at + chunk < data.length) await new Promise((resolve) => setImmediate(resolve));
  }
  if (halfClose) socket.end();
  const limit = RAW_DEADLINE_MS + RAW_MARGIN_MS;
  const inTime = await Promise.race([closed.then(() => true), sleep(limit).then(() => false)]);
  if (!inTime) socket.destroy();
  expect(inTime, `a raw connection (${data.length} bytes, half-closed: ${halfClose}) was open after ${limit} ms`);
  feature(`raw:${halfClose}:${received === 0 ? "silent" : "answered"}:${Date.now() - started >= RAW_DEADLINE_MS}`);
  await settled(context.raw, "after a raw connection");
}

// --- sign-in attempts -----------------------------------------------------------------------------

interface Offer {
  algorithm: string;
  user: Buffer;
  certificate: Buffer;
  genuine: boolean;
  flipAt: number;
  /** The issued certificate, for its login, signed for real under its algorithm. */
  signsIn: boolean;
}

function offers(context: Context, input: Buffer): Offer[] {
  const out: Offer[] = [];
  let at = 1;
  while (at < input.length && out.length < MAX_OFFERS) {
    const flags = input[at++] ?? 0;
    const userLength = input[at++] ?? 0;
    const userBytes = input.subarray(at, at + userLength);
    at += userLength;
    const certificateLength = at + 2 <= input.length ? input.readUInt16BE(at) : 0;
    at += 2;
    const certificateBytes = input.subarray(at, at + certificateLength);
    at += certificateLength;
    const algorithm = ALGORITHMS[flags & 3]!;
    const user = flags & 4 ? userBytes : Buffer.from(context.login);
    const certificate = flags & 8 ? certificateBytes : context.certificate;
    const genuine = (flags & 16) !== 0;
    out.push({
      algorithm,
      user,
      certificate,
      genuine,
      flipAt: flags >> 5,
      signsIn:
        genuine &&
        algorithm === ALGORITHMS[0] &&
        user.equals(Buffer.from(context.login)) &&
        certificate.equals(context.certificate),
    });
  }
  return out;
}

interface ProtocolInternals {
  _kex: { sessionID: Buffer };
  _kexinit?: unknown;
  _queue?: Buffer[];
  _authsQueue: string[];
  _packetRW: { write: { allocStart: number; alloc(size: number): Buffer; finalize(packet: Buffer): Buffer } };
  _cipher: { encrypt(packet: Buffer): void };
  authPK: (...args: unknown[]) => void;
}

/** Sends one USERAUTH_REQUEST payload through ssh2's own packet writer and cipher. */
function send(protocol: ProtocolInternals, payload: Buffer): void {
  const { write } = protocol._packetRW;
  const packet = write.alloc(payload.length);
  payload.copy(packet, write.allocStart);
  const finalized = write.finalize(packet);
  if (protocol._kexinit !== undefined) (protocol._queue ??= []).push(finalized);
  else protocol._cipher.encrypt(finalized);
}

/**
 * ssh2's client cannot offer an OpenSSH certificate the way OpenSSH does (it names the signature
 * after the key's algorithm), so its authPK is replaced, on this connection only, by one that sends
 * the current offer: the query first, then (after PK_OK) the signed request.
 */
function offerAs(protocol: ProtocolInternals, context: Context, current: () => Offer | undefined): void {
  protocol.authPK = (_user: unknown, _key: unknown, _algorithm: unknown, sign?: unknown) => {
    const offer = current();
    if (!offer) return;
    const signed = typeof sign === "function" || typeof _algorithm === "function";
    const body = Buffer.concat([
      Buffer.of(MESSAGE_USERAUTH_REQUEST),
      sshString(offer.user),
      sshString("ssh-connection"),
      sshString("publickey"),
      Buffer.of(signed ? 1 : 0),
      sshString(offer.algorithm),
      sshString(offer.certificate),
    ]);
    protocol._authsQueue.push("publickey");
    if (!signed) return send(protocol, body);
    const signature = context.userKey.sign(Buffer.concat([sshString(protocol._kex.sessionID), body]));
    if (signature instanceof Error) throw signature;
    const bytes = Buffer.from(signature);
    if (!offer.genuine) {
      const at = offer.flipAt % bytes.length;
      bytes[at] = (bytes[at] ?? 0) ^ 0x01;
    }
    send(protocol, Buffer.concat([body, sshString(Buffer.concat([sshString("ssh-ed25519"), sshString(bytes)]))]));
  };
}

async function checkSignIn(context: Context, input: Buffer): Promise<void> {
  const list = offers(context, input);
  const client = new Client();
  let index = -1;
  let ready = false;
  const done = new Promise<void>((resolve) => client.once("close", () => resolve()));
  client.on("error", () => undefined);
  client.on("ready", () => {
    ready = true;
    client.end();
  });
  client.connect({
    host: "127.0.0.1",
    port: context.signIn.port,
    username: context.login,
    readyTimeout: SIGN_IN_MS,
    hostVerifier: () => true,
    authHandler: (_methods: unknown, _partial: unknown, next: (method: unknown) => void) => {
      const protocol = (client as unknown as { _protocol: ProtocolInternals })._protocol;
      if (index === -1) offerAs(protocol, context, () => list[index]);
      index++;
      if (index >= list.length) return next(false);
      next({ type: "publickey", username: context.login, key: context.placeholderKey });
    },
  } as never);
  const inTime = await Promise.race([done.then(() => true), sleep(SIGN_IN_MS).then(() => false)]);
  if (!inTime) client.destroy();
  expect(inTime, `a sign-in connection with ${list.length} offers was still open after ${SIGN_IN_MS} ms`);
  // ssh2, like OpenSSH, disconnects a client that changes its user name between attempts
  // (RFC 4252 §5 lets a server do so): offers after such a change are never seen.
  const reachable = list.findIndex((o) => !o.user.equals(list[0]!.user));
  const seen = reachable < 0 ? list : list.slice(0, reachable);
  const signsIn = seen.findIndex((o) => o.signsIn);
  feature(`sign-in:${list.length}:${signsIn}:${ready}`);
  expect(
    ready === signsIn >= 0,
    ready
      ? `signed in with offers that should not: ${JSON.stringify(list.map(describeOffer))}`
      : `the issued certificate, genuinely signed, did not sign in (offer ${signsIn + 1} of ${list.length})`,
  );
  await settled(context.signIn, "after a sign-in connection");
}

const describeOffer = (o: Offer) => ({
  algorithm: o.algorithm,
  user: o.user.toString("latin1"),
  certificate: o.certificate.length,
  genuine: o.genuine,
});

async function check(context: Context, input: Buffer): Promise<void> {
  try {
    if (((input[0] ?? 0) & 1) === 0) await checkRaw(context, input);
    else await checkSignIn(context, input);
  } finally {
    // Problems from this input (and late ones from the last) are this input's finding.
    await new Promise((resolve) => setImmediate(resolve));
  }
  reportProblems(context);
}

// --- valid inputs -----------------------------------------------------------------------------------

function encodeOffer(flags: number, user: Buffer, certificate: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(certificate.length);
  return Buffer.concat([Buffer.of(flags, user.length), user, length, certificate]);
}

/**
 * Sign-in attempts made of the real parts: the issued certificate or a copy with a bit changed, the
 * right login or another, genuine signatures or not; the flags say which. Raw inputs come from
 * the corpus (a real client's bytes) and its mutations.
 */
function valid(context: Context): fc.Arbitrary<ValidInput> {
  const offer = fc
    .record({
      algorithm: fc.nat(3),
      otherUser: fc.option(fc.constantFrom("root%web", `${context.login}x`, "%", "", context.login.toUpperCase())),
      changeCertificateAt: fc.option(fc.nat()),
      genuine: fc.boolean(),
      flipAt: fc.nat(7),
    })
    .map(({ algorithm, otherUser, changeCertificateAt, genuine, flipAt }) => {
      let certificate = Buffer.alloc(0);
      if (changeCertificateAt !== null) {
        certificate = Buffer.from(context.certificate);
        const at = changeCertificateAt % certificate.length;
        certificate[at] = (certificate[at] ?? 0) ^ (1 << (changeCertificateAt % 8));
      }
      const flags =
        algorithm |
        (otherUser !== null ? 4 : 0) |
        (changeCertificateAt !== null ? 8 : 0) |
        (genuine ? 16 : 0) |
        (flipAt << 5);
      return encodeOffer(flags, Buffer.from(otherUser ?? "", "utf8"), certificate);
    });
  return fc.array(offer, { minLength: 1, maxLength: MAX_OFFERS }).map((list) => ({
    bytes: Buffer.concat([Buffer.of(1), ...list]),
    verify: () => undefined,
  }));
}

export const sshHandshake: AsyncFuzzTarget<Context> = { name: "ssh-handshake", setup, check, valid, teardown };

/** A real client's first bytes to the proxy (version line, KEXINIT, key exchange): raw seeds. */
export async function captureClientBytes(context: Context): Promise<Buffer> {
  const { createServer } = await import("node:net");
  const chunks: Buffer[] = [];
  const tap = createServer((inbound) => {
    const outbound = connect(context.raw.port, "127.0.0.1");
    inbound.on("data", (data: Buffer) => {
      chunks.push(data);
      outbound.write(data);
    });
    outbound.on("data", (data: Buffer) => inbound.write(data));
    inbound.on("error", () => outbound.destroy());
    outbound.on("error", () => inbound.destroy());
    inbound.on("close", () => outbound.destroy());
    outbound.on("close", () => inbound.destroy());
  });
  await new Promise<void>((resolve) => tap.listen(0, "127.0.0.1", resolve));
  const port = (tap.address() as { port: number }).port;
  const client = new Client();
  client.on("error", () => undefined);
  await new Promise<void>((resolve) => {
    client.on("close", () => resolve());
    client.on("handshake", () => client.end());
    client.connect({ host: "127.0.0.1", port, username: context.login, hostVerifier: () => true } as never);
  });
  await new Promise<void>((resolve) => tap.close(() => resolve()));
  return Buffer.concat(chunks);
}
