/**
 * What every use case of the vault shares (`VaultContext`): its dependencies, what the node keeps in memory
 * (vault.memory.ts), and the one decision before any value leaves the vault (`release`), with the helpers
 * around it. Each use-case file (vault.secrets.ts, vault.read.ts, vault.checkout.ts, vault.rotation.ts,
 * vault.operator.ts) is a factory over this context; vault.service.ts wires them.
 */
import { checkoutPolicy, type PutSecretBody, type SecretMetaDto } from "../../contract/vault.js";
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { deriveKey } from "../../lib/security.js";
import { generateEd25519KeyPair } from "../../lib/ssh-keys.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { AuditBatcherOptions } from "./audit-batch.js";
import { binding, generateValue, IntegrityError, openVersion } from "./vault.crypto.js";
import { createVaultMemory } from "./vault.memory.js";
import { releaseProblem, type ReleasePurpose, type SecretAccessFields } from "./vault.rules.js";
import * as vaultStore from "./vault.store.js";

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
        /** `endSessions`: also end the login's sessions there (its password was a person's to see). */
        setPassword(login: string, password: string, options?: { endSessions?: boolean }): Promise<void>;
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

export const iso = (value: Date | string) => new Date(value).toISOString();

/**
 * A new random value of the secret's kind: an OpenSSH ed25519 private key for ssh-key (one ssh2 and OpenSSH load:
 * ssh2's own generator makes an unloadable one about once in 256), a password otherwise.
 */
export function newValueFor(kind: string): string {
  return kind === "ssh-key" ? generateEd25519KeyPair("").privateKey : generateValue(32);
}

/** When a secret with a rotation schedule is next due (null without one). */
export function nextRotation(row: { rotation: { every?: string } | null }, now: Date): Date | null {
  const every = row.rotation?.every;
  return every ? new Date(now.getTime() + parseDuration(every)) : null;
}

/** A secret's access fields as stored, or as they would be after `input` (put keeps what it does not name). */
export function accessFields(
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

export function integrity(error: unknown): never {
  if (error instanceof IntegrityError)
    throw new StintError("INTEGRITY_FAILED", `The stored secret failed its integrity check (${error.message}).`);
  throw error;
}

export type VaultContext = ReturnType<typeof createVaultContext>;

export function createVaultContext(deps: VaultServiceDeps) {
  const { store, audit, clock } = deps;
  const index = deps.index;
  const memory = createVaultMemory(deps);
  const { kekOf } = memory;

  function principalOf(actor: Actor) {
    if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
    return actor;
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

  return {
    deps,
    store,
    audit,
    clock,
    memory,
    // Who holds a rotation claim: this service instance (a node may run several in tests).
    node: `${deps.node ?? "node"}:${newId()}`,
    allowanceKey: deps.masterKey ? deriveKey(deps.masterKey, "secret-allowances") : null,
    principalOf,
    metaDto,
    mayUse,
    refuse,
    assertReleasable,
    release,
  };
}
