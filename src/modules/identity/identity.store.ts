/** SQL of identity. Every function takes the transaction (or db) it runs in. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { ADVISORY_LOCKS } from "../../lib/advisory-locks.js";

type Q = Kysely<Database>;

export function findPrincipalByName(db: Q, name: string) {
  return db.selectFrom("principals").selectAll().where("name", "=", name).executeTakeFirst();
}

export function findPrincipalById(db: Q, id: string) {
  return db.selectFrom("principals").selectAll().where("id", "=", id).executeTakeFirst();
}

/**
 * Locks a principal against concurrent changes of its status or roles. NO KEY UPDATE, not UPDATE: rows that
 * reference the principal (a grant inserted by an approval running now) take KEY SHARE, which this lock does
 * not block, so a disable and an approval of that principal's request cannot deadlock.
 */
export function lockPrincipal(db: Q, id: string) {
  return db.selectFrom("principals").selectAll().where("id", "=", id).forNoKeyUpdate().executeTakeFirst();
}

export function listPrincipals(db: Q) {
  return db.selectFrom("principals").selectAll().orderBy("name").execute();
}

export type PrincipalRow = NonNullable<Awaited<ReturnType<typeof findPrincipalById>>>;

/** Extra facts shown with principals: manager names, group names, MFA enrolment. */
export async function principalFacts(db: Q, ids: string[]) {
  if (ids.length === 0) return { groups: new Map<string, string[]>(), mfa: new Set<string>() };
  const memberships = await db
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .select(["group_members.principal_id", "groups.name"])
    .where("group_members.principal_id", "in", ids)
    .orderBy("groups.name")
    .execute();
  const groups = new Map<string, string[]>();
  for (const m of memberships) groups.set(m.principal_id, [...(groups.get(m.principal_id) ?? []), m.name]);
  const mfaRows = await db
    .selectFrom("mfa_totp")
    .select("principal_id")
    .where("principal_id", "in", ids)
    .where("confirmed_at", "is not", null)
    .execute();
  return { groups, mfa: new Set(mfaRows.map((r) => r.principal_id)) };
}

/**
 * Serializes every change that could leave Stint without an active administrator
 * (setup, disabling, demoting): each counts the administrators after taking it,
 * so two concurrent removals cannot both see "another one is left".
 */
export async function lockAdministrators(db: Q) {
  await sql`select pg_advisory_xact_lock(${ADVISORY_LOCKS.administrators})`.execute(db);
}

export function countActiveAdmins(db: Q) {
  return db
    .selectFrom("principals")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("status", "=", "active")
    .where((eb) => eb(eb.val("admin"), "=", eb.fn.any("platform_roles")))
    .executeTakeFirstOrThrow()
    .then((r) => Number(r.n));
}

export function getPasswordHash(db: Q, principalId: string) {
  return db
    .selectFrom("password_credentials")
    .select("hash")
    .where("principal_id", "=", principalId)
    .executeTakeFirst()
    .then((r) => r?.hash);
}

export async function setPasswordHash(db: Q, principalId: string, hash: string, now: Date) {
  await db
    .insertInto("password_credentials")
    .values({ principal_id: principalId, hash, updated_at: now })
    .onConflict((oc) => oc.column("principal_id").doUpdateSet({ hash, updated_at: now }))
    .execute();
}

export function getThrottle(db: Q, keys: string[]) {
  return db.selectFrom("login_throttle").selectAll().where("key", "in", keys).orderBy("key").forUpdate().execute();
}

/**
 * Makes sure the counters exist, so the FOR UPDATE in getThrottle serializes
 * concurrent failures; without a row to lock, two would both start from zero.
 */
export async function ensureThrottle(db: Q, keys: string[], now: Date) {
  await db
    .insertInto("login_throttle")
    .values([...keys].sort().map((key) => ({ key, failures: 0, window_started_at: now, locked_until: null })))
    .onConflict((oc) => oc.column("key").doNothing())
    .execute();
}

export async function putThrottle(
  db: Q,
  key: string,
  state: { failures: number; windowStartedAt: Date; lockedUntil: Date | null },
) {
  const values = {
    failures: state.failures,
    window_started_at: state.windowStartedAt,
    locked_until: state.lockedUntil,
  };
  await db
    .insertInto("login_throttle")
    .values({ key, ...values })
    .onConflict((oc) => oc.column("key").doUpdateSet(values))
    .execute();
}

export async function clearThrottle(db: Q, key: string) {
  await db.deleteFrom("login_throttle").where("key", "=", key).execute();
}

export function getTotp(db: Q, principalId: string, lock = false) {
  const query = db.selectFrom("mfa_totp").selectAll().where("principal_id", "=", principalId);
  return (lock ? query.forUpdate() : query).executeTakeFirst();
}

export async function revokeSessions(db: Q, principalId: string, now: Date, reason: string) {
  const result = await db
    .updateTable("refresh_sessions")
    .set({ revoked_at: now, revoked_reason: reason })
    .where("principal_id", "=", principalId)
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function revokeApiTokens(db: Q, principalId: string, now: Date) {
  const result = await db
    .updateTable("api_tokens")
    .set({ revoked_at: now })
    .where("principal_id", "=", principalId)
    .where("revoked_at", "is", null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** The principal behind a refresh session, if both are still valid at `now`. */
export function findLiveSession(db: Q, sessionId: string, now: Date) {
  return db
    .selectFrom("refresh_sessions")
    .innerJoin("principals", "principals.id", "refresh_sessions.principal_id")
    .select([
      "refresh_sessions.id as session_id",
      "refresh_sessions.mfa_at",
      "refresh_sessions.webauthn_at",
      "refresh_sessions.expires_at as session_expires_at",
      "principals.id",
      "principals.name",
      "principals.kind",
      "principals.platform_roles",
    ])
    .where("refresh_sessions.id", "=", sessionId)
    .where("refresh_sessions.revoked_at", "is", null)
    .where("refresh_sessions.expires_at", ">", now)
    .where("principals.status", "=", "active")
    .executeTakeFirst();
}

export function findLiveApiToken(db: Q, tokenId: string, now: Date) {
  return db
    .selectFrom("api_tokens")
    .innerJoin("principals", "principals.id", "api_tokens.principal_id")
    .select([
      "api_tokens.id as token_id",
      "api_tokens.token_hash",
      "api_tokens.last_used_at",
      "api_tokens.expires_at",
      "principals.id",
      "principals.name",
      "principals.kind",
      "principals.platform_roles",
    ])
    .where("api_tokens.id", "=", tokenId)
    .where("api_tokens.revoked_at", "is", null)
    .where("api_tokens.expires_at", ">", now)
    .where("principals.status", "=", "active")
    .executeTakeFirst();
}

export function findGroupByName(db: Q, name: string) {
  return db.selectFrom("groups").selectAll().where("name", "=", name).executeTakeFirst();
}

export async function listGroupsWithMembers(db: Q) {
  const groups = await db.selectFrom("groups").selectAll().orderBy("name").execute();
  const members = await db
    .selectFrom("group_members")
    .innerJoin("principals", "principals.id", "group_members.principal_id")
    .select(["group_members.group_id", "principals.name"])
    .orderBy("principals.name")
    .execute();
  return groups.map((g) => ({ ...g, members: members.filter((m) => m.group_id === g.id).map((m) => m.name) }));
}

/** Usage telemetry, not a change of access: written at most once a minute per token. */
export async function touchApiToken(db: Q, tokenId: string, now: Date) {
  await db
    .updateTable("api_tokens")
    .set({ last_used_at: now })
    .where("id", "=", tokenId)
    .where((eb) => eb.or([eb("last_used_at", "is", null), eb("last_used_at", "<", new Date(now.getTime() - 60_000))]))
    .execute();
}
