/**
 * The catalog module's API for other modules: what grants, vault and reviews read from or write to the catalog's
 * tables goes through these functions, never through catalog.store.ts or custody.store.ts (an ESLint
 * `no-restricted-imports` rule refuses a store imported from another module's folder). Each takes the transaction
 * (or db) it runs in; the caller audits. Pure decoders are in catalog.rules.ts (`targetConfig`) and
 * custody.rules.ts.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import * as catalogStore from "./catalog.store.js";
import { allowanceMac } from "./custody.rules.js";
import * as custodyStore from "./custody.store.js";

type Q = Kysely<Database>;

export type { TargetRow } from "./catalog.store.js";

/** A target by name (or id), or undefined. */
export function findTarget(db: Q, ref: string) {
  return catalogStore.findTarget(db, ref);
}

/** Serializes a write with every catalog write for the rest of the transaction: take it first, as they do. */
export function lockCatalog(tx: Q): Promise<void> {
  return catalogStore.lockCatalog(tx);
}

/** Marks an eligibility removed (never reused); what it backed is the caller's to end, in the same transaction. */
export function removeEligibility(tx: Q, id: string, now: Date): Promise<void> {
  return catalogStore.removeEligibility(tx, id, now);
}

/** The vault secret at a path (never its value) and the allowance that path has, if any. */
export function sessionSecretFacts(db: Q, path: string) {
  return custodyStore.sessionSecretFacts(db, path);
}

/** A session-secret allowance: the target's sessions may use the secret at `path`, at `endpoint`. */
export interface SessionSecretAllowance {
  path: string;
  targetId: string;
  endpoint: string;
  grantedBy: string;
  now: Date;
}

const withMac = (allowance: SessionSecretAllowance, allowanceKey: Uint8Array): custodyStore.AllowanceRow => ({
  ...allowance,
  mac: allowanceMac(allowanceKey, { path: allowance.path, targetId: allowance.targetId, endpoint: allowance.endpoint }),
});

/** An operator's allowance (`stint secret allow`), MACed: replaces the target's own for that path. */
export function allowSessionSecret(tx: Q, allowance: SessionSecretAllowance, allowanceKey: Uint8Array): Promise<void> {
  return custodyStore.allow(tx, withMac(allowance, allowanceKey));
}

/**
 * At start, once per database (under the upgrade lock, with the step's `upgrade.completed` marker): the one
 * target that named a session secret before allowances existed gets its allowance, MACed, unless the path has
 * one already (false: none written).
 */
export function adoptSessionSecret(
  tx: Q,
  allowance: Omit<SessionSecretAllowance, "grantedBy">,
  allowanceKey: Uint8Array,
): Promise<boolean> {
  return custodyStore.adopt(tx, withMac({ ...allowance, grantedBy: "upgrade" }, allowanceKey));
}

/**
 * At start, once per database (the caller holds the upgrade lock and writes the step's `upgrade.completed` marker
 * in the same transaction): allowances written before they carried a MAC get theirs (the database as it is at
 * the upgrade is trusted). Answers those it MACed, for the caller to audit (`secret.allowed`, `legacy`). Never
 * called again once the marker is in the audit log: a row a database writer inserts without a MAC later stays
 * refused.
 */
export async function macLegacyAllowances(
  db: Q,
  allowanceKey: Uint8Array,
): Promise<{ path: string; targetId: string; endpoint: string }[]> {
  const maced: { path: string; targetId: string; endpoint: string }[] = [];
  for (const allowance of await custodyStore.allowancesWithoutMac(db)) {
    const row = { path: allowance.path, targetId: allowance.target_id, endpoint: allowance.endpoint };
    if (await custodyStore.setAllowanceMac(db, { ...row, mac: allowanceMac(allowanceKey, row) })) maced.push(row);
  }
  return maced;
}

/** Allowances without a MAC (after the upgrade: written in the database, refused at session open; reported). */
export function allowancesWithoutMac(db: Q) {
  return custodyStore.allowancesWithoutMac(db);
}

/** Which target's sessions may use the secret at `path`, at which endpoint, with the allowance's MAC (the vault checks it). */
export function sessionSecretAllowance(db: Q, path: string) {
  return custodyStore.allowanceOf(db, path);
}

/** An operator's disallowance (`stint secret disallow`): false when the target had no allowance of the secret. */
export function disallowSessionSecret(tx: Q, path: string, targetId: string): Promise<boolean> {
  return custodyStore.disallow(tx, path, targetId);
}

/** A target's sealed admin credential at `path`, with the target and endpoint it is bound to (the caller opens it). */
export function readTargetCredential(db: Q, path: string) {
  return custodyStore.readCredential(db, path);
}

/**
 * Stores a target's credential, sealed by the caller and bound to the target: a path whose stored value belongs
 * to another target is left alone ("taken"); a row with no target is taken over.
 */
export function storeTargetCredential(
  tx: Q,
  row: { path: string; targetId: string; endpoint: string; sealed: string },
  now: Date,
): Promise<"created" | "updated" | "taken"> {
  return custodyStore.writeCredential(tx, row, now);
}

/** Deletes the target's own stored credential at `path` (or one with no target), never another target's. */
export function deleteTargetCredential(tx: Q, path: string, targetId: string): Promise<boolean> {
  return custodyStore.deleteCredential(tx, path, targetId);
}

/**
 * Stored credentials with no target: before the start's `credential-binding` upgrade step, those an older release
 * stored, for the step to bind; after it, refused (the start reports them).
 */
export function unboundTargetCredentials(db: Q) {
  return custodyStore.unboundCredentials(db);
}

/**
 * In the start's `credential-binding` upgrade step only (once per database, under the upgrade lock): binds an
 * unbound credential to its one target, re-sealed by the caller; false when it is bound already.
 */
export function bindTargetCredential(
  tx: Q,
  row: { path: string; targetId: string; endpoint: string; sealed: string },
): Promise<boolean> {
  return custodyStore.bindCredential(tx, row);
}
