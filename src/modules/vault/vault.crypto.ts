/**
 * Envelope encryption of secret versions. Each version gets its own random data
 * key (AES-256-GCM); the data key is wrapped by a key-encryption key (KEK); both
 * ciphertexts carry the version's binding (secret id, path, version) as
 * authenticated data, so a row moved to another secret or version fails to open.
 * KEKs are sealed under the vault's root key, which a verifier proves.
 */
import { randomBytes, randomInt } from "node:crypto";
import { combine, split } from "shamir-secret-sharing";
import { open, seal } from "../../lib/security.js";

/** A ciphertext did not authenticate: tampered, swapped, or opened with the wrong key. */
export class IntegrityError extends Error {
  constructor(what: string) {
    super(`${what} failed its integrity check`);
    this.name = "IntegrityError";
  }
}

export interface SealedVersion {
  ciphertext: string;
  wrappedKey: string;
}

export const binding = (secretId: string, path: string, version: number) => `${secretId}:${path}:v${version}`;

/** A login pre-created at a target ahead of demand (grants.precreated.ts): its password, bound to its stock row. */
export const preCreatedBinding = (poolId: string) => `precreated:${poolId}`;
/** A minted login's password as the grant holds it: bound to the grant, or to the pre-created login it was handed. */
export const grantCredentialBinding = (row: { grant_id: string; pool_id?: string | null }) =>
  row.pool_id ? preCreatedBinding(row.pool_id) : `grant:${row.grant_id}`;

export function sealVersion(kek: Uint8Array, bound: string, plaintext: string): SealedVersion {
  const dataKey = randomBytes(32);
  try {
    return {
      ciphertext: seal(dataKey, plaintext, `payload:${bound}`),
      wrappedKey: seal(kek, dataKey, `data-key:${bound}`),
    };
  } finally {
    dataKey.fill(0);
  }
}

export function openVersion(kek: Uint8Array, bound: string, sealed: SealedVersion): string {
  let dataKey: Buffer;
  try {
    dataKey = open(kek, sealed.wrappedKey, `data-key:${bound}`);
  } catch {
    throw new IntegrityError("the data key");
  }
  try {
    return open(dataKey, sealed.ciphertext, `payload:${bound}`).toString("utf8");
  } catch {
    throw new IntegrityError("the payload");
  } finally {
    dataKey.fill(0);
  }
}

/** Moves a data key from one KEK to another; the payload is not touched. */
export function rewrapKey(from: Uint8Array, to: Uint8Array, bound: string, wrappedKey: string): string {
  let dataKey: Buffer;
  try {
    dataKey = open(from, wrappedKey, `data-key:${bound}`);
  } catch {
    throw new IntegrityError("the data key");
  }
  try {
    return seal(to, dataKey, `data-key:${bound}`);
  } finally {
    dataKey.fill(0);
  }
}

/** Root keys, KEKs and data keys are all 32 bytes (AES-256). */
export const ROOT_KEY_BYTES = 32;
export const newKey = () => randomBytes(ROOT_KEY_BYTES);
export const wrapKek = (root: Uint8Array, version: number, kek: Uint8Array) => seal(root, kek, `kek:v${version}`);
export function unwrapKek(root: Uint8Array, version: number, wrapped: string): Buffer {
  try {
    return open(root, wrapped, `kek:v${version}`);
  } catch {
    throw new IntegrityError(`key-encryption key v${version}`);
  }
}

const VERIFIER_TEXT = "stint vault root key";
export const verifierFor = (root: Uint8Array) => seal(root, VERIFIER_TEXT, "vault-verifier");
export function verifies(root: Uint8Array, verifier: string): boolean {
  try {
    return open(root, verifier, "vault-verifier").toString("utf8") === VERIFIER_TEXT;
  } catch {
    return false;
  }
}

const SHARE_PREFIX = "stint-share-";

/** Splits the root key into printable shares (`stint-share-<hex>`); any `threshold` of them rebuild it. */
export async function splitRoot(root: Uint8Array, shares: number, threshold: number): Promise<string[]> {
  if (threshold === 1)
    return Array.from({ length: shares }, () => `${SHARE_PREFIX}${Buffer.from(root).toString("hex")}`);
  // A plain Uint8Array: the library checks the exact type, and a Buffer from another realm fails it.
  return (await split(Uint8Array.from(root), shares, threshold)).map(
    (s) => `${SHARE_PREFIX}${Buffer.from(s).toString("hex")}`,
  );
}

/**
 * A share's bytes, or null when `text` is not one. Given the vault's threshold, the length is checked
 * too: a share of the 32-byte root is the root itself (threshold 1) or 33 bytes (the split's x coordinate).
 */
export function parseShare(text: string, threshold?: number): Uint8Array | null {
  const trimmed = text.trim();
  if (!trimmed.startsWith(SHARE_PREFIX)) return null;
  const hex = trimmed.slice(SHARE_PREFIX.length);
  if (!/^([0-9a-f]{2})+$/.test(hex)) return null;
  const bytes = Buffer.from(hex, "hex");
  if (threshold !== undefined && bytes.length !== (threshold === 1 ? ROOT_KEY_BYTES : ROOT_KEY_BYTES + 1)) return null;
  return bytes;
}

/** The root key from shares (wrong or too few shares give a wrong key: check it with `verifies`). */
export async function combineShares(shares: Uint8Array[], threshold: number): Promise<Uint8Array> {
  if (threshold === 1) return shares[0]!;
  return Buffer.from(await combine(shares.map((s) => Uint8Array.from(s))));
}

const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.~";

/** A random password or API key from the CSPRNG (no look-alike characters). */
export function generateValue(length: number): string {
  let out = "";
  for (let i = 0; i < length; i++) out += ALPHABET[randomInt(ALPHABET.length)];
  return out;
}
