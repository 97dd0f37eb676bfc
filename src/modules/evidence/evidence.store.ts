/**
 * SQL of the evidence report (Kysely), reads only: activations in a period with their decisions, sessions,
 * recordings, grants and break-glass review items. The report is a read model over the requests, sessions and
 * reviews tables; nothing here writes.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

export interface EvidenceScope {
  from: Date;
  to: Date;
  role?: string | undefined;
  target?: string | undefined;
}

/** Activations (activated at some time) whose active span meets [from, to), oldest first. At most `limit`. */
export function activationsInScope(db: Q, scope: EvidenceScope, limit: number) {
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

export function decisionsOf(db: Q, requestIds: readonly string[]) {
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

export function sessionsOf(db: Q, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("sessions")
    .select([
      "id",
      "request_id",
      "kind",
      "login",
      "started_at",
      "ended_at",
      "end_reason",
      "recording_key",
      "recording_sha256",
      "recording_bytes",
    ])
    .where("request_id", "in", requestIds)
    .orderBy("started_at")
    .orderBy("id")
    .execute();
}

/** The break-glass review items of these activations (subject `request:<id>`). */
export function breakGlassReviewsOf(db: Q, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("review_items")
    .select(["id", "subject", "status", "outcome", "decision_reason", "closed_by", "closed_at"])
    .where("kind", "=", "break-glass-activation")
    .where(
      "subject",
      "in",
      requestIds.map((id) => `request:${id}`),
    )
    .execute();
}

/** When each of these activations' grants was removed at the target (state revoked). */
export function revokedGrantsOf(db: Q, requestIds: readonly string[]) {
  if (requestIds.length === 0) return Promise.resolve([]);
  return db
    .selectFrom("grants")
    .select(["request_id", "updated_at"])
    .where("request_id", "in", requestIds)
    .where("state", "=", "revoked")
    .execute();
}

/** Requests submitted in the period (scope), by state, and how many of them ever became active. */
export async function requestsSubmitted(db: Q, scope: EvidenceScope) {
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
