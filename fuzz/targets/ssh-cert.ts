/**
 * OpenSSH certificates and public key lines, as a client or user supplies them (the SSH proxy's
 * certificate check, a user's key sent for signing). Input layout: byte 0 picks the form
 * (even: the rest is the line as text; odd: the rest is the key blob, written as
 * "<its own type> <base64>"), byte 1 picks a principal to ask for.
 * Properties: parseCertificate throws only MalformedCertificateError; verifyCertificate never
 * throws and accepts only a certificate this CA signed; publicKeyObject and signUserCertificate
 * (the user's key) throw only TypeError; a signed certificate parses back to what was signed and
 * verifies, for its principals only and within its window only.
 */
import { generateKeyPairSync } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import fc from "fast-check";
import { generateEd25519KeyPair } from "../../src/lib/ssh-keys.js";
import { sshString } from "../../src/lib/ssh-wire.js";
import {
  CERT_EXTENSIONS,
  MalformedCertificateError,
  generateCa,
  parseCertificate,
  publicKeyObject,
  signUserCertificate,
  verifyCertificate,
  type CertExtension,
} from "../../src/modules/sessions/ssh-ca.js";
import { expect, feature, kindOf, only, type FuzzTarget, type ValidInput } from "../harness.js";

const CA = generateCa();
const OTHER_CA = generateCa();
/** Blobs the valid generator had this CA sign (at most POOL_SIZE). */
const SIGNED = new Set<string>();
const NOW = new Date("2026-06-01T12:00:00Z");
const PRINCIPALS = ["alice", "root", "postgres", ""];

/** A fresh RSA key as an OpenSSH public key line (1024 bits: fast to make, and only parsed). */
export function rsaLine(): string {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const jwk = publicKey.export({ format: "jwk" });
  const mpint = (b64: string) => {
    const raw = Buffer.from(b64, "base64url");
    return (raw[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.of(0), raw]) : raw;
  };
  const blob = Buffer.concat([sshString("ssh-rsa"), sshString(mpint(jwk.e ?? "")), sshString(mpint(jwk.n ?? ""))]);
  return `ssh-rsa ${blob.toString("base64")} fuzz`;
}

const USER_KEYS = [generateEd25519KeyPair("fuzz").publicKey, generateEd25519KeyPair("fuzz").publicKey, rsaLine()];

function lineOf(input: Buffer): string {
  const body = input.subarray(2);
  if (((input[0] ?? 0) & 1) === 0) return body.toString("utf8");
  const length = body.length >= 4 ? body.readUInt32BE(0) : 0;
  const type = body.toString("latin1", 4, 4 + Math.min(length, 64));
  return `${type} ${body.toString("base64")}`;
}

const malformed = (error: unknown) => error instanceof MalformedCertificateError;
const typeError = (error: unknown) => error instanceof TypeError;

function check(input: Buffer): void {
  const line = lineOf(input);
  const principal = PRINCIPALS[(input[1] ?? 0) % (PRINCIPALS.length + 1)];
  only(malformed, "parseCertificate", () => parseCertificate(line));
  const verdict = only(
    () => false,
    "verifyCertificate",
    () => verifyCertificate(line, CA.publicKey, NOW, principal === undefined ? {} : { principal }),
  );
  if (verdict !== undefined) feature(`verdict:${verdict.ok ? "ok" : kindOf(new Error(verdict.reason))}`);
  // Only certificates the valid generator had this CA sign may pass.
  if (verdict?.ok === true) {
    expect(
      SIGNED.has(line.split(" ")[1] ?? ""),
      `verifyCertificate accepted a certificate the CA never signed: ${line}`,
    );
  }
  const key = only(typeError, "publicKeyObject", () => publicKeyObject(line));
  // Signing parses the CA key first (about a millisecond), so only keys that parse go on to be signed.
  if (key === undefined) return;
  only(
    (error) => error instanceof TypeError,
    "signUserCertificate",
    () =>
      signUserCertificate({
        caPrivateKey: CA.privateKey,
        userPublicKey: line,
        keyId: "fuzz",
        principals: ["alice"],
        validAfter: new Date(NOW.getTime() - 60_000),
        validBefore: new Date(NOW.getTime() + 60_000),
        serial: 1n,
      }),
  );
}

const printable = fc.string({
  unit: fc
    .integer({ min: 0x21, max: 0x7e })
    .filter((c) => c !== 0x2c)
    .map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 16,
});

const spec = fc.record({
  key: fc.constantFrom(...USER_KEYS),
  keyId: printable,
  principals: fc.uniqueArray(printable, { minLength: 1, maxLength: 4 }),
  serial: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  before: fc.integer({ min: 1, max: 10_000 }),
  after: fc.integer({ min: 1, max: 10_000 }),
  extensions: fc.subarray([...CERT_EXTENSIONS] as CertExtension[]),
  forceCommand: fc.option(printable, { nil: undefined }),
});
type Spec = typeof spec extends fc.Arbitrary<infer T> ? T : never;

/**
 * Valid certificates come from a pool, each signed and checked once: signing parses the CA's
 * private key every time (about 1 ms), so signing one per input made this target sign far more
 * than it parsed. Mutations of the pool's certificates still reach every parser.
 */
const POOL_SIZE = 2048;
const pool = new Map<number, ValidInput>();
const poolSalt = Math.floor(Math.random() * 2 ** 30);

function pooled(index: number): ValidInput {
  let input = pool.get(index);
  if (input === undefined) {
    input = certificateInput(fc.sample(spec, { numRuns: 1, seed: poolSalt + index })[0] as Spec);
    pool.set(index, input);
  }
  return input;
}

function certificateInput(spec: Spec): ValidInput {
  const validAfter = new Date(NOW.getTime() - spec.before * 1000);
  const validBefore = new Date(NOW.getTime() + spec.after * 1000);
  const line = signUserCertificate({
    caPrivateKey: CA.privateKey,
    userPublicKey: spec.key,
    keyId: spec.keyId,
    principals: spec.principals,
    validAfter,
    validBefore,
    serial: spec.serial,
    extensions: spec.extensions,
    criticalOptions: spec.forceCommand === undefined ? {} : { "force-command": spec.forceCommand },
  });
  const [type, base64 = ""] = line.split(" ");
  SIGNED.add(base64);
  let verified = false;
  return {
    bytes: Buffer.concat([Buffer.of(1, 0), Buffer.from(base64 ?? "", "base64")]),
    verify: () => {
      if (verified) return;
      verified = true;
      expect(type === lineOf(Buffer.concat([Buffer.of(1, 0), Buffer.from(base64, "base64")])).split(" ")[0], "type");
      const certificate = parseCertificate(line);
      const [keyType, keyBase64] = spec.key.split(" ");
      expect(certificate.publicKey === `${keyType} ${keyBase64}`, "the certified key differs");
      expect(certificate.keyId === spec.keyId, "keyId differs");
      expect(isDeepStrictEqual(certificate.principals, spec.principals), "principals differ");
      expect(certificate.serial === spec.serial, "serial differs");
      expect(isDeepStrictEqual([...certificate.extensions].sort(), [...spec.extensions].sort()), "extensions differ");
      expect(certificate.criticalOptions["force-command"] === spec.forceCommand, "force-command differs");
      const principal =
        spec.principals[spec.serial % BigInt(spec.principals.length) === 0n ? 0 : spec.principals.length - 1];
      const verdict = verifyCertificate(line, CA.publicKey, NOW, principal === undefined ? {} : { principal });
      expect(verdict.ok, `a signed certificate failed to verify: ${verdict.ok ? "" : verdict.reason}`);
      expect(!verifyCertificate(line, CA.publicKey, NOW, { principal: "not,a-principal" }).ok, "foreign principal");
      expect(!verifyCertificate(line, CA.publicKey, validBefore).ok, "verified at its validBefore");
      expect(!verifyCertificate(line, OTHER_CA.publicKey, NOW).ok, "verified under another CA");
    },
  };
}

const valid: fc.Arbitrary<ValidInput> = fc.nat({ max: POOL_SIZE - 1 }).map(pooled);

export const sshCert: FuzzTarget = { name: "ssh-cert", check, valid };
