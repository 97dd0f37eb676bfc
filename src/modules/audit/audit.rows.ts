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

/**
 * Where each field is in a `VERIFY_ROW` text. The fields the canonical JSON writes as strings with no
 * format of their own (from the previous hash to the user agent) come one after the other, so that one
 * escape test covers them all; the time has its own strict format, the hash is not in the canonical JSON.
 */
const F = {
  seq: 0,
  time: 1,
  hash: 2,
  nulls: 3,
  prevHash: 4,
  id: 5,
  actor: 6,
  actorId: 7,
  action: 8,
  subject: 9,
  outcome: 10,
  reason: 11,
  correlationId: 12,
  sourceIp: 13,
  userAgent: 14,
  details: 15,
} as const;

/** Fields in a `VERIFY_ROW` text. */
export const VERIFY_FIELDS = 16;

/** The time as PostgreSQL prints a `timestamp` in the ISO style: its fraction without trailing zeros. */
const ISO_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?$/;

/**
 * A `VERIFY_ROW` time ("2026-12-05 01:17:02.1234", the UTC time as a `timestamp` prints in the ISO
 * DateStyle) as the event's `time`, exactly as `eventTime` writes the `TIME_TEXT` of the same instant:
 * milliseconds when the microseconds are zeros, else all six digits. Undefined for any other text (another
 * DateStyle, a year past 9999): the row is then read again as columns.
 */
export function verifyRowTime(text: string): string | undefined {
  if (!ISO_TIME.test(text)) return undefined;
  const fraction = text.length > 19 ? text.slice(20) : "";
  const digits = fraction.length <= 3 ? fraction.padEnd(3, "0") : fraction.padEnd(6, "0");
  return `${text.slice(0, 10)}T${text.slice(11, 19)}.${digits}Z`;
}

/** An event read as `VERIFY_ROW`, or undefined when its text cannot be split without doubt. */
export function decodeVerifyRow(text: string): AuditEvent | undefined {
  const f = text.split(FIELD);
  if (f.length !== VERIFY_FIELDS) return undefined;
  const nulls = Number(f[F.nulls]);
  const time = verifyRowTime(f[F.time]!);
  if (!(nulls < 64) || time === undefined) return undefined;
  return {
    seq: Number(f[F.seq]),
    id: f[F.id]!,
    time,
    actor: f[F.actor]!,
    actorId: nulls & 1 ? null : f[F.actorId]!,
    action: f[F.action]!,
    subject: nulls & 2 ? null : f[F.subject]!,
    outcome: f[F.outcome] as AuditEvent["outcome"],
    reason: nulls & 4 ? null : f[F.reason]!,
    correlationId: nulls & 8 ? null : f[F.correlationId]!,
    sourceIp: nulls & 16 ? null : f[F.sourceIp]!,
    userAgent: nulls & 32 ? null : f[F.userAgent]!,
    details: JSON.parse(f[F.details]!) as Record<string, unknown>,
    prevHash: f[F.prevHash]!,
    hash: f[F.hash]!,
  };
}

/** The seq a `VERIFY_ROW` text begins with (NaN when it does not). */
export function verifyRowSeq(text: string): number {
  return Number(text.slice(0, text.indexOf(FIELD)));
}

/** A character JSON escapes, or a surrogate, but not `FIELD` (a field holding that does not split into 16). */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const ESCAPED_BUT_FIELD = /["\\\u0000-\u001e\ud800-\udfff]/;

/**
 * One member of a flat object as jsonb prints it (`"key": value, `): a key and a string value with nothing
 * JSON escapes (no backslash, control character or surrogate), an integer JSON.stringify writes back digit
 * for digit (no leading zero, no -0, at most 15 digits), true, false or null; then ", " or the closing brace.
 */
const FLAT_MEMBER =
  // eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
  /"([^"\\\u0000-\u001f\ud800-\udfff]*)": ("[^"\\\u0000-\u001f\ud800-\udfff]*"|0|-?[1-9]\d{0,14}|true|false|null)(, |\}$)/y;

/**
 * `canonicalDetails(JSON.parse(text))` for the details most events have, a flat object as jsonb prints it
 * (`FLAT_MEMBER`s), without parsing it: the same members without the spaces, sorted by key as RFC 8785
 * sorts them (jsonb prints shorter keys first). Undefined for anything else (nested values, escapes, a
 * repeated key, other spacing): the caller parses those.
 */
export function canonicalFlatDetails(text: string): string | undefined {
  if (text === "{}") return text;
  if (text.charCodeAt(0) !== 0x7b) return undefined;
  FLAT_MEMBER.lastIndex = 1;
  const members: [key: string, value: string][] = [];
  let sorted = true;
  for (;;) {
    const member = FLAT_MEMBER.exec(text);
    if (!member) return undefined;
    const last = members[members.length - 1];
    if (last && !(last[0] < member[1]!)) sorted = false;
    members.push([member[1]!, member[2]!]);
    if (member[3] !== ", ") break;
  }
  if (!sorted) {
    members.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (let i = 1; i < members.length; i++) if (members[i - 1]![0] === members[i]![0]) return undefined;
  }
  let out = "{";
  for (let i = 0; i < members.length; i++) out += `${i === 0 ? "" : ","}"${members[i]![0]}":${members[i]![1]}`;
  return `${out}}`;
}

/** A nullable field as the canonical JSON writes it (no escape needed: checked by the caller). */
const maybe = (nulls: number, bit: number, text: string) => (nulls & bit ? "null" : `"${text}"`);

/**
 * The event of a `VERIFY_ROW` text as `canonicalEvent(decodeVerifyRow(text))` writes it, with its seq,
 * stored previous hash and hash; straight from the fields, no event object, and one escape test for the
 * string fields (from the previous hash to the user agent, side by side in the row) instead of one per field
 * (verify's worker threads: their hot loop). Undefined when that shortcut does not apply (a field JSON
 * escapes, a seq that is not a safe integer, a row that does not decode without doubt): the caller then
 * decodes the row as `decodeVerifyRow` does.
 */
export function canonicalOfRow(
  text: string,
): { canonical: string; seq: number; prevHash: string; hash: string } | undefined {
  const f = text.split(FIELD);
  if (f.length !== VERIFY_FIELDS) return undefined;
  const nulls = Number(f[F.nulls]);
  const seq = Number(f[F.seq]);
  const time = verifyRowTime(f[F.time]!);
  if (!(nulls < 64) || !Number.isSafeInteger(seq) || time === undefined) return undefined;
  const details = f[F.details]!;
  const strings = f[F.seq]!.length + f[F.time]!.length + f[F.hash]!.length + f[F.nulls]!.length + 4;
  if (ESCAPED_BUT_FIELD.test(text.slice(strings, text.length - details.length))) return undefined;
  const canonical =
    `{"action":"${f[F.action]}","actor":"${f[F.actor]}","actorId":${maybe(nulls, 1, f[F.actorId]!)},` +
    `"correlationId":${maybe(nulls, 8, f[F.correlationId]!)},` +
    `"details":${canonicalFlatDetails(details) ?? canonicalDetails(JSON.parse(details) as Record<string, unknown>)},` +
    `"id":"${f[F.id]}","outcome":"${f[F.outcome]}","prevHash":"${f[F.prevHash]}",` +
    `"reason":${maybe(nulls, 4, f[F.reason]!)},"seq":${seq},"sourceIp":${maybe(nulls, 16, f[F.sourceIp]!)},` +
    `"subject":${maybe(nulls, 2, f[F.subject]!)},"time":"${time}","userAgent":${maybe(nulls, 32, f[F.userAgent]!)}}`;
  return { canonical, seq, prevHash: f[F.prevHash]!, hash: f[F.hash]! };
}
