/** SQL of grants at real targets (drift findings: reconcile.store.ts; target credentials: catalog.public.ts). Every function takes its transaction or db. */
import { sql, type Expression, type Kysely, type QueryCreator, type SqlBool } from "kysely";
import type { Database } from "../../db/index.js";
import type { Alongside } from "../outbox/index.js";
import { precompiled } from "../requests/precompiled.js";

type Q = Kysely<Database>;

// ---------------------------------------------------------------------------
// Targets and roles as the workers need them

export function findTarget(db: Q, ref: string) {
  const byId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ref);
  return db
    .selectFrom("targets")
    .select(["id", "name", "kind", "address", "config"])
    .where(byId ? "id" : "name", "=", ref)
    .executeTakeFirst();
}
export type TargetRow = NonNullable<Awaited<ReturnType<typeof findTarget>>>;

export function listTargets(db: Q) {
  return db
    .selectFrom("targets")
    .select(["id", "name", "kind", "address", "config"])
    .where("kind", "!=", "internal")
    .orderBy("name")
    .execute();
}

export function rolesAt(db: Q, targetId: string) {
  return db
    .selectFrom("roles")
    .innerJoin("policies", "policies.id", "roles.policy_id")
    .select(["roles.id", "roles.name", "roles.entitlement", "policies.spec as policy_spec"])
    .where("roles.target_id", "=", targetId)
    .orderBy("roles.name")
    .execute();
}

export function findRoleByName(db: Q, name: string) {
  return db
    .selectFrom("roles")
    .select(["id", "name", "target_id", "entitlement"])
    .where("name", "=", name)
    .executeTakeFirst();
}

/** Every principal with the fields identity mappings use. */
export function principals(db: Q) {
  return db.selectFrom("principals").select(["id", "name", "email", "status"]).orderBy("name").execute();
}

export function findPrincipal(db: Q, id: string) {
  return db.selectFrom("principals").select(["id", "name", "email"]).where("id", "=", id).executeTakeFirst();
}

// ---------------------------------------------------------------------------
// Grants

/** A grant with its request, role, target and principal: what findGrant and grantToProvision both read. */
function grantsJoined(db: Q) {
  return db
    .selectFrom("grants")
    .innerJoin("activation_requests as r", "r.id", "grants.request_id")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("principals", "principals.id", "grants.principal_id");
}

const GRANT_COLUMNS = [
  "grants.id",
  "grants.state",
  "grants.login",
  "grants.attempts",
  "grants.request_id",
  "grants.role_id",
  "roles.name as role_name",
  "roles.entitlement",
  "targets.id as target_id",
  "principals.name as principal_name",
  "principals.email as principal_email",
  "r.state as request_state",
  "r.duration_ms",
  "r.ended_at as request_ended_at",
] as const;

export function findGrant(db: Q, grantId: string) {
  return grantsJoined(db).select(GRANT_COLUMNS).where("grants.id", "=", grantId).executeTakeFirst();
}
export type GrantRow = NonNullable<Awaited<ReturnType<typeof findGrant>>>;

/**
 * What a provisioning (or revocation) attempt reads, in one statement: the grant (as findGrant), its target's
 * row, the target's sealed admin credential (the path its config names; null when none is stored or named) and
 * the minted login's sealed password (null until one is stored).
 */
/**
 * The provisioning attempt's and the revocation's one read, and the credentials read's (below): built once and
 * prepared per connection (`precompiled`): no query building and no parse or plan per dynamic login.
 */
const grantToProvisionQuery = precompiled(["grantId"], (db, p: { grantId: string }) =>
  grantsJoined(db)
    .leftJoin("target_secrets as ts", (join) => join.on(sql<boolean>`ts.path = targets.config->>'credential'`))
    .leftJoin("grant_credentials as gc", "gc.grant_id", "grants.id")
    .select([
      ...GRANT_COLUMNS,
      "grants.created_at",
      "r.activated_at as request_activated_at",
      "targets.name as target_name",
      "targets.kind as target_kind",
      "targets.address as target_address",
      "targets.config as target_config",
      "ts.sealed as secret_sealed",
      "ts.target_id as secret_target_id",
      "ts.endpoint as secret_endpoint",
      "gc.login as credential_login",
      "gc.ciphertext as credential_ciphertext",
      "gc.wrapped_key as credential_wrapped_key",
      "gc.kek_version as credential_kek_version",
      "gc.pool_id as credential_pool_id",
    ])
    .where("grants.id", "=", p.grantId),
);

export async function grantToProvision(db: Q, grantId: string) {
  const row = (await grantToProvisionQuery(db, { grantId })).rows[0];
  if (!row) return undefined;
  const {
    target_name,
    target_kind,
    target_address,
    target_config,
    secret_sealed,
    secret_target_id,
    secret_endpoint,
    credential_login,
    credential_ciphertext,
    credential_wrapped_key,
    credential_kek_version,
    credential_pool_id,
    ...grant
  } = row;
  const target: TargetRow = {
    id: grant.target_id,
    name: target_name,
    kind: target_kind,
    address: target_address,
    config: target_config,
  };
  const targetSecret =
    secret_sealed === null ? null : { sealed: secret_sealed, target_id: secret_target_id, endpoint: secret_endpoint };
  const credential =
    credential_ciphertext === null
      ? null
      : {
          login: credential_login!,
          ciphertext: credential_ciphertext,
          wrapped_key: credential_wrapped_key!,
          kek_version: credential_kek_version!,
          pool_id: credential_pool_id,
        };
  return { grant: grant satisfies GrantRow, target, targetSecret, credential };
}

/**
 * What the login of a new grant is made from, in one statement: its entitlement, its target (the identity
 * mapping is in its config) and its principal.
 */
export function grantLoginInputs(db: Q, grantId: string) {
  return db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("principals", "principals.id", "grants.principal_id")
    .select([
      "roles.entitlement",
      "targets.id as target_id",
      "targets.config as target_config",
      "principals.name as principal_name",
      "principals.email as principal_email",
    ])
    .where("grants.id", "=", grantId)
    .executeTakeFirst();
}

/**
 * What a grant's revocation is queued with, in one statement: its target (the job's lane) and its provisioning
 * job's state and lease, if that job is still to run or running.
 */
export function revocationInputs(db: Q, grantId: string) {
  return db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .leftJoin("outbox", (join) =>
      join.on("outbox.idempotency_key", "=", `provision:${grantId}`).on("outbox.status", "in", ["pending", "running"]),
    )
    .select(["roles.target_id", "outbox.status as provision_status", "outbox.locked_until as provision_locked_until"])
    .where("grants.id", "=", grantId)
    .executeTakeFirst();
}

/** The grant's login set, as a write another statement carries (the provisioning job's INSERT, `alongside`). */
export function setLogin(grantId: string, login: string) {
  return (db: QueryCreator<Database>) => db.updateTable("grants").set({ login }).where("id", "=", grantId);
}

/** Counts a failed attempt; fenced on the state so a grant that moved on is left alone. */
export async function recordGrantFailure(
  db: Q,
  grant: { id: string; state: "provisioning" | "active" | "revoking" },
  error: string,
  now: Date,
  nextAttemptAt: Date | null,
): Promise<void> {
  await db
    .updateTable("grants")
    .set((eb) => ({
      attempts: eb("attempts", "+", 1),
      last_error: error.slice(0, 1000),
      next_attempt_at: nextAttemptAt,
      updated_at: now,
    }))
    .where("id", "=", grant.id)
    .where("state", "=", grant.state)
    .execute();
}

/** A grant's state, its row locked until the transaction ends (its own state changes wait). */
export async function lockGrantState(db: Q, grantId: string): Promise<GrantState | undefined> {
  const row = await db.selectFrom("grants").select("state").where("id", "=", grantId).forUpdate().executeTakeFirst();
  return row?.state;
}

/** Ends a revoking grant; false when it was not revoking (already done by another worker). */
export async function markRevoked(db: Q, grantId: string, now: Date): Promise<boolean> {
  const rows = await db
    .updateTable("grants")
    .set({ state: "revoked", last_error: null, next_attempt_at: null, updated_at: now })
    .where("id", "=", grantId)
    .where("state", "=", "revoking")
    .returning("id")
    .execute();
  return rows.length > 0;
}

/**
 * `markRevoked` carrying the revocation attempt's done-mark (outbox `HandlerContext.done`, written whatever the
 * grant's state: the job's work is over) in the same statement: whether the grant was revoking, and whether the
 * mark was written (false when the attempt's lease was lost).
 */
export async function markRevokedAndDone(
  db: Q,
  grantId: string,
  now: Date,
  doneMark: (when: Expression<SqlBool>) => Alongside,
): Promise<{ revoked: boolean; completed: boolean }> {
  const row = await db
    // The mark is typed for the plain schema (as in requests' activateProvisioned).
    .with("completed", doneMark(sql<SqlBool>`true`) as never)
    .with("revoked", (creator) =>
      creator
        .updateTable("grants")
        .set({ state: "revoked", last_error: null, next_attempt_at: null, updated_at: now })
        .where("id", "=", grantId)
        .where("state", "=", "revoking")
        .returning("id"),
    )
    .selectNoFrom([
      sql<boolean>`exists (select 1 from revoked)`.as("revoked"),
      sql<boolean>`exists (select 1 from completed)`.as("completed"),
    ])
    .executeTakeFirstOrThrow();
  return { revoked: row.revoked === true, completed: row.completed === true };
}

/**
 * Grants of a target that the reconciler must respect: open ones, and those that ended
 * since `since` (the target may still show them when it was observed).
 */
export function grantsAt(db: Q, targetId: string, since: Date) {
  return db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .select(["grants.id", "grants.role_id", "grants.login", "grants.state"])
    .where("roles.target_id", "=", targetId)
    .where((eb) =>
      eb.or([
        eb("grants.state", "in", ["provisioning", "active", "revoking"]),
        eb("grants.state", "in", ["revoked", "failed"]).and("grants.updated_at", ">=", since),
      ]),
    )
    .execute();
}

/**
 * (entitlement, login) pairs of a target whose latest grant (of any role granting that entitlement there) has
 * ended (revoked or failed): privilege such a login still holds was put there by Stint for a grant that is over
 * (a provisioning that landed after its revocation), so the reconciler removes it whatever the drift policy.
 */
export async function endedGrantLogins(db: Q, targetId: string): Promise<{ entitlement: unknown; login: string }[]> {
  const { rows } = await sql<{ entitlement: unknown; login: string }>`
    select latest.entitlement, latest.login from (
      select distinct on (r.entitlement, g.login) r.entitlement, g.login, g.state
        from grants g join roles r on r.id = g.role_id
       where r.target_id = ${targetId} and g.login is not null
       order by r.entitlement, g.login, g.created_at desc, g.id desc
    ) latest
     where latest.state in ('revoked', 'failed')`.execute(db);
  return rows;
}

/** What makes two grants share one membership at a target: the same login holding the same entitlement. */
export interface MembershipKey {
  targetId: string;
  login: string;
  entitlement: unknown;
}

export type GrantState = "provisioning" | "active" | "revoking" | "revoked" | "failed";

/**
 * The grants in `states` that share the membership `key` names (any role at the target granting the same
 * entitlement, compared as jsonb), oldest first, without `exceptGrantId`. Locked: a decision taken on them
 * (keep the membership, put it back) and their own state changes (provisioned, ended, which lock their row)
 * happen one after the other.
 */
export async function grantsSharing(
  db: Q,
  key: MembershipKey,
  options: { states: readonly GrantState[]; exceptGrantId?: string },
): Promise<{ id: string; request_id: string; state: string }[]> {
  let query = db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .select(["grants.id", "grants.request_id", "grants.state"])
    .where("roles.target_id", "=", key.targetId)
    .where(sql<boolean>`roles.entitlement = ${JSON.stringify(key.entitlement ?? {})}::jsonb`)
    .where("grants.login", "=", key.login)
    .where("grants.state", "in", [...options.states]);
  if (options.exceptGrantId !== undefined) query = query.where("grants.id", "!=", options.exceptGrantId);
  return query.orderBy("grants.created_at").orderBy("grants.id").forUpdate("grants").execute();
}

/** Open grants of one role and login (an activation now backs the privilege). */
export async function hasOpenGrant(db: Q, roleId: string, login: string): Promise<boolean> {
  const row = await db
    .selectFrom("grants")
    .select("id")
    .where("role_id", "=", roleId)
    .where("login", "=", login)
    .where("state", "in", ["provisioning", "active"])
    .executeTakeFirst();
  return row !== undefined;
}

/** Grants still on their way to or from a target, oldest first. */
export function unsettledGrants(db: Q, options: { stuckBefore?: Date; limit: number }) {
  let query = db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .innerJoin("principals", "principals.id", "grants.principal_id")
    .select([
      "grants.id",
      "grants.request_id",
      "grants.state",
      "grants.login",
      "grants.attempts",
      "grants.last_error",
      "grants.next_attempt_at",
      "grants.created_at",
      "grants.updated_at",
      "roles.name as role_name",
      "targets.name as target_name",
      "principals.name as principal_name",
    ])
    .where("grants.state", "in", ["provisioning", "revoking"]);
  // Stuck: an attempt failed, or it has waited since before `stuckBefore`.
  const before = options.stuckBefore;
  if (before) query = query.where((eb) => eb.or([eb("grants.attempts", ">", 0), eb("grants.updated_at", "<", before)]));
  return query.orderBy("grants.updated_at").limit(options.limit).execute();
}
export type UnsettledGrantRow = Awaited<ReturnType<typeof unsettledGrants>>[number];

/** How many grants are provisioning or revoking, by target, state and whether an attempt already failed. */
export function unsettledCounts(db: Q) {
  return db
    .selectFrom("grants")
    .innerJoin("roles", "roles.id", "grants.role_id")
    .innerJoin("targets", "targets.id", "roles.target_id")
    .select(({ fn }) => [
      "targets.name as target",
      "grants.state",
      fn.countAll<string>().as("count"),
      fn.sum<string>((eb) => eb.case().when("grants.attempts", ">", 0).then(1).else(0).end()).as("failing"),
    ])
    .where("grants.state", "in", ["provisioning", "revoking"])
    .groupBy(["targets.name", "grants.state"])
    .execute();
}

// ---------------------------------------------------------------------------
// Conversion of standing access

export async function insertEligibility(
  db: Q,
  values: { id: string; roleId: string; principalId: string; grantedBy: string; reason: string; now: Date },
): Promise<void> {
  await db
    .insertInto("eligibilities")
    .values({
      id: values.id,
      role_id: values.roleId,
      principal_id: values.principalId,
      group_id: null,
      starts_at: values.now,
      ends_at: null,
      granted_by: values.grantedBy,
      reason: values.reason,
      created_at: values.now,
    })
    .execute();
}

export async function isDirectlyEligible(db: Q, roleId: string, principalId: string, now: Date): Promise<boolean> {
  const row = await db
    .selectFrom("eligibilities")
    .select("id")
    .where("role_id", "=", roleId)
    .where("principal_id", "=", principalId)
    .where("removed_at", "is", null)
    .where((eb) => eb.or([eb("ends_at", "is", null), eb("ends_at", ">", now)]))
    .executeTakeFirst();
  return row !== undefined;
}

// ---------------------------------------------------------------------------
// Minted logins' passwords (sealed by the vault)

/** A target's sealed admin credential as stored (catalog.public `readTargetCredential`, or `grantToProvision`). */
export interface StoredTargetSecret {
  sealed: string;
  target_id: string | null;
  endpoint: string | null;
}

/** A minted login's sealed password as a provisioning attempt uses it. */
export interface StoredCredential {
  login: string;
  ciphertext: string;
  wrapped_key: string;
  kek_version: number;
  /** Set when the login was pre-created (its password sealed bound to `precreated:<pool_id>`). */
  pool_id?: string | null;
}

export function findCredential(db: Q, grantId: string) {
  return db.selectFrom("grant_credentials").selectAll().where("grant_id", "=", grantId).executeTakeFirst();
}

export async function insertCredential(
  db: Q,
  row: { grantId: string; login: string; ciphertext: string; wrappedKey: string; kekVersion: number; now: Date },
): Promise<boolean> {
  const inserted = await db
    .insertInto("grant_credentials")
    .values({
      grant_id: row.grantId,
      login: row.login,
      ciphertext: row.ciphertext,
      wrapped_key: row.wrappedKey,
      kek_version: row.kekVersion,
      created_at: row.now,
    })
    .onConflict((oc) => oc.column("grant_id").doNothing())
    .returning("grant_id")
    .executeTakeFirst();
  return inserted !== undefined;
}

/**
 * The requester's active grant of a role, with its target and its minted login's sealed password (null
 * columns until one is stored), for reading a minted credential.
 */
const activeGrantOfQuery = precompiled(
  ["principalId", "roleName", "now"],
  (db, p: { principalId: string; roleName: string; now: Date }) =>
    db
      .selectFrom("grants")
      .innerJoin("activation_requests as r", "r.id", "grants.request_id")
      .innerJoin("roles", "roles.id", "grants.role_id")
      .innerJoin("targets", "targets.id", "roles.target_id")
      .leftJoin("grant_credentials as gc", "gc.grant_id", "grants.id")
      .select([
        "grants.id",
        "grants.login",
        "roles.entitlement",
        "r.expires_at",
        "targets.kind as target_kind",
        "targets.address",
        "targets.name as target_name",
        "gc.login as credential_login",
        "gc.ciphertext",
        "gc.wrapped_key",
        "gc.kek_version",
        "gc.pool_id",
      ])
      .where("grants.principal_id", "=", p.principalId)
      .where("roles.name", "=", p.roleName)
      .where("grants.state", "=", "active")
      .where("r.state", "=", "active")
      .where("r.expires_at", ">", p.now),
);

export async function activeGrantOf(db: Q, principalId: string, roleName: string, now: Date) {
  return (await activeGrantOfQuery(db, { principalId, roleName, now })).rows[0];
}

/**
 * The entitlements and states of the caller's requests of a role that may still become active (pending, approved
 * or provisioning) or are active: what a credentials read that waits (`?wait=`) waits for, and whether one became
 * active since its read looked (an activation may commit between the two statements). Empty: nothing is coming.
 */
const openRequestsOfQuery = precompiled(
  ["principalId", "roleName"],
  (db, p: { principalId: string; roleName: string }) =>
    db
      .selectFrom("activation_requests as r")
      .innerJoin("roles", "roles.id", "r.role_id")
      .select(["roles.entitlement", "r.state"])
      .where("r.requester_id", "=", p.principalId)
      .where("roles.name", "=", p.roleName)
      .where("r.state", "in", ["pending", "approved", "provisioning", "active"]),
);

export async function openRequestsOf(db: Q, principalId: string, roleName: string) {
  return (await openRequestsOfQuery(db, { principalId, roleName })).rows;
}

/**
 * For a credentials read answered from a provisioning's copy (grants.handouts.ts), whether it may be recorded and
 * answered: inside its audit event's INSERT (`AuditLog.appendManyWhere`), the grant `copy[0]` is the caller's
 * (`copy[1]`), of the activation `copy[2]`, both active and not expired at `copy[4]` (the service's clock, as
 * `activeGrantOf`), and its stored password is the one copied (`copy[3]`, its ciphertext). A constant text,
 * prepared per connection.
 */
export const HANDED_OUT_IS_CURRENT = {
  sql: `exists (select 1 from grants as g inner join activation_requests as r on r.id = g.request_id
    inner join grant_credentials as gc on gc.grant_id = g.id
    where g.id = (c.copy->>0)::uuid and g.principal_id = (c.copy->>1)::uuid and r.id = (c.copy->>2)::uuid
      and g.state = 'active' and r.state = 'active' and r.expires_at > (c.copy->>4)::timestamptz
      and gc.ciphertext = c.copy->>3)`,
} as const;
