/**
 * Security helpers live in one place: token generation, constant-time
 * comparison, password hashing, and authenticated encryption under keys
 * derived from the master key.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  hkdfSync,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from "node:crypto";

/** An opaque token with `bytes` bytes (default 32 = 256 bits) from the CSPRNG, base64url. */
export function randomToken(bytes = 32): string {
  if (bytes < 16) throw new RangeError("tokens carry at least 128 bits");
  return randomBytes(bytes).toString("base64url");
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Compares two strings in time independent of where they differ (and of their lengths). */
export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

// Password hashing: scrypt at one of the five settings OWASP's Password Storage Cheat Sheet gives as equal
// strength (N=2^17 r=8 p=1 … N=2^13 r=8 p=10). N=2^14, r=8, p=5 costs 16 MiB and ~170 ms of CPU here, where
// N=2^17, p=1 (Stint's first choice) cost 128 MiB and ~390 ms: most of that was touching the memory.
// Hashes keep their own parameters, so those made with the first choice still verify.
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}
export const OWASP_SCRYPT: ScryptParams = { N: 2 ** 14, r: 8, p: 5 };
const KEY_LENGTH = 32;

function scryptAsync(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFKC"),
      salt,
      KEY_LENGTH,
      {
        N: params.N,
        r: params.r,
        p: params.p,
        maxmem: 256 * params.N * params.r + 1024 * params.r * params.p + 1024 * 1024,
      },
      (err, key) => (err ? reject(err) : resolve(key)),
    );
  });
}

/** Encodes as `scrypt$N$r$p$salt$hash` so parameters can be raised later and old hashes still verify. */
export async function hashPassword(password: string, params: ScryptParams = OWASP_SCRYPT): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, params);
  return ["scrypt", params.N, params.r, params.p, salt.toString("base64url"), key.toString("base64url")].join("$");
}

export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const parts = encoded.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hash, "base64url");
  const actual = await scryptAsync(password, Buffer.from(salt, "base64url"), {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A hash that costs the same as a real verification, for the "no such user" path. */
let dummyHash: Promise<string> | undefined;
export async function burnPasswordCheck(password: string, params: ScryptParams = OWASP_SCRYPT): Promise<void> {
  dummyHash ??= hashPassword(randomToken(), params);
  await verifyPassword(password, await dummyHash);
}

/** Derives a purpose-bound 256-bit key from the master key (HKDF-SHA256). */
export function deriveKey(masterKey: Uint8Array, purpose: string): Buffer {
  return Buffer.from(hkdfSync("sha256", masterKey, Buffer.alloc(0), `stint:${purpose}`, 32));
}

/** GCM's full tag. A decipher left to the tag it is given accepts 4 bytes, which is forged in 2^32 tries. */
const GCM_TAG_BYTES = 16;
const GCM_IV_BYTES = 12;

/**
 * AES-256-GCM with associated data that binds a ciphertext to where it lives
 * (e.g. `totp:<principal id>`), so rows cannot be swapped. Output: v1.iv.tag.ciphertext (base64url).
 */
export function seal(key: Uint8Array, plaintext: Uint8Array | string, associatedData: string): string {
  const iv = randomBytes(GCM_IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: GCM_TAG_BYTES });
  cipher.setAAD(Buffer.from(associatedData));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return ["v1", iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), body.toString("base64url")].join(
    ".",
  );
}

export function open(key: Uint8Array, sealed: string, associatedData: string): Buffer {
  const parts = sealed.split(".");
  if (parts.length !== 4 || parts[0] !== "v1") throw new Error("sealed value has an unknown format");
  const [, ivText, tagText, body] = parts as [string, string, string, string];
  const iv = Buffer.from(ivText, "base64url");
  const tag = Buffer.from(tagText, "base64url");
  if (iv.length !== GCM_IV_BYTES || tag.length !== GCM_TAG_BYTES) throw new Error("sealed value has a wrong IV or tag");
  const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: GCM_TAG_BYTES });
  decipher.setAAD(Buffer.from(associatedData));
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(Buffer.from(body, "base64url")), decipher.final()]);
}
