/** SQL of the audit log. Every function takes the transaction (or db) it runs in. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { AuditEvent, PendingAuditEvent } from "./audit.types.js";

type Q = Kysely<Database>;

export async function lockHead(tx: Q): Promise<{ seq: number; hash: string }> {
  return tx.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).forUpdate().executeTakeFirstOrThrow();
}

export async function readHead(db: Q): Promise<{ seq: number; hash: string }> {
  return db.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).executeTakeFirstOrThrow();
}

/** The columns an event has before it is chained (shared by audit_pending and audit_events). */
function eventColumns(e: PendingAuditEvent) {
  return {
    id: e.id,
    time: e.time,
    actor: e.actor,
    actor_id: e.actorId,
    action: e.action,
    subject: e.subject,
    outcome: e.outcome,
    reason: e.reason,
    correlation_id: e.correlationId,
    source_ip: e.sourceIp,
    user_agent: e.userAgent,
    details: JSON.stringify(e.details),
  };
}

export async function insertEvents(tx: Q, events: AuditEvent[]): Promise<void> {
  await tx
    .insertInto("audit_events")
    .values(events.map((e) => ({ ...eventColumns(e), seq: e.seq, prev_hash: e.prevHash, hash: e.hash })))
    .execute();
}

/** An event committed by its transaction but not chained yet; `mac` proves a Stint node wrote it. */
export async function insertPending(tx: Q, events: { event: PendingAuditEvent; mac: string }[]): Promise<void> {
  await tx
    .insertInto("audit_pending")
    .values(events.map(({ event, mac }) => ({ ...eventColumns(event), mac })))
    .execute();
}

/**
 * Removes up to `limit` pending events, oldest `pos` first, and returns them in that order. Run under
 * the head lock (`lockHead`), in the transaction that chains them: they leave `audit_pending` exactly
 * when they enter `audit_events`.
 */
export async function takePending(tx: Q, limit: number) {
  // `pos = any(array(…))`: the positions are read once (an init plan) and deleted by the primary key.
  // `pos in (select … limit n)` let the planner, with statistics from before a burst, pick a nested
  // loop over the whole table: tens of seconds a pass at 74k pending events, quadratic in the backlog.
  const rows = await tx
    .deleteFrom("audit_pending")
    .where(sql<boolean>`pos = any(array(select p.pos from audit_pending p order by p.pos limit ${limit}))`)
    .returningAll()
    .execute();
  return rows.sort((a, b) => Number(a.pos) - Number(b.pos));
}

export type PendingRow = Awaited<ReturnType<typeof takePending>>[number];

export function pendingToEvent(row: PendingRow): PendingAuditEvent {
  return {
    id: row.id,
    time: new Date(row.time).toISOString(),
    actor: row.actor,
    actorId: row.actor_id,
    action: row.action,
    subject: row.subject,
    outcome: row.outcome,
    reason: row.reason,
    correlationId: row.correlation_id,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
    details: row.details as Record<string, unknown>,
  };
}

/** How many events wait to be chained, and the time of the oldest. */
export async function pendingStats(db: Q): Promise<{ count: number; oldest: Date | null }> {
  const row = await db
    .selectFrom("audit_pending")
    .select((eb) => [eb.fn.countAll<number>().as("count"), eb.fn.min("time").as("oldest")])
    .executeTakeFirstOrThrow();
  return { count: Number(row.count), oldest: row.oldest === null ? null : new Date(row.oldest) };
}

/** True when a pending event is there at all (cheaper than counting). */
export async function anyPending(db: Q): Promise<boolean> {
  const row = await db.selectFrom("audit_pending").select("pos").limit(1).executeTakeFirst();
  return row !== undefined;
}

/**
 * Takes or renews the background sequencer's lease for `holder` until the database's now() + ttlMs, if it
 * is free, expired or already held by `holder`. True when `holder` holds it now.
 */
export async function takeLease(db: Q, holder: string, ttlMs: number): Promise<boolean> {
  const row = await db
    .updateTable("audit_sequencer")
    .set({ holder, expires_at: sql<Date>`now() + make_interval(secs => ${ttlMs / 1000})` })
    .where("id", "=", 1)
    .where((eb) =>
      eb.or([eb("holder", "=", holder), eb("holder", "is", null), eb("expires_at", "<", sql<Date>`now()`)]),
    )
    .returning("holder")
    .executeTakeFirst();
  return row !== undefined;
}

export async function releaseLease(db: Q, holder: string): Promise<void> {
  await db
    .updateTable("audit_sequencer")
    .set({ holder: null, expires_at: sql<Date>`'epoch'::timestamptz` })
    .where("id", "=", 1)
    .where("holder", "=", holder)
    .execute();
}

export async function moveHead(tx: Q, head: { seq: number; hash: string }): Promise<void> {
  await tx.updateTable("audit_head").set(head).where("id", "=", 1).execute();
}

export type EventRow = Awaited<ReturnType<typeof pageFrom>>[number];

export function toEvent(row: EventRow): AuditEvent {
  return {
    seq: row.seq,
    id: row.id,
    time: new Date(row.time).toISOString(),
    actor: row.actor,
    actorId: row.actor_id,
    action: row.action,
    subject: row.subject,
    outcome: row.outcome,
    reason: row.reason,
    correlationId: row.correlation_id,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Events with seq > afterSeq, in order, `limit` at a time. */
export interface EventFilter {
  since?: Date | undefined;
  until?: Date | undefined;
  actor?: string | undefined;
  /** Exact, or a prefix when it ends with "*". */
  action?: string | undefined;
  /** details.role, or the subject role:<name> */
  role?: string | undefined;
}

function filtered(db: Q, filter: EventFilter) {
  let query = db.selectFrom("audit_events").selectAll();
  if (filter.since) query = query.where("time", ">=", filter.since);
  if (filter.until) query = query.where("time", "<", filter.until);
  if (filter.actor) query = query.where("actor", "=", filter.actor);
  if (filter.action?.endsWith("*"))
    query = query.where("action", "like", `${filter.action.slice(0, -1).replace(/[\\%_]/g, "\\$&")}%`);
  else if (filter.action) query = query.where("action", "=", filter.action);
  if (filter.role) {
    const role = filter.role;
    query = query.where((eb) =>
      eb.or([eb(sql<string>`details->>'role'`, "=", role), eb("subject", "=", `role:${role}`)]),
    );
  }
  return query;
}

export function pageFrom(db: Q, afterSeq: number, limit: number, filter: EventFilter = {}) {
  return filtered(db, filter).where("seq", ">", afterSeq).orderBy("seq").limit(limit).execute();
}

/**
 * `pageFrom` for verify, as events: the database writes each time in UTC with microseconds, and a time
 * whose last three digits are zeros (every time Stint writes: `toISOString()`, milliseconds) is given as
 * `toISOString()` writes it, without a Date per row (parsing and re-formatting them was ~8% of verify).
 * A time with microseconds keeps them, so its event no longer matches its hash: a change below the
 * millisecond, which the old Date round trip silently dropped, is reported as an alteration.
 */
export async function eventsForVerify(db: Q, afterSeq: number, limit: number): Promise<AuditEvent[]> {
  const rows = await db
    .selectFrom("audit_events")
    .select([
      "seq",
      "id",
      sql<string>`to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as("time"),
      "actor",
      "actor_id",
      "action",
      "subject",
      "outcome",
      "reason",
      "correlation_id",
      "source_ip",
      "user_agent",
      "details",
      "prev_hash",
      "hash",
    ])
    .where("seq", ">", afterSeq)
    .orderBy("seq")
    .limit(limit)
    .execute();
  return rows.map((row) => ({
    seq: row.seq,
    id: row.id,
    time: row.time.endsWith("000Z") && row.time.length === 27 ? `${row.time.slice(0, 23)}Z` : row.time,
    actor: row.actor,
    actorId: row.actor_id,
    action: row.action,
    subject: row.subject,
    outcome: row.outcome,
    reason: row.reason,
    correlationId: row.correlation_id,
    sourceIp: row.source_ip,
    userAgent: row.user_agent,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  }));
}

/** Newest first, before `beforeSeq` (all when undefined). */
export function pageBefore(db: Q, beforeSeq: number | undefined, limit: number, filter: EventFilter = {}) {
  let query = filtered(db, filter);
  if (beforeSeq !== undefined) query = query.where("seq", "<", beforeSeq);
  return query.orderBy("seq", "desc").limit(limit).execute();
}

export async function insertCheckpoint(
  tx: Q,
  cp: { seq: number; hash: string; every: number; keyId: string; signature: string; signedAt: Date },
): Promise<void> {
  await tx
    .insertInto("audit_checkpoints")
    .values({
      seq: cp.seq,
      hash: cp.hash,
      every: cp.every,
      key_id: cp.keyId,
      signature: cp.signature,
      signed_at: cp.signedAt,
    })
    .onConflict((oc) => oc.column("seq").doNothing())
    .execute();
}

export function listCheckpoints(db: Q) {
  return db.selectFrom("audit_checkpoints").selectAll().orderBy("seq").execute();
}

/** Checkpoints with fromSeq <= seq <= toSeq, oldest first. */
export function checkpointsBetween(db: Q, fromSeq: number, toSeq: number) {
  return db
    .selectFrom("audit_checkpoints")
    .selectAll()
    .where("seq", ">=", fromSeq)
    .where("seq", "<=", toSeq)
    .orderBy("seq")
    .execute();
}

/** The newest checkpoints first, `limit` of them. */
export function latestCheckpoints(db: Q, limit: number) {
  return db.selectFrom("audit_checkpoints").selectAll().orderBy("seq", "desc").limit(limit).execute();
}

export type CheckpointRow = Awaited<ReturnType<typeof listCheckpoints>>[number];
