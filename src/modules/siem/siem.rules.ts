/**
 * SIEM wire formats, socket-free: an item of the stream (a chained event or a signed checkpoint) in, the
 * bytes a receiver gets out. RFC 5424 messages with RFC 6587 octet-counting framing for syslog; Splunk HEC
 * event envelopes. The payload itself (JSON, CEF, OCSF) is the audit export's (`audit.export.ts`,
 * documented in docs/audit-export.md), so a line streamed and a line exported are the same bytes.
 */
import { CHECKPOINT_ACTION, formatAnchor, formatEvent, type ExportFormat } from "../audit/audit.export.js";
import type { AuditOutcome } from "../audit/audit.types.js";
import type { SiemFormat, StreamItem } from "./siem.types.js";

/** The SD-ID of Stint's structured data. 32473 is the private enterprise number RFC 5612 sets aside for examples. */
export const SD_ID = "stint@32473";
export const BOM = "\ufeff";

/** RFC 5424 severities: success is informational (6), a denial a notice (5), a failure a warning (4). */
export const SYSLOG_SEVERITY: Readonly<Record<AuditOutcome | "checkpoint", number>> = {
  success: 6,
  denied: 5,
  failed: 4,
  checkpoint: 6,
};

export function exportFormat(format: SiemFormat): ExportFormat {
  return format === "json" ? "jsonl" : format;
}

/** The payload of one item: one line of the audit export's format, without a newline. */
export function payload(format: SiemFormat, item: StreamItem, productVersion?: string): string {
  const options = { productVersion };
  return item.kind === "event"
    ? formatEvent(exportFormat(format), item.event, options)
    : formatAnchor(exportFormat(format), item.anchor, options);
}

/** The seq an item stands at, and what kind of record it is (`type` in the structured data and HEC fields). */
export function itemKey(item: StreamItem): { type: "event" | "checkpoint"; seq: number } {
  return item.kind === "event" ? { type: "event", seq: item.event.seq } : { type: "checkpoint", seq: item.anchor.seq };
}

// ---------------------------------------------------------------- RFC 5424

/** PRI = facility * 8 + severity (RFC 5424 §6.2.1). */
export function priority(facility: number, severity: number): number {
  if (!Number.isInteger(facility) || facility < 0 || facility > 23) throw new RangeError("facility must be 0..23");
  if (!Number.isInteger(severity) || severity < 0 || severity > 7) throw new RangeError("severity must be 0..7");
  return facility * 8 + severity;
}

/** PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` are preceded by a backslash; nothing else is. */
export function sdParamEscape(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** A header field (HOSTNAME, APP-NAME, MSGID): printable US-ASCII only, at most `max` characters, `-` when empty. */
export function headerField(value: string | null | undefined, max: number): string {
  const cleaned = (value ?? "").replace(/[^\x21-\x7e]/g, "").slice(0, max);
  return cleaned === "" ? "-" : cleaned;
}

/** SD-PARAM names: printable US-ASCII but `=`, space, `]` and `"`, at most 32. */
function sdName(name: string): string {
  if (!/^[\x21-\x7e]{1,32}$/.test(name) || /[= \]"]/.test(name)) throw new RangeError(`bad SD-PARAM name ${name}`);
  return name;
}

export function structuredData(id: string, params: readonly (readonly [string, string | number])[]): string {
  const body = params.map(([name, value]) => ` ${sdName(name)}="${sdParamEscape(String(value))}"`).join("");
  return `[${id}${body}]`;
}

export interface SyslogOptions {
  format: SiemFormat;
  facility: number;
  hostname: string;
  appName: string;
  productVersion?: string | undefined;
}

/**
 * One RFC 5424 SYSLOG-MSG: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [stint@32473 …] BOM MSG`.
 * MSGID is the action (`audit.checkpoint` for a signed head); the structured data names the record's type,
 * seq and hash (and the event id), so a receiver can dedupe and order without parsing the payload.
 */
export function syslogMessage(item: StreamItem, options: SyslogOptions): string {
  const severity = SYSLOG_SEVERITY[item.kind === "event" ? item.event.outcome : "checkpoint"];
  const time = item.kind === "event" ? item.event.time : item.anchor.time;
  const msgId = item.kind === "event" ? item.event.action : CHECKPOINT_ACTION;
  const params: [string, string | number][] =
    item.kind === "event"
      ? [
          ["type", "event"],
          ["seq", item.event.seq],
          ["id", item.event.id],
          ["outcome", item.event.outcome],
          ["hash", item.event.hash],
        ]
      : [
          ["type", "checkpoint"],
          ["seq", item.anchor.seq],
          ["hash", item.anchor.hash],
          ["keyId", item.anchor.keyId],
          ["signature", item.anchor.signature],
        ];
  return [
    `<${priority(options.facility, severity)}>1`,
    timestamp(time),
    headerField(options.hostname, 255),
    headerField(options.appName, 48),
    "-",
    headerField(msgId, 32),
    `${structuredData(SD_ID, params)} ${BOM}${payload(options.format, item, options.productVersion)}`,
  ].join(" ");
}

/** RFC 5424 TIMESTAMP: RFC 3339 in UTC with at most 6 fractional digits (what Stint stores already is). */
export function timestamp(iso: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/.test(iso)) return new Date(iso).toISOString();
  return iso;
}

/** RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, MSG-LEN the message's length in bytes (UTF-8). */
export function octetCounted(message: string): Buffer {
  const body = Buffer.from(message, "utf8");
  return Buffer.concat([Buffer.from(`${body.length} `, "ascii"), body]);
}

/**
 * Reads octet-counted frames from a buffer: the messages and what is left (a partial frame). For tests and
 * receivers; a frame whose length is not digits throws.
 */
export function splitOctetCounted(buffer: Buffer): { messages: string[]; rest: Buffer } {
  const messages: string[] = [];
  let offset = 0;
  for (;;) {
    const space = buffer.indexOf(0x20, offset);
    if (space === -1) break;
    const lengthText = buffer.subarray(offset, space).toString("ascii");
    if (!/^[1-9]\d{0,8}$/.test(lengthText)) throw new Error(`bad frame length ${JSON.stringify(lengthText)}`);
    const end = space + 1 + Number(lengthText);
    if (end > buffer.length) break;
    messages.push(buffer.subarray(space + 1, end).toString("utf8"));
    offset = end;
  }
  return { messages, rest: buffer.subarray(offset) };
}

// ---------------------------------------------------------------- Splunk HEC

export interface HecOptions {
  format: SiemFormat;
  host: string;
  source: string;
  sourcetype?: string | undefined;
  index?: string | undefined;
  productVersion?: string | undefined;
}

/** The sourcetype when none is configured: one per format, so the SIEM's parsing can key on it. */
export function defaultSourcetype(format: SiemFormat): string {
  return format === "cef" ? "stint:audit:cef" : format === "ocsf" ? "stint:audit:ocsf" : "stint:audit:json";
}

/**
 * One HEC event envelope (for `/services/collector/event`): `time` in epoch seconds, `event` the payload
 * (a JSON object for json and ocsf, the CEF line as a string), `fields` the indexed fields `stint_type`
 * (`event` or `checkpoint`), `stint_seq` and, for events, `stint_id`.
 */
export function hecEnvelope(item: StreamItem, options: HecOptions): string {
  const line = payload(options.format, item, options.productVersion);
  const time = Date.parse(item.kind === "event" ? item.event.time : item.anchor.time) / 1000;
  const key = itemKey(item);
  const fields: Record<string, string> = { stint_type: key.type, stint_seq: String(key.seq) };
  if (item.kind === "event") fields.stint_id = item.event.id;
  const head = JSON.stringify({
    time: Number(time.toFixed(3)),
    host: options.host,
    source: options.source,
    sourcetype: options.sourcetype ?? defaultSourcetype(options.format),
    ...(options.index !== undefined && { index: options.index }),
    fields,
  });
  // The payload is spliced in as it is (it is JSON already, or a string for CEF): one serialization.
  const event = options.format === "cef" ? JSON.stringify(line) : line;
  return `${head.slice(0, -1)},"event":${event}}`;
}

/** What a HEC answer says: Splunk answers `{"text":"Success","code":0}` (and `ackId` with acknowledgement on). */
export function parseHecAnswer(status: number, body: string): { ok: boolean; ackId?: number; detail: string } {
  let parsed: { code?: unknown; text?: unknown; ackId?: unknown } = {};
  try {
    parsed = JSON.parse(body) as typeof parsed;
  } catch {
    // not JSON: judged by the status alone
  }
  const code = typeof parsed.code === "number" ? parsed.code : undefined;
  const text = typeof parsed.text === "string" ? parsed.text.slice(0, 200) : "";
  const ok = status === 200 && (code === undefined || code === 0);
  return {
    ok,
    ...(typeof parsed.ackId === "number" && { ackId: parsed.ackId }),
    detail: `HTTP ${status}${code !== undefined ? ` code ${code}` : ""}${text ? ` ${text}` : ""}`,
  };
}

/** `/services/collector/event` → `/services/collector/ack` (the acknowledgement endpoint beside it). */
export function hecAckUrl(eventUrl: string): string {
  const url = new URL(eventUrl);
  url.pathname = `${url.pathname.replace(/\/+$/, "").replace(/\/(event|raw)(\/1\.0)?$/, "")}/ack`;
  return url.toString();
}

// ---------------------------------------------------------------- the stream

export interface Position {
  /** The seq of the last event delivered. */
  seq: number;
  /** The seq of the last checkpoint delivered. */
  checkpointSeq: number;
}

/**
 * The items after `position`, in stream order, each with the position after it. Checkpoints follow the
 * event they cover; one signed after that event had been delivered (the anchor writer signs the head every
 * interval) comes before the next events. `events` must be the chained events after `position.seq`, in
 * seq order; `anchors` the verified checkpoints after `position.checkpointSeq`, in seq order.
 */
export function streamItems(
  position: Position,
  events: readonly StreamItem[],
  anchors: readonly StreamItem[],
): { item: StreamItem; after: Position }[] {
  const out: { item: StreamItem; after: Position }[] = [];
  let at = { ...position };
  let next = 0;
  const flushUpTo = (seq: number) => {
    while (next < anchors.length) {
      const anchor = anchors[next]!;
      if (anchor.kind !== "checkpoint" || anchor.anchor.seq > seq) break;
      next++;
      if (anchor.anchor.seq <= at.checkpointSeq) continue;
      at = { ...at, checkpointSeq: anchor.anchor.seq };
      out.push({ item: anchor, after: at });
    }
  };
  flushUpTo(at.seq);
  for (const event of events) {
    if (event.kind !== "event" || event.event.seq <= at.seq) continue;
    at = { ...at, seq: event.event.seq };
    out.push({ item: event, after: at });
    flushUpTo(event.event.seq);
  }
  return out;
}

/** Exponential backoff from 500 ms, doubling per failure, capped. */
export function backoffMs(failures: number, capMs: number): number {
  if (failures <= 0) return 0;
  return Math.min(capMs, 500 * 2 ** Math.min(failures - 1, 20));
}
