/**
 * The SSH user CA against OpenSSH itself: certificates as `ssh-keygen -L` reads them, logins through a
 * real sshd trusting the CA (TrustedUserCAKeys) with the OpenSSH client, certificates made by ssh-keygen
 * read by verifyCertificate, and verifyCertificate's verdicts. Throwaway user stint_ca_<hex>, removed in afterAll.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ssh2 from "ssh2";

const { utils } = ssh2;
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";
import { createUser, deleteUser, startSshd, type Sshd } from "../../testing/sshd.js";
import {
  generateCa,
  parseCertificate,
  signUserCertificate,
  verifyCertificate,
  type SignUserCertificateInput,
} from "./ssh-ca.js";

const HOUR = 3_600_000;
const ca = generateCa();
const otherCa = generateCa();
// A key ssh2 and OpenSSH load (ssh2's own generator makes one they cannot about once in 256).
const { privateKey: userPrivateKey, publicKey: userPublicKey } = generateEd25519KeyPair("");
const rsaUserKey = utils.generateKeyPairSync("rsa", { bits: 2048 });
const user = `stint_ca_${randomBytes(4).toString("hex")}`;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "stint-ssh-ca-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Whole seconds, as certificates carry them. */
const at = (offsetMs: number) => new Date(Math.floor((Date.now() + offsetMs) / 1000) * 1000);

function certificate(overrides: Partial<SignUserCertificateInput> = {}): string {
  return signUserCertificate({
    caPrivateKey: ca.privateKey,
    userPublicKey,
    keyId: "alice@stint activation 42",
    principals: [user],
    validAfter: at(-60_000),
    validBefore: at(HOUR),
    serial: 42n,
    ...overrides,
  });
}

function file(name: string, content: string, mode = 0o600): string {
  const path = join(dir, `${randomBytes(4).toString("hex")}-${name}`);
  writeFileSync(path, content.endsWith("\n") ? content : `${content}\n`, { mode });
  return path;
}

/** `ssh-keygen -L` output as fields ("Key ID" → '"x"') and lists (Principals, Critical Options, Extensions). */
function keygenList(cert: string): { fields: Record<string, string>; lists: Record<string, string[]> } {
  const output = execFileSync("ssh-keygen", ["-L", "-f", file("cert.pub", cert)], {
    encoding: "utf8",
    env: { ...process.env, TZ: "UTC" },
  });
  const fields: Record<string, string> = {};
  const lists: Record<string, string[]> = {};
  let list: string[] | undefined;
  for (const line of output.split("\n").slice(1)) {
    const field = /^ {8}([A-Za-z ]+): ?(.*)$/.exec(line);
    if (field) {
      fields[field[1]!] = field[2]!.trim();
      list = lists[field[1]!] = [];
    } else if (line.trim() && list) {
      list.push(line.trim());
    }
  }
  return { fields, lists };
}

const isoSeconds = (date: Date) => date.toISOString().slice(0, 19);

describe("signUserCertificate, as ssh-keygen -L reads it", () => {
  it("carries every field set, for an ed25519 user key", () => {
    const validAfter = at(-60_000);
    const validBefore = at(HOUR);
    const cert = certificate({
      validAfter,
      validBefore,
      serial: 18_446_744_073_709_551_615n,
      principals: ["alice", "root"],
      extensions: ["permit-pty", "permit-port-forwarding", "permit-agent-forwarding"],
      criticalOptions: { "source-address": "127.0.0.1/32,::1", "force-command": "id -un" },
    });
    expect(cert).toMatch(/^ssh-ed25519-cert-v01@openssh\.com AAAA[A-Za-z0-9+/=]+ alice@stint activation 42$/);

    const { fields, lists } = keygenList(cert);
    expect(fields["Type"]).toBe("ssh-ed25519-cert-v01@openssh.com user certificate");
    expect(fields["Key ID"]).toBe('"alice@stint activation 42"');
    expect(fields["Serial"]).toBe("18446744073709551615");
    expect(fields["Valid"]).toBe(`from ${isoSeconds(validAfter)} to ${isoSeconds(validBefore)}`);
    const caFingerprint = execFileSync("ssh-keygen", ["-lf", file("ca.pub", ca.publicKey)], { encoding: "utf8" });
    expect(fields["Signing CA"]).toBe(`ED25519 ${caFingerprint.split(" ")[1]} (using ssh-ed25519)`);
    expect(lists["Principals"]).toEqual(["alice", "root"]);
    expect(lists["Critical Options"]).toEqual(["force-command id -un", "source-address 127.0.0.1/32,::1"]);
    expect(lists["Extensions"]).toEqual(["permit-agent-forwarding", "permit-port-forwarding", "permit-pty"]);

    // parseCertificate reads the same.
    const parsed = parseCertificate(cert);
    expect(parsed).toMatchObject({
      keyType: "ssh-ed25519-cert-v01@openssh.com",
      type: "user",
      publicKey: userPublicKey,
      keyId: "alice@stint activation 42",
      principals: ["alice", "root"],
      validAfter,
      validBefore,
      serial: 18_446_744_073_709_551_615n,
      extensions: ["permit-agent-forwarding", "permit-port-forwarding", "permit-pty"],
      criticalOptions: { "force-command": "id -un", "source-address": "127.0.0.1/32,::1" },
      signatureKey: caFingerprint.split(" ")[1],
    });
  });

  it("certifies an RSA user key, with the default extensions and no critical options", () => {
    const cert = certificate({ userPublicKey: rsaUserKey.public });
    expect(cert.startsWith("ssh-rsa-cert-v01@openssh.com AAAA")).toBe(true);
    const { fields, lists } = keygenList(cert);
    expect(fields["Type"]).toBe("ssh-rsa-cert-v01@openssh.com user certificate");
    expect(fields["Serial"]).toBe("42");
    expect(lists["Principals"]).toEqual([user]);
    expect(fields["Critical Options"]).toBe("(none)");
    expect(lists["Extensions"]).toEqual(["permit-pty", "permit-user-rc"]);
    expect(parseCertificate(cert).publicKey).toBe(rsaUserKey.public.trim());
  });

  it("uses a fresh nonce every time", () => {
    expect(certificate()).not.toBe(certificate());
  });

  it.each<[string, Partial<SignUserCertificateInput>]>([
    ["no principals", { principals: [] }],
    ["an empty principal", { principals: [""] }],
    ["a principal with a comma", { principals: ["a,b"] }],
    ["an empty key id", { keyId: "" }],
    ["a key id with a newline", { keyId: "a\nb" }],
    ["an empty window", { validAfter: at(0), validBefore: at(0) }],
    ["a window ending before it starts", { validAfter: at(HOUR), validBefore: at(0) }],
    ["a negative serial", { serial: -1n }],
    ["a serial over 64 bits", { serial: 1n << 64n }],
    ["an unknown extension", { extensions: ["permit-everything" as "permit-pty"] }],
    ["a repeated extension", { extensions: ["permit-pty", "permit-pty"] }],
    ["a bad source-address", { criticalOptions: { "source-address": "10.0.0.0/33" } }],
    ["an empty force-command", { criticalOptions: { "force-command": "" } }],
    ["an unknown critical option", { criticalOptions: { "no-touch-required": "" } as never }],
    ["a user key that is not a key", { userPublicKey: "ssh-ed25519 AAAAnotakey" }],
    ["a user key of an unsupported type", { userPublicKey: utils.generateKeyPairSync("ecdsa", { bits: 256 }).public }],
    ["a user key whose label lies", { userPublicKey: userPublicKey.replace("ssh-ed25519", "ssh-rsa") }],
    ["an RSA CA key", { caPrivateKey: rsaUserKey.private }],
    ["a CA key that is not a key", { caPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n" }],
  ])("refuses to sign with %s", (_, overrides) => {
    expect(() => certificate(overrides)).toThrow();
  });
});

describe("a real sshd trusting the CA", () => {
  let sshd: Sshd;

  beforeAll(async () => {
    sshd = await startSshd({ extraConfig: [`TrustedUserCAKeys ${file("trusted-ca.pub", ca.publicKey, 0o644)}`] });
    await createUser(user, { sshLogin: true });
  });
  afterAll(async () => {
    await deleteUser(user);
    await sshd?.stop();
  });

  /** The OpenSSH client, signing in with the key (and the certificate, if any) and running `id -un`. */
  function ssh(privateKey: string, cert: string | undefined) {
    const args = ["-F", "/dev/null", "-i", file("id", privateKey), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"];
    if (cert) args.push("-o", `CertificateFile=${file("id-cert.pub", cert)}`);
    args.push("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5");
    args.push("-p", String(sshd.port), `${user}@${sshd.host}`, "id", "-un");
    const result = spawnSync("ssh", args, { encoding: "utf8", timeout: 15_000 });
    return { status: result.status, stdout: result.stdout.trim(), stderr: result.stderr };
  }

  function expectRefused(result: ReturnType<typeof ssh>): void {
    expect(result.status).toBe(255);
    expect(result.stderr).toMatch(/Permission denied \(publickey\)/);
  }

  it("lets in an ed25519 key with a certificate naming the user", () => {
    const result = ssh(userPrivateKey, certificate());
    expect(result).toMatchObject({ status: 0, stdout: user });
  });

  it("lets in an RSA key with its certificate", () => {
    const result = ssh(rsaUserKey.private, certificate({ userPublicKey: rsaUserKey.public }));
    expect(result).toMatchObject({ status: 0, stdout: user });
  });

  it("refuses the same key without a certificate", () => {
    expectRefused(ssh(userPrivateKey, undefined));
  });

  it("refuses an expired certificate", () => {
    expectRefused(ssh(userPrivateKey, certificate({ validAfter: at(-2 * HOUR), validBefore: at(-HOUR) })));
  });

  it("refuses a certificate that is not valid yet", () => {
    expectRefused(ssh(userPrivateKey, certificate({ validAfter: at(HOUR), validBefore: at(2 * HOUR) })));
  });

  it("refuses a certificate for another principal", () => {
    expectRefused(ssh(userPrivateKey, certificate({ principals: ["root"] })));
  });

  it("refuses a certificate signed by another CA", () => {
    expectRefused(ssh(userPrivateKey, certificate({ caPrivateKey: otherCa.privateKey })));
  });
});

describe("verifyCertificate", () => {
  const now = new Date();
  const validAfter = at(-60_000);
  const validBefore = at(HOUR);
  const good = certificate({ validAfter, validBefore });
  const blob = Buffer.from(good.split(" ")[1]!, "base64");
  const withBlob = (bytes: Buffer) => `ssh-ed25519-cert-v01@openssh.com ${bytes.toString("base64")} x`;

  /** A certificate made by OpenSSH's own ssh-keygen with our CA's key. */
  function keygenSigned(args: string[]): string {
    const caFile = file("ca", ca.privateKey);
    const keyFile = file("key.pub", userPublicKey);
    execFileSync("ssh-keygen", ["-q", "-s", caFile, "-I", "made-by-ssh-keygen", "-V", "-5m:+1h", ...args, keyFile]);
    return readFileSync(keyFile.replace(/\.pub$/, "-cert.pub"), "utf8").trim();
  }

  it("accepts a good certificate and returns what it says", () => {
    const verdict = verifyCertificate(good, ca.publicKey, now);
    expect(verdict).toEqual({ ok: true, certificate: parseCertificate(good) });
  });

  it("accepts a user certificate made by ssh-keygen with the CA", () => {
    const verdict = verifyCertificate(keygenSigned(["-n", "alice,bob"]), ca.publicKey, now);
    expect(verdict).toMatchObject({
      ok: true,
      certificate: { keyId: "made-by-ssh-keygen", principals: ["alice", "bob"] },
    });
  });

  it.each<[string, () => string, Date, string, { principal?: string }?]>([
    ["signed by another CA", () => certificate({ caPrivateKey: otherCa.privateKey }), now, "signed by another CA"],
    ["expired, at the very second", () => good, validBefore, "expired"],
    ["expired long ago", () => good, new Date(validBefore.getTime() + HOUR), "expired"],
    ["not valid yet", () => good, new Date(validAfter.getTime() - 1000), "not yet valid"],
    ["for another principal", () => good, now, "not valid for root", { principal: "root" }],
    ["a host certificate", () => keygenSigned(["-h", "-n", "host.example"]), now, "not a user certificate"],
    ["without principals", () => keygenSigned([]), now, "no principals"],
    [
      "with an unknown critical option",
      () => keygenSigned(["-n", "a", "-O", "critical:x@y=z"]),
      now,
      "unsupported critical option x@y",
    ],
    [
      "with a byte of the key id flipped",
      () => withBlob(flip(blob, blob.indexOf("alice@stint") + 1)),
      now,
      "bad signature",
    ],
    ["with the signature's last byte flipped", () => withBlob(flip(blob, blob.length - 1)), now, "bad signature"],
    ["not a certificate at all", () => "hello", now, "malformed: not a key line"],
    ["a plain public key", () => userPublicKey, now, "malformed: unsupported certificate type ssh-ed25519"],
    [
      "relabelled",
      () => good.replace("ssh-ed25519-cert", "ssh-rsa-cert"),
      now,
      "malformed: the line's type and the certificate's differ",
    ],
    ["cut short", () => withBlob(blob.subarray(0, blob.length - 10)), now, "malformed: truncated"],
    ["with bytes appended", () => withBlob(Buffer.concat([blob, Buffer.from([0])])), now, "malformed: trailing bytes"],
  ])("refuses a certificate %s", (_, line, when, reason, options) => {
    expect(verifyCertificate(line(), ca.publicKey, when, options)).toEqual({ ok: false, reason });
  });

  it("accepts it at its first second and for a principal it names", () => {
    expect(verifyCertificate(good, ca.publicKey, validAfter, { principal: user }).ok).toBe(true);
  });

  it("refuses the certificate with any single byte flipped, wherever it is", () => {
    for (let offset = 0; offset < blob.length; offset++) {
      const verdict = verifyCertificate(withBlob(flip(blob, offset)), ca.publicKey, now);
      expect(verdict.ok, `byte ${offset}`).toBe(false);
    }
  });
});

function flip(bytes: Buffer, offset: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[offset] = copy[offset]! ^ 0x01;
  return copy;
}
