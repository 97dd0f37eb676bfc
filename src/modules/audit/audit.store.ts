/** SQL of the audit log. Every function takes the transaction (or db) it runs in. */
import { sql, type Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { AuditEvent } from "./audit.types.js";

type Q = Kysely<Database>;

export async function lockHead(tx: Q): Promise<{ seq: number; hash: string }> {
  return tx.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).forUpdate().executeTakeFirstOrThrow();
}

export async function readHead(db: Q): Promise<{ seq: number; hash: string }> {
  return db.selectFrom("audit_head").select(["seq", "hash"]).where("id", "=", 1).executeTakeFirstOrThrow();
}

export async function insertEvents(tx: Q, events: AuditEvent[]): Promise<void> {
  await tx
    .insertInto("audit_events")
    .values(
      events.map((e) => ({
        seq: e.seq,
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
        prev_hash: e.prevHash,
        hash: e.hash,
      })),
    )
    .execute();
}

export async function moveHead(tx: Q, head: { seq: number; hash: string }): Promise<void> {
  await tx.updateTable("audit_head").set(head).where("id", "=", 1).execute();
}

type EventRow = Awaited<ReturnType<typeof pageFrom>>[number];

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
