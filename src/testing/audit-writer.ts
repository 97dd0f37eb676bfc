/**
 * Test support: a database writer attacking the audit log. They hold no key, but know the hash format,
 * so whatever they edit they re-chain: every later event's prev_hash and hash, and the head.
 */
import { GENESIS_HASH, hashEvent } from "../modules/audit/audit.rules.js";
import type { AuditEvent } from "../modules/audit/audit.types.js";

export type Row = Record<string, unknown>;
/** Runs one SQL statement with $n parameters and returns its rows (pg, PGlite or Kysely underneath). */
export type Query = (text: string, params?: unknown[]) => Promise<Row[]>;

export function rowToEvent(row: Row): AuditEvent {
  return {
    seq: Number(row.seq),
    id: String(row.id),
    time: new Date(row.time as string).toISOString(),
    actor: row.actor as string,
    actorId: row.actor_id as string | null,
    action: row.action as string,
    subject: row.subject as string | null,
    outcome: row.outcome as AuditEvent["outcome"],
    reason: row.reason as string | null,
    correlationId: row.correlation_id as string | null,
    sourceIp: row.source_ip as string | null,
    userAgent: row.user_agent as string | null,
    details: (typeof row.details === "string" ? JSON.parse(row.details) : row.details) as Record<string, unknown>,
    prevHash: row.prev_hash as string,
    hash: row.hash as string,
  };
}

/** Changes the reason of event `seq` and re-links every event after it and the head. */
export async function rewriteReason(query: Query, seq: number, reason: string | null): Promise<void> {
  const rows = await query("select * from audit_events where seq >= $1 order by seq", [seq]);
  const before = await query("select hash from audit_events where seq = $1", [seq - 1]);
  let prevHash = (before[0]?.hash as string | undefined) ?? GENESIS_HASH;
  for (const row of rows) {
    const original = rowToEvent(row);
    const changed = { ...original, ...(original.seq === seq && { reason }), prevHash };
    const hash = hashEvent(changed);
    await query("update audit_events set reason = $1, prev_hash = $2, hash = $3 where seq = $4", [
      changed.reason,
      prevHash,
      hash,
      original.seq,
    ]);
    prevHash = hash;
  }
  await query("update audit_head set hash = $1 where id = 1", [prevHash]);
}

/** Deletes the events after `seq` and the checkpoints covering them, and moves the head back to `seq`. */
export async function truncateAfter(query: Query, seq: number): Promise<void> {
  await query("delete from audit_checkpoints where seq > $1", [seq]);
  await query("delete from audit_events where seq > $1", [seq]);
  await query("update audit_head set seq = $1, hash = (select hash from audit_events where seq = $1) where id = 1", [
    seq,
  ]);
}
