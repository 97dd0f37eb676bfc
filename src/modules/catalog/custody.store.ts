/**
 * SQL of credential custody: who holds a stored credential or a session secret. Other modules reach it through
 * catalog.public.ts.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

/** The target a stored credential belongs to (null target: stored before 0011), or undefined when none is stored. */
export function storedCredential(db: Q, path: string) {
  return db.selectFrom("target_secrets").select(["target_id"]).where("path", "=", path).executeTakeFirst();
}

/** Paths of stored credentials → the target each belongs to. */
export async function storedCredentials(db: Q): Promise<Map<string, string | null>> {
  const rows = await db.selectFrom("target_secrets").select(["path", "target_id"]).execute();
  return new Map(rows.map((r) => [r.path, r.target_id]));
}

/** Forgets every credential stored for the target (its endpoint moved); the paths that were stored. */
export async function dropCredentials(db: Q, targetId: string): Promise<string[]> {
  const rows = await db.deleteFrom("target_secrets").where("target_id", "=", targetId).returning("path").execute();
  return rows.map((r) => r.path);
}

/** The vault secret at a path (never its value) and the allowance that path has, if any. */
export async function sessionSecretFacts(db: Q, path: string) {
  const secret = await db
    .selectFrom("secrets")
    .select(["break_glass", "platform_roles"])
    .where("path", "=", path)
    .executeTakeFirst();
  const allowance = await db
    .selectFrom("secret_target_allowances")
    .select(["target_id", "endpoint"])
    .where("path", "=", path)
    .executeTakeFirst();
  return {
    secret: secret ? { breakGlass: secret.break_glass, platformRoles: secret.platform_roles } : null,
    allowance: allowance ? { targetId: allowance.target_id, endpoint: allowance.endpoint } : null,
  };
}

/** Drops the target's allowances made for another endpoint; the paths dropped. */
export async function dropStaleAllowances(db: Q, targetId: string, endpoint: string): Promise<string[]> {
  const rows = await db
    .deleteFrom("secret_target_allowances")
    .where("target_id", "=", targetId)
    .where("endpoint", "!=", endpoint)
    .returning("path")
    .execute();
  return rows.map((r) => r.path);
}

/** An allowance as written: the secret's path, the target's sessions may use it at `endpoint`, MACed. */
export interface AllowanceRow {
  path: string;
  targetId: string;
  endpoint: string;
  grantedBy: string;
  now: Date;
  mac: string;
}

const allowanceValues = (row: AllowanceRow) => ({
  path: row.path,
  target_id: row.targetId,
  endpoint: row.endpoint,
  granted_by: row.grantedBy,
  created_at: row.now,
  mac: row.mac,
});

/** Allows the target's sessions to use the secret at its endpoint (one target per path: the index decides). */
export async function allow(db: Q, row: AllowanceRow): Promise<void> {
  await db
    .insertInto("secret_target_allowances")
    .values(allowanceValues(row))
    .onConflict((oc) =>
      oc
        .columns(["path", "target_id"])
        .doUpdateSet({ endpoint: row.endpoint, granted_by: row.grantedBy, created_at: row.now, mac: row.mac }),
    )
    .execute();
}

/** An allowance taken over at upgrade: inserted only when the path has none yet (false: another node did it). */
export async function adopt(db: Q, row: AllowanceRow): Promise<boolean> {
  const rows = await db
    .insertInto("secret_target_allowances")
    .values(allowanceValues(row))
    .onConflict((oc) => oc.column("path").doNothing())
    .returning("path")
    .execute();
  return rows.length > 0;
}

/** Allowances written before they carried a MAC (given theirs once, at start). */
export function allowancesWithoutMac(db: Q) {
  return db
    .selectFrom("secret_target_allowances")
    .select(["path", "target_id", "endpoint"])
    .where("mac", "is", null)
    .execute();
}

/** Gives a MAC-less allowance its MAC; false: it had one already (another node was first). */
export async function setAllowanceMac(db: Q, row: { path: string; targetId: string; mac: string }): Promise<boolean> {
  const result = await db
    .updateTable("secret_target_allowances")
    .set({ mac: row.mac })
    .where("path", "=", row.path)
    .where("target_id", "=", row.targetId)
    .where("mac", "is", null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

// ---------------------------------------------------------------------------
// Target credentials as the grants module's workers and start use them

/** A target's sealed credential at a path, with the target and endpoint it is bound to. */
export function readCredential(db: Q, path: string) {
  return db
    .selectFrom("target_secrets")
    .select(["sealed", "target_id", "endpoint"])
    .where("path", "=", path)
    .executeTakeFirst();
}

/**
 * Stores a target's credential, bound to the target: a path whose stored value belongs to another target is
 * left alone ("taken"). Rows from before 0011 (no target) are taken over.
 */
export async function writeCredential(
  db: Q,
  row: { path: string; targetId: string; endpoint: string; sealed: string },
  now: Date,
): Promise<"created" | "updated" | "taken"> {
  const written = await db
    .insertInto("target_secrets")
    .values({
      path: row.path,
      sealed: row.sealed,
      target_id: row.targetId,
      endpoint: row.endpoint,
      created_at: now,
      updated_at: now,
    })
    .onConflict((oc) =>
      oc
        .column("path")
        .doUpdateSet({ sealed: row.sealed, target_id: row.targetId, endpoint: row.endpoint, updated_at: now })
        .where((eb) =>
          eb.or([eb("target_secrets.target_id", "=", row.targetId), eb("target_secrets.target_id", "is", null)]),
        ),
    )
    .returning(["created_at", "updated_at"])
    .executeTakeFirst();
  if (!written) return "taken";
  return new Date(written.created_at).getTime() === now.getTime() ? "created" : "updated";
}

/** Deletes the target's own stored credential at this path (never another target's). */
export async function deleteCredential(db: Q, path: string, targetId: string): Promise<boolean> {
  const rows = await db
    .deleteFrom("target_secrets")
    .where("path", "=", path)
    .where((eb) => eb.or([eb("target_id", "=", targetId), eb("target_id", "is", null)]))
    .returning("path")
    .execute();
  return rows.length > 0;
}

/** Stored credentials with no target (before 0011; after the upgrade, refused). */
export function unboundCredentials(db: Q) {
  return db.selectFrom("target_secrets").select(["path", "sealed"]).where("target_id", "is", null).execute();
}

/** Binds an unbound credential to its target, re-sealed; false when it is bound already. */
export async function bindCredential(
  db: Q,
  row: { path: string; targetId: string; endpoint: string; sealed: string },
): Promise<boolean> {
  // Fenced on the row being unbound still: of several nodes starting at once, one binds it.
  const rows = await db
    .updateTable("target_secrets")
    .set({ sealed: row.sealed, target_id: row.targetId, endpoint: row.endpoint })
    .where("path", "=", row.path)
    .where("target_id", "is", null)
    .returning("path")
    .execute();
  return rows.length > 0;
}

// ---------------------------------------------------------------------------
// Session-secret allowances as the vault uses them

/** Which target's sessions may use the secret, and for which endpoint, with the allowance's MAC. */
export function allowanceOf(db: Q, path: string) {
  return db
    .selectFrom("secret_target_allowances")
    .select(["target_id", "endpoint", "granted_by", "created_at", "mac"])
    .where("path", "=", path)
    .executeTakeFirst();
}

/** Deletes the target's allowance of the secret; false when it had none. */
export async function disallow(db: Q, path: string, targetId: string): Promise<boolean> {
  const rows = await db
    .deleteFrom("secret_target_allowances")
    .where("path", "=", path)
    .where("target_id", "=", targetId)
    .returning("path")
    .execute();
  return rows.length > 0;
}
