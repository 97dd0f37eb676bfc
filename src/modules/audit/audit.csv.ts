/**
 * Audit events as CSV (RFC 4180) for people: one header line, then one line per event; the details as JSON in
 * one column. Fields are quoted when they hold a comma, a quote or a line break. A field that a spreadsheet
 * would take for a formula (it starts with =, +, -, @, a tab or a carriage return: attacker-controlled text
 * such as a user agent or a reason can) is written with a leading apostrophe, as OWASP advises against CSV
 * injection; the JSON lines export carries every value as it is.
 */
import type { AuditEvent } from "./audit.types.js";

export const CSV_COLUMNS = [
  "seq",
  "time",
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
] as const;

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
  return [
    event.seq,
    event.time,
    event.actor,
    event.actorId,
    event.action,
    event.subject,
    event.outcome,
    event.reason,
    event.correlationId,
    event.sourceIp,
    event.userAgent,
    JSON.stringify(event.details),
    event.prevHash,
    event.hash,
  ]
    .map(csvField)
    .join(",");
}
