/**
 * Events from the text and columns verify and reads get from `audit_events` (`audit.store.ts` writes the
 * SQL): pure, no database, so a verify worker thread (`audit.verify-worker.ts`) loads only this and the rules.
 */
import type { AuditEvent } from "./audit.types.js";

/**
 * The stored time (`TIME_TEXT`) as the event's `time`: Stint writes milliseconds (`toISOString()`), so a
 * time whose last three digits are zeros is written as `toISOString()` writes it; one with microseconds
 * keeps them, so its event no longer matches its hash (an edit below the millisecond is reported).
 */
export function eventTime(text: string): string {
  // NULL only from a database writer who dropped the constraint: left as it is, it matches no hash.
  if (text === null) return text;
  return text.length === 26 && text.endsWith("000") ? `${text.slice(0, 23)}Z` : `${text}Z`;
}

export interface EventRow {
  seq: number;
  id: string;
  time: string;
  actor: string;
  actor_id: string | null;
  action: string;
  subject: string | null;
  outcome: AuditEvent["outcome"];
  reason: string | null;
  correlation_id: string | null;
  source_ip: string | null;
  user_agent: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

/** The one mapping from a row of `audit_events` (as `EVENT_COLUMNS` or `verifyRows` read it) to an event. */
export function toEvent(row: EventRow): AuditEvent {
  return {
    seq: row.seq,
    id: row.id,
    time: eventTime(row.time),
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

/**
 * The separator of `VERIFY_ROW`'s fields. A field holding it is read as more fields than there are, so
 * `decodeVerifyRow` refuses the row (every field is always there, NULL as empty) and its page is read
 * again as columns: a row is never split by guess.
 */
export const FIELD = "\x1f";

/** An event read as `VERIFY_ROW`, or undefined when its text cannot be split without doubt. */
export function decodeVerifyRow(text: string): AuditEvent | undefined {
  const f = text.split(FIELD);
  if (f.length !== 16) return undefined;
  const nulls = Number(f[14]);
  if (!(nulls < 64)) return undefined;
  return toEvent({
    seq: Number(f[0]),
    id: f[1]!,
    time: f[2]!,
    actor: f[3]!,
    actor_id: nulls & 1 ? null : f[4]!,
    action: f[5]!,
    subject: nulls & 2 ? null : f[6]!,
    outcome: f[7] as AuditEvent["outcome"],
    reason: nulls & 4 ? null : f[8]!,
    correlation_id: nulls & 8 ? null : f[9]!,
    source_ip: nulls & 16 ? null : f[10]!,
    user_agent: nulls & 32 ? null : f[11]!,
    prev_hash: f[12]!,
    hash: f[13]!,
    details: JSON.parse(f[15]!) as Record<string, unknown>,
  });
}
