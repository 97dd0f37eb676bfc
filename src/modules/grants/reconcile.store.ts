/** SQL of drift findings (what reconciliation found at a target). Every function takes its transaction or db. */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

export function openFindings(db: Q, targetId: string) {
  return db
    .selectFrom("drift_findings")
    .select(["id", "role_id", "login", "kind", "action", "first_seen_at"])
    .where("target_id", "=", targetId)
    .where("resolved_at", "is", null)
    .forUpdate()
    .execute();
}

export async function insertFinding(
  db: Q,
  values: {
    id: string;
    targetId: string;
    roleId: string;
    login: string;
    kind: "unexpected" | "missing";
    action: "reported" | "removing" | "reprovisioning";
    now: Date;
  },
): Promise<void> {
  await db
    .insertInto("drift_findings")
    .values({
      id: values.id,
      target_id: values.targetId,
      role_id: values.roleId,
      login: values.login,
      kind: values.kind,
      action: values.action,
      first_seen_at: values.now,
      last_seen_at: values.now,
    })
    .execute();
}

export async function touchFindings(db: Q, ids: string[], now: Date): Promise<void> {
  if (ids.length === 0) return;
  await db.updateTable("drift_findings").set({ last_seen_at: now }).where("id", "in", ids).execute();
}

export async function setFindingAction(
  db: Q,
  id: string,
  action: "reported" | "removing" | "reprovisioning",
): Promise<void> {
  await db.updateTable("drift_findings").set({ action }).where("id", "=", id).execute();
}

/** Closes an open finding; false when it was already closed. */
export async function resolveFinding(
  db: Q,
  id: string,
  resolution: string,
  now: Date,
  action?: "removed",
): Promise<boolean> {
  const rows = await db
    .updateTable("drift_findings")
    .set({ resolved_at: now, resolution, ...(action ? { action } : {}) })
    .where("id", "=", id)
    .where("resolved_at", "is", null)
    .returning("id")
    .execute();
  return rows.length > 0;
}

export function findFinding(db: Q, id: string) {
  return db
    .selectFrom("drift_findings")
    .innerJoin("roles", "roles.id", "drift_findings.role_id")
    .innerJoin("targets", "targets.id", "drift_findings.target_id")
    .select([
      "drift_findings.id",
      "drift_findings.target_id",
      "drift_findings.role_id",
      "drift_findings.login",
      "drift_findings.kind",
      "drift_findings.resolved_at",
      "roles.name as role_name",
      "roles.entitlement",
      "targets.name as target_name",
    ])
    .where("drift_findings.id", "=", id)
    .executeTakeFirst();
}

export function openFindingCounts(db: Q) {
  return db
    .selectFrom("drift_findings")
    .innerJoin("targets", "targets.id", "drift_findings.target_id")
    .select(({ fn }) => ["targets.name as target", "drift_findings.kind", fn.countAll<string>().as("count")])
    .where("drift_findings.resolved_at", "is", null)
    .groupBy(["targets.name", "drift_findings.kind"])
    .execute();
}
