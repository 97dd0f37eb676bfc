/**
 * Read-only questions other modules ask about activations (access reviews' evidence, the evidence report), so
 * that they do not read the requests tables themselves.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";

/** When any of these principals last activated the role, and how many activations began since `since`. */
export async function activationUsage(
  db: Kysely<Database>,
  principalIds: readonly string[],
  roleId: string,
  since: Date,
): Promise<{ lastActivationAt: Date | null; activationsInPeriod: number }> {
  if (principalIds.length === 0) return { lastActivationAt: null, activationsInPeriod: 0 };
  const row = await db
    .selectFrom("activation_requests")
    .select([
      (eb) => eb.fn.max("activated_at").as("last"),
      (eb) => eb.fn.count<string>("id").filterWhere("activated_at", ">=", since).as("recent"),
    ])
    .where("requester_id", "in", principalIds)
    .where("role_id", "=", roleId)
    .where("activated_at", "is not", null)
    .executeTakeFirst();
  return {
    lastActivationAt: row?.last ? new Date(row.last as unknown as string) : null,
    activationsInPeriod: Number(row?.recent ?? 0),
  };
}

/** A period, narrowed by role and/or target name. */
export interface ActivationScope {
  from: Date;
  to: Date;
  role?: string | undefined;
  target?: string | undefined;
}

/** Activations (activated at some time) whose active span meets [from, to), oldest first. At most `limit`. */
export function activationsInScope(db: Kysely<Database>, scope: ActivationScope, limit: number) {
  let query = db
    .selectFrom("activation_requests as a")
    .innerJoin("roles as r", "r.id", "a.role_id")
    .innerJoin("targets as t", "t.id", "r.target_id")
    .innerJoin("principals as p", "p.id", "a.requester_id")
    .select([
      "a.id",
      "r.name as role",
      "t.name as target",
      "r.risk",
      "p.name as requester",
      "a.break_glass",
      "a.state",
      "a.reason",
      "a.ticket",
      "a.submitted_at",
      "a.activated_at",
      "a.expires_at",
      "a.ended_at",
      "a.end_reason",
      "a.ended_by",
    ])
    .where("a.activated_at", "is not", null)
    .where("a.extends_request_id", "is", null)
    .where("a.activated_at", "<", scope.to)
    .where(sql<boolean>`coalesce(a.ended_at, a.expires_at, a.activated_at) >= ${scope.from}`);
  if (scope.role) query = query.where("r.name", "=", scope.role);
  if (scope.target) query = query.where("t.name", "=", scope.target);
  return query.orderBy("a.activated_at").orderBy("a.id").limit(limit).execute();
}

/**
 * Who took part in a request: its requester and everyone who decided on it (ids). Empty when there is no such
 * request. The reviews module asks, so that nobody works a finding about a request they requested or decided.
 */
export async function participantsOf(db: Kysely<Database>, requestId: string): Promise<string[]> {
  const rows = await db
    .selectFrom("activation_requests as a")
    .leftJoin("request_decisions as d", "d.request_id", "a.id")
    .select(["a.requester_id", "d.approver_id"])
    .where("a.id", "=", requestId)
    .execute();
  return [...new Set(rows.flatMap((r) => (r.approver_id ? [r.requester_id, r.approver_id] : [r.requester_id])))];
}

/** The decisions on these requests, with the approver's name, in the order they were made. */
export function decisionsOf(db: Kysely<Database>, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("request_decisions as d")
    .innerJoin("principals as p", "p.id", "d.approver_id")
    .select(["d.request_id", "p.name as approver", "d.decision", "d.reason", "d.decided_at", "d.stage_index"])
    .where("d.request_id", "in", requestIds)
    .orderBy("d.decided_at")
    .orderBy("d.id")
    .execute();
}

/** Requests submitted in the period (scope), by state, and how many of them ever became active. */
export async function requestsSubmitted(db: Kysely<Database>, scope: ActivationScope) {
  let query = db
    .selectFrom("activation_requests as a")
    .innerJoin("roles as r", "r.id", "a.role_id")
    .innerJoin("targets as t", "t.id", "r.target_id")
    .select([
      "a.state",
      (eb) => eb.fn.countAll<string>().as("n"),
      (eb) => eb.fn.count<string>("a.id").filterWhere("a.activated_at", "is not", null).as("activated"),
    ])
    .where("a.submitted_at", ">=", scope.from)
    .where("a.submitted_at", "<", scope.to)
    .where("a.extends_request_id", "is", null);
  if (scope.role) query = query.where("r.name", "=", scope.role);
  if (scope.target) query = query.where("t.name", "=", scope.target);
  const rows = await query.groupBy("a.state").orderBy("a.state").execute();
  const byState: Record<string, number> = {};
  let activated = 0;
  for (const row of rows) {
    byState[row.state] = Number(row.n);
    activated += Number(row.activated);
  }
  return { byState, activated, failed: byState.failed ?? 0 };
}
