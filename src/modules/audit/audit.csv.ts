/**
 * Audit events as CSV (RFC 4180) for people: one header line, then one line per event; the details as JSON in
 * one column. Fields are quoted when they hold a comma, a quote or a line break. A field that a spreadsheet
 * would take for a formula (it starts with =, +, -, @, a tab or a carriage return: attacker-controlled text
 * such as a user agent or a reason can) is written with a leading apostrophe, as OWASP advises against CSV
 * injection; the JSON lines export carries every value as it is.
 */
import { EVENT_ROW_COLUMNS, type AuditEvent, type EventRowColumn } from "./audit.types.js";

type CsvColumn = Exclude<EventRowColumn, "id">;

/** The columns of `audit_events` as reads select them, but the id. */
export const CSV_COLUMNS = EVENT_ROW_COLUMNS.filter((column): column is CsvColumn => column !== "id");

/** Each column's value in an event (a column added to the list must say how it is written here). */
const CSV_VALUE: Record<CsvColumn, (event: AuditEvent) => string | number | null> = {
  seq: (e) => e.seq,
  time: (e) => e.time,
  actor: (e) => e.actor,
  actor_id: (e) => e.actorId,
  action: (e) => e.action,
  subject: (e) => e.subject,
  outcome: (e) => e.outcome,
  reason: (e) => e.reason,
  correlation_id: (e) => e.correlationId,
  source_ip: (e) => e.sourceIp,
  user_agent: (e) => e.userAgent,
  details: (e) => JSON.stringify(e.details),
  prev_hash: (e) => e.prevHash,
  hash: (e) => e.hash,
};

export const CSV_HEADER = CSV_COLUMNS.join(",");

/** One CSV field: formula-looking text defused, quoted when it must be. */
export function csvField(value: string | number | null): string {
  if (value === null) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One event as one CSV line (no line break at the end). */
export function toCsvLine(event: AuditEvent): string {
  return CSV_COLUMNS.map((column) => csvField(CSV_VALUE[column](event))).join(",");
}
