/**
 * SCRAM-SHA-256 client (RFC 5802, RFC 7677) as pure functions: the caller supplies the
 * nonce and carries the state between steps. Channel binding (SCRAM-SHA-256-PLUS with
 * tls-server-end-point, RFC 5929) when the caller gives the server certificate's hash.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { PgWireError } from "./errors.js";

export const SCRAM_SHA_256 = "SCRAM-SHA-256";
export const SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS";

/**
 * The most PBKDF2 iterations a server may ask of this client. The server chooses the count and the
 * client computes it synchronously, so a hostile or misconfigured server could stall the event
 * loop for hours (2^31 - 1) or, above that, make pbkdf2 throw a RangeError. PostgreSQL's default
 * is 4096; this leaves room for hardened settings (OWASP's 600 000) and keeps the cost near a second.
 */
export const MAX_SCRAM_ITERATIONS = 1_000_000;

/**
 * How the client binds the exchange to the TLS channel: "none" without TLS ("n,,"); "unused" over
 * TLS when the server offers no binding ("y,,": a server that does offer it then detects the
 * downgrade); "tls-server-end-point" with the server certificate's hash (SCRAM-SHA-256-PLUS).
 */
export type ScramChannelBinding =
  { kind: "none" } | { kind: "unused" } | { kind: "tls-server-end-point"; certificateHash: Buffer };

const GS2_HEADERS = { none: "n,,", unused: "y,,", "tls-server-end-point": "p=tls-server-end-point,," } as const;

export interface ScramClientFirst {
  /** The whole client-first-message, sent in SASLInitialResponse. */
  message: string;
  /** The mechanism to name in SASLInitialResponse. */
  mechanism: typeof SCRAM_SHA_256 | typeof SCRAM_SHA_256_PLUS;
  /** c= of the client-final-message: the GS2 header and, when bound, the channel binding data. */
  channelBindingInput: Buffer;
  /** client-first-message-bare, part of the AuthMessage. */
  bare: string;
  clientNonce: string;
}

export interface ScramServerFirst {
  raw: string;
  nonce: string;
  salt: Buffer;
  iterations: number;
}

export interface ScramClientFinal {
  /** The client-final-message, sent in SASLResponse. */
  message: string;
  /** What the server must prove in server-final-message. */
  expectedServerSignature: Buffer;
}

/** 18 random bytes as base64: printable, no comma. */
export function createScramNonce(): string {
  return randomBytes(18).toString("base64");
}

function saslName(username: string): string {
  return username.replaceAll("=", "=3D").replaceAll(",", "=2C");
}

function fail(message: string): never {
  throw new PgWireError("SCRAM_INVALID", message);
}

/** PostgreSQL ignores the SCRAM user name (it uses the startup user), so libpq sends an empty one. */
export function scramClientFirst(
  username: string,
  clientNonce: string,
  binding: ScramChannelBinding = { kind: "none" },
): ScramClientFirst {
  if (clientNonce === "" || /[^\x21-\x2b\x2d-\x7e]/.test(clientNonce))
    fail("the client nonce must be printable, no comma");
  const bare = `n=${saslName(username)},r=${clientNonce}`;
  const header = GS2_HEADERS[binding.kind];
  const bound = binding.kind === "tls-server-end-point";
  if (bound && binding.certificateHash.length === 0) fail("channel binding needs the certificate hash");
  return {
    message: header + bare,
    mechanism: bound ? SCRAM_SHA_256_PLUS : SCRAM_SHA_256,
    channelBindingInput: Buffer.concat([
      Buffer.from(header, "utf8"),
      bound ? binding.certificateHash : Buffer.alloc(0),
    ]),
    bare,
    clientNonce,
  };
}

/** Hash algorithm by signature algorithm OID, for tls-server-end-point (MD5 and SHA-1 become SHA-256). */
const SIGNATURE_HASHES: Record<string, string> = {
  "1.2.840.113549.1.1.4": "sha256", // md5WithRSAEncryption
  "1.2.840.113549.1.1.5": "sha256", // sha1WithRSAEncryption
  "1.2.840.113549.1.1.14": "sha224",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.1": "sha256", // ecdsa-with-SHA1
  "1.2.840.10045.4.3.1": "sha224",
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
};

/** Reads a DER length at `at`; returns it and where the content starts. */
function derLength(der: Buffer, at: number): { length: number; start: number } {
  const first = der[at];
  if (first === undefined) fail("certificate: truncated");
  if (first < 0x80) return { length: first, start: at + 1 };
  const bytes = first & 0x7f;
  if (bytes === 0 || bytes > 4 || at + 1 + bytes > der.length) fail("certificate: bad length");
  let length = 0;
  for (let i = 0; i < bytes; i++) length = length * 256 + (der[at + 1 + i] ?? 0);
  return { length, start: at + 1 + bytes };
}

function derOid(bytes: Buffer): string {
  const first = bytes[0] ?? 0;
  const parts = [Math.floor(first / 40), first % 40];
  let value = 0;
  for (const byte of bytes.subarray(1)) {
    value = value * 128 + (byte & 0x7f);
    if (byte < 0x80) {
      parts.push(value);
      value = 0;
    }
  }
  return parts.join(".");
}

/**
 * tls-server-end-point channel binding data (RFC 5929 section 4.1): the hash of the server's DER
 * certificate with its signature's hash algorithm (SHA-256 for MD5 and SHA-1). Throws for a
 * signature algorithm with no single hash (Ed25519, RSA-PSS), as PostgreSQL cannot bind those either.
 */
export function tlsServerEndPoint(certificate: Buffer): Buffer {
  const expect = (at: number, tag: number): { length: number; start: number } => {
    if (certificate[at] !== tag) fail("certificate: unexpected DER structure");
    return derLength(certificate, at + 1);
  };
  const outer = expect(0, 0x30);
  const tbs = expect(outer.start, 0x30);
  const algorithm = expect(tbs.start + tbs.length, 0x30);
  const oid = expect(algorithm.start, 0x06);
  const name = derOid(certificate.subarray(oid.start, oid.start + oid.length));
  const hash = SIGNATURE_HASHES[name];
  if (hash === undefined) fail(`channel binding: no hash for the certificate signature algorithm ${name}`);
  return createHash(hash).update(certificate).digest();
}

function attributes(message: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of message.split(",")) {
    const match = /^([A-Za-z])=(.*)$/s.exec(part);
    if (match === null) fail(`malformed SCRAM attribute ${JSON.stringify(part)}`);
    const [, key = "", value = ""] = match;
    if (!out.has(key)) out.set(key, value);
  }
  return out;
}

export function parseScramServerFirst(message: string, clientNonce: string): ScramServerFirst {
  if (message.startsWith("m=")) fail("mandatory SCRAM extensions are not supported");
  const attrs = attributes(message);
  const nonce = attrs.get("r");
  const salt = attrs.get("s");
  const iterations = attrs.get("i");
  if (nonce === undefined || salt === undefined || iterations === undefined) fail("server-first lacks r, s or i");
  if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length) {
    fail("the server nonce does not extend the client nonce");
  }
  if (!/^[1-9][0-9]{0,9}$/.test(iterations)) fail("the iteration count is not a positive integer");
  if (Number(iterations) > MAX_SCRAM_ITERATIONS) {
    fail(`the iteration count ${iterations} exceeds the ${MAX_SCRAM_ITERATIONS} this client computes`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(salt) || salt.length % 4 !== 0) fail("the salt is not base64");
  return { raw: message, nonce, salt: Buffer.from(salt, "base64"), iterations: Number(iterations) };
}

const hmac = (key: Buffer, data: string): Buffer => createHmac("sha256", key).update(data, "utf8").digest();

/** Light SASLprep: ASCII passwords are used as is; others are NFKC-normalized as RFC 4013 asks. */
function normalizePassword(password: string): string {
  // eslint-disable-next-line no-control-regex
  return /^[\x00-\x7f]*$/.test(password) ? password : password.normalize("NFKC");
}

export function scramClientFinal(
  password: string,
  clientFirst: ScramClientFirst,
  serverFirst: ScramServerFirst,
): ScramClientFinal {
  const saltedPassword = pbkdf2Sync(
    normalizePassword(password),
    serverFirst.salt,
    serverFirst.iterations,
    32,
    "sha256",
  );
  const clientKey = hmac(saltedPassword, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const withoutProof = `c=${clientFirst.channelBindingInput.toString("base64")},r=${serverFirst.nonce}`;
  const authMessage = `${clientFirst.bare},${serverFirst.raw},${withoutProof}`;
  const clientSignature = hmac(storedKey, authMessage);
  const proof = Buffer.alloc(clientKey.length);
  for (let i = 0; i < proof.length; i++) proof[i] = (clientKey[i] ?? 0) ^ (clientSignature[i] ?? 0);
  const serverKey = hmac(saltedPassword, "Server Key");
  return {
    message: `${withoutProof},p=${proof.toString("base64")}`,
    expectedServerSignature: hmac(serverKey, authMessage),
  };
}

/** Throws unless the server-final-message proves the server knows the password. */
export function verifyScramServerFinal(message: string, expectedServerSignature: Buffer): void {
  const attrs = attributes(message);
  const error = attrs.get("e");
  if (error !== undefined) fail(`the server refused the exchange: ${error}`);
  const verifier = attrs.get("v");
  if (verifier === undefined) fail("server-final lacks v");
  const signature = Buffer.from(verifier, "base64");
  if (signature.length !== expectedServerSignature.length || !timingSafeEqual(signature, expectedServerSignature)) {
    fail("the server signature does not match");
  }
}
