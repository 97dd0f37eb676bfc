/**
 * The SSH proxy between the real OpenSSH client (ssh, scp, sftp, in tmux for a terminal) and a real
 * sshd (src/testing/sshd.ts), with a real Stint CA and certificates. The SessionGate is a small
 * in-test implementation on the same ssh-ca functions the real gate uses; the recorder keeps what
 * it is given so the tests can read it.
 */
import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Writable } from "node:stream";
import { promisify } from "node:util";
import ssh2 from "ssh2";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../lib/logger.js";
import { generateCa, publicKeyObject, signUserCertificate, verifyCertificate } from "../../modules/sessions/ssh-ca.js";
import {
  SessionRefusedError,
  type BrokeredSession,
  type EndReason,
  type SessionGate,
  type SessionPolicy,
  type UpstreamSsh,
} from "../../modules/sessions/sessions.types.js";
import { freePort, startSshd, type Sshd } from "../../testing/sshd.js";
import {
  countPerTick,
  createScpCounter,
  createSshProxy,
  parseRsyncCommand,
  parseScpCommand,
  userauthSignatureValid,
  writeBatch,
  type SshProxy,
} from "./ssh-proxy.js";

const { utils } = ssh2;
const run = promisify(execFile);
const HOUR = 3_600_000;

// --- an in-test gate and session ------------------------------------------------------------------

interface TestSession extends BrokeredSession<UpstreamSsh> {
  outputs: Buffer[];
  inputs: Buffer[];
  resizes: [number, number][];
  events: { name: string; fields: Record<string, unknown> }[];
  bytes: { up: number; down: number };
  ended: Promise<EndReason>;
  endReason: EndReason | undefined;
  abort(reason: EndReason, message: string): void;
  output(): string;
}

interface TargetSpec {
  policy?: Partial<SessionPolicy>;
  hostKey?: string;
  refuse?: string;
  /** Where the proxy connects instead of the sshd's own port (a relay in front of it). */
  port?: number;
}

function testSession(target: string, upstream: UpstreamSsh, policy: SessionPolicy): TestSession {
  const controller = new AbortController();
  let resolveEnded: (reason: EndReason) => void = () => undefined;
  const ended = new Promise<EndReason>((resolve) => (resolveEnded = resolve));
  const session: TestSession = {
    id: randomBytes(4).toString("hex"),
    user: "alice",
    role: `${target}-admin`,
    target,
    policy,
    upstream,
    outputs: [],
    inputs: [],
    resizes: [],
    events: [],
    bytes: { up: 0, down: 0 },
    ended,
    endReason: undefined,
    recorder: {
      output: (data) => session.outputs.push(Buffer.from(data)),
      errorOutput: (data) => session.outputs.push(Buffer.from(data)),
      input: (data) => session.inputs.push(Buffer.from(data)),
      resize: (cols, rows) => session.resizes.push([cols, rows]),
      event: (name, fields) => session.events.push({ name, fields }),
      query: () => undefined,
    },
    signal: controller.signal,
    countBytes: (direction, bytes) => (session.bytes[direction] += bytes),
    end: (reason) => {
      if (session.endReason === undefined) {
        session.endReason = reason;
        resolveEnded(reason);
      }
      return Promise.resolve();
    },
    abort: (reason, message) => controller.abort({ reason, message }),
    output: () => Buffer.concat(session.outputs).toString("utf8"),
  };
  return session;
}

/**
 * ssh2 1.17's generateKeyPairSync("ed25519") drops a leading zero byte of the public key (about one key
 * in 256), making a private key that neither ssh2 nor OpenSSH can load; such keys are skipped here.
 */
function loadable<T>(generate: () => T, privateKey: (value: T) => string): T {
  for (;;) {
    const value = generate();
    if (!(utils.parseKey(privateKey(value)) instanceof Error)) return value;
  }
}
const ca = loadable(generateCa, (pair) => pair.privateKey);
const otherCa = loadable(generateCa, (pair) => pair.privateKey);
const proxyHostKey = loadable(
  () => utils.generateKeyPairSync("ed25519"),
  (pair) => pair.private,
);
const logger = createLogger({ level: process.env.SSH_PROXY_LOG ?? "silent" });

let dir: string;
let sshd: Sshd;
let proxy: SshProxy;
let proxyPort: number;
let knownHosts: string;
const targets = new Map<string, TargetSpec>();
const sessions: TestSession[] = [];
let openCalls = 0;

const gate: Pick<SessionGate, "checkSshCertificate" | "openSsh"> = {
  checkSshCertificate({ username, algorithm, key }) {
    const [user, target] = username.split("%");
    if (!user || !target) throw new SessionRefusedError("BAD_CREDENTIALS", "Log in as <user>%<target>.");
    const verdict = verifyCertificate(`${algorithm} ${key.toString("base64")}`, ca.publicKey, new Date(), {
      principal: user,
    });
    if (!verdict.ok)
      throw new SessionRefusedError("BAD_CREDENTIALS", `The certificate is not valid: ${verdict.reason}`);
    return {
      user,
      target,
      publicKey: publicKeyObject(verdict.certificate.publicKey),
      serial: verdict.certificate.serial.toString(),
      keyId: verdict.certificate.keyId,
    };
  },
  openSsh(login) {
    openCalls++;
    const spec = targets.get(login.target);
    if (!spec) {
      return Promise.reject(
        new SessionRefusedError("NOT_ACTIVE", `You have no active role for ${login.target}: activate one first.`),
      );
    }
    const upstream: UpstreamSsh = {
      kind: "ssh",
      host: sshd.host,
      address: sshd.host,
      port: spec.port ?? sshd.port,
      username: sshd.adminUser,
      hostKey: spec.hostKey ?? sshd.hostKeyFingerprint,
      privateKey: sshd.adminPrivateKey,
    };
    const policy: SessionPolicy = {
      recording: "required",
      portForwarding: false,
      queryParameters: false,
      ...spec.policy,
    };
    const session = testSession(login.target, upstream, policy);
    sessions.push(session);
    return Promise.resolve(session);
  },
};

// --- client helpers -------------------------------------------------------------------------------

/** Whole seconds, as certificates carry them. */
const at = (offsetMs: number) => new Date(Math.floor((Date.now() + offsetMs) / 1000) * 1000);

/** A fresh ssh-keygen key; with a certificate (by default Stint's CA, principal alice) as <key>-cert.pub. */
async function userKey(
  name: string,
  cert: { caPrivateKey?: string; principals?: string[]; validAfter?: Date; validBefore?: Date } | null = {},
  type: "ed25519" | "rsa" = "ed25519",
): Promise<string> {
  const path = join(dir, name);
  await run("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", name, "-f", path]);
  if (cert) {
    const line = signUserCertificate({
      caPrivateKey: cert.caPrivateKey ?? ca.privateKey,
      userPublicKey: readFileSync(`${path}.pub`, "utf8"),
      keyId: `alice ${name}`,
      principals: cert.principals ?? ["alice"],
      validAfter: cert.validAfter ?? at(-60_000),
      validBefore: cert.validBefore ?? at(HOUR),
      serial: BigInt(Date.now()),
    });
    writeFileSync(`${path}-cert.pub`, `${line}\n`);
  }
  return path;
}

function sshOptions(key: string, knownHostsFile = knownHosts): string[] {
  return [
    "-F",
    "/dev/null",
    "-o",
    `UserKnownHostsFile=${knownHostsFile}`,
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "BatchMode=yes",
    "-i",
    key,
  ];
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client without blocking the event loop (the proxy runs in this process). */
function client(command: string, args: string[], input?: string, timeoutMs = 20_000): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input ?? "");
  });
}

const ssh = (key: string, target: string, command: string[], extra: string[] = []) =>
  client("ssh", [...sshOptions(key), ...extra, "-p", String(proxyPort), `alice%${target}@127.0.0.1`, ...command]);

async function eventually<T>(probe: () => T | Promise<T>, ok: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const lastSession = () => sessions.at(-1)!;

// --- tmux -----------------------------------------------------------------------------------------

const tmuxSocket = `stint-ssh-${randomBytes(4).toString("hex")}`;
const tmux = (...args: string[]) => run("tmux", ["-L", tmuxSocket, ...args]);
const capture = async (name: string) => (await tmux("capture-pane", "-p", "-t", name)).stdout;

/** ssh -tt in a 120x30 tmux pane; the pane stays after ssh exits and shows its exit code. */
async function terminal(name: string, key: string, target: string): Promise<void> {
  const script = join(dir, `${name}.sh`);
  const command = ["ssh", ...sshOptions(key), "-tt", "-p", String(proxyPort), `'alice%${target}@127.0.0.1'`];
  writeFileSync(script, `${command.join(" ")}\necho ssh-exit=$? at=$(date +%s%3N)\nsleep 60\n`);
  await tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "30", `sh ${script}`);
}

// --- setup ----------------------------------------------------------------------------------------

let aliceKey: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "stint-ssh-proxy-"));
  // The test sshd has no sftp subsystem by default.
  sshd = await startSshd({ extraConfig: ["Subsystem sftp internal-sftp"] });
  targets.set("web1", {});
  targets.set("web1fwd", { policy: { portForwarding: true } });
  targets.set("wrongkey", { hostKey: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" });
  proxy = createSshProxy({ gate, hostKey: proxyHostKey.private, logger, port: 0 });
  proxyPort = (await proxy.listen()).port;
  knownHosts = join(dir, "known_hosts");
  writeFileSync(knownHosts, `[127.0.0.1]:${proxyPort} ${proxyHostKey.public.trim()}\n`);
  aliceKey = await userKey("alice");
}, 30_000);

afterEach(async () => {
  await tmux("kill-server").catch(() => undefined);
});

afterAll(async () => {
  await proxy?.close();
  await sshd?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// --- tests ----------------------------------------------------------------------------------------

describe("exec", () => {
  it("runs the command as the upstream login, records it, and ends the session when the client leaves", async () => {
    const result = await ssh(aliceKey, "web1", ["id -un; echo to-stderr >&2"]);
    expect(result).toMatchObject({ code: 0, stdout: "root\n" });
    expect(result.stderr).toContain("to-stderr");
    const session = lastSession();
    expect(await session.ended).toBe("client_closed");
    expect(session.events).toContainEqual({
      name: "exec",
      fields: { command: "id -un; echo to-stderr >&2", exitCode: 0, channel: 1 },
    });
    expect(session.output()).toContain("root\n");
    expect(session.output()).toContain("to-stderr");
    expect(session.bytes.down).toBeGreaterThanOrEqual("root\nto-stderr\n".length);
    expect(proxy.liveSessions()).toBe(0);
  }, 30_000);

  it("takes an RSA certificate too (offered as rsa-sha2-512-cert-v01)", async () => {
    const rsaKey = await userKey("alice-rsa", {}, "rsa");
    expect(await ssh(rsaKey, "web1", ["id -un"])).toMatchObject({ code: 0, stdout: "root\n" });
  }, 30_000);

  it("propagates exit codes and stdin", async () => {
    expect((await ssh(aliceKey, "web1", ["exit 3"])).code).toBe(3);
    expect(lastSession().events).toContainEqual({
      name: "exec",
      fields: { command: "exit 3", exitCode: 3, channel: 1 },
    });
    const echoed = await client(
      "ssh",
      [...sshOptions(aliceKey), "-p", String(proxyPort), "alice%web1@127.0.0.1", "wc -c"],
      "twelve bytes",
    );
    expect(echoed).toMatchObject({ code: 0, stdout: "12\n" });
    expect(lastSession().bytes.up).toBeGreaterThanOrEqual(12);
  }, 30_000);
});

/** A TCP relay to `port` on 127.0.0.1 that counts the bytes it passed each way (with backpressure). */
async function countingRelay(port: number) {
  const counts = { toTarget: 0, fromTarget: 0 };
  const server = createServer((socket) => {
    const target = connect(port, "127.0.0.1");
    socket.on("data", (chunk: Buffer) => (counts.toTarget += chunk.length));
    target.on("data", (chunk: Buffer) => (counts.fromTarget += chunk.length));
    socket.pipe(target);
    target.pipe(socket);
    for (const side of [socket, target]) {
      side.on("error", () => undefined);
      side.on("close", () => {
        socket.destroy();
        target.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    counts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("flow control", () => {
  /**
   * Relays on both sides of the proxy: what entered the proxy minus what left it is what it holds. The
   * proxy holds per direction at most the window it granted (4 MiB), ssh2's readable and writable
   * buffers (2 MiB each) and what is in flight to the receiver's window (2 MiB); without backpressure
   * it would take the whole 200 MB.
   */
  const BOUND = 16 * 1024 * 1024;
  let upstream: Awaited<ReturnType<typeof countingRelay>>;
  let front: Awaited<ReturnType<typeof countingRelay>>;
  let frontKnownHosts: string;

  beforeAll(async () => {
    upstream = await countingRelay(sshd.port);
    targets.set("counted", { port: upstream.port });
    front = await countingRelay(proxyPort);
    frontKnownHosts = join(dir, "known_hosts_front");
    writeFileSync(frontKnownHosts, `[127.0.0.1]:${front.port} ${proxyHostKey.public.trim()}\n`);
  });
  afterAll(async () => {
    await upstream?.close();
    await front?.close();
  });

  /** Waits until `value()` has not moved for `quietMs` (or the deadline passed) and returns it. */
  async function settled(value: () => number, quietMs = 3000, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last = value();
    let since = Date.now();
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const now = value();
      if (now !== last) {
        last = now;
        since = Date.now();
      } else if (last > 0 && Date.now() - since >= quietMs) {
        break;
      }
    }
    return last;
  }
  const args = (command: string) => [
    ...sshOptions(aliceKey, frontKnownHosts),
    "-p",
    String(front.port),
    "alice%counted@127.0.0.1",
    command,
  ];

  it("a client that stops reading stops the target: the proxy holds a bounded amount, not the whole stream", async () => {
    const before = { ...upstream.counts, ...{ front: front.counts.fromTarget } };
    // 200 MB offered; the client's stdout is never read.
    const child = spawn("ssh", args("head -c 200000000 /dev/zero"), { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const entered = await settled(() => upstream.counts.fromTarget - before.fromTarget);
      const left = front.counts.fromTarget - before.front;
      expect(entered).toBeGreaterThan(BOUND / 4);
      expect(entered - left).toBeLessThan(BOUND);
    } finally {
      child.kill("SIGKILL");
    }
    await lastSession().ended;
  }, 60_000);

  it("a target that stops reading stops the client: the proxy holds a bounded amount of the upload", async () => {
    const before = { ...upstream.counts, ...{ front: front.counts.toTarget } };
    const child = spawn("ssh", args("sleep 60"), { stdio: ["pipe", "ignore", "ignore"] });
    const block = Buffer.alloc(1024 * 1024);
    let offered = 0;
    const feed = () => {
      while (offered < 200 * block.length && child.stdin.write(block)) offered += block.length;
    };
    child.stdin.on("drain", feed);
    child.stdin.on("error", () => undefined);
    feed();
    try {
      const entered = await settled(() => front.counts.toTarget - before.front);
      const left = upstream.counts.toTarget - before.toTarget;
      expect(entered).toBeGreaterThan(BOUND / 4);
      expect(entered - left).toBeLessThan(BOUND);
    } finally {
      child.kill("SIGKILL");
    }
    await lastSession().ended;
  }, 60_000);
});

describe("write batching", () => {
  it("packets written in one turn of the event loop leave in one socket write, and none is held past it", async () => {
    const writes: string[][] = [];
    const socket = new Writable({
      write(chunk: Buffer, _encoding, done) {
        writes.push([chunk.toString()]);
        done();
      },
      writev(chunks, done) {
        writes.push(chunks.map(({ chunk }) => (chunk as Buffer).toString()));
        done();
      },
    });
    const channel = Object.assign(new PassThrough(), { _client: { _sock: socket } });
    const batch = writeBatch(channel)!;
    const nextTick = () => new Promise((resolve) => process.nextTick(resolve));

    batch.cork();
    socket.write("packet 1");
    batch.cork();
    socket.write("packet 2");
    expect(writes).toEqual([]);
    await nextTick();
    expect(writes).toEqual([["packet 1", "packet 2"]]);

    batch.cork();
    socket.write("packet 3");
    await nextTick();
    expect(writes).toEqual([["packet 1", "packet 2"], ["packet 3"]]);
    // Not corked any more: a write outside a batch goes at once.
    socket.write("packet 4");
    expect(writes.at(-1)).toEqual(["packet 4"]);
  });

  it("byte counts of one turn reach the session once, before the next turn", async () => {
    const counted: number[] = [];
    const count = countPerTick((bytes) => counted.push(bytes));
    count(32_768);
    count(0);
    count(13);
    expect(counted).toEqual([]);
    await new Promise((resolve) => process.nextTick(resolve));
    expect(counted).toEqual([32_781]);
    count(5);
    // A timer (a kill's grace period, an expiry) runs in a later turn: the count is in by then.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(counted).toEqual([32_781, 5]);
  });

  it("a destination that is not an ssh2 channel is written as is", () => {
    expect(writeBatch(new PassThrough())).toBeUndefined();
  });
});

describe("interactive shell", () => {
  it("relays a terminal: output, input and sizes are recorded", async () => {
    await terminal("shell", aliceKey, "web1");
    await eventually(
      () => capture("shell"),
      (pane) => pane.includes("#"),
    );
    const nonce = randomBytes(3).toString("hex");
    await tmux("send-keys", "-t", "shell", `echo hello-$((6*7))-${nonce}`, "Enter");
    const pane = await eventually(
      () => capture("shell"),
      (text) => text.includes(`hello-42-${nonce}`),
    );
    expect(pane).toContain(`hello-42-${nonce}`);
    await tmux("resize-window", "-t", "shell", "-x", "100", "-y", "25");
    const session = lastSession();
    await eventually(
      () => session.resizes,
      (sizes) => sizes.some(([cols]) => cols === 100),
    );
    await tmux("send-keys", "-t", "shell", "exit", "Enter");
    expect(
      await eventually(
        () => capture("shell"),
        (text) => text.includes("ssh-exit="),
      ),
    ).toContain("ssh-exit=0");

    expect(await session.ended).toBe("client_closed");
    expect(session.output()).toContain(`hello-42-${nonce}`);
    expect(Buffer.concat(session.inputs).toString()).toContain("echo hello-");
    expect(session.resizes[0]).toEqual([120, 30]);
    expect(session.resizes).toContainEqual([100, 25]);
  }, 30_000);
});

describe("file transfer", () => {
  const content = randomBytes(70_000);
  const remote = `/tmp/stint-ssh-proxy-${randomBytes(4).toString("hex")}`;
  const scpOptions = () => [...sshOptions(aliceKey), "-P", String(proxyPort)];
  const remotePath = (path: string) => `alice%web1@127.0.0.1:${path}`;

  afterAll(() => {
    for (const suffix of ["-scp", "-legacy", "-sftp", "-sftp-renamed", "-rsync"])
      rmSync(`${remote}${suffix}`, { force: true });
  });

  it("scp (SFTP mode, OpenSSH's default): upload and download are byte-identical and recorded", async () => {
    const local = join(dir, "scp-up.bin");
    writeFileSync(local, content);
    const up = await client("scp", [...scpOptions(), local, remotePath(`${remote}-scp`)]);
    expect(up).toMatchObject({ code: 0 });
    expect(readFileSync(`${remote}-scp`).equals(content)).toBe(true);
    await lastSession().ended;
    expect(lastSession().events).toContainEqual({ name: "subsystem", fields: { name: "sftp", channel: 1 } });
    expect(lastSession().events).toContainEqual({
      name: "sftp",
      fields: {
        operation: "open",
        path: `${remote}-scp`,
        direction: "upload",
        bytes: content.length,
        ok: true,
        channel: 1,
      },
    });

    const back = join(dir, "scp-down.bin");
    expect(await client("scp", [...scpOptions(), remotePath(`${remote}-scp`), back])).toMatchObject({ code: 0 });
    expect(readFileSync(back).equals(content)).toBe(true);
    await lastSession().ended;
    expect(lastSession().events).toContainEqual({
      name: "sftp",
      fields: {
        operation: "open",
        path: `${remote}-scp`,
        direction: "download",
        bytes: content.length,
        ok: true,
        channel: 1,
      },
    });
  }, 30_000);

  it("scp -O (the legacy protocol): upload and download are byte-identical and recorded", async () => {
    const local = join(dir, "legacy-up.bin");
    writeFileSync(local, content);
    expect(await client("scp", ["-O", ...scpOptions(), local, remotePath(`${remote}-legacy`)])).toMatchObject({
      code: 0,
    });
    expect(readFileSync(`${remote}-legacy`).equals(content)).toBe(true);
    await lastSession().ended;
    expect(lastSession().events).toContainEqual({
      name: "scp",
      fields: { direction: "upload", path: `${remote}-legacy`, bytes: content.length, channel: 1 },
    });

    const back = join(dir, "legacy-down.bin");
    expect(await client("scp", ["-O", ...scpOptions(), remotePath(`${remote}-legacy`), back])).toMatchObject({
      code: 0,
    });
    expect(readFileSync(back).equals(content)).toBe(true);
    await lastSession().ended;
    expect(lastSession().events).toContainEqual({
      name: "scp",
      fields: { direction: "download", path: `${remote}-legacy`, bytes: content.length, channel: 1 },
    });
    // File contents are not terminal output.
    expect(lastSession().outputs).toEqual([]);
  }, 30_000);

  it("rsync over ssh: upload and download are byte-identical, recorded as rsync events without the file data", async () => {
    const rsh = ["ssh", ...sshOptions(aliceKey), "-p", String(proxyPort)].join(" ");
    const local = join(dir, "rsync-up.bin");
    writeFileSync(local, content);
    expect(await client("rsync", ["-e", rsh, local, remotePath(`${remote}-rsync`)])).toMatchObject({ code: 0 });
    expect(readFileSync(`${remote}-rsync`).equals(content)).toBe(true);
    let session = lastSession();
    await session.ended;
    const up = session.events.find((event) => event.name === "rsync")?.fields;
    expect(up).toMatchObject({ direction: "upload", paths: [`${remote}-rsync`], exitCode: 0 });
    expect(up?.command).toMatch(/^rsync --server /);
    // The bytes rsync's sending side sent: the file and a little protocol.
    expect(up?.bytes).toBeGreaterThanOrEqual(content.length);
    expect(up?.bytes).toBeLessThan(content.length + 4096);
    expect(session.events.filter((event) => event.name === "exec")).toEqual([]);
    expect([...session.inputs, ...session.outputs]).toEqual([]);

    const back = join(dir, "rsync-down.bin");
    expect(await client("rsync", ["-e", rsh, remotePath(`${remote}-rsync`), back])).toMatchObject({ code: 0 });
    expect(readFileSync(back).equals(content)).toBe(true);
    session = lastSession();
    await session.ended;
    expect(session.events.find((event) => event.name === "rsync")?.fields).toMatchObject({
      direction: "download",
      paths: [`${remote}-rsync`],
      exitCode: 0,
    });
    expect([...session.inputs, ...session.outputs]).toEqual([]);
  }, 30_000);

  it("`rsync --server --daemon` is not taken for rsync: its bytes both ways are recorded as an exec's", async () => {
    await ssh(aliceKey, "web1", ["rsync", "--server", "--daemon", "."], ["-T"]);
    const session = lastSession();
    await session.ended;
    expect(session.events.filter((event) => event.name === "rsync")).toEqual([]);
    expect(session.events).toContainEqual({
      name: "exec",
      fields: expect.objectContaining({ command: "rsync --server --daemon ." }) as unknown,
    });
    // What the target's rsync said is in the recording.
    expect(session.output()).toMatch(/rsync/);
  }, 30_000);

  it("sftp -b: put, get, rename, mkdir, rmdir, rm, each recorded", async () => {
    const local = join(dir, "sftp-up.bin");
    const back = join(dir, "sftp-down.bin");
    writeFileSync(local, content);
    const batch = join(dir, "batch");
    writeFileSync(
      batch,
      [
        `put ${local} ${remote}-sftp`,
        `rename ${remote}-sftp ${remote}-sftp-renamed`,
        `get ${remote}-sftp-renamed ${back}`,
        `mkdir ${remote}-dir`,
        `rmdir ${remote}-dir`,
        `rm ${remote}-sftp-renamed`,
        "",
      ].join("\n"),
    );
    const result = await client("sftp", [...scpOptions(), "-b", batch, `alice%web1@127.0.0.1`]);
    expect(result).toMatchObject({ code: 0 });
    expect(readFileSync(back).equals(content)).toBe(true);
    const session = lastSession();
    await session.ended;
    const sftp = session.events.filter((event) => event.name === "sftp").map((event) => event.fields);
    // Every one on the connection's only session channel.
    expect(sftp.map(({ channel }) => channel)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(sftp.map(({ channel: _channel, ...fields }) => fields)).toEqual([
      { operation: "open", path: `${remote}-sftp`, direction: "upload", bytes: content.length, ok: true },
      { operation: "rename", path: `${remote}-sftp`, newPath: `${remote}-sftp-renamed`, ok: true },
      { operation: "open", path: `${remote}-sftp-renamed`, direction: "download", bytes: content.length, ok: true },
      { operation: "mkdir", path: `${remote}-dir`, ok: true },
      { operation: "rmdir", path: `${remote}-dir`, ok: true },
      { operation: "remove", path: `${remote}-sftp-renamed`, ok: true },
    ]);
  }, 30_000);
});

describe("refusals", () => {
  const cases: { name: string; key: () => Promise<string>; target?: string; message?: RegExp }[] = [
    { name: "the same key without a certificate", key: () => userKey("plain", null) },
    {
      name: "a certificate signed by another CA",
      key: () => userKey("other-ca", { caPrivateKey: otherCa.privateKey }),
    },
    {
      name: "an expired certificate",
      key: () => userKey("expired", { validAfter: at(-2 * HOUR), validBefore: at(-HOUR) }),
    },
    { name: "a certificate for another principal", key: () => userKey("bob", { principals: ["bob"] }) },
  ];
  for (const { name, key } of cases) {
    it(`${name}: ssh fails and no session is opened`, async () => {
      const path = await key();
      const before = openCalls;
      const result = await ssh(path, "web1", ["id -un"]);
      expect(result.code).toBe(255);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/Permission denied \(publickey\)/);
      expect(openCalls).toBe(before);
    }, 30_000);
  }

  it("the key of a valid certificate is needed: a certificate with someone else's key fails", async () => {
    // alice's certificate next to another private key: the client cannot sign for the certified key.
    const thief = await userKey("thief", null);
    copyFileSync(`${aliceKey}-cert.pub`, `${thief}-cert.pub`);
    const before = openCalls;
    const result = await ssh(thief, "web1", ["id -un"]);
    expect(result.code).toBe(255);
    expect(openCalls).toBe(before);
  }, 30_000);

  it("password authentication is never accepted", async () => {
    const before = openCalls;
    const error = await new Promise<Error & { level?: string }>((resolve) => {
      const connection = new ssh2.Client();
      connection.on("error", (failure: Error) => {
        connection.end();
        resolve(failure);
      });
      connection.on("ready", () => {
        connection.end();
        resolve(new Error("authenticated"));
      });
      connection.connect({
        host: "127.0.0.1",
        port: proxyPort,
        username: "alice%web1",
        password: "anything",
        tryKeyboard: true,
        hostVerifier: () => true,
      });
    });
    expect(error.level).toBe("client-authentication");
    expect(openCalls).toBe(before);
  }, 30_000);

  it("a gate refusal is shown to the user", async () => {
    const result = await ssh(aliceKey, "db9", ["id -un"]);
    expect(result.code).toBe(255);
    expect(result.stderr).toContain("Stint: You have no active role for db9: activate one first.");
  }, 30_000);

  it("a target whose host key is not the pinned one is refused and the session ends", async () => {
    const result = await ssh(aliceKey, "wrongkey", ["id -un"]);
    expect(result.code).toBe(255);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("host key does not match");
    expect(await lastSession().ended).toBe("error");
  }, 30_000);
});

describe("port forwarding", () => {
  let echo: NetServer;
  let echoPort: number;

  beforeAll(async () => {
    echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
    echoPort = (echo.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

  /** Starts ssh -N -L, sends a line through it, returns what came back (until the far side closes). */
  async function throughTunnel(target: string): Promise<string> {
    const localPort = await freePort();
    const child = spawn(
      "ssh",
      [
        ...sshOptions(aliceKey),
        "-N",
        "-L",
        `127.0.0.1:${localPort}:127.0.0.1:${echoPort}`,
        "-p",
        String(proxyPort),
        `alice%${target}@127.0.0.1`,
      ],
      { stdio: "ignore" },
    );
    try {
      await eventually(
        () =>
          new Promise<boolean>((resolve) => {
            const socket = connect(localPort, "127.0.0.1", () => {
              socket.destroy();
              resolve(true);
            });
            socket.on("error", () => resolve(false));
          }),
        (open) => open,
      );
      return await new Promise<string>((resolve) => {
        let received = "";
        const socket = connect(localPort, "127.0.0.1", () => socket.write("ping through stint\n"));
        socket.on("data", (chunk: Buffer) => {
          received += chunk.toString();
          if (received.includes("\n")) socket.end();
        });
        socket.on("close", () => resolve(received));
        socket.on("error", () => resolve(received));
        setTimeout(() => socket.destroy(), 5000);
      });
    } finally {
      child.kill("SIGTERM");
    }
  }

  it("is refused by default, and the refusal is recorded", async () => {
    expect(await throughTunnel("web1")).toBe("");
    expect(lastSession().events).toContainEqual({
      name: "forward",
      fields: { kind: "direct-tcpip", host: "127.0.0.1", port: echoPort, allowed: false },
    });
  }, 30_000);

  it("relays when the policy allows it", async () => {
    expect(await throughTunnel("web1fwd")).toBe("ping through stint\n");
    const session = lastSession();
    expect(session.events).toContainEqual({
      name: "forward",
      fields: { kind: "direct-tcpip", host: "127.0.0.1", port: echoPort, allowed: true },
    });
    expect(session.bytes.up).toBeGreaterThanOrEqual("ping through stint\n".length);
  }, 30_000);

  it("remote forwarding follows the same rule", async () => {
    const denied = await ssh(
      aliceKey,
      "web1",
      ["true"],
      ["-o", "ExitOnForwardFailure=yes", "-R", `0:127.0.0.1:${echoPort}`],
    );
    expect(denied.code).toBe(255);
    expect(lastSession().events).toContainEqual({
      name: "forward",
      fields: { kind: "tcpip-forward", host: "localhost", port: 0, allowed: false },
    });

    // Allowed: the target listens, and a connection to it there reaches the echo server on our side.
    const remotePort = await freePort();
    const probe = `exec 3<>/dev/tcp/127.0.0.1/${remotePort}; echo remote-hello >&3; head -n1 <&3`;
    const allowed = await ssh(
      aliceKey,
      "web1fwd",
      [`bash -c '${probe}'`],
      ["-o", "ExitOnForwardFailure=yes", "-R", `127.0.0.1:${remotePort}:127.0.0.1:${echoPort}`],
    );
    expect(allowed).toMatchObject({ code: 0, stdout: "remote-hello\n" });
    expect(lastSession().events).toContainEqual({
      name: "forward",
      fields: { kind: "tcpip-forward", host: "127.0.0.1", port: remotePort, allowed: true },
    });
  }, 30_000);

  it("agent forwarding is refused", async () => {
    const result = await ssh(aliceKey, "web1", ['echo "agent=${SSH_AUTH_SOCK:-none}"'], ["-A"]);
    expect(result).toMatchObject({ code: 0, stdout: "agent=none\n" });
  }, 30_000);
});

describe("kill", () => {
  it("ends an open shell within about a second and tells the user why", async () => {
    await terminal("kill", aliceKey, "web1");
    await eventually(
      () => capture("kill"),
      (pane) => pane.includes("#"),
    );
    const session = lastSession();
    const started = Date.now();
    session.abort("killed", "carol ended this session: incident over");
    const pane = await eventually(
      () => capture("kill"),
      (text) => text.includes("ssh-exit="),
      5000,
    );
    expect(pane).toContain("Stint: carol ended this session: incident over");
    expect(pane).toContain("ssh-exit=255");
    // When ssh exited, by the pane's clock (polling the pane adds its own delay).
    const exitedAt = Number(/ssh-exit=\d+ at=(\d+)/.exec(pane)?.[1]);
    expect(exitedAt - started, pane).toBeLessThan(1000);
    expect(await session.ended).toBe("killed");
    // The proxy counts the connection until its socket has closed, a moment after the session ended.
    expect(
      await eventually(
        async () => proxy.liveSessions(),
        (live) => live === 0,
        2000,
      ),
    ).toBe(0);
  }, 30_000);
});

describe("close", () => {
  it("ends live sessions with shutdown", async () => {
    const other = createSshProxy({ gate, hostKey: proxyHostKey.private, logger, port: 0 });
    const { port } = await other.listen();
    const child = client("ssh", [
      ...sshOptions(aliceKey, knownHostsFor(port)),
      "-p",
      String(port),
      "alice%web1@127.0.0.1",
      "sleep 30",
    ]);
    await eventually(
      () => other.liveSessions(),
      (count) => count === 1,
    );
    const session = lastSession();
    await other.close();
    const result = await child;
    expect(result.code).toBe(255);
    expect(result.stderr).toContain("Stint: the Stint SSH proxy is shutting down.");
    expect(session.endReason).toBe("shutdown");
    expect(other.liveSessions()).toBe(0);
  }, 30_000);
});

function knownHostsFor(port: number): string {
  const path = join(dir, `known_hosts_${port}`);
  writeFileSync(path, `[127.0.0.1]:${port} ${proxyHostKey.public.trim()}\n`);
  return path;
}

describe("userauthSignatureValid", () => {
  const ed = generateKeyPairSync("ed25519");
  const otherEd = generateKeyPairSync("ed25519");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const blob = Buffer.from("session id + userauth request");
  const sshString = (value: string | Buffer) => {
    const bytes = Buffer.from(value);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  const signatureBlob = (algorithm: string, signature: Buffer) =>
    Buffer.concat([sshString(algorithm), sshString(signature)]);
  const context = (algo: string, signature: Buffer | undefined) => ({
    key: { algo, data: Buffer.alloc(0) },
    signature,
    blob,
  });
  const edSignature = signatureBlob("ssh-ed25519", sign(null, blob, ed.privateKey));
  const rsa512 = signatureBlob("rsa-sha2-512", sign("sha512", blob, rsa.privateKey));
  const rsaSha1 = signatureBlob("ssh-rsa", sign("sha1", blob, rsa.privateKey));
  const edCertNamed = signatureBlob("ssh-ed25519-cert-v01@openssh.com", sign(null, blob, ed.privateKey));
  const edRsaNamed = signatureBlob("rsa-sha2-512-cert-v01@openssh.com", sign(null, blob, ed.privateKey));
  const rsaCertNamed = signatureBlob("rsa-sha2-512-cert-v01@openssh.com", sign("sha512", blob, rsa.privateKey));

  it.each([
    ["ed25519, right key", "ssh-ed25519-cert-v01@openssh.com", edSignature, ed.publicKey, true],
    ["ed25519, another key", "ssh-ed25519-cert-v01@openssh.com", edSignature, otherEd.publicKey, false],
    ["ed25519, no signature", "ssh-ed25519-cert-v01@openssh.com", undefined, ed.publicKey, false],
    // ssh2's client names the certificate in the signature blob (the browser terminal): the key still decides.
    [
      "ed25519 named as its certificate, right key",
      "ssh-ed25519-cert-v01@openssh.com",
      edCertNamed,
      ed.publicKey,
      true,
    ],
    [
      "ed25519 named as its certificate, another key",
      "ssh-ed25519-cert-v01@openssh.com",
      edCertNamed,
      otherEd.publicKey,
      false,
    ],
    ["ed25519 named as an RSA certificate", "ssh-ed25519-cert-v01@openssh.com", edRsaNamed, ed.publicKey, false],
    ["RSA named as its certificate", "rsa-sha2-512-cert-v01@openssh.com", rsaCertNamed, rsa.publicKey, false],
    // ssh2's server strips a name equal to the offered algorithm (what ssh2's client writes): a bare signature.
    [
      "ed25519, the bare signature",
      "ssh-ed25519-cert-v01@openssh.com",
      sign(null, blob, ed.privateKey),
      ed.publicKey,
      true,
    ],
    [
      "ed25519, a bare signature by another key",
      "ssh-ed25519-cert-v01@openssh.com",
      sign(null, blob, otherEd.privateKey),
      ed.publicKey,
      false,
    ],
    [
      "ed25519, a bare signature cut short",
      "ssh-ed25519-cert-v01@openssh.com",
      sign(null, blob, ed.privateKey).subarray(0, 63),
      ed.publicKey,
      false,
    ],
    [
      "ed25519, a bare RSA signature",
      "ssh-ed25519-cert-v01@openssh.com",
      sign("sha512", blob, rsa.privateKey),
      ed.publicKey,
      false,
    ],
    ["rsa-sha2-512", "rsa-sha2-512-cert-v01@openssh.com", rsa512, rsa.publicKey, true],
    ["rsa-sha2-512 offered as rsa-sha2-256", "rsa-sha2-256-cert-v01@openssh.com", rsa512, rsa.publicKey, false],
    ["SHA-1 RSA", "ssh-rsa-cert-v01@openssh.com", rsaSha1, rsa.publicKey, false],
    ["an RSA signature for an ed25519 key", "ssh-ed25519-cert-v01@openssh.com", rsa512, ed.publicKey, false],
  ] as const)("%s", (_name, algo, signature, publicKey, expected) => {
    expect(userauthSignatureValid(context(algo, signature), publicKey)).toBe(expected);
  });

  it("a signature over other data fails", () => {
    const ctx = { ...context("ssh-ed25519-cert-v01@openssh.com", edSignature), blob: Buffer.from("other") };
    expect(userauthSignatureValid(ctx, ed.publicKey)).toBe(false);
  });
});

describe("scp and rsync helpers", () => {
  it.each([
    ["scp -t /tmp/x", { direction: "upload", path: "/tmp/x" }],
    ["scp -v -p -t -- '/tmp/a b'", { direction: "upload", path: "/tmp/a b" }],
    // More than one plain scp for the remote shell: a shell, recorded as one (issue 12 finding 8).
    ["scp -t /tmp; bash", undefined],
    ["scp -f /etc/hostname && sh", undefined],
    ["scp -t /tmp/a b", undefined],
    ["scp -t '/tmp/x'$(id)", undefined],
    ["scp -f /srv\nsh", undefined],
    ["scp -f '/etc/hostname'", { direction: "download", path: "/etc/hostname" }],
    ["/usr/bin/scp -r -f /srv", { direction: "download", path: "/srv" }],
    ["scp /tmp/x", undefined],
    ["ls -t /tmp", undefined],
    // A shell operator or expansion in an option word or the program word (fuzz/corpus/scp).
    ["scp -t;sh /tmp/x", undefined],
    ["scp -t&&bash -s x", undefined],
    ["scp -f$(id) x", undefined],
    ["/tmp/a;/usr/bin/scp -t /tmp/x", undefined],
    ["$(cmd)/scp -t x", undefined],
    ["`cmd`/scp -t x", undefined],
    ["./scp -t x", undefined],
    ["scp -t x\tsh", undefined],
    // A quoted path is kept as written, blanks and all.
    ["scp -t 'a  b'", { direction: "upload", path: "a  b" }],
    ["scp -t 'a\tb'", { direction: "upload", path: "a\tb" }],
    ["scp -t '/tmp/$(x)'", { direction: "upload", path: "/tmp/$(x)" }],
  ] as const)("parseScpCommand(%s)", (command, expected) => {
    expect(parseScpCommand(command)).toEqual(expected);
  });

  it.each([
    [
      "rsync --server -logDtpre.iLsfxCIvu . /tmp/dst",
      { direction: "upload", paths: ["/tmp/dst"], options: ["-logDtpre.iLsfxCIvu"] },
    ],
    [
      "rsync --server --sender -e.LsfxCIvu . /tmp/src",
      { direction: "download", paths: ["/tmp/src"], options: ["-e.LsfxCIvu"] },
    ],
    [
      "/usr/bin/rsync --server -logDtprze.iLsfxCIvu --delete --link-dest /srv/old --bwlimit=1000 . /srv/new",
      {
        direction: "upload",
        paths: ["/srv/new"],
        options: ["-logDtprze.iLsfxCIvu", "--delete", "--link-dest", "/srv/old", "--bwlimit=1000"],
      },
    ],
    // More than rsync for the remote shell, or an rsync that could run programs: an exec, recorded whole.
    ["rsync --server -e.LsfxCIvu . /tmp/x; sh", undefined],
    ["rsync --server -e.LsfxCIvu . /tmp/x\nsh", undefined],
    ["rsync --server -e.LsfxCIvu --temp-dir --daemon . /x", undefined],
    ["rsync --server -e.LsfxCIvu -T /tmp . /x", undefined],
    ["rsync --server -e.LsfxCIvu . /tmp/dst\\ dir", undefined],
    ["rsync --server --daemon .", undefined],
    ["rsync --server --daem --config=/tmp/evil.conf .", undefined],
    ["rsync --server --dparam=pre-xfer-exec=id . /x", undefined],
    ["rsync --server -M--log-file=/tmp/l . /x", undefined],
    ["rsync --server -resh . /x", undefined],
    ["rsync --server -e sh . /x", undefined],
    ["rsync --server --rsh=sh . /x", undefined],
    ["rsync --server --files-from=host:/list . /x", undefined],
    ["rsync --server -e.LsfxCIvu .", undefined],
    ["rsync --server -e.LsfxCIvu /tmp/x", undefined],
    ["rsync -e.LsfxCIvu . /tmp/x", undefined],
    ["rsync --server -- . /x", undefined],
  ] as const)("parseRsyncCommand(%s)", (command, expected) => {
    expect(parseRsyncCommand(command)).toEqual(expected);
  });

  it("createScpCounter counts file bytes, not control lines, in any chunking", () => {
    const stream = Buffer.concat([
      Buffer.from("T1700000000 0 1700000000 0\nC0644 5 a.txt\n"),
      Buffer.from("hello"),
      Buffer.from([0]),
      Buffer.from("D0755 0 dir\nC0600 0 empty\n"),
      Buffer.from([0]),
      Buffer.from("C0600 3 b\n"),
      Buffer.from("\n\nC"), // file content that looks like protocol
      Buffer.from([0]),
      Buffer.from("E\n"),
    ]);
    for (const size of [stream.length, 1, 4]) {
      const counter = createScpCounter();
      for (let offset = 0; offset < stream.length; offset += size) counter.feed(stream.subarray(offset, offset + size));
      expect(counter.bytes()).toBe(8);
    }
  });
});
