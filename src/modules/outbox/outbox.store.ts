/** SQL of the outbox. Every function takes the transaction (or db) it runs in; "now" is always a parameter. */
import {
  sql,
  type Expression,
  type Insertable,
  type Kysely,
  type QueryCreator,
  type Selectable,
  type SqlBool,
} from "kysely";
import type { Database } from "../../db/index.js";
import type { OutboxTable } from "../../db/schema.js";
import type { Alongside, OutboxJob, OutboxPayload } from "./outbox.types.js";

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
    lane: row.lane ?? null,
    // Only on a row run after its enqueuing commit (an ordinary claim clears it).
    ...(row.alive_until ? { aliveUntil: new Date(row.alive_until) } : {}),
  };
}

/** A job as the caller enqueues it (a pending row unless the insert says otherwise). */
export interface NewJob {
  id: string;
  kind: string;
  idempotencyKey: string;
  payload: OutboxPayload;
  maxAttempts: number | undefined;
  nextAttemptAt: Date;
  createdAt: Date;
  lane?: string | undefined;
}

/**
 * Inserts a pending row; a row with the same idempotency key wins and this is a no-op. `alongside`: a write of
 * the caller's carried as a data-modifying CTE; `notify`: the runners' wake-up (`pg_notify(DUE_CHANNEL)`) sent by
 * the same statement when the row is written. One statement either way.
 */
export async function insertJob(
  tx: Q,
  job: NewJob,
  options: { alongside?: Alongside | readonly Alongside[] | undefined; notify?: boolean } = {},
): Promise<boolean> {
  const inserted = await insertRows(tx, jobValues(job), options.alongside)
    .returning(
      options.notify
        ? // Evaluated once per written row (one): the wake-up goes only with a row written.
          [sql<string>`pg_notify(${DUE_CHANNEL}, '')`.as("woke")]
        : [sql<string>`''`.as("woke")],
    )
    .execute();
  return inserted.length > 0;
}

/** A job's row; `max_attempts` left out takes the column's default (DEFAULT in a multi-row insert). */
function jobValues(job: NewJob) {
  return {
    id: job.id,
    kind: job.kind,
    idempotency_key: job.idempotencyKey,
    payload: JSON.stringify(job.payload),
    ...(job.maxAttempts === undefined ? {} : { max_attempts: job.maxAttempts }),
    next_attempt_at: job.nextAttemptAt,
    created_at: job.createdAt,
    lane: job.lane ?? null,
  };
}

/**
 * The one INSERT of jobs: a row whose idempotency key exists is not written; `alongside`, the caller's write
 * carried as a data-modifying CTE (it runs whether or not it is referenced).
 */
function insertRows(
  tx: Q,
  rows: Insertable<OutboxTable> | Insertable<OutboxTable>[],
  alongside?: Alongside | readonly Alongside[],
) {
  const writes: readonly Alongside[] =
    alongside === undefined ? [] : typeof alongside === "function" ? [alongside] : alongside;
  // Named `alongside`, `alongside_1`, …: a later write may read an earlier one's RETURNING (or SELECT) by name.
  const carrying = writes.reduce<Pick<Q, "insertInto">>(
    (query, write, i) => (query as Q).with(i === 0 ? "alongside" : `alongside_${i}`, write) as unknown as Q,
    tx,
  );
  return carrying
    .insertInto("outbox")
    .values(rows)
    .onConflict((oc) => oc.column("idempotency_key").doNothing());
}

/**
 * Inserts a row already claimed by the enqueuing node (running, attempt 1, leased until `leaseUntil`), for a
 * runner of that node to run as soon as the transaction commits; if that node dies first, the lease runs out and
 * any runner claims it as a row whose worker died. Returns the row, or undefined when the idempotency key exists.
 */
export async function insertClaimedJob(
  tx: Q,
  job: NewJob & { leaseUntil: Date; aliveUntil: Date; alongside?: Alongside | readonly Alongside[] | undefined },
): Promise<OutboxJob | undefined> {
  const claimed = {
    status: "running",
    attempts: 1,
    locked_until: job.leaseUntil,
    alive_until: job.aliveUntil,
  } as const;
  const row = await insertRows(tx, { ...jobValues(job), ...claimed }, job.alongside)
    .returningAll()
    .executeTakeFirst();
  return row && toJob(row);
}

/**
 * Inserts pending rows in one statement; a row whose idempotency key exists (or comes earlier in `jobs`) is not
 * written. Returns the keys written.
 */
export async function insertJobs(tx: Q, jobs: NewJob[]): Promise<Set<string>> {
  const seen = new Set<string>();
  const unique = jobs.filter((job) => !seen.has(job.idempotencyKey) && seen.add(job.idempotencyKey));
  if (unique.length === 0) return new Set();
  const inserted = await insertRows(tx, unique.map(jobValues)).returning("idempotency_key").execute();
  return new Set(inserted.map((row) => row.idempotency_key));
}

/**
 * Claims up to `limit` due rows in one statement: pending rows whose time has come,
 * and running rows whose lease expired (their worker died). Rows another worker is
 * claiming right now are skipped, not waited for. The claim increments `attempts`,
 * which then fences every later write of this attempt.
 *
 * Lanes: at most `room[lane]` rows of a lane (default `perLane`) are claimed, and none of a lane
 * with no room left, so the caller's rows of one slow lane never take the place of another lane's.
 * Rows without a lane are limited only by `limit`.
 */
export async function claimDue(
  db: Q,
  input: { now: Date; leaseUntil: Date; limit: number; perLane?: number; room?: Record<string, number> },
): Promise<OutboxJob[]> {
  const perLane = input.perLane ?? input.limit;
  const room = JSON.stringify(input.room ?? {});
  // Look past the first `limit` due rows: some of them may belong to lanes that are full.
  const scan = Math.max(input.limit * 5, 50);
  const { rows } = await sql<OutboxRow>`
    update outbox
       set status = 'running', attempts = attempts + 1, locked_until = ${input.leaseUntil}, alive_until = null
     where id in (
       select ranked.id from (
         select due.id, due.lane, due.next_attempt_at,
                row_number() over (partition by due.lane order by due.next_attempt_at, due.id) as place
           from (
             select o.id, o.lane, o.next_attempt_at
               from outbox o
              where ((o.status = 'pending' and o.next_attempt_at <= ${input.now})
                  or (o.status = 'running' and (o.locked_until < ${input.now} or o.alive_until < ${input.now})))
                and (o.lane is null or coalesce((${room}::jsonb ->> o.lane)::int, ${perLane}::int) > 0)
              order by o.next_attempt_at
              limit ${scan}::int
                for update skip locked
           ) due
       ) ranked
        where ranked.lane is null or ranked.place <= coalesce((${room}::jsonb ->> ranked.lane)::int, ${perLane}::int)
        order by ranked.next_attempt_at
        limit ${input.limit}::int
     )
    returning *`.execute(db);
  return rows.map(toJob).sort((a, b) => a.nextAttemptAt.getTime() - b.nextAttemptAt.getTime());
}

/** The row as this attempt left it: still running and not reclaimed since. */
function fenced(db: Q, id: string, attempt: number) {
  return db.updateTable("outbox").where("id", "=", id).where("status", "=", "running").where("attempts", "=", attempt);
}

/**
 * `markDone` as a write another statement carries (a data-modifying CTE of the handler's own last statement), with
 * the same fence, written only when `when` holds in that statement; it returns the row's id when written.
 */
export function doneMarkAlongside(input: { id: string; attempt: number; now: Date }, when: Expression<SqlBool>) {
  return ((db: QueryCreator<Database>) =>
    db
      .updateTable("outbox")
      .set({ status: "done", done_at: input.now, locked_until: null, last_error: null })
      .where("id", "=", input.id)
      .where("status", "=", "running")
      .where("attempts", "=", input.attempt)
      .where(when)
      .returning("id")) as Alongside;
}

/**
 * Keeps a row run after its enqueuing commit alive until `until`, fenced on (id, running, attempt): false when
 * another runner has taken it over (or it is no longer running).
 */
export async function keepAlive(db: Q, input: { id: string; attempt: number; until: Date }): Promise<boolean> {
  const result = await db
    .updateTable("outbox")
    .set({ alive_until: input.until })
    .where("id", "=", input.id)
    .where("status", "=", "running")
    .where("attempts", "=", input.attempt)
    .where("alive_until", "is not", null)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
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

/**
 * Makes the rows of a lane that wait on a backoff after a failed attempt due now (their target answers
 * again), so recovery does not wait up to the backoff cap. Rows never tried (a revocation deliberately
 * due later) keep their time. Returns how many; the caller notifies the runners in the same transaction.
 */
export async function expediteLane(db: Q, input: { lane: string; now: Date }): Promise<number> {
  const rows = await db
    .updateTable("outbox")
    .set({ next_attempt_at: input.now })
    .where("lane", "=", input.lane)
    .where("status", "=", "pending")
    .where("attempts", ">", 0)
    .where("next_attempt_at", ">", input.now)
    .returning("id")
    .execute();
  return rows.length;
}

/** Rows of a lane waiting on a backoff after a failed attempt. */
export async function countBackedOff(db: Q, input: { lane: string; now: Date }): Promise<number> {
  const row = await db
    .selectFrom("outbox")
    .select(sql<number>`count(*)::int`.as("count"))
    .where("lane", "=", input.lane)
    .where("status", "=", "pending")
    .where("attempts", ">", 0)
    .where("next_attempt_at", ">", input.now)
    .executeTakeFirstOrThrow();
  return row.count;
}

/** Whether a row of this kind and lane is still to run (pending or running). */
export async function hasOpen(db: Q, input: { kind: string; lane: string }): Promise<boolean> {
  const row = await db
    .selectFrom("outbox")
    .select("id")
    .where("kind", "=", input.kind)
    .where("lane", "=", input.lane)
    .where("status", "in", ["pending", "running"])
    .executeTakeFirst();
  return row !== undefined;
}

/** Removes finished rows of a kind and lane (a chain of short-lived probes keeps only its live link). */
export async function deleteDone(db: Q, input: { kind: string; lane: string }): Promise<void> {
  await db
    .deleteFrom("outbox")
    .where("kind", "=", input.kind)
    .where("lane", "=", input.lane)
    .where("status", "=", "done")
    .execute();
}
