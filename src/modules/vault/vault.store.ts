/** SQL of the vault. Every function takes its transaction or db. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;
const json = (value: unknown) => JSON.stringify(value);

export function config(db: Q) {
  return db.selectFrom("vault_config").selectAll().where("id", "=", 1).executeTakeFirst();
}

export async function writeConfig(
  db: Q,
  values: { mode: "key-file" | "shamir"; shares: number | null; threshold: number | null; verifier: string },
  now: Date,
): Promise<void> {
  await db
    .insertInto("vault_config")
    .values({ id: 1, ...values, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column("id").doUpdateSet({ ...values, updated_at: now }))
    .execute();
}

export function keks(db: Q) {
  return db.selectFrom("vault_keks").selectAll().orderBy("version").execute();
}

export async function insertKek(db: Q, version: number, wrapped: string, now: Date): Promise<void> {
  await db.insertInto("vault_keks").values({ version, wrapped, state: "active", created_at: now }).execute();
}

export async function rewrapKek(db: Q, version: number, wrapped: string): Promise<void> {
  await db.updateTable("vault_keks").set({ wrapped }).where("version", "=", version).execute();
}

export async function retireKeksBefore(db: Q, version: number): Promise<void> {
  await db.updateTable("vault_keks").set({ state: "retired" }).where("version", "<", version).execute();
}

export function findSecret(db: Q, path: string, lock = false) {
  const query = db.selectFrom("secrets").selectAll().where("path", "=", path);
  return (lock ? query.forUpdate() : query).executeTakeFirst();
}
export type SecretRow = NonNullable<Awaited<ReturnType<typeof findSecret>>>;

export function listSecrets(db: Q) {
  return db.selectFrom("secrets").selectAll().orderBy("path").execute();
}

export async function insertSecret(
  db: Q,
  row: Omit<SecretRow, "metadata" | "checkout" | "rotation" | "rotation_claimed_by" | "rotation_claimed_until"> & {
    metadata: Record<string, string>;
    checkout: unknown;
    rotation: { target: string; login: string; every?: string } | null;
  },
): Promise<void> {
  await db
    .insertInto("secrets")
    .values({
      ...row,
      metadata: json(row.metadata),
      checkout: json(row.checkout),
      rotation: row.rotation ? json(row.rotation) : null,
    })
    .execute();
}

export async function updateSecret(
  db: Q,
  id: string,
  values: {
    kind: SecretRow["kind"];
    description: string | null;
    owner: string | null;
    metadata: Record<string, string>;
    roles: string[];
    platform_roles: string[];
    checkout: unknown;
    current_version: number;
    break_glass: boolean;
    rotation: { target: string; login: string; every?: string } | null;
    updated_at: Date;
  },
): Promise<void> {
  await db
    .updateTable("secrets")
    .set({
      ...values,
      metadata: json(values.metadata),
      checkout: json(values.checkout),
      rotation: values.rotation ? json(values.rotation) : null,
    })
    .where("id", "=", id)
    .execute();
}

export async function insertVersion(
  db: Q,
  row: {
    secret_id: string;
    version: number;
    ciphertext: string;
    wrapped_key: string;
    kek_version: number;
    source: "put" | "generate" | "rotation";
    created_by: string;
    created_at: Date;
    /** A rotation's version before the target changed: current only once the rotation commits. */
    pending?: boolean;
  },
): Promise<void> {
  await db.insertInto("secret_versions").values(row).execute();
}

export function findVersion(db: Q, secretId: string, version: number) {
  return db
    .selectFrom("secret_versions")
    .selectAll()
    .where("secret_id", "=", secretId)
    .where("version", "=", version)
    .executeTakeFirst();
}

export function versionsOf(db: Q, secretId: string) {
  return db
    .selectFrom("secret_versions")
    .select(["version", "source", "created_by", "created_at"])
    .where("secret_id", "=", secretId)
    .orderBy("version", "desc")
    .execute();
}

/** Every version with its path, for re-wrapping under a new KEK. */
export function allVersions(db: Q) {
  return db
    .selectFrom("secret_versions")
    .innerJoin("secrets", "secrets.id", "secret_versions.secret_id")
    .select([
      "secret_versions.secret_id",
      "secret_versions.version",
      "secret_versions.wrapped_key",
      "secret_versions.kek_version",
      "secrets.path",
    ])
    .forUpdate("secret_versions")
    .execute();
}

export async function setWrappedKey(
  db: Q,
  secretId: string,
  version: number,
  wrappedKey: string,
  kekVersion: number,
): Promise<void> {
  await db
    .updateTable("secret_versions")
    .set({ wrapped_key: wrappedKey, kek_version: kekVersion })
    .where("secret_id", "=", secretId)
    .where("version", "=", version)
    .execute();
}

// ---------------------------------------------------------------------------
// Access

/** Whether the principal has an active activation, now, of one of these roles. */
export async function hasActiveRole(db: Q, principalId: string, roles: string[], now: Date): Promise<boolean> {
  if (roles.length === 0) return false;
  const row = await db
    .selectFrom("activation_requests")
    .innerJoin("roles", "roles.id", "activation_requests.role_id")
    .select("activation_requests.id")
    .where("activation_requests.requester_id", "=", principalId)
    .where("activation_requests.state", "=", "active")
    .where("activation_requests.expires_at", ">", now)
    .where("roles.name", "in", roles)
    .executeTakeFirst();
  return row !== undefined;
}

// ---------------------------------------------------------------------------
// Check-outs

export function openCheckout(db: Q, secretId: string) {
  return db
    .selectFrom("secret_checkouts")
    .innerJoin("principals", "principals.id", "secret_checkouts.holder_id")
    .select([
      "secret_checkouts.id",
      "secret_checkouts.holder_id",
      "secret_checkouts.expires_at",
      "principals.name as holder_name",
    ])
    .where("secret_checkouts.secret_id", "=", secretId)
    .where("secret_checkouts.returned_at", "is", null)
    .executeTakeFirst();
}

/** Inserts an open check-out; false when another one is open (the unique index decides). */
export async function tryCheckout(
  db: Q,
  row: { id: string; secretId: string; holderId: string; reason: string; now: Date; expiresAt: Date },
): Promise<boolean> {
  const inserted = await db
    .insertInto("secret_checkouts")
    .values({
      id: row.id,
      secret_id: row.secretId,
      holder_id: row.holderId,
      reason: row.reason,
      checked_out_at: row.now,
      expires_at: row.expiresAt,
    })
    .onConflict((oc) => oc.column("secret_id").where("returned_at", "is", null).doNothing())
    .returning("id")
    .execute();
  return inserted.length > 0;
}

export async function returnCheckout(db: Q, id: string, reason: string, now: Date): Promise<boolean> {
  const rows = await db
    .updateTable("secret_checkouts")
    .set({ returned_at: now, return_reason: reason })
    .where("id", "=", id)
    .where("returned_at", "is", null)
    .returning("id")
    .execute();
  return rows.length > 0;
}

/**
 * Open check-outs past their end, or whose holder may no longer use the secret (disabled, or neither a platform
 * role it lists nor an active activation of a role it lists: a check-out does not outlast its basis), claimed so
 * that several nodes never return one twice. Open check-outs are one per exclusive secret: few to look at.
 */
export function claimExpiredCheckouts(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("secret_checkouts")
    .innerJoin("secrets", "secrets.id", "secret_checkouts.secret_id")
    .innerJoin("principals", "principals.id", "secret_checkouts.holder_id")
    .select([
      "secret_checkouts.id",
      "secret_checkouts.secret_id",
      "secrets.path",
      "secrets.kind",
      "secrets.checkout",
      "principals.name as holder_name",
      "principals.status as holder_status",
      sql<boolean>`secret_checkouts.expires_at <= ${now}`.as("ended"),
    ])
    .where("secret_checkouts.returned_at", "is", null)
    .where(
      sql<boolean>`(secret_checkouts.expires_at <= ${now} OR principals.status <> 'active' OR NOT (
        principals.platform_roles && secrets.platform_roles
        OR EXISTS (SELECT 1 FROM activation_requests a JOIN roles r ON r.id = a.role_id
                    WHERE a.requester_id = secret_checkouts.holder_id AND a.state = 'active'
                      AND a.expires_at > ${now} AND r.name = ANY (secrets.roles))))`,
    )
    .limit(limit)
    .forUpdate("secret_checkouts")
    .skipLocked()
    .execute();
}

// ---------------------------------------------------------------------------
// Values sealed for other modules (dynamic credentials), re-wrapped with the rest

export function allGrantCredentials(db: Q) {
  return db
    .selectFrom("grant_credentials")
    .select(["grant_id", "pool_id", "wrapped_key", "kek_version"])
    .forUpdate()
    .execute();
}

/** Logins pre-created ahead of demand (grants.precreated.ts): their passwords, not yet handed to a grant. */
export function allPreCreated(db: Q) {
  return db.selectFrom("precreated_logins").select(["id", "wrapped_key", "kek_version"]).forUpdate().execute();
}

export async function setPreCreatedKey(db: Q, id: string, wrappedKey: string, kekVersion: number) {
  await db
    .updateTable("precreated_logins")
    .set({ wrapped_key: wrappedKey, kek_version: kekVersion })
    .where("id", "=", id)
    .execute();
}

export async function setGrantCredentialKey(db: Q, grantId: string, wrappedKey: string, kekVersion: number) {
  await db
    .updateTable("grant_credentials")
    .set({ wrapped_key: wrappedKey, kek_version: kekVersion })
    .where("grant_id", "=", grantId)
    .execute();
}

// ---------------------------------------------------------------------------
// Break-glass: reviews and rotation after a reveal

export async function insertReview(
  db: Q,
  row: {
    id: string;
    kind: "break-glass-secret" | "break-glass-activation";
    subject: string;
    actorId: string;
    reason: string;
    now: Date;
    dueAt: Date;
  },
): Promise<void> {
  await db
    .insertInto("review_items")
    .values({
      id: row.id,
      kind: row.kind,
      subject: row.subject,
      actor_id: row.actorId,
      reason: row.reason,
      status: "open",
      created_at: row.now,
      due_at: row.dueAt,
    })
    .execute();
}

export async function setRotationDue(db: Q, secretId: string, at: Date): Promise<void> {
  await db.updateTable("secrets").set({ rotation_due_at: at }).where("id", "=", secretId).execute();
}

/**
 * Schedules a rotation at `at` unless one is due sooner, and answers when it is due: a reveal never postpones
 * the rotation an earlier reveal (or a schedule) set, so revealing again does not keep a revealed value valid.
 */
export async function setRotationDueBy(db: Q, secretId: string, at: Date): Promise<Date> {
  const row = await db
    .updateTable("secrets")
    .set({ rotation_due_at: sql<Date>`least(coalesce(rotation_due_at, ${at}), ${at})` })
    .where("id", "=", secretId)
    .returning("rotation_due_at")
    .executeTakeFirstOrThrow();
  return new Date(row.rotation_due_at!);
}

export function dueRotations(db: Q, now: Date, limit: number) {
  return db.selectFrom("secrets").select(["id", "path"]).where("rotation_due_at", "<=", now).limit(limit).execute();
}

export async function setRotationDueByPath(db: Q, path: string, at: Date | null): Promise<void> {
  await db.updateTable("secrets").set({ rotation_due_at: at }).where("path", "=", path).execute();
}

export function lockSecretById(db: Q, id: string) {
  return db.selectFrom("secrets").selectAll().where("id", "=", id).forUpdate().skipLocked().executeTakeFirst();
}

export async function maxVersion(db: Q, secretId: string): Promise<number> {
  const row = await db
    .selectFrom("secret_versions")
    .select((eb) => eb.fn.max("version").as("max"))
    .where("secret_id", "=", secretId)
    .executeTakeFirst();
  return Number(row?.max ?? 0);
}

export async function deleteVersion(db: Q, secretId: string, version: number): Promise<void> {
  await db.deleteFrom("secret_versions").where("secret_id", "=", secretId).where("version", "=", version).execute();
}

// ---------------------------------------------------------------------------
// Rotation claims and pending versions

/**
 * Claims the secret's rotation for `holder` until `until`, unless another claim is still running: a
 * conditional update, so of two nodes asking at once exactly one wins.
 */
export async function claimRotation(db: Q, secretId: string, holder: string, now: Date, until: Date): Promise<boolean> {
  const rows = await db
    .updateTable("secrets")
    .set({ rotation_claimed_by: holder, rotation_claimed_until: until })
    .where("id", "=", secretId)
    .where((eb) => eb.or([eb("rotation_claimed_until", "is", null), eb("rotation_claimed_until", "<=", now)]))
    .returning("id")
    .execute();
  return rows.length > 0;
}

export async function releaseRotation(db: Q, secretId: string, holder: string): Promise<void> {
  await db
    .updateTable("secrets")
    .set({ rotation_claimed_by: null, rotation_claimed_until: null })
    .where("id", "=", secretId)
    .where("rotation_claimed_by", "=", holder)
    .execute();
}

/** Makes a pending version current (fenced: false when it is no longer pending, i.e. someone settled it). */
export async function commitPending(db: Q, secretId: string, version: number): Promise<boolean> {
  const rows = await db
    .updateTable("secret_versions")
    .set({ pending: false })
    .where("secret_id", "=", secretId)
    .where("version", "=", version)
    .where("pending", "=", true)
    .returning("version")
    .execute();
  return rows.length > 0;
}

/** Pending versions whose rotation is claimed by nobody, or by a claim that ran out (its node died). */
export function abandonedPending(db: Q, now: Date) {
  return db
    .selectFrom("secret_versions")
    .innerJoin("secrets", "secrets.id", "secret_versions.secret_id")
    .select(["secrets.id as secret_id", "secrets.path", "secret_versions.version"])
    .where("secret_versions.pending", "=", true)
    .where((eb) =>
      eb.or([eb("secrets.rotation_claimed_until", "is", null), eb("secrets.rotation_claimed_until", "<=", now)]),
    )
    .orderBy("secret_versions.created_at")
    .execute();
}

/**
 * A secret's row as a read from memory keeps it, with the row's version (its `xmin`, as text): every change to
 * the row, by Stint or behind its back, writes a new version of it.
 */
export async function findSecretHeld(db: Q, path: string) {
  return db
    .selectFrom("secrets")
    .selectAll()
    .select(sql<string>`xmin::text`.as("row_version"))
    .where("path", "=", path)
    .executeTakeFirst();
}

/** A sealed version as a read from memory keeps it, with the row's version (`xmin`, as text). */
export async function findVersionHeld(db: Q, secretId: string, version: number) {
  return db
    .selectFrom("secret_versions")
    .select(["ciphertext", "wrapped_key", "kek_version", sql<string>`xmin::text`.as("row_version")])
    .where("secret_id", "=", secretId)
    .where("version", "=", version)
    .executeTakeFirst();
}

/**
 * What a read from memory decided on and opened: the secret's row as it was read and the sealed version, each
 * with the row version it was read at (`findSecretHeld`, `findVersionHeld`).
 */
export interface HeldCopy {
  row: Pick<SecretRow, "id"> & { row_version: string };
  version: number;
  sealed: { row_version: string };
}

/**
 * For a batch of reads, whether a read from memory may be recorded: its copy is what the database holds now,
 * the secret's row and the version's row both still the row versions (`xmin`) they were read at. A row changed
 * since, by anyone and in any column (the fields a read decides on, the sealed version), is another row
 * version. It goes inside the batch's audit INSERT (`AuditLog.appendManyWhere`): the check and the events are
 * one statement, the copies (`heldCopy`) travel in its one JSON parameter, and its text is fixed, so it is
 * prepared on each connection (`PREPARED`: planned once). A read from the database gives no copy and is
 * recorded.
 */
export const COPY_IS_CURRENT = {
  sql: `exists (select 1 from secret_versions as v inner join secrets as s on s.id = v.secret_id
    where v.secret_id = (c.copy->>0)::uuid and v.version = (c.copy->>1)::int and s.xmin::text = c.copy->>2
      and v.xmin::text = c.copy->>3)`,
} as const;

/** A copy as `COPY_IS_CURRENT` reads it: the secret's id, the version, and the two rows' versions. */
export function heldCopy(held: HeldCopy): unknown {
  return [held.row.id, held.version, held.row.row_version, held.sealed.row_version];
}
