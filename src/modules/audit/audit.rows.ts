/**
 * Events from the text and columns verify and reads get from `audit_events` (`audit.store.ts` writes the
 * SQL): pure, no database, so a verify worker thread (`audit.verify-worker.ts`) loads only this and the rules.
 */
import { canonicalDetails } from "./audit.rules.js";
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

/** A character JSON escapes, or a surrogate, but not `FIELD` (a field holding that does not split into 16). */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const ESCAPED_BUT_FIELD = /["\\\u0000-\u001e\ud800-\udfff]/;

/** A nullable field as the canonical JSON writes it (no escape needed: checked by the caller). */
const maybe = (nulls: number, bit: number, text: string) => (nulls & bit ? "null" : `"${text}"`);

/**
 * The event of a `VERIFY_ROW` text as `canonicalEvent(decodeVerifyRow(text))` writes it, with its seq,
 * stored previous hash and hash; straight from the fields, no event object, and one escape test for the
 * whole row but its details instead of one per field (verify's worker threads: their hot loop).
 * Undefined when that shortcut does not apply (a field JSON escapes, a seq that is not a safe integer, a
 * row that does not decode without doubt): the caller then decodes the row as `decodeVerifyRow` does.
 */
export function canonicalOfRow(
  text: string,
): { canonical: string; seq: number; prevHash: string; hash: string } | undefined {
  const f = text.split(FIELD);
  if (f.length !== 16) return undefined;
  const nulls = Number(f[14]);
  const seq = Number(f[0]);
  const details = f[15]!;
  if (!(nulls < 64) || !Number.isSafeInteger(seq)) return undefined;
  if (ESCAPED_BUT_FIELD.test(text.slice(0, text.length - details.length))) return undefined;
  const canonical =
    `{"action":"${f[5]}","actor":"${f[3]}","actorId":${maybe(nulls, 1, f[4]!)},` +
    `"correlationId":${maybe(nulls, 8, f[9]!)},"details":${canonicalDetails(JSON.parse(details) as Record<string, unknown>)},` +
    `"id":"${f[1]}","outcome":"${f[7]}","prevHash":"${f[12]}","reason":${maybe(nulls, 4, f[8]!)},"seq":${seq},` +
    `"sourceIp":${maybe(nulls, 16, f[10]!)},"subject":${maybe(nulls, 2, f[6]!)},"time":"${eventTime(f[2]!)}",` +
    `"userAgent":${maybe(nulls, 32, f[11]!)}}`;
  return { canonical, seq, prevHash: f[12]!, hash: f[13]! };
}
