/**
 * Class: a peer asking the SSH proxy "would you take this key?" without ever signing (finding 87). A
 * publickey userauth request without a signature is a query: the proxy answers PK_OK when the gate would take
 * the certificate, and the client is to sign next. Finding 85 counted refusals only, so a query answered yes
 * cost nothing: one connection asked about 50 certificates (the gate checking each: CA signature, validity,
 * principal) and was answered 50 times, logged nowhere, until the handshake deadline. Now a query answered
 * yes that the client does not follow with its signature counts as a failure toward
 * STINT_SSH_PROXY_MAX_AUTH_TRIES (OpenSSH counts failed queries, not answered ones: stricter on purpose),
 * the close is an SSH disconnect saying why, and the connection's attempts are logged by fingerprint.
 *
 * The real SSH proxy; ssh2's client with an agent that offers certificates and never signs as the prober;
 * OpenSSH's ssh with an agent holding several plain keys before its Stint certificate as the normal client,
 * through the proxy to a real sshd.
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import ssh2, { type IdentityCallback, type ParsedKey, type SignCallback } from "ssh2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../../src/lib/ssh-keys.js";
import { createLogger } from "../../src/lib/logger.js";
import { type BrokeredSession, type SessionGate, type UpstreamSsh } from "../../src/modules/sessions/sessions.types.js";
import { generateCa, signUserCertificate } from "../../src/modules/sessions/ssh-ca.js";
import { startSshd, type Sshd } from "../../src/testing/sshd.js";
import { certificateCheck, sshProxies } from "./ssh-proxy.support.js";

const { BaseAgent, Client, utils } = ssh2;
const run = promisify(execFile);
const LOGIN = "alice%web";
const PROBES = 50;

const ca = generateCa();
const certify = (publicKey: string, serial: number): string =>
  signUserCertificate({
    caPrivateKey: ca.privateKey,
    userPublicKey: publicKey,
    keyId: `alice ${serial}`,
    principals: [LOGIN],
    validAfter: new Date(Date.now() - 60_000),
    validBefore: new Date(Date.now() + 3_600_000),
    serial: BigInt(serial),
  });
/** PROBES valid certificates for LOGIN, each for its own key (whose private half the prober need not hold). */
const certificates = Array.from({ length: PROBES }, (_, i) =>
  certify(generateEd25519KeyPair("probe").publicKey, i + 1),
);

let sshd: Sshd;
let dir: string;
const logLines: Record<string, unknown>[] = [];
const calls = { certificates: 0, sessions: 0 };

const gate: Pick<SessionGate, "checkSshCertificate" | "openSsh"> = {
  checkSshCertificate: certificateCheck(ca.publicKey, "alice", calls),
  openSsh() {
    calls.sessions += 1;
    const upstream: UpstreamSsh = {
      kind: "ssh",
      host: sshd.host,
      address: sshd.host,
      port: sshd.port,
      username: sshd.adminUser,
      hostKey: sshd.hostKeyFingerprint,
      privateKey: sshd.adminPrivateKey,
    };
    const session: BrokeredSession<UpstreamSsh> = {
      id: randomBytes(4).toString("hex"),
      user: "alice",
      role: "web-admin",
      target: "web",
      policy: { recording: "required", portForwarding: false, queryParameters: false },
      upstream,
      recorder: {
        output: () => undefined,
        errorOutput: () => undefined,
        input: () => undefined,
        resize: () => undefined,
        event: () => undefined,
        query: () => undefined,
      },
      signal: new AbortController().signal,
      countBytes: () => undefined,
      end: () => Promise.resolve(),
    };
    return Promise.resolve(session);
  },
};

/** The proxies of this file, their log lines kept in `logLines` as JSON objects. */
const proxies = sshProxies(
  gate,
  createLogger({
    level: "info",
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean))
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  }),
);
const proxyPort = (maxAuthTries?: number) => proxies.start(maxAuthTries);

beforeAll(async () => {
  sshd = await startSshd();
  dir = mkdtempSync(join(tmpdir(), "stint-key-probes-"));
}, 60_000);
afterAll(async () => {
  await proxies.closeAll();
  await sshd?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Offers every certificate it holds and signs none: each offer is a query the proxy answers. */
class ProbingAgent extends BaseAgent<ParsedKey> {
  constructor(private readonly offered: string[]) {
    super();
  }
  getIdentities(cb: IdentityCallback<ParsedKey>): void {
    cb(
      undefined,
      this.offered.map((line) => {
        const parsed = utils.parseKey(line) as ParsedKey;
        const blob = Buffer.from(line.split(/\s+/)[1] ?? "", "base64");
        return Object.assign(parsed, { getPublicSSH: () => blob });
      }),
    );
  }
  sign(_key: ParsedKey, _data: Buffer, options: unknown, cb?: SignCallback): void {
    const done = (typeof options === "function" ? options : cb) as SignCallback;
    done(new Error("this prober holds no private key"));
  }
}

/** One connection offering `offered` through the probing agent: the queries answered yes, and how it ended. */
function probe(port: number, offered: string[]): Promise<{ answeredYes: number; disconnect: string }> {
  return new Promise((resolve) => {
    const client = new Client();
    let answeredYes = 0;
    let disconnect = "";
    let asked = 0;
    client.on("error", (error: Error & { level?: string }) => {
      // ssh2 asks the agent to sign only after the proxy answered PK_OK: one such error per yes.
      if (error.level === "agent") answeredYes += 1;
      else disconnect ||= error.message;
    });
    client.on("close", () => resolve({ answeredYes, disconnect }));
    client.on("ready", () => client.end());
    const agent = new ProbingAgent(offered);
    client.connect({
      username: LOGIN,
      host: "127.0.0.1",
      port,
      readyTimeout: 60_000,
      hostVerifier: () => true,
      authHandler: (_methods, _partial, next) =>
        next(asked++ === 0 ? { type: "agent", username: LOGIN, agent } : (false as never)),
    });
  });
}

const fingerprint = (line: string) =>
  `SHA256:${createHash("sha256")
    .update(Buffer.from(line.split(/\s+/)[1] ?? "", "base64"))
    .digest("base64")
    .replace(/=+$/, "")}`;

describe("SSH proxy: key queries without a signature (finding 87)", () => {
  it("50 valid certificates asked about on one connection: answered at most 6 times, then an SSH disconnect saying why", async () => {
    const port = await proxyPort();
    calls.certificates = 0;
    calls.sessions = 0;
    logLines.length = 0;
    const result = await probe(port, certificates);
    // Before: all 50 were answered PK_OK (and checked by the gate) on the one connection, nothing logged.
    expect(result.answeredYes).toBeGreaterThan(0);
    expect(result.answeredYes).toBeLessThanOrEqual(6);
    expect(calls.certificates).toBeLessThanOrEqual(7);
    expect(calls.sessions).toBe(0);
    expect(result.disconnect).toMatch(/too many authentication failures \(6 per connection/);
    const closing = logLines.filter(
      (line) => line.msg === "too many ssh authentication failures; closing the connection",
    );
    expect(closing).toHaveLength(1);
    expect(closing[0]).toMatchObject({ failures: 6, unsigned: 6 });
    // Keys by fingerprint only: no certificate, no key material in the log.
    const keys = closing[0]!.keys as string[];
    expect(keys[0]).toBe(`ssh-ed25519-cert-v01@openssh.com ${fingerprint(certificates[0]!)}`);
    const text = JSON.stringify(logLines);
    for (const line of certificates) expect(text).not.toContain(line.split(/\s+/)[1]!.slice(0, 40));
  }, 120_000);

  it("STINT_SSH_PROXY_MAX_AUTH_TRIES bounds the queries too", async () => {
    const port = await proxyPort(2);
    const result = await probe(port, certificates);
    expect(result.answeredYes).toBeLessThanOrEqual(2);
    expect(result.disconnect).toMatch(/\(2 per connection/);
  }, 120_000);

  it("a connection that asks and leaves is logged once with what it asked", async () => {
    const port = await proxyPort();
    logLines.length = 0;
    const result = await probe(port, certificates.slice(0, 2));
    expect(result.answeredYes).toBe(2);
    const summary = await eventually(() =>
      logLines.find((line) => line.msg === "ssh connection closed before signing in"),
    );
    expect(summary).toMatchObject({
      unsigned: 2,
      keys: certificates.slice(0, 2).map((l) => expect.stringContaining(fingerprint(l))),
    });
  }, 120_000);

  it("OpenSSH with four other keys and its own plain key in its agent before its certificate still signs in", async () => {
    const port = await proxyPort();
    calls.sessions = 0;
    const agentSocket = join(dir, "agent.sock");
    const agent = spawn("ssh-agent", ["-D", "-a", agentSocket], { stdio: "ignore" });
    try {
      await eventually(() =>
        run("ssh-add", ["-l"], { env: { SSH_AUTH_SOCK: agentSocket } }).catch((e: { code?: number }) =>
          e.code === 1 ? "empty" : undefined,
        ),
      );
      const env = { ...process.env, SSH_AUTH_SOCK: agentSocket };
      for (let i = 0; i < 4; i++) {
        const key = join(dir, `plain${i}`);
        await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
        await run("ssh-add", ["-q", key], { env });
      }
      const key = join(dir, "alice");
      await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
      writeFileSync(`${key}-cert.pub`, `${certify(readFileSync(`${key}.pub`, "utf8"), 1000)}\n`);
      // Its plain key, then its certificate: six identities, five refused (as OpenSSH's sshd would), the certificate last.
      await run("ssh-add", ["-q", key], { env });
      const { stdout: listed } = await run("ssh-add", ["-l"], { env });
      expect(listed.trim().split("\n").at(-1)).toMatch(/CERT/);
      const args = [
        ...["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"],
        ...["-n", "-o", "BatchMode=yes", "-o", `IdentityFile=${join(dir, "none")}`, "-p", String(port)],
        `${LOGIN}@127.0.0.1`,
        "echo",
        "signed-in",
      ];
      const { stdout } = await run("ssh", args, { env, timeout: 60_000 });
      expect(stdout.trim()).toBe("signed-in");
      expect(calls.sessions).toBe(1);
    } finally {
      agent.kill();
    }
  }, 120_000);
});

async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
