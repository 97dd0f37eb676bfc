/**
 * The keyring: Ed25519 signing keys for access tokens and audit checkpoints.
 * Private halves are sealed under a key derived from the master key; a node
 * with the wrong master key refuses to start instead of minting new keys.
 */
import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  timingSafeEqual,
  verify,
  type KeyObject,
} from "node:crypto";
import { sql } from "kysely";
import type { AppStore } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { ADVISORY_LOCKS } from "../../lib/advisory-locks.js";
import { deriveKey, open, randomToken, seal } from "../../lib/security.js";

export type KeyPurpose = "token" | "audit";

export interface SigningKey {
  id: string;
  purpose: KeyPurpose;
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: Record<string, unknown>;
}

export interface Keyring {
  current(purpose: KeyPurpose): SigningKey;
  /** Public keys of every key (current and retired) of a purpose, for verification (the same map each time). */
  publicKeys(purpose: KeyPurpose): ReadonlyMap<string, KeyObject>;
  jwks(purpose: KeyPurpose): { keys: Record<string, unknown>[] };
  signDetached(purpose: KeyPurpose, message: string): { keyId: string; signature: string };
  verifyDetached(purpose: KeyPurpose, keyId: string, message: string, signature: string): boolean;
  /**
   * HMAC-SHA256 (hex) under a key derived from the master key for `purpose`: proves a row was written by a
   * node holding the master key (a database writer cannot compute it).
   */
  mac(purpose: MacPurpose, message: string): string;
  macValid(purpose: MacPurpose, message: string, mac: string): boolean;
}

export type MacPurpose = "audit-pending";

export class MasterKeyMismatchError extends Error {
  constructor() {
    super("the master key does not open this database's signing keys: is STINT_MASTER_KEY_FILE the right file?");
  }
}

/**
 * The audit key is gone while the log holds checkpoints it signed: minting a new one would let whoever removed it
 * have the server sign a rewritten history. The node refuses to start; the key comes back from a backup.
 */
export class AuditKeyMissingError extends Error {
  constructor() {
    super(
      "the audit signing key is missing from signing_keys while the audit log holds signed checkpoints: someone with write access to the database may have removed it; restore the signing_keys rows from a backup (docs/operations.md)",
    );
  }
}

export async function loadKeyring(deps: { store: AppStore; masterKey: Uint8Array; clock: Clock }): Promise<Keyring> {
  const { store, masterKey, clock } = deps;
  const wrapKey = deriveKey(masterKey, "signing-keys");

  const rows = await store.transaction(async (tx) => {
    await sql`select pg_advisory_xact_lock(${ADVISORY_LOCKS.keyring})`.execute(tx);
    for (const purpose of ["token", "audit"] as const) {
      const existing = await tx
        .selectFrom("signing_keys")
        .select("id")
        .where("purpose", "=", purpose)
        .where("retired_at", "is", null)
        .executeTakeFirst();
      if (existing) continue;
      if (purpose === "audit" && (await tx.selectFrom("audit_checkpoints").select("seq").limit(1).executeTakeFirst()))
        throw new AuditKeyMissingError();
      const id = `${purpose}-${randomToken(16)}`;
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      const der = privateKey.export({ format: "der", type: "pkcs8" });
      await tx
        .insertInto("signing_keys")
        .values({
          id,
          purpose,
          public_jwk: JSON.stringify({ ...publicKey.export({ format: "jwk" }), kid: id, alg: "EdDSA", use: "sig" }),
          private_sealed: seal(wrapKey, der, `signing-key:${id}`),
          created_at: clock.now(),
        })
        .execute();
    }
    return tx.selectFrom("signing_keys").selectAll().orderBy("created_at").execute();
  });

  const keys = rows.map((row) => {
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({
        key: open(wrapKey, row.private_sealed, `signing-key:${row.id}`),
        format: "der",
        type: "pkcs8",
      });
    } catch {
      throw new MasterKeyMismatchError();
    }
    return {
      key: {
        id: row.id,
        purpose: row.purpose,
        privateKey,
        publicKey: createPublicKey(privateKey),
        publicJwk: row.public_jwk,
      } satisfies SigningKey,
      retired: row.retired_at !== null,
    };
  });

  const current = (purpose: KeyPurpose): SigningKey => {
    const found = keys.filter((k) => k.key.purpose === purpose && !k.retired).at(-1);
    if (!found) throw new Error(`no ${purpose} signing key`);
    return found.key;
  };
  // The keyring is fixed once loaded: each purpose's map is built once (bearer authentication asks on every request).
  const publicKeysOf = new Map<KeyPurpose, Map<string, KeyObject>>();
  const publicKeys = (purpose: KeyPurpose) => {
    let found = publicKeysOf.get(purpose);
    if (!found)
      publicKeysOf.set(
        purpose,
        (found = new Map(keys.filter((k) => k.key.purpose === purpose).map((k) => [k.key.id, k.key.publicKey]))),
      );
    return found;
  };

  const macKeys = new Map<MacPurpose, Buffer>();
  const macKey = (purpose: MacPurpose) => {
    let key = macKeys.get(purpose);
    if (!key) macKeys.set(purpose, (key = deriveKey(deps.masterKey, `mac:${purpose}`)));
    return key;
  };
  const mac = (purpose: MacPurpose, message: string) =>
    createHmac("sha256", macKey(purpose)).update(message).digest("hex");

  return {
    current,
    publicKeys,
    mac,
    macValid(purpose, message, given) {
      const expected = Buffer.from(mac(purpose, message), "hex");
      const actual = Buffer.from(given, "hex");
      return actual.length === expected.length && timingSafeEqual(actual, expected);
    },
    jwks: (purpose) => ({ keys: keys.filter((k) => k.key.purpose === purpose).map((k) => k.key.publicJwk) }),
    signDetached(purpose, message) {
      const key = current(purpose);
      return { keyId: key.id, signature: sign(null, Buffer.from(message), key.privateKey).toString("base64url") };
    },
    verifyDetached(purpose, keyId, message, signature) {
      const publicKey = publicKeys(purpose).get(keyId);
      if (!publicKey) return false;
      try {
        return verify(null, Buffer.from(message), publicKey, Buffer.from(signature, "base64url"));
      } catch {
        return false;
      }
    },
  };
}
