/**
 * SCRAM-SHA-256 client (RFC 5802, RFC 7677) as pure functions: the caller supplies the
 * nonce and carries the state between steps. No channel binding ("n,,", c=biws).
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { PgWireError } from "./errors.js";

export const SCRAM_SHA_256 = "SCRAM-SHA-256";
const GS2_HEADER = "n,,";

export interface ScramClientFirst {
  /** The whole client-first-message, sent in SASLInitialResponse. */
  message: string;
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
export function scramClientFirst(username: string, clientNonce: string): ScramClientFirst {
  if (clientNonce === "" || /[^\x21-\x2b\x2d-\x7e]/.test(clientNonce))
    fail("the client nonce must be printable, no comma");
  const bare = `n=${saslName(username)},r=${clientNonce}`;
  return { message: GS2_HEADER + bare, bare, clientNonce };
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
  const withoutProof = `c=${Buffer.from(GS2_HEADER).toString("base64")},r=${serverFirst.nonce}`;
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
