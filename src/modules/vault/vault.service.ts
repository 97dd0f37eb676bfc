/**
 * The vault: secrets with versions under envelope encryption, reads bound to
 * active roles, exclusive check-outs, and the operator's seal/unseal/init and
 * key rotation. Values never reach a log line, an audit event or an error.
 *
 * The root key lives only in this process's memory: from the vault key file (or
 * STINT_VAULT_KEY) in key-file mode, or rebuilt from Shamir shares by an unseal
 * in shamir mode. Without it, secret operations answer SEALED (or
 * VAULT_KEY_INVALID for a key that does not match) and nothing else is affected.
 */
import { checkoutPolicy, type CheckoutPolicy, type PutSecretBody, type SecretMetaDto } from "../../contract/vault.js";
import type { Kysely } from "kysely";
import { performance } from "node:perf_hooks";
import ssh2 from "ssh2";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { parseDuration } from "../../lib/duration.js";
import { isUniqueViolation } from "../../lib/db.js";
import { StintError } from "../../lib/errors.js";
import { failpoint, FailpointCrash } from "../../lib/failpoints.js";
import { newId } from "../../lib/ids.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import { actorLabel, type AuditLog } from "../audit/audit.service.js";
import { authorize, can } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import {
  binding,
  combineShares,
  generateValue,
  IntegrityError,
  newKey,
  openVersion,
  parseShare,
  rewrapKey,
  sealVersion,
  splitRoot,
  unwrapKek,
  verifierFor,
  verifies,
  wrapKek,
} from "./vault.crypto.js";
import * as vaultStore from "./vault.store.js";
import { createAuditBatcher, type AuditBatcherOptions } from "./audit-batch.js";
import { allowanceMac, endpointOf, sessionSecretUsable } from "../catalog/custody.rules.js";
import { deriveKey } from "../../lib/security.js";
import { findTarget, targetConfig } from "../catalog/catalog.store.js";
import * as custodyStore from "../catalog/custody.store.js";
import { custodyChanges, releaseProblem, type ReleasePurpose, type SecretAccessFields } from "./vault.rules.js";

export interface VaultServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "appendMany" | "appendManyWhere" | "record"> & Partial<Pick<AuditLog, "sequencing">>;
  clock: Clock;
  /** The root key from the key file or environment (key-file mode); null when none was given. */
  fileKey: Uint8Array | null;
  /** In the reveal's transaction: tell every channel (through the outbox). */
  onBreakGlass?: (
    tx: Kysely<Database>,
    event: { path: string; by: string; reason: string; reviewId: string; at: Date },
  ) => Promise<void>;
  /** After the reveal commits: deliver its notifications now rather than at the next poll. */
  afterBreakGlass?: () => void;
  /** Runs a password change at a target through its connector (the grants module owns connectors). */
  targets?: {
    withCredentials<T>(
      targetName: string,
      work: (ops: {
        setPassword(login: string, password: string): Promise<void>;
        verifyPassword(login: string, password: string): Promise<boolean>;
      }) => Promise<T>,
    ): Promise<T>;
  };
  /** The master key: session-secret allowances carry a MAC under a key derived from it (none: none is usable). */
  masterKey?: Uint8Array;
  /** This node's name, recorded on the rotations it claims. */
  node?: string;
  /** In the transaction of a failed rotation: tell the channels. */
  onRotationFailed?: (tx: Kysely<Database>, event: { path: string; reason: string; at: Date }) => Promise<void>;
  /**
   * The node's access index: reads decide from it (no database round trip) and keep secrets' sealed
   * versions in memory, dropped by the messages every change to a secret sends. Without it, reads ask the
   * database each time.
   */
  index?: Pick<AccessIndex, "view" | "send" | "subscribe" | "generation">;
  /** Group commit of the reads' audit events (see audit-batch.ts). */
  readAudit?: AuditBatcherOptions;
}

/** How long a node's claim on a rotation lasts: past it, the rotation counts as abandoned (its node died). */
const ROTATION_LEASE_MS = 10 * 60_000;
/** How fresh the MFA of a break-glass reveal must be. */
const BREAK_GLASS_MFA_MAX_AGE_MS = 5 * 60_000;
/** A revealed break-glass secret is rotated this long after the reveal (time to finish the emergency). */
const BREAK_GLASS_ROTATE_AFTER_MS = 60 * 60_000;
/** The post-incident review is due within this. */
const REVIEW_DUE_MS = 3 * 24 * 3600_000;

const iso = (value: Date | string) => new Date(value).toISOString();

/** A new random value of the secret's kind: an OpenSSH ed25519 private key for ssh-key, a password otherwise. */
function newValueFor(kind: string): string {
  return kind === "ssh-key" ? ssh2.utils.generateKeyPairSync("ed25519").private : generateValue(32);
}

/** When a secret with a rotation schedule is next due (null without one). */
function nextRotation(row: { rotation: { every?: string } | null }, now: Date): Date | null {
  const every = row.rotation?.every;
  return every ? new Date(now.getTime() + parseDuration(every)) : null;
}

/** A secret's access fields as stored, or as they would be after `input` (put keeps what it does not name). */
function accessFields(
  row: { roles: string[]; platform_roles: string[]; break_glass: boolean; rotation: SecretAccessFields["rotation"] },
  input?: PutSecretBody,
): SecretAccessFields {
  return {
    roles: input?.roles ?? row.roles,
    platformRoles: input?.platformRoles ?? row.platform_roles,
    breakGlass: input?.breakGlass ?? row.break_glass,
    rotation: input?.rotation ?? row.rotation,
  };
}

function integrity(error: unknown): never {
  if (error instanceof IntegrityError)
    throw new StintError("INTEGRITY_FAILED", `The stored secret failed its integrity check (${error.message}).`);
  throw error;
}

/** How long a node keeps a secret's row or an opened version at most, messages or not (see README.md). */
const READ_CACHE_MAX_AGE_MS = 30_000;
/** Past this many opened versions in memory, the node forgets them all and starts again. */
const READ_CACHE_MAX_VALUES = 10_000;

/** A secret's row as reads decide on it, kept in memory. */
interface CachedSecret {
  row: vaultStore.SecretRow;
  /** The row's check-out policy says exclusive (decided from the database only). */
  exclusive: boolean;
  /** performance.now() when it was read from the database. */
  at: number;
}

/** A sealed version as the database holds it. */
interface SealedCopy {
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
}

/** A version kept in memory: the sealed copy read from the database, and what it opened to. */
interface CachedValue {
  sealed: SealedCopy;
  value: string;
  at: number;
}

export function createVaultService(deps: VaultServiceDeps) {
  const { store, audit, clock } = deps;
  // Who holds a rotation claim: this service instance (a node may run several in tests).
  const node = `${deps.node ?? "node"}:${newId()}`;
  let lastReconcileAt = Number.NEGATIVE_INFINITY;
  const allowanceKey = deps.masterKey ? deriveKey(deps.masterKey, "secret-allowances") : null;
  // Per process: the root key once known, and shares given towards an unseal.
  let root: Uint8Array | null = null;
  let pendingShares: Uint8Array[] = [];
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
    const row = await vaultStore.findSecret(store.db, path);
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
    const stored = await vaultStore.findVersion(store.db, row.id, version);
    if (!stored) return undefined;
    const sealed = { ciphertext: stored.ciphertext, wrapped_key: stored.wrapped_key, kek_version: stored.kek_version };
    const kek = await kekOf(store.db, stored.kek_version);
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

  const readAudit = createAuditBatcher<vaultStore.HeldCopy>({
    store,
    audit,
    allowed: vaultStore.callsWithCurrentCopies,
    ...deps.readAudit,
  });

  function principalOf(actor: Actor) {
    if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
    return actor;
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

  async function metaDto(db: AppStore["db"], row: vaultStore.SecretRow): Promise<SecretMetaDto> {
    const open = await vaultStore.openCheckout(db, row.id);
    return {
      path: row.path,
      kind: row.kind,
      description: row.description,
      owner: row.owner,
      metadata: row.metadata ?? {},
      roles: row.roles,
      platformRoles: row.platform_roles,
      checkout: checkoutPolicy.parse(row.checkout ?? {}),
      currentVersion: row.current_version,
      breakGlass: row.break_glass,
      rotation: row.rotation ?? null,
      rotationDueAt: row.rotation_due_at ? iso(row.rotation_due_at) : null,
      checkedOut: open ? { holder: open.holder_name, until: iso(open.expires_at) } : null,
      createdAt: iso(row.created_at),
      updatedAt: iso(row.updated_at),
    };
  }

  /** May this principal use the secret's value now: a listed platform role, or an active activation of a listed role. */
  async function mayUse(actor: Actor, row: vaultStore.SecretRow): Promise<boolean> {
    if (actor.kind !== "principal") return false;
    if (actor.roles.some((r) => row.platform_roles.includes(r))) return true;
    const view = index?.view();
    if (view) return view.hasActiveRole(actor.id, row.roles);
    return vaultStore.hasActiveRole(store.db, actor.id, row.roles, clock.now());
  }

  async function refuse(
    actor: Actor,
    context: CallContext,
    action: string,
    path: string,
    message: string,
  ): Promise<never> {
    await audit.record(actor, context, { action, outcome: "denied", subject: `secret:${path}`, reason: message });
    // The same answer whether the secret exists or not.
    throw new StintError("NOT_FOUND", message);
  }

  async function decrypt(row: vaultStore.SecretRow, version: number): Promise<string> {
    const stored = await vaultStore.findVersion(store.db, row.id, version);
    if (!stored) throw new StintError("NOT_FOUND", `${row.path} has no version ${version}.`);
    try {
      const kek = await kekOf(store.db, stored.kek_version);
      return openVersion(kek, binding(row.id, row.path, version), {
        ciphertext: stored.ciphertext,
        wrappedKey: stored.wrapped_key,
      });
    } catch (error) {
      return integrity(error);
    }
  }

  /**
   * The one decision before any value leaves the vault (read, check-out, session injection, reveal, the
   * rotation's restore): a break-glass secret leaves only through its reveal. Denials by a person are audited.
   */
  async function assertReleasable(
    purpose: ReleasePurpose,
    row: vaultStore.SecretRow,
    who?: { actor: Actor; context: CallContext },
  ): Promise<void> {
    const problem = releaseProblem(purpose, { breakGlass: row.break_glass });
    if (problem === null) return;
    if (who)
      await audit.record(who.actor, who.context, {
        action: `secret.${purpose === "checkout" ? "checkout" : purpose}`,
        outcome: "denied",
        subject: `secret:${row.path}`,
        reason: problem === "break-glass" ? "a break-glass secret is released only by its reveal" : "not break-glass",
      });
    if (problem === "break-glass")
      throw new StintError(
        "BREAK_GLASS_ONLY",
        `${row.path} is a break-glass secret: only its reveal releases it (stint secret reveal ${row.path} --reason …, with a fresh one-time code).`,
      );
    throw new StintError("NOT_FOUND", `There is no break-glass secret ${row.path} you may reveal.`);
  }

  /** Decides (assertReleasable), then decrypts: the only way a value is opened for someone or something. */
  async function release(
    purpose: ReleasePurpose,
    row: vaultStore.SecretRow,
    version: number,
    who?: { actor: Actor; context: CallContext },
  ): Promise<string> {
    await assertReleasable(purpose, row, who);
    return decrypt(row, version);
  }

  /**
   * A read decided and opened from memory, or null when memory cannot decide it alone: not allowed by the
   * copy (denials are made from the database row), break-glass, exclusive, missing, not opening, or found
   * stale when its audit event was committed (then nothing was recorded or returned).
   */
  async function readFromMemory(actor: Actor, context: CallContext, path: string, version?: number) {
    const cached = await cachedSecret(path);
    if (!cached || cached.row.break_glass || cached.exclusive || !(await mayUse(actor, cached.row))) return null;
    const row = cached.row;
    const wanted = version ?? row.current_version;
    let opened: CachedValue | undefined;
    try {
      opened = await cachedValue(row, wanted);
    } catch {
      return null; // the database read answers (INTEGRITY_FAILED for a version that does not open)
    }
    if (opened === undefined) return null;
    const recorded = await readAudit.record(
      actor,
      context,
      { action: "secret.read", outcome: "success", subject: `secret:${path}`, details: { version: wanted } },
      { row, version: wanted, sealed: opened.sealed },
    );
    if (recorded) return { path, version: wanted, kind: row.kind, value: opened.value };
    forgetSecret(path); // stale or altered in the database: read again from there
    return null;
  }

  /** A read decided and opened from the database: every refusal, and whatever memory could not answer. */
  async function readFromDatabase(actor: Actor, context: CallContext, path: string, version?: number) {
    const principal = principalOf(actor);
    const row = await vaultStore.findSecret(store.db, path);
    if (!row || !(await mayUse(actor, row)))
      return refuse(
        actor,
        context,
        "secret.read",
        path,
        `There is no secret ${path} that you may read now (activate a role that lists it).`,
      );
    await assertReleasable("read", row, { actor, context });
    const policy = checkoutPolicy.parse(row.checkout ?? {});
    if (policy.exclusive) {
      const open = await vaultStore.openCheckout(store.db, row.id);
      if (!open || open.holder_id !== principal.id)
        throw new StintError(
          "CHECKED_OUT",
          open
            ? `${path} is checked out by ${open.holder_name} until ${iso(open.expires_at)}.`
            : `${path} is exclusive: check it out first (stint secret checkout ${path}).`,
          open ? { holder: open.holder_name, until: iso(open.expires_at) } : undefined,
        );
    }
    const wanted = version ?? row.current_version;
    const value = await release("read", row, wanted, { actor, context });
    await readAudit.record(actor, context, {
      action: "secret.read",
      outcome: "success",
      subject: `secret:${path}`,
      details: { version: wanted },
    });
    return { path, version: wanted, kind: row.kind, value };
  }

  async function returnExpired(limit = 100): Promise<number> {
    return store.transaction(async (tx) => {
      const now = clock.now();
      const due = await vaultStore.claimExpiredCheckouts(tx, now, limit);
      for (const c of due) await vaultStore.returnCheckout(tx, c.id, "expired", now);
      if (due.length > 0)
        await audit.append(
          tx,
          SYSTEM,
          { correlationId: "scheduler", sourceIp: null, userAgent: null },
          due.map((c) => ({
            action: "secret.checked_in",
            outcome: "success" as const,
            subject: `secret:${c.path}`,
            reason: "the check-out reached its end",
            details: { holder: c.holder_name, automatic: true },
          })),
        );
      return due.length;
    });
  }

  /** The body of a rotation whose claim this node holds (see `rotate`). */
  async function rotateClaimed(
    actor: Actor,
    context: CallContext,
    row: vaultStore.SecretRow,
    kek: { version: number; key: Buffer },
  ) {
    const path = row.path;
    const next = newValueFor(row.kind);
    const rotation = row.rotation;
    const pending = await store.transaction(async (tx) => {
      const locked = (await vaultStore.findSecret(tx, path, true))!;
      const version = (await vaultStore.maxVersion(tx, locked.id)) + 1;
      const sealed = sealVersion(kek.key, binding(locked.id, path, version), next);
      await vaultStore.insertVersion(tx, {
        secret_id: locked.id,
        version,
        ciphertext: sealed.ciphertext,
        wrapped_key: sealed.wrappedKey,
        kek_version: kek.version,
        source: "rotation",
        created_by: actor.kind === "principal" ? actor.name : "system",
        created_at: clock.now(),
        pending: true,
      });
      return { version, previous: locked.current_version };
    });
    await failpoint("vault.rotate.after-pending");
    if (rotation) {
      if (!deps.targets) {
        await store.transaction(async (tx) => {
          await vaultStore.deleteVersion(tx, row.id, pending.version);
          await tellSecret(tx, path);
        });
        throw new StintError("CONFLICT", "Rotation at targets is not available on this server.");
      }
      const old = await release("rotation", row, pending.previous);
      try {
        await deps.targets.withCredentials(rotation.target, async (ops) => {
          await ops.setPassword(rotation.login, next);
          if (!(await ops.verifyPassword(rotation.login, next)))
            throw new Error("the new password does not sign in at the target");
        });
      } catch (error) {
        const reason = error instanceof Error ? error.message : "the target failed";
        let restored = false;
        try {
          restored = await deps.targets.withCredentials(rotation.target, async (ops) => {
            await ops.setPassword(rotation.login, old);
            return ops.verifyPassword(rotation.login, old);
          });
        } catch {
          restored = false;
        }
        await store.transaction(async (tx) => {
          await vaultStore.deleteVersion(tx, row.id, pending.version);
          await tellSecret(tx, path);
          await audit.append(tx, actor, context, {
            action: "secret.rotation_failed",
            outcome: "failed",
            subject: `secret:${path}`,
            reason,
            details: { target: rotation.target, login: rotation.login, oldPasswordRestored: restored },
          });
          await deps.onRotationFailed?.(tx, {
            path,
            reason: `${reason}${restored ? "; the old password still works" : "; the old password could NOT be restored"}`,
            at: clock.now(),
          });
        });
        throw new StintError(
          "TARGET_UNAVAILABLE",
          `Rotating ${path} failed: ${reason}. The previous version stays current.`,
          {
            oldPasswordRestored: restored,
          },
        );
      }
      await failpoint("vault.rotate.after-target");
    }
    const committed = await store.transaction(async (tx) => {
      const now = clock.now();
      // Fenced: a reconcile that already settled this version (after our claim ran out) is not undone.
      if (!(await vaultStore.commitPending(tx, row.id, pending.version))) return false;
      await tx
        .updateTable("secrets")
        .set({ current_version: pending.version, rotation_due_at: nextRotation(row, now), updated_at: now })
        .where("id", "=", row.id)
        .execute();
      await tellSecret(tx, path);
      await audit.append(tx, actor, context, {
        action: "secret.rotated",
        outcome: "success",
        subject: `secret:${path}`,
        details: {
          version: pending.version,
          previousVersion: pending.previous,
          ...(rotation ? { target: rotation.target, login: rotation.login, verified: true } : {}),
        },
      });
      await failpoint("vault.rotate.before-commit");
      return true;
    });
    if (!committed) await outlivedClaim(actor, context, path, pending.version);
    return { path, version: pending.version, previousVersion: pending.previous };
  }

  /**
   * A rotation whose claim ran out while it worked (a stalled node) and whose pending version another node
   * settled meanwhile. Settled on this version: done. Settled on the old password (the target had not changed
   * yet when it was asked) and then changed by this node: the target is given the vault's current password
   * back, and the rotation fails, audited and alerted, as any failed rotation.
   */
  async function outlivedClaim(actor: Actor, context: CallContext, path: string, version: number): Promise<void> {
    const now = await vaultStore.findSecret(store.db, path);
    if (!now || now.current_version === version) return;
    const rotation = now.rotation;
    let restored = false;
    if (rotation && deps.targets) {
      const current = await release("rotation", now, now.current_version);
      try {
        restored = await deps.targets.withCredentials(rotation.target, async (ops) => {
          await ops.setPassword(rotation.login, current);
          return ops.verifyPassword(rotation.login, current);
        });
      } catch {
        restored = false;
      }
    }
    const reason = "the rotation outlived its claim and another node settled it on the previous password";
    await store.transaction(async (tx) => {
      await audit.append(tx, actor, context, {
        action: "secret.rotation_failed",
        outcome: "failed",
        subject: `secret:${path}`,
        reason,
        details: {
          version: now.current_version,
          ...(rotation ? { target: rotation.target, login: rotation.login } : {}),
          currentPasswordRestored: restored,
        },
      });
      await deps.onRotationFailed?.(tx, {
        path,
        reason: `${reason}${restored ? "; the target has the vault's current password again" : "; the target could NOT be given the vault's current password"}`,
        at: clock.now(),
      });
    });
    throw new StintError(
      "CONFLICT",
      `Rotating ${path} took longer than its claim and another node settled it meanwhile; version ${now.current_version} stays current${restored ? " and the target has its password again" : ", but the target could not be given its password back"}.`,
      { currentPasswordRestored: restored },
    );
  }

  /** One abandoned pending version, settled on what the target accepts (see `reconcilePending`). */
  async function settlePending(path: string, version: number): Promise<boolean> {
    const row = await vaultStore.findSecret(store.db, path);
    if (!row) return false;
    const context: CallContext = { correlationId: "rotation-reconcile", sourceIp: null, userAgent: null };
    const settle = async (outcome: "new" | "old") =>
      store.transaction(async (tx) => {
        const now = clock.now();
        await tellSecret(tx, path);
        if (outcome === "new") {
          if (!(await vaultStore.commitPending(tx, row.id, version))) return;
          await tx
            .updateTable("secrets")
            .set({ current_version: version, rotation_due_at: nextRotation(row, now), updated_at: now })
            .where("id", "=", row.id)
            .execute();
        } else {
          await vaultStore.deleteVersion(tx, row.id, version);
        }
        await audit.append(tx, SYSTEM, context, {
          action: "secret.rotation_reconciled",
          outcome: "success",
          subject: `secret:${path}`,
          reason: "a rotation's node stopped between changing the target and committing",
          details: { settledOn: outcome, version: outcome === "new" ? version : row.current_version },
        });
      });
    const rotation = row.rotation;
    // Without a target the pending value never left the vault.
    if (!rotation || !deps.targets) {
      await settle("old");
      return true;
    }
    const fresh = await release("rotation", row, version);
    const old = await release("rotation", row, row.current_version);
    let verdict: "new" | "old" | "neither";
    try {
      verdict = await deps.targets.withCredentials(rotation.target, async (ops) => {
        if (await ops.verifyPassword(rotation.login, fresh)) return "new";
        if (await ops.verifyPassword(rotation.login, old)) return "old";
        return "neither";
      });
    } catch {
      return false; // the target is not answering: ask again at the next pass
    }
    if (verdict !== "neither") {
      await settle(verdict);
      return true;
    }
    await store.transaction(async (tx) => {
      await audit.append(tx, SYSTEM, context, {
        action: "secret.rotation_reconciled",
        outcome: "failed",
        subject: `secret:${path}`,
        reason: "neither the pending nor the current password signs in at the target",
        details: { target: rotation.target, login: rotation.login, pendingVersion: version },
      });
      await deps.onRotationFailed?.(tx, {
        path,
        reason: `neither the pending version ${version} nor the current password signs in as ${rotation.login} at ${rotation.target}`,
        at: clock.now(),
      });
    });
    return false;
  }

  return {
    returnExpired,

    /** Seals a value that lives elsewhere (a dynamic credential) under the vault's current KEK, bound to `bound`. */
    async sealValue(bound: string, value: string) {
      const kek = await activeKek(store.db);
      return { ...sealVersion(kek.key, bound, value), kekVersion: kek.version };
    },

    async openValue(bound: string, sealed: { ciphertext: string; wrappedKey: string; kekVersion: number }) {
      try {
        return openVersion(await kekOf(store.db, sealed.kekVersion), bound, sealed);
      } catch (error) {
        return integrity(error);
      }
    },

    async status() {
      const config = await vaultStore.config(store.db);
      const keks = await vaultStore.keks(store.db);
      let sealed = root === null;
      if (sealed && config?.mode !== "shamir" && deps.fileKey) {
        sealed = !(config ? verifies(deps.fileKey, config.verifier) : true);
      }
      return {
        mode: config?.mode ?? ("key-file" as const),
        sealed,
        progress: pendingShares.length,
        threshold: config?.threshold ?? null,
        shares: config?.shares ?? null,
        keyVersion: keks.filter((k) => k.state === "active").at(-1)?.version ?? null,
      };
    },

    async put(actor: Actor, context: CallContext, path: string, input: PutSecretBody): Promise<SecretMetaDto> {
      authorize(actor, "secrets.write");
      const who = principalOf(actor).name;
      const kindOf = input.kind;
      const value =
        input.value ?? (kindOf === "ssh-key" ? newValueFor("ssh-key") : generateValue(input.generate!.length));
      const kek = await activeKek(store.db);
      // Who may read it, its break-glass and its rotation target are the operator's: secrets.write adds versions.
      const operator = can(actor, "vault.operate");
      const custodyRefusal = (changed: string[]) =>
        new StintError(
          "FORBIDDEN",
          `Only an operator (admin) changes who may read ${path}, its break-glass or its rotation (asked: ${changed.join(", ")}).`,
        );
      const current = operator ? undefined : await vaultStore.findSecret(store.db, path);
      if (current) {
        const changed = custodyChanges(accessFields(current), accessFields(current, input));
        if (changed.length > 0) {
          await audit.record(actor, context, {
            action: "secret.version_added",
            outcome: "denied",
            subject: `secret:${path}`,
            reason: `only an operator changes ${changed.join(", ")}`,
          });
          throw custodyRefusal(changed);
        }
      }
      const row = await store.transaction(async (tx) => {
        const now = clock.now();
        const existing = await vaultStore.findSecret(tx, path, true);
        if (existing && !operator) {
          const changed = custodyChanges(accessFields(existing), accessFields(existing, input));
          if (changed.length > 0) throw custodyRefusal(changed);
        }
        const id = existing?.id ?? newId();
        // After any version a rotation left pending, not only after the current one.
        const version = existing ? (await vaultStore.maxVersion(tx, existing.id)) + 1 : 1;
        const sealed = sealVersion(kek.key, binding(id, path, version), value);
        const fields = {
          kind: input.kind ?? existing?.kind ?? "generic",
          description: input.description ?? existing?.description ?? null,
          owner: input.owner ?? existing?.owner ?? null,
          metadata: input.metadata ?? existing?.metadata ?? {},
          roles: input.roles ?? existing?.roles ?? [],
          platform_roles: input.platformRoles ?? existing?.platform_roles ?? [],
          checkout:
            input.checkout ?? (existing ? checkoutPolicy.parse(existing.checkout ?? {}) : checkoutPolicy.parse({})),
          current_version: version,
          break_glass: input.breakGlass ?? existing?.break_glass ?? false,
          rotation: input.rotation ?? existing?.rotation ?? null,
        };
        if (existing) await vaultStore.updateSecret(tx, id, { ...fields, updated_at: now });
        else
          await vaultStore.insertSecret(tx, {
            id,
            path,
            ...fields,
            rotation_due_at: null,
            created_at: now,
            updated_at: now,
          });
        await vaultStore.insertVersion(tx, {
          secret_id: id,
          version,
          ciphertext: sealed.ciphertext,
          wrapped_key: sealed.wrappedKey,
          kek_version: kek.version,
          source: input.generate ? "generate" : "put",
          created_by: who,
          created_at: now,
        });
        await tellSecret(tx, path);
        await audit.append(tx, actor, context, {
          action: existing ? "secret.version_added" : "secret.created",
          outcome: "success",
          subject: `secret:${path}`,
          details: {
            kind: fields.kind,
            version,
            generated: input.generate !== undefined,
            roles: fields.roles,
            platformRoles: fields.platform_roles,
          },
        });
        // A new rotation schedule starts now.
        if (fields.rotation?.every && !existing?.rotation_due_at)
          await vaultStore.setRotationDue(tx, id, nextRotation(fields, now)!);
        return (await vaultStore.findSecret(tx, path))!;
      });
      return metaDto(store.db, row);
    },

    async list(actor: Actor): Promise<SecretMetaDto[]> {
      const principal = principalOf(actor);
      const rows = await vaultStore.listSecrets(store.db);
      const all = can(principal, "secrets.read");
      const visible: SecretMetaDto[] = [];
      for (const row of rows) if (all || (await mayUse(actor, row))) visible.push(await metaDto(store.db, row));
      return visible;
    },

    async meta(actor: Actor, path: string): Promise<SecretMetaDto> {
      principalOf(actor);
      const row = await vaultStore.findSecret(store.db, path);
      if (!row || !(can(actor, "secrets.read") || (await mayUse(actor, row))))
        throw new StintError("NOT_FOUND", `There is no secret ${path} you may see.`);
      return metaDto(store.db, row);
    },

    async versions(actor: Actor, path: string) {
      const meta = await this.meta(actor, path);
      const row = (await vaultStore.findSecret(store.db, path))!;
      const versions = await vaultStore.versionsOf(store.db, row.id);
      return {
        path,
        items: versions.map((v) => ({
          version: v.version,
          source: v.source,
          createdBy: v.created_by,
          createdAt: iso(v.created_at),
          current: v.version === meta.currentVersion,
        })),
      };
    },

    /**
     * The current value of a secret for the session broker to inject upstream towards `target`: no actor,
     * because the user never receives it; the caller audits the session that used it (path and version,
     * never the value). Only a secret allowed for that target at its endpoint as it is now, never break-glass.
     */
    async injectValue(
      path: string,
      target: { id: string; kind: string; address: string | null; options: Record<string, unknown> },
    ): Promise<{ version: number; kind: string; value: string }> {
      await rootKey();
      const row = await vaultStore.findSecret(store.db, path);
      const allowance = await vaultStore.allowanceOf(store.db, path);
      const problem = allowanceKey
        ? sessionSecretUsable({
            key: allowanceKey,
            path,
            targetId: target.id,
            endpoint: endpointOf(target),
            secret: row ? { breakGlass: row.break_glass } : null,
            allowance: allowance
              ? { targetId: allowance.target_id, endpoint: allowance.endpoint, mac: allowance.mac }
              : null,
          })
        : "cannot be checked on this server";
      if (problem || !row)
        throw new StintError("NOT_FOUND", `The session secret ${path} ${problem ?? "is not in the vault"}.`);
      return {
        version: row.current_version,
        kind: row.kind,
        value: await release("session", row, row.current_version),
      };
    },

    /**
     * An operator's explicit grant: the target's sessions may inject this secret, at the target's endpoint
     * as it is now (a later address change needs the grant again). Never a break-glass secret; a secret is
     * used by one target at most.
     */
    async allowForTarget(actor: Actor, context: CallContext, path: string, targetRef: string) {
      authorize(actor, "vault.operate");
      const by = actorLabel(actor).actor;
      return store.transaction(async (tx) => {
        const target = await findTarget(tx, targetRef);
        const row = await vaultStore.findSecret(tx, path, true);
        if (!target || !row) throw new StintError("NOT_FOUND", `There is no secret ${path} or no target ${targetRef}.`);
        if (row.break_glass)
          throw new StintError("BREAK_GLASS_ONLY", `${path} is a break-glass secret: no session may inject it.`);
        const held = await vaultStore.allowanceOf(tx, path);
        if (held && held.target_id !== target.id)
          throw new StintError(
            "CONFLICT",
            `${path} is already the session secret of another target; disallow it there first.`,
          );
        if (!allowanceKey) throw new StintError("CONFLICT", "Session secrets cannot be allowed on this server.");
        const now = clock.now();
        const endpoint = endpointOf({
          kind: target.kind,
          address: target.address,
          options: targetConfig(target.config).options,
        });
        await custodyStore.allow(tx, {
          path,
          targetId: target.id,
          endpoint,
          grantedBy: by,
          now,
          mac: allowanceMac(allowanceKey, { path, targetId: target.id, endpoint }),
        });
        await audit.append(tx, actor, context, {
          action: "secret.allowed",
          outcome: "success",
          subject: `secret:${path}`,
          details: { target: target.name, by: "operator" },
        });
        return { path, target: target.name, grantedBy: by, createdAt: now.toISOString() };
      });
    },

    async disallowForTarget(actor: Actor, context: CallContext, path: string, targetRef: string): Promise<void> {
      authorize(actor, "vault.operate");
      await store.transaction(async (tx) => {
        const target = await findTarget(tx, targetRef);
        const removed = target ? await vaultStore.deleteAllowance(tx, path, target.id) : false;
        if (!target || !removed) throw new StintError("NOT_FOUND", `${path} is not allowed for a target ${targetRef}.`);
        await audit.append(tx, actor, context, {
          action: "secret.disallowed",
          outcome: "success",
          subject: `secret:${path}`,
          details: { target: target.name },
        });
      });
    },

    /**
     * Reads a value (the current version unless one is named). Exclusive secrets need the reader's check-out.
     * While the access index vouches for itself the decision and the sealed value come from memory, and the
     * read's audit event is committed with other reads' (group commit) after checking, in that transaction,
     * that the copy used is what the database holds; the value is returned only after that commit. Anything
     * else (a refusal, break-glass, an exclusive secret, a stale copy) is decided from the database.
     */
    /** How the reads' audit events were group-committed so far (for the benchmark). */
    readAuditStats: () => readAudit.stats(),

    async read(actor: Actor, context: CallContext, path: string, version?: number) {
      principalOf(actor);
      await rootKey();
      if (index?.view()) {
        const fromMemory = await readFromMemory(actor, context, path, version);
        if (fromMemory) return fromMemory;
      }
      return readFromDatabase(actor, context, path, version);
    },

    async checkout(actor: Actor, context: CallContext, path: string, input: { duration?: string; reason: string }) {
      const principal = principalOf(actor);
      await rootKey();
      const row = await vaultStore.findSecret(store.db, path);
      if (!row || !(await mayUse(actor, row)))
        return refuse(
          actor,
          context,
          "secret.checkout",
          path,
          `There is no secret ${path} that you may check out now (activate a role that lists it).`,
        );
      // Before any check-out row: a break-glass secret is never checked out.
      await assertReleasable("checkout", row, { actor, context });
      const policy: CheckoutPolicy = checkoutPolicy.parse(row.checkout ?? {});
      const maxMs = parseDuration(policy.maxDuration);
      const ms = input.duration ? parseDuration(input.duration) : maxMs;
      if (ms > maxMs)
        throw new StintError("DURATION_TOO_LONG", `${path} may be checked out for at most ${policy.maxDuration}.`);
      const now = clock.now();
      const expiresAt = new Date(now.getTime() + ms);
      const id = newId();
      const won = await store.transaction(async (tx) => {
        if (
          !(await vaultStore.tryCheckout(tx, {
            id,
            secretId: row.id,
            holderId: principal.id,
            reason: input.reason,
            now,
            expiresAt,
          }))
        )
          return false;
        await audit.append(tx, actor, context, {
          action: "secret.checked_out",
          outcome: "success",
          subject: `secret:${path}`,
          reason: input.reason,
          details: { until: expiresAt.toISOString(), version: row.current_version },
        });
        return true;
      });
      if (!won) {
        const open = await vaultStore.openCheckout(store.db, row.id);
        const until = open ? iso(open.expires_at) : null;
        throw new StintError(
          "CHECKED_OUT",
          `${path} is checked out by ${open?.holder_name ?? "someone"}${until ? ` until ${until}` : ""}.`,
          { holder: open?.holder_name ?? null, until },
        );
      }
      const value = await release("checkout", row, row.current_version, { actor, context });
      return { path, version: row.current_version, value, holder: principal.name, until: expiresAt.toISOString() };
    },

    async checkin(actor: Actor, context: CallContext, path: string) {
      const principal = principalOf(actor);
      const row = await vaultStore.findSecret(store.db, path);
      const open = row ? await vaultStore.openCheckout(store.db, row.id) : undefined;
      if (!row || !open || (open.holder_id !== principal.id && !can(actor, "secrets.write")))
        throw new StintError("NOT_FOUND", `You hold no check-out of ${path}.`);
      const policy = checkoutPolicy.parse(row.checkout ?? {});
      const wantsRotation = policy.rotateOnCheckin && row.kind !== "certificate";
      // A login's password at a target is rotated there (proven, after the check-in); others get a new version here.
      const atTarget = wantsRotation && row.rotation !== null;
      const rotate = wantsRotation && !atTarget;
      const kek = rotate ? await activeKek(store.db) : null;
      let version = row.current_version;
      await store.transaction(async (tx) => {
        const now = clock.now();
        if (!(await vaultStore.returnCheckout(tx, open.id, "checked in", now))) return;
        if (rotate && kek) {
          // A new value the borrower never saw.
          version = (await vaultStore.maxVersion(tx, row.id)) + 1;
          const sealed = sealVersion(kek.key, binding(row.id, row.path, version), newValueFor(row.kind));
          await vaultStore.insertVersion(tx, {
            secret_id: row.id,
            version,
            ciphertext: sealed.ciphertext,
            wrapped_key: sealed.wrappedKey,
            kek_version: kek.version,
            source: "rotation",
            created_by: "system",
            created_at: now,
          });
          await tx
            .updateTable("secrets")
            .set({ current_version: version, updated_at: now })
            .where("id", "=", row.id)
            .execute();
          await tellSecret(tx, row.path);
        }
        await audit.append(tx, actor, context, {
          action: "secret.checked_in",
          outcome: "success",
          subject: `secret:${path}`,
          details: { holder: open.holder_name, rotated: rotate, version },
        });
      });
      if (atTarget) {
        const result = await this.rotate(SYSTEM, context, path).catch(async () => {
          // Audited and alerted by rotate; the scheduler tries again within the hour.
          await vaultStore.setRotationDueByPath(store.db, path, new Date(clock.now().getTime() + 3600_000));
          return null;
        });
        return { path, rotated: result !== null, currentVersion: result?.version ?? version };
      }
      return { path, rotated: rotate, currentVersion: version };
    },

    /**
     * Break-glass: reveals an emergency secret with a reason and a fresh MFA check, tells every channel,
     * opens a post-incident review and schedules the secret's rotation, all with the audit event.
     */
    async reveal(actor: Actor, context: CallContext, path: string, reason: string) {
      const principal = principalOf(actor);
      await rootKey();
      const row = await vaultStore.findSecret(store.db, path);
      if (!row || !row.break_glass || !(await mayUse(actor, row)))
        return refuse(
          actor,
          context,
          "breakglass.reveal",
          path,
          `There is no break-glass secret ${path} you may reveal.`,
        );
      const now = clock.now();
      const mfaAge = principal.mfaAt ? now.getTime() - principal.mfaAt.getTime() : Number.NaN;
      if (!(mfaAge >= -30_000 && mfaAge <= BREAK_GLASS_MFA_MAX_AGE_MS)) {
        await audit.record(actor, context, {
          action: "breakglass.reveal",
          outcome: "denied",
          subject: `secret:${path}`,
          reason: "no fresh MFA",
        });
        throw new StintError(
          "MFA_STEP_UP_REQUIRED",
          "Revealing a break-glass secret needs a one-time code entered within the last 5 minutes (stint login --otp, or step up).",
        );
      }
      const value = await release("reveal", row, row.current_version, { actor, context });
      const reviewId = newId();
      const rotationDueAt = new Date(now.getTime() + BREAK_GLASS_ROTATE_AFTER_MS);
      await store.transaction(async (tx) => {
        await vaultStore.insertReview(tx, {
          id: reviewId,
          kind: "break-glass-secret",
          subject: `secret:${path}`,
          actorId: principal.id,
          reason,
          now,
          dueAt: new Date(now.getTime() + REVIEW_DUE_MS),
        });
        await vaultStore.setRotationDue(tx, row.id, rotationDueAt);
        await audit.append(tx, actor, context, {
          action: "breakglass.secret_revealed",
          outcome: "success",
          subject: `secret:${path}`,
          reason,
          details: { version: row.current_version, reviewId, rotationDueAt: rotationDueAt.toISOString() },
        });
        await deps.onBreakGlass?.(tx, { path, by: principal.name, reason, reviewId, at: now });
      });
      deps.afterBreakGlass?.();
      return { path, version: row.current_version, value, reviewId, rotationDueAt: rotationDueAt.toISOString() };
    },

    /**
     * Rotates a secret now. Bound to a login at a target: the rotation is claimed (one node, one rotation,
     * for ROTATION_LEASE_MS), the new password stored as a pending version, set at the target, proven by a
     * real sign-in, and only then made current; on any failure the old password is put back at the target,
     * the pending version dropped, and the failure audited and alerted. A node that dies in between leaves
     * the pending version to `reconcilePending`. Without a target: a new random version.
     */
    async rotate(actor: Actor, context: CallContext, path: string, options: { claimed?: boolean } = {}) {
      authorize(actor, "secrets.write");
      const kek = await activeKek(store.db);
      const row = await vaultStore.findSecret(store.db, path);
      if (!row) throw new StintError("NOT_FOUND", `There is no secret ${path}.`);
      if (row.kind === "certificate")
        throw new StintError("CONFLICT", `${path} is a certificate: Stint does not issue certificates; put a new one.`);
      if (!options.claimed) {
        const now = clock.now();
        if (!(await vaultStore.claimRotation(store.db, row.id, node, now, new Date(now.getTime() + ROTATION_LEASE_MS))))
          throw new StintError("CONFLICT", `A rotation of ${path} is already running; try again when it ends.`);
      }
      let crashed = false;
      try {
        return await rotateClaimed(actor, context, row, kek);
      } catch (error) {
        // A test's simulated crash: a dead node releases nothing; its claim runs out (see reconcilePending).
        crashed = error instanceof FailpointCrash;
        throw error;
      } finally {
        if (!crashed) await vaultStore.releaseRotation(store.db, row.id, node).catch(() => undefined);
      }
    },

    /**
     * Scheduler: rotates the secrets whose rotation is due (a schedule, or after a break-glass reveal),
     * exactly as `rotate` does, each claimed first so that of several nodes one rotates it. A failed one is
     * audited and alerted by `rotate`, and tried again in an hour. Pending versions a dead node left are
     * settled first.
     */
    async rotateDue(limit = 50): Promise<number> {
      // The scheduler passes often; abandoned rotations are looked for once a minute (claims last ten).
      const now = clock.now().getTime();
      if (now - lastReconcileAt >= 60_000) {
        lastReconcileAt = now;
        await this.reconcilePending();
      }
      const due = await vaultStore.dueRotations(store.db, clock.now(), limit);
      let rotated = 0;
      for (const { id, path } of due) {
        const now = clock.now();
        if (!(await vaultStore.claimRotation(store.db, id, node, now, new Date(now.getTime() + ROTATION_LEASE_MS))))
          continue; // another node has it
        try {
          await this.rotate(SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, path, {
            claimed: true,
          });
          rotated += 1;
        } catch (error) {
          if (error instanceof FailpointCrash) throw error; // the node died here: it reschedules nothing
          if (error instanceof StintError && (error.code === "SEALED" || error.code === "VAULT_KEY_INVALID"))
            throw error;
          // A secret that cannot be rotated at all stops being due; anything else is tried again in an hour.
          // (A rotation that outlived its claim failed this time only: tried again in an hour too.)
          const cannot =
            error instanceof StintError &&
            error.code === "CONFLICT" &&
            error.details?.currentPasswordRestored === undefined;
          await vaultStore.setRotationDueByPath(
            store.db,
            path,
            cannot ? null : new Date(clock.now().getTime() + 3600_000),
          );
        }
      }
      return rotated;
    },

    /**
     * Settles the pending versions of rotations whose node died between storing the new password and
     * committing it (their claim ran out): the target decides. The pending password signs in: it becomes
     * current. The old one does: the pending version is dropped. Neither: it stays pending, audited and
     * alerted, for an operator. A target that cannot be reached is asked again at the next pass.
     */
    async reconcilePending(): Promise<{ settled: number }> {
      const abandoned = await vaultStore.abandonedPending(store.db, clock.now());
      let settled = 0;
      for (const pending of abandoned) {
        const now = clock.now();
        if (
          !(await vaultStore.claimRotation(
            store.db,
            pending.secret_id,
            node,
            now,
            new Date(now.getTime() + ROTATION_LEASE_MS),
          ))
        )
          continue;
        try {
          if (await settlePending(pending.path, pending.version)) settled += 1;
        } finally {
          await vaultStore.releaseRotation(store.db, pending.secret_id, node).catch(() => undefined);
        }
      }
      return { settled };
    },

    // -----------------------------------------------------------------------
    // Operator

    /** Turns the vault to shamir mode: a new root key, split; existing KEKs re-wrapped under it. */
    async init(actor: Actor, context: CallContext, input: { shares: number; threshold: number }) {
      authorize(actor, "vault.operate");
      const config = await vaultStore.config(store.db);
      if (config?.mode === "shamir") throw new StintError("CONFLICT", "The vault is already initialized with shares.");
      const current = config ? await rootKey() : null;
      const next = newKey();
      const shares = await splitRoot(next, input.shares, input.threshold);
      await store.transaction(async (tx) => {
        const now = clock.now();
        const keks = await vaultStore.keks(tx);
        if (keks.length === 0) await vaultStore.insertKek(tx, 1, wrapKek(next, 1, newKey()), now);
        for (const kek of keks) {
          if (!current) throw new StintError("SEALED");
          await vaultStore.rewrapKek(
            tx,
            kek.version,
            wrapKek(next, kek.version, unwrapKek(current, kek.version, kek.wrapped)),
          );
        }
        await vaultStore.writeConfig(
          tx,
          { mode: "shamir", shares: input.shares, threshold: input.threshold, verifier: verifierFor(next) },
          now,
        );
        await tellKeks(tx);
        await audit.append(tx, actor, context, {
          action: "vault.initialized",
          outcome: "success",
          details: { mode: "shamir", shares: input.shares, threshold: input.threshold },
        });
      });
      forgetAll();
      root = next;
      pendingShares = [];
      return { shares, threshold: input.threshold };
    },

    /** One share towards the threshold; at the threshold the rebuilt key must match the verifier. */
    async unseal(actor: Actor, context: CallContext, share: string) {
      authorize(actor, "vault.operate");
      const config = await vaultStore.config(store.db);
      if (config?.mode !== "shamir" || !config.threshold)
        throw new StintError("CONFLICT", "The vault is not in sealed (shamir) mode: there is nothing to unseal.");
      // The share is checked before anything else: garbage must never earn a 200, sealed or not.
      const parsed = parseShare(share, config.threshold);
      if (!parsed)
        throw new StintError(
          "VALIDATION_FAILED",
          "That is not an unseal share of this vault (stint-share- followed by the hex printed by stint operator init).",
        );
      if (root)
        throw new StintError(
          "CONFLICT",
          "The vault is already unsealed on this node: no share is needed (stint operator status shows it).",
        );
      if (!pendingShares.some((s) => Buffer.from(s).equals(parsed))) pendingShares.push(parsed);
      if (pendingShares.length >= config.threshold) {
        const candidate = await combineShares(pendingShares, config.threshold);
        pendingShares = [];
        const ok = verifies(candidate, config.verifier);
        await audit.record(actor, context, { action: "vault.unsealed", outcome: ok ? "success" : "failed" });
        if (!ok) throw new StintError("VAULT_KEY_INVALID", "Those shares do not rebuild the vault key; start again.");
        root = candidate;
      } else {
        await audit.record(actor, context, {
          action: "vault.unseal_share",
          outcome: "success",
          details: { progress: pendingShares.length, threshold: config.threshold },
        });
      }
      return this.status();
    },

    async seal(actor: Actor, context: CallContext) {
      authorize(actor, "vault.operate");
      const config = await vaultStore.config(store.db);
      if (config?.mode !== "shamir")
        throw new StintError(
          "CONFLICT",
          "Only a vault initialized with shares can be sealed (its key would come back from the key file).",
        );
      root = null;
      pendingShares = [];
      forgetAll();
      await audit.record(actor, context, { action: "vault.sealed", outcome: "success" });
      return this.status();
    },

    /** A new KEK; every data key re-wrapped under it in one transaction; payloads untouched. */
    async rotateKey(actor: Actor, context: CallContext) {
      authorize(actor, "vault.operate");
      const key = await rootKey();
      const rotated = await store.transaction(async (tx) => {
        const now = clock.now();
        const keks = await vaultStore.keks(tx);
        const version = (keks.at(-1)?.version ?? 0) + 1;
        const next = newKey();
        await vaultStore.insertKek(tx, version, wrapKek(key, version, next), now);
        const unwrapped = new Map(keks.map((k) => [k.version, unwrapKek(key, k.version, k.wrapped)]));
        const versions = await vaultStore.allVersions(tx);
        try {
          for (const v of versions) {
            const bound = binding(v.secret_id, v.path, v.version);
            const wrapped = rewrapKey(unwrapped.get(v.kek_version)!, next, bound, v.wrapped_key);
            await vaultStore.setWrappedKey(tx, v.secret_id, v.version, wrapped, version);
          }
          for (const g of await vaultStore.allGrantCredentials(tx)) {
            const bound = vaultStore.grantBinding(g.grant_id);
            const wrapped = rewrapKey(unwrapped.get(g.kek_version)!, next, bound, g.wrapped_key);
            await vaultStore.setGrantCredentialKey(tx, g.grant_id, wrapped, version);
          }
        } catch (error) {
          integrity(error);
        }
        await vaultStore.retireKeksBefore(tx, version);
        await tellKeks(tx);
        await audit.append(tx, actor, context, {
          action: "vault.key_rotated",
          outcome: "success",
          details: { keyVersion: version, rewrapped: versions.length },
        });
        return { keyVersion: version, rewrapped: versions.length };
      });
      // This node seals with the new KEK from now on, without waiting for its own "kek" message.
      forgetAll();
      return rotated;
    },
  };
}

export type VaultService = ReturnType<typeof createVaultService>;
