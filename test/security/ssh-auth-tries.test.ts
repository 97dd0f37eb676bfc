/**
 * Class: a peer repeating userauth requests on one SSH proxy connection (finding 85): guessing passwords or
 * keys, or replaying a certificate whose session the gate refuses, each refusal logged (and the gate's
 * audited as `session.refused`), for as long as the handshake deadline lasts. OpenSSH closes a connection
 * at its 6th failure (MaxAuthTries); the proxy had no such cap: 50 attempts on one connection were all
 * answered. Now the connection is closed at the `STINT_SSH_PROXY_MAX_AUTH_TRIES`th refusal (6), saying why.
 *
 * The real SSH proxy; ssh2's client as the attacker; a gate that refuses every session (counting the calls
 * the real gate would audit) with certificates from a real Stint CA.
 */
import { generateKeyPairSync, sign } from "node:crypto";
import ssh2, { type AnyAuthMethod } from "ssh2";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/lib/logger.js";
import { SessionRefusedError, type SessionGate } from "../../src/modules/sessions/sessions.types.js";
import { generateCa, signUserCertificate } from "../../src/modules/sessions/ssh-ca.js";
import { CertificateAgent } from "../../src/proxies/ssh/web-terminal.js";
import { certificateCheck, sshProxies } from "./ssh-proxy.support.js";

const { Client } = ssh2;
const ATTEMPTS = 50;
const LOGIN = "mallory%web";

const ca = generateCa();
/** An Ed25519 key pair and its Stint certificate for LOGIN, valid now. */
const userKey = generateKeyPairSync("ed25519");
const sshString = (bytes: Buffer): Buffer => {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
};
const rawPublic = Buffer.from(userKey.publicKey.export({ format: "jwk" }).x!, "base64url");
const certificate = signUserCertificate({
  caPrivateKey: ca.privateKey,
  userPublicKey: `ssh-ed25519 ${Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(rawPublic)]).toString("base64")}`,
  keyId: "mallory",
  principals: [LOGIN],
  validAfter: new Date(Date.now() - 60_000),
  validBefore: new Date(Date.now() + 3_600_000),
  serial: 7n,
});

const calls = { certificates: 0, sessions: 0 };
const gate: Pick<SessionGate, "checkSshCertificate" | "openSsh"> = {
  checkSshCertificate: certificateCheck(ca.publicKey, "mallory", calls),
  // The real gate audits each of these refusals (`session.refused`).
  openSsh() {
    calls.sessions += 1;
    return Promise.reject(
      new SessionRefusedError("NOT_ACTIVE", "The activation this certificate was issued for has ended."),
    );
  },
};

const proxies = sshProxies(gate, createLogger({ level: "silent" }));
afterAll(() => proxies.closeAll());
const proxyWith = (maxAuthTries?: number) => proxies.start(maxAuthTries);

/**
 * One connection making up to ATTEMPTS userauth requests of `method`'s making; resolves when the client
 * gives up or the connection closes, with the refusals it was answered (ssh2 asks for the next method
 * after each) and the banners the proxy sent.
 */
function attack(port: number, method: (n: number) => AnyAuthMethod): Promise<{ refusals: number; banner: string }> {
  return new Promise((resolve) => {
    const client = new Client();
    let asked = 0;
    let banner = "";
    client.on("banner", (message: string) => (banner += message));
    client.on("error", () => undefined);
    client.on("close", () => resolve({ refusals: Math.max(0, asked - 1), banner }));
    client.on("ready", () => client.end());
    client.connect({
      host: "127.0.0.1",
      port,
      username: LOGIN,
      hostVerifier: () => true,
      readyTimeout: 60_000,
      authHandler: (_methods, _partial, next) => {
        asked += 1;
        next(asked <= ATTEMPTS ? method(asked) : (false as never));
      },
    });
  });
}

const password = (n: number): AnyAuthMethod => ({ type: "password", username: LOGIN, password: `guess-${n}` });
const replayedCertificate = (): AnyAuthMethod => ({
  type: "agent",
  username: LOGIN,
  agent: new CertificateAgent(certificate, (data) => sign(null, data, userKey.privateKey)),
});

describe("SSH proxy: userauth attempts on one connection", () => {
  it("password guesses: the connection is closed at the 6th refusal, not answered 50 times", async () => {
    const port = await proxyWith();
    const result = await attack(port, password);
    // Before: all 50 guesses were answered with USERAUTH_FAILURE on the one connection.
    expect(result.refusals).toBeLessThan(6);
    expect(result.banner).toMatch(
      /too many authentication failures \(6 per connection, STINT_SSH_PROXY_MAX_AUTH_TRIES\)/,
    );
  }, 120_000);

  it("a certificate replayed after the gate refused its session: the gate (which audits each refusal) is asked 6 times, not 50", async () => {
    const port = await proxyWith();
    calls.sessions = 0;
    const result = await attack(port, replayedCertificate);
    expect(calls.sessions).toBeGreaterThan(0);
    // Before: the gate refused (and audited) 50 signed attempts on the one connection.
    expect(calls.sessions).toBeLessThanOrEqual(6);
    expect(result.banner).toMatch(/too many authentication failures/);
  }, 120_000);

  it("STINT_SSH_PROXY_MAX_AUTH_TRIES sets the cap", async () => {
    const port = await proxyWith(2);
    calls.sessions = 0;
    const result = await attack(port, replayedCertificate);
    expect(calls.sessions).toBeLessThanOrEqual(2);
    expect(result.refusals).toBeLessThan(2);
    expect(result.banner).toMatch(/\(2 per connection/);
  }, 120_000);
});
