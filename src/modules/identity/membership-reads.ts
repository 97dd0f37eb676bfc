/**
 * Read-only questions other modules ask about groups and sign-ins (access reviews: who reviews, whose access an
 * item is, when someone last signed in; passkeys and MFA: when this session signed in), so that they do not read
 * the identity tables themselves.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

/** Active members of the named groups, by group name (a group nobody is in is absent). */
export async function activeMembersByGroup(db: Q, groupNames: readonly string[]): Promise<Map<string, string[]>> {
  const result = new Map<string, string[]>();
  if (groupNames.length === 0) return result;
  const rows = await db
    .selectFrom("group_members as gm")
    .innerJoin("groups as g", "g.id", "gm.group_id")
    .innerJoin("principals as p", "p.id", "gm.principal_id")
    .select(["g.name", "gm.principal_id"])
    .where("g.name", "in", [...new Set(groupNames)])
    .where("p.status", "=", "active")
    .execute();
  for (const row of rows) result.set(row.name, [...(result.get(row.name) ?? []), row.principal_id]);
  return result;
}

/** Every member (any status) of one group, by its id. */
export async function memberIdsOfGroup(db: Q, groupId: string): Promise<string[]> {
  const rows = await db.selectFrom("group_members").select("principal_id").where("group_id", "=", groupId).execute();
  return rows.map((r) => r.principal_id);
}

/** Every member (any status) of any of the named groups. */
export async function memberIdsOfGroups(db: Q, groupNames: readonly string[]): Promise<string[]> {
  if (groupNames.length === 0) return [];
  const rows = await db
    .selectFrom("group_members as gm")
    .innerJoin("groups as g", "g.id", "gm.group_id")
    .select("gm.principal_id")
    .distinct()
    .where("g.name", "in", [...new Set(groupNames)])
    .execute();
  return rows.map((r) => r.principal_id);
}

/** The latest sign-in (refresh session opened) of any of these principals, or null. */
export async function lastSignInOf(db: Q, principalIds: readonly string[]): Promise<Date | null> {
  if (principalIds.length === 0) return null;
  const row = await db
    .selectFrom("refresh_sessions")
    .select((eb) => eb.fn.max("created_at").as("last"))
    .where("principal_id", "in", principalIds)
    .executeTakeFirst();
  return row?.last ? new Date(row.last as unknown as string) : null;
}

/** When the session was opened (its sign-in; a refresh keeps it), or null for none. */
export async function sessionOpenedAt(db: Q, sessionId: string | undefined): Promise<Date | null> {
  if (!sessionId) return null;
  const row = await db
    .selectFrom("refresh_sessions")
    .select("created_at")
    .where("id", "=", sessionId)
    .executeTakeFirst();
  return row ? new Date(row.created_at) : null;
}
