/**
 * Review items other modules open (an anomaly alert configured with `action: review`): one row of
 * `review_items`, in the caller's transaction; and the break-glass items the evidence report reads. Working the
 * item is the reviews module's business.
 */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";

export interface OpenReviewItem {
  id: string;
  kind: "anomaly-alert";
  /** What is reviewed, e.g. `request:<id>` or `alert:<id>`. */
  subject: string;
  /** Whose conduct is reviewed, by principal name (null, or unknown: no one). */
  principal: string | null;
  reason: string;
  createdAt: Date;
  dueAt: Date;
}

export async function openReviewItem(tx: Kysely<Database>, item: OpenReviewItem): Promise<void> {
  await sql`insert into review_items (id, kind, subject, actor_id, reason, status, created_at, due_at)
    values (${item.id}, ${item.kind}, ${item.subject},
      (select id from principals where name = ${item.principal}), ${item.reason.slice(0, 1000)}, 'open',
      ${item.createdAt}, ${item.dueAt})`.execute(tx);
}

/** The break-glass review items of these activations (subject `request:<id>`). */
export function breakGlassReviewsOf(db: Kysely<Database>, requestIds: readonly string[]) {
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
