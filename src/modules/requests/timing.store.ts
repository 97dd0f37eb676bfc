/** SQL of request timing: pending requests past their time to live, approved requests due to start. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

/** Pending requests whose time to live has passed, claimed (SKIP LOCKED: any number of nodes). */
export function claimPendingPastTtl(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("activation_requests")
    .select(["id"])
    .where("state", "=", "pending")
    .where("pending_expires_at", "<=", now)
    .orderBy("pending_expires_at")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

/** Requests approved ahead whose start time has come, claimed (SKIP LOCKED). Extensions never wait. */
export function claimDueStarts(db: Q, now: Date, limit: number) {
  return db
    .selectFrom("activation_requests")
    .select(["id"])
    .where("state", "=", "approved")
    .where("start_at", "is not", null)
    .where("start_at", "<=", now)
    .where("extends_request_id", "is", null)
    .orderBy("start_at")
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

/** The earliest pending expiry or scheduled start (null: none), in one statement on the two partial indexes. */
export async function nextTimingDue(db: Q): Promise<Date | null> {
  const { rows } = await sql<{ next: Date | string | null }>`
    select least(
      (select min(pending_expires_at) from activation_requests where state = 'pending'),
      (select min(start_at) from activation_requests where state = 'approved' and start_at is not null)
    ) as next`.execute(db);
  const next = rows[0]?.next;
  return next ? new Date(next) : null;
}
