/**
 * What a vault node keeps in memory (README.md): the root key once known, the unwrapped KEKs, and for reads
 * the secrets' rows and their opened versions, all dropped by the messages every change sends (`sec`, `kek`),
 * when the access index cannot vouch for its messages, when the vault is sealed, and after
 * READ_CACHE_MAX_AGE_MS at the latest.
 */
import { checkoutPolicy } from "../../contract/vault.js";
import type { Kysely } from "kysely";
import { performance } from "node:perf_hooks";
import type { AppStore, Database } from "../../db/index.js";
import { isUniqueViolation } from "../../lib/db.js";
import { StintError } from "../../lib/errors.js";
import { SYSTEM } from "../authz/authz.types.js";
import { binding, newKey, openVersion, unwrapKek, verifierFor, verifies, wrapKek } from "./vault.crypto.js";
import type { VaultServiceDeps } from "./vault.context.js";
import * as vaultStore from "./vault.store.js";

/** How long a node keeps a secret's row or an opened version at most, messages or not (see README.md). */
const READ_CACHE_MAX_AGE_MS = 30_000;
/** Past this many opened versions in memory, the node forgets them all and starts again. */
const READ_CACHE_MAX_VALUES = 10_000;

/** A secret's row as reads decide on it, kept in memory, with the row version it was read at. */
interface CachedSecret {
  row: vaultStore.SecretRow & { row_version: string };
  /** The row's check-out policy says exclusive (decided from the database only). */
  exclusive: boolean;
  /** performance.now() when it was read from the database. */
  at: number;
}

/** A sealed version as the database holds it, with the row version it was read at. */
interface SealedCopy {
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
  row_version: string;
}

/** A version kept in memory: the sealed copy read from the database, and what it opened to. */
export interface CachedValue {
  sealed: SealedCopy;
  value: string;
  at: number;
  /** The answer a read from memory gives for it, made by the first such read (vault.read.ts). */
  answer?: ReadAnswer;
}

/** A read's answer. Made once per version kept in memory and shared by its reads: never changed. */
export interface ReadAnswer {
  readonly path: string;
  readonly version: number;
  readonly kind: vaultStore.SecretRow["kind"];
  readonly value: string;
}

export function createVaultMemory(deps: VaultServiceDeps) {
  const { store, audit, clock } = deps;
  // Per process: the root key once known.
  let root: Uint8Array | null = null;
  const index = deps.index;

  // What reads keep in memory while the index vouches for its messages (see README.md): secret rows by
  // path, opened values by path and version, and unwrapped KEKs. Dropped by the "sec" message of every change
  // to the secret (and the "kek" message of every key change), when the index cannot vouch for itself, when
  // the vault is sealed, and at the latest READ_CACHE_MAX_AGE_MS after they were read from the database.
  const rowCache = new Map<string, CachedSecret>();
  const valueCache = new Map<string, Map<number, CachedValue>>();
  let cachedValues = 0;
  const kekCache = new Map<number, Buffer>();
  // The active KEK, unwrapped (what seals minted logins' passwords and new versions), with the root it was
  // unwrapped under: dropped with the other KEKs on a "kek" message (a rotation or a re-wrap, sent in its
  // transaction) and when this node changes them itself.
  let activeKekCache: { version: number; key: Buffer; root: Uint8Array } | null = null;
  let cacheChanges = 0;
  const forgetSecret = (path: string) => {
    cacheChanges += 1;
    rowCache.delete(path);
    cachedValues -= valueCache.get(path)?.size ?? 0;
    valueCache.delete(path);
  };
  const forgetAll = () => {
    cacheChanges += 1;
    rowCache.clear();
    valueCache.clear();
    cachedValues = 0;
    kekCache.clear();
    activeKekCache = null;
  };
  index?.subscribe({
    onMessage(message) {
      if (message.t === "sec") forgetSecret(message.path);
      else if (message.t === "kek") forgetAll();
    },
    onReset: forgetAll,
  });
  /** A mark taken before a database read: its result is kept only if nothing changed meanwhile. */
  const cacheMark = () => `${index?.generation() ?? 0}:${cacheChanges}`;
  /** In the transaction that changes a secret's row or versions: every node drops what it kept of it. */
  const tellSecret = (tx: Kysely<Database>, path: string) => index?.send(tx, { t: "sec", path });
  const tellKeks = (tx: Kysely<Database>) => index?.send(tx, { t: "kek" });

  /** The secret's row as reads decide on it, from memory (read from the database when not kept or too old). */
  async function cachedSecret(path: string): Promise<CachedSecret | undefined> {
    const cached = rowCache.get(path);
    if (cached && performance.now() - cached.at < READ_CACHE_MAX_AGE_MS) return cached;
    const mark = cacheMark();
    const at = performance.now();
    const row = await vaultStore.findSecretHeld(store.db, path);
    if (!row) return undefined;
    const entry = { row, exclusive: checkoutPolicy.parse(row.checkout ?? {}).exclusive, at };
    if (mark === cacheMark()) rowCache.set(path, entry);
    return entry;
  }

  /** A version, opened, from memory (read from the database and opened when not kept or too old). */
  async function cachedValue(row: vaultStore.SecretRow, version: number): Promise<CachedValue | undefined> {
    const remembered = valueCache.get(row.path)?.get(version);
    if (remembered && performance.now() - remembered.at < READ_CACHE_MAX_AGE_MS) return remembered;
    const mark = cacheMark();
    const at = performance.now();
    const sealed = await vaultStore.findVersionHeld(store.db, row.id, version);
    if (!sealed) return undefined;
    const kek = await kekOf(store.db, sealed.kek_version);
    const value = openVersion(kek, binding(row.id, row.path, version), {
      ciphertext: sealed.ciphertext,
      wrappedKey: sealed.wrapped_key,
    });
    const entry = { sealed, value, at };
    if (mark === cacheMark()) {
      if (cachedValues >= READ_CACHE_MAX_VALUES) {
        valueCache.clear();
        cachedValues = 0;
      }
      let versions = valueCache.get(row.path);
      if (!versions) valueCache.set(row.path, (versions = new Map()));
      if (!versions.has(version)) cachedValues += 1;
      versions.set(version, entry);
    }
    return entry;
  }

  /** The root key, initializing a fresh vault in key-file mode; SEALED or VAULT_KEY_INVALID otherwise. */
  async function rootKey(): Promise<Uint8Array> {
    if (root) return root;
    const config = await vaultStore.config(store.db);
    if (!config) {
      if (!deps.fileKey) throw new StintError("SEALED", "The vault has no key: set STINT_VAULT_KEY or a key file.");
      const key = deps.fileKey;
      // Two first uses at once (two provisionings in one outbox pass, or two nodes) both find no vault: the
      // one whose insert loses sees the other's vault (a unique violation) and uses it.
      await store
        .transaction(async (tx) => {
          if (await vaultStore.config(tx)) return;
          const now = clock.now();
          await vaultStore.writeConfig(
            tx,
            { mode: "key-file", shares: null, threshold: null, verifier: verifierFor(key) },
            now,
          );
          await vaultStore.insertKek(tx, 1, wrapKek(key, 1, newKey()), now);
          await audit.append(
            tx,
            SYSTEM,
            { correlationId: "vault", sourceIp: null, userAgent: null },
            {
              action: "vault.initialized",
              outcome: "success",
              details: { mode: "key-file" },
            },
          );
        })
        .catch((error: unknown) => {
          if (!isUniqueViolation(error)) throw error;
        });
      return rootKey();
    }
    if (config.mode === "shamir") throw new StintError("SEALED");
    if (!deps.fileKey) throw new StintError("SEALED", "The vault has no key: set STINT_VAULT_KEY or a key file.");
    if (!verifies(deps.fileKey, config.verifier)) throw new StintError("VAULT_KEY_INVALID");
    root = deps.fileKey;
    return root;
  }

  /**
   * The newest active KEK: from memory while the index vouches for its messages (read from the database once
   * after each rotation or re-wrap, whose transaction sends the "kek" message that drops it on every node).
   */
  async function activeKek(db: AppStore["db"]): Promise<{ version: number; key: Buffer }> {
    const key = await rootKey();
    const remembered = index?.view() ? activeKekCache : null;
    if (remembered && remembered.root === key) return { version: remembered.version, key: remembered.key };
    const mark = cacheMark();
    const keks = (await vaultStore.keks(db)).filter((k) => k.state === "active");
    const newest = keks.at(-1);
    if (!newest) throw new StintError("INTEGRITY_FAILED", "The vault has no active key-encryption key.");
    const unwrapped = unwrapKek(key, newest.version, newest.wrapped);
    // Only while unsealed by the same root and nothing changed meanwhile.
    if (index?.view() && mark === cacheMark() && root === key)
      activeKekCache = { version: newest.version, key: unwrapped, root: key };
    return { version: newest.version, key: unwrapped };
  }

  async function kekOf(db: AppStore["db"], version: number): Promise<Buffer> {
    const key = await rootKey();
    const remembered = index?.view() ? kekCache.get(version) : undefined;
    if (remembered) return remembered;
    const mark = cacheMark();
    const kek = (await vaultStore.keks(db)).find((k) => k.version === version);
    if (!kek) throw new StintError("INTEGRITY_FAILED", `Key-encryption key v${version} is missing.`);
    const unwrapped = unwrapKek(key, version, kek.wrapped);
    // Only while unsealed by the same root: a seal in between drops everything.
    if (index?.view() && mark === cacheMark() && root === key) kekCache.set(version, unwrapped);
    return unwrapped;
  }

  return {
    /** The root key once known on this node (null: sealed, or not known yet). */
    get root() {
      return root;
    },
    set root(key: Uint8Array | null) {
      root = key;
    },
    forgetSecret,
    forgetAll,
    tellSecret,
    tellKeks,
    cachedSecret,
    cachedValue,
    rootKey,
    activeKek,
    kekOf,
  };
}

export type VaultMemory = ReturnType<typeof createVaultMemory>;
