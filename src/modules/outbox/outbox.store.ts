/** SQL of the outbox. Every function takes the transaction (or db) it runs in; "now" is always a parameter. */
import { sql, type Kysely, type Selectable } from "kysely";
import type { Database } from "../../db/index.js";
import type { OutboxTable } from "../../db/schema.js";
import type { OutboxJob, OutboxPayload } from "./outbox.types.js";

type Q = Kysely<Database>;
type OutboxRow = Selectable<OutboxTable>;

export function toJob(row: OutboxRow): OutboxJob {
  return {
    id: row.id,
    kind: row.kind,
    idempotencyKey: row.idempotency_key,
    payload: row.payload as OutboxPayload,
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    nextAttemptAt: new Date(row.next_attempt_at),
    lockedUntil: row.locked_until === null ? null : new Date(row.locked_until),
    lastError: row.last_error,
    createdAt: new Date(row.created_at),
    doneAt: row.done_at === null ? null : new Date(row.done_at),
  };
}

/** Inserts a pending row; a row with the same idempotency key wins and this is a no-op. */
export async function insertJob(
  tx: Q,
  job: {
    id: string;
    kind: string;
    idempotencyKey: string;
    payload: OutboxPayload;
    maxAttempts: number | undefined;
    nextAttemptAt: Date;
    createdAt: Date;
  },
): Promise<boolean> {
  const inserted = await tx
    .insertInto("outbox")
    .values({
      id: job.id,
      kind: job.kind,
      idempotency_key: job.idempotencyKey,
      payload: JSON.stringify(job.payload),
      ...(job.maxAttempts === undefined ? {} : { max_attempts: job.maxAttempts }),
      next_attempt_at: job.nextAttemptAt,
      created_at: job.createdAt,
    })
    .onConflict((oc) => oc.column("idempotency_key").doNothing())
    .returning("id")
    .execute();
  return inserted.length > 0;
}

/**
 * Claims up to `limit` due rows in one statement: pending rows whose time has come,
 * and running rows whose lease expired (their worker died). Rows another worker is
 * claiming right now are skipped, not waited for. The claim increments `attempts`,
 * which then fences every later write of this attempt.
 */
export async function claimDue(db: Q, input: { now: Date; leaseUntil: Date; limit: number }): Promise<OutboxJob[]> {
  const rows = await db
    .updateTable("outbox")
    .set({ status: "running", attempts: sql<number>`attempts + 1`, locked_until: input.leaseUntil })
    .where("id", "in", (eb) =>
      eb
        .selectFrom("outbox as due")
        .select("due.id")
        .where((w) =>
          w.or([
            w.and([w("due.status", "=", "pending"), w("due.next_attempt_at", "<=", input.now)]),
            w.and([w("due.status", "=", "running"), w("due.locked_until", "<", input.now)]),
          ]),
        )
        .orderBy("due.next_attempt_at")
        .limit(input.limit)
        .forUpdate()
        .skipLocked(),
    )
    .returningAll()
    .execute();
  return rows.map(toJob).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
}

/** The row as this attempt left it: still running and not reclaimed since. */
function fenced(db: Q, id: string, attempt: number) {
  return db.updateTable("outbox").where("id", "=", id).where("status", "=", "running").where("attempts", "=", attempt);
}

export async function markDone(db: Q, input: { id: string; attempt: number; now: Date }): Promise<boolean> {
  const result = await fenced(db, input.id, input.attempt)
    .set({ status: "done", done_at: input.now, locked_until: null, last_error: null })
    .returning("id")
    .execute();
  return result.length > 0;
}

export async function markRetry(
  db: Q,
  input: { id: string; attempt: number; nextAttemptAt: Date; lastError: string },
): Promise<boolean> {
  const result = await fenced(db, input.id, input.attempt)
    .set({ status: "pending", next_attempt_at: input.nextAttemptAt, locked_until: null, last_error: input.lastError })
    .returning("id")
    .execute();
  return result.length > 0;
}

export async function markDead(
  tx: Q,
  input: { id: string; attempt: number; now: Date; lastError: string },
): Promise<OutboxJob | undefined> {
  const row = await fenced(tx, input.id, input.attempt)
    .set({ status: "dead", done_at: input.now, locked_until: null, last_error: input.lastError })
    .returningAll()
    .executeTakeFirst();
  return row && toJob(row);
}

export async function findForUpdate(tx: Q, id: string): Promise<OutboxJob | undefined> {
  const row = await tx.selectFrom("outbox").selectAll().where("id", "=", id).forUpdate().executeTakeFirst();
  return row && toJob(row);
}

export async function findByIdempotencyKey(db: Q, idempotencyKey: string): Promise<OutboxJob | undefined> {
  const row = await db
    .selectFrom("outbox")
    .selectAll()
    .where("idempotency_key", "=", idempotencyKey)
    .executeTakeFirst();
  return row && toJob(row);
}

/** A dead row back to pending with a fresh budget of attempts. */
export async function resurrect(tx: Q, input: { id: string; now: Date }): Promise<OutboxJob> {
  const row = await tx
    .updateTable("outbox")
    .set({ status: "pending", attempts: 0, next_attempt_at: input.now, locked_until: null, done_at: null })
    .where("id", "=", input.id)
    .where("status", "=", "dead")
    .returningAll()
    .executeTakeFirstOrThrow();
  return toJob(row);
}

/** Dead rows, newest id first (ids are UUIDv7, so time-ordered), paged by id. */
export async function listDead(db: Q, input: { limit: number; beforeId?: string | undefined }): Promise<OutboxJob[]> {
  let query = db.selectFrom("outbox").selectAll().where("status", "=", "dead");
  if (input.beforeId) query = query.where("id", "<", input.beforeId);
  const rows = await query.orderBy("id", "desc").limit(input.limit).execute();
  return rows.map(toJob);
}

/** Rows still to do (pending or running), per kind. */
export async function depthByKind(db: Q): Promise<{ kind: string; count: number }[]> {
  return db
    .selectFrom("outbox")
    .select(["kind", sql<number>`count(*)::int`.as("count")])
    .where("status", "in", ["pending", "running"])
    .groupBy("kind")
    .execute();
}

export async function oldestPendingCreatedAt(db: Q): Promise<Date | null> {
  const row = await db
    .selectFrom("outbox")
    .select((eb) => eb.fn.min("created_at").as("oldest"))
    .where("status", "=", "pending")
    .executeTakeFirst();
  return row?.oldest ? new Date(row.oldest) : null;
}

/** The channel runners listen on: a job became due (sent in the enqueuing transaction, delivered at commit). */
export const DUE_CHANNEL = "stint_outbox";

export async function notifyDue(tx: Q): Promise<void> {
  await sql`select pg_notify(${DUE_CHANNEL}, '')`.execute(tx);
}
