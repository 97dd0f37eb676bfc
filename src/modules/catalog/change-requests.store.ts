/** SQL for four-eyes change requests (migration 0027). Every function takes the caller's transaction. */
import { sql, type Kysely, type Selectable } from "kysely";
import type { ChangeRequestsTable, Database } from "../../db/schema.js";

type Q = Kysely<Database>;
export type ChangeRequestRow = Selectable<ChangeRequestsTable>;

export async function insertChangeRequest(
  db: Q,
  row: Omit<
    ChangeRequestRow,
    | "plan"
    | "assessment"
    | "decided_by_id"
    | "decided_by_name"
    | "decided_at"
    | "decision_reason"
    | "kind"
    | "sealed_secret"
  > & {
    plan: unknown;
    assessment: unknown;
    kind?: ChangeRequestRow["kind"];
    sealed_secret?: unknown;
  },
): Promise<void> {
  await db
    .insertInto("change_requests")
    .values({
      ...row,
      plan: JSON.stringify(row.plan),
      assessment: JSON.stringify(row.assessment),
      sealed_secret: row.sealed_secret === undefined ? null : JSON.stringify(row.sealed_secret),
      decided_by_id: null,
      decided_by_name: null,
      decided_at: null,
      decision_reason: null,
    })
    .execute();
}

export async function findChangeRequest(db: Q, id: string, lock = false): Promise<ChangeRequestRow | undefined> {
  let query = db.selectFrom("change_requests").selectAll().where("id", "=", id);
  if (lock) query = query.forUpdate();
  return query.executeTakeFirst();
}

/** Newest first; `pending` includes those past their expiry (the service shows them expired). */
export async function listChangeRequests(
  db: Q,
  status: ChangeRequestRow["status"] | "all",
  limit = 200,
): Promise<ChangeRequestRow[]> {
  let query = db.selectFrom("change_requests").selectAll().orderBy("created_at", "desc").orderBy("id", "desc");
  if (status !== "all") query = query.where("status", "=", status);
  return query.limit(limit).execute();
}

export async function decideChangeRequest(
  db: Q,
  id: string,
  decision: {
    status: Exclude<ChangeRequestRow["status"], "pending">;
    byId: string | null;
    byName: string | null;
    at: Date;
    reason: string | null;
  },
): Promise<boolean> {
  const result = await db
    .updateTable("change_requests")
    .set({
      status: decision.status,
      decided_by_id: decision.byId,
      decided_by_name: decision.byName,
      decided_at: decision.at,
      decision_reason: decision.reason,
      // A held password is of no use once decided: it does not outlive the decision.
      sealed_secret: null,
    })
    .where("id", "=", id)
    .where("status", "=", "pending")
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** Marks pending requests past their expiry as expired; returns their ids. */
export async function expireDue(db: Q, now: Date): Promise<string[]> {
  const rows = await db
    .updateTable("change_requests")
    .set({ status: "expired", decided_at: now, sealed_secret: null })
    .where("status", "=", "pending")
    .where("expires_at", "<=", now)
    .returning("id")
    .execute();
  return rows.map((r) => r.id);
}

/** The author as an actor, to re-run their file on approval: null when they are gone or disabled. */
export async function findActivePrincipal(
  db: Q,
  id: string,
): Promise<{ id: string; name: string; kind: "user" | "service"; platform_roles: string[] } | undefined> {
  return db
    .selectFrom("principals")
    .select(["id", "name", "kind", "platform_roles"])
    .where("id", "=", id)
    .where("status", "=", "active")
    .executeTakeFirst();
}

/**
 * Whether an active user other than `exceptId` holds one of `roles` (a possible second approver). With
 * `since`, also one disabled since then while holding one, or one that lost its last approver role since then
 * (`approver_role_lost_at`, whatever its roles and status now): a demotion counts as a disable does.
 */
export async function anotherWithRoles(
  db: Q,
  exceptId: string,
  roles: readonly string[],
  since?: Date,
): Promise<boolean> {
  const holds = sql<boolean>`platform_roles && ${sql.val(roles)}::text[]`;
  const row = await db
    .selectFrom("principals")
    .select("id")
    .where((eb) =>
      since === undefined
        ? eb.and([eb("status", "=", "active"), holds])
        : eb.or([
            eb.and([eb("status", "=", "active"), holds]),
            eb.and([eb("status", "=", "disabled"), eb("updated_at", ">=", since), holds]),
            eb("approver_role_lost_at", ">=", since),
          ]),
    )
    .where("id", "<>", exceptId)
    // Only a person approves (a service identity's tokens are an admin's to mint): a service is nobody's second pair.
    .where("kind", "=", "user")
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** E-mail addresses of the active principals other than `exceptId` who hold one of `roles` (who may approve). */
export async function approverEmails(db: Q, exceptId: string, roles: readonly string[]): Promise<string[]> {
  const rows = await db
    .selectFrom("principals")
    .select("email")
    .where("status", "=", "active")
    .where("id", "<>", exceptId)
    .where("email", "is not", null)
    .where(sql<boolean>`platform_roles && ${sql.val(roles)}::text[]`)
    .orderBy("email")
    .execute();
  return rows.map((r) => r.email!);
}
