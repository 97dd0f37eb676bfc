/**
 * SIEM export formats for audit events: JSON lines, ArcSight CEF and OCSF 1.1.
 * Pure functions, one event in, one line (or object) out; the export worker
 * owns transport and batching. The mappings are documented in docs/audit-export.md.
 */
import type { AuditAnchor, AuditEvent, AuditOutcome } from "./audit.types.js";
import { linkedEvent } from "./audit.rules.js";

export type ExportFormat = "jsonl" | "cef" | "ocsf";
export const EXPORT_FORMATS: readonly ExportFormat[] = ["jsonl", "cef", "ocsf"];

export interface ExportOptions {
  /** The running Stint version: CEF Device Version and OCSF metadata.product.version. */
  productVersion?: string | undefined;
}

export const PRODUCT = "Stint";
export const VENDOR = "Stint";
export const OCSF_VERSION = "1.1.0";
const UNKNOWN_VERSION = "unknown";

/** One event as one line in the requested format, without the trailing newline. */
export function formatEvent(format: ExportFormat, event: AuditEvent, options: ExportOptions = {}): string {
  switch (format) {
    case "jsonl":
      return toJsonl(event);
    case "cef":
      return toCef(event, options.productVersion);
    case "ocsf":
      return JSON.stringify(toOcsf(event, options.productVersion));
  }
}

// ---------------------------------------------------------------- signed heads

/** The action name of a signed-head record in the export stream. */
export const CHECKPOINT_ACTION = "audit.checkpoint";

/**
 * A signed head (checkpoint) as one line, written after the event it covers. JSON lines carry the anchor
 * itself (a line can be saved as an anchor file for `stint audit verify --anchor`); CEF and OCSF carry it
 * whole in `cs6` and `unmapped.anchor`.
 */
export function formatAnchor(format: ExportFormat, anchor: AuditAnchor, options: ExportOptions = {}): string {
  const ordered: AuditAnchor = {
    format: anchor.format,
    seq: anchor.seq,
    hash: anchor.hash,
    every: anchor.every,
    time: anchor.time,
    keyId: anchor.keyId,
    signature: anchor.signature,
  };
  switch (format) {
    case "jsonl":
      return JSON.stringify(ordered);
    case "cef": {
      const header = [
        "CEF:0",
        cefHeaderEscape(VENDOR),
        cefHeaderEscape(PRODUCT),
        cefHeaderEscape(options.productVersion ?? UNKNOWN_VERSION),
        CHECKPOINT_ACTION,
        "Audit checkpoint",
        "1",
      ].join("|");
      const ext: [string, string | number][] = [
        ["rt", Date.parse(anchor.time)],
        ["externalId", anchor.seq],
        ["cs1", anchor.hash],
        ["cs1Label", "hash"],
        ["cs4", anchor.keyId],
        ["cs4Label", "keyId"],
        ["cs5", anchor.signature],
        ["cs5Label", "signature"],
        ["cn1", anchor.every],
        ["cn1Label", "every"],
        ["cs6", JSON.stringify(ordered)],
        ["cs6Label", "anchor"],
      ];
      return `${header}|${ext.map(([key, value]) => `${key}=${cefValueEscape(String(value))}`).join(" ")}`;
    }
    case "ocsf":
      return JSON.stringify({
        category_uid: API_ACTIVITY.categoryUid,
        category_name: API_ACTIVITY.categoryName,
        class_uid: API_ACTIVITY.classUid,
        class_name: API_ACTIVITY.className,
        activity_id: OTHER[0],
        activity_name: OTHER[1],
        type_uid: API_ACTIVITY.classUid * 100 + OTHER[0],
        type_name: `${API_ACTIVITY.className}: ${OTHER[1]}`,
        time: Date.parse(anchor.time),
        severity_id: SEVERITY.success.ocsfId,
        severity: SEVERITY.success.ocsfName,
        status_id: 1,
        status: "Success",
        message: `audit head signed at seq ${anchor.seq}`,
        actor: { user: { name: "system:audit" } },
        api: { operation: CHECKPOINT_ACTION, service: { name: PRODUCT } },
        src_endpoint: { name: "stint" },
        metadata: {
          version: OCSF_VERSION,
          product: {
            name: PRODUCT,
            vendor_name: VENDOR,
            ...(options.productVersion !== undefined && { version: options.productVersion }),
          },
          uid: `checkpoint-${anchor.seq}`,
        },
        unmapped: { anchor: ordered },
      });
  }
}

// ---------------------------------------------------------------- JSON lines

/**
 * The event exactly as the log stores it (camelCase, the fields of `AuditEvent`
 * in declaration order). JSON.stringify escapes every control character, so the
 * result never holds a raw newline.
 */
export function toJsonl(event: AuditEvent): string {
  return JSON.stringify(linkedEvent(event, event.seq, event.prevHash, event.hash));
}

// ---------------------------------------------------------------- shared mappings

/** Severity by outcome. CEF: 0–3 low, 4–6 medium, 7–8 high, 9–10 very high. */
export const SEVERITY: Readonly<Record<AuditOutcome, { cef: number; ocsfId: number; ocsfName: string }>> = {
  success: { cef: 3, ocsfId: 1, ocsfName: "Informational" },
  denied: { cef: 5, ocsfId: 3, ocsfName: "Medium" },
  failed: { cef: 7, ocsfId: 4, ocsfName: "High" },
};

/** "activation.approve" → "Activation approve"; "auth.mfa_verify" → "Auth mfa verify". */
export function humanLabel(action: string): string {
  const words = action
    .split(/[._\-\s]+/)
    .filter((w) => w.length > 0)
    .join(" ");
  return words.length === 0 ? action : words.charAt(0).toUpperCase() + words.slice(1);
}

/** The user a subject names: `user:<name>` or `principal:<id>`; anything else names no user. */
export function subjectUser(subject: string | null): { name?: string; uid?: string } | null {
  const match = subject === null ? null : /^(user|principal):(.+)$/s.exec(subject);
  if (!match) return null;
  return match[1] === "user" ? { name: match[2]! } : { uid: match[2]! };
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Node reports IPv4 peers on dual-stack sockets as `::ffff:a.b.c.d`; CEF `src` wants the IPv4 form. */
function asIpv4(ip: string): string | null {
  const bare = ip.toLowerCase().startsWith("::ffff:") ? ip.slice(7) : ip;
  return IPV4.test(bare) ? bare : null;
}

function looksLikeIpv6(ip: string): boolean {
  return ip.includes(":") && /^[0-9a-fA-F:.]+(%[\w.-]+)?$/.test(ip);
}

// ---------------------------------------------------------------- CEF

/** Header fields: backslash and pipe are escaped; a newline is not allowed there and becomes a space. */
export function cefHeaderEscape(value: string): string {
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|[\r\n]/g, " ");
}

/** Extension values: backslash and equals are escaped, CR and LF are written as `\r` and `\n`. */
export function cefValueEscape(value: string): string {
  return value.replace(/[\\=\r\n]/g, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : `\\${c}`));
}

/**
 * `CEF:0|Stint|Stint|<version>|<action>|<label>|<severity>|<extension>`, without
 * a syslog header (the transport adds one). Absent (null) fields are left out.
 */
export function toCef(event: AuditEvent, productVersion: string = UNKNOWN_VERSION): string {
  const header = [
    "CEF:0",
    cefHeaderEscape(VENDOR),
    cefHeaderEscape(PRODUCT),
    cefHeaderEscape(productVersion),
    cefHeaderEscape(event.action),
    cefHeaderEscape(humanLabel(event.action)),
    String(SEVERITY[event.outcome].cef),
  ].join("|");

  const ext: [string, string | number | null][] = [
    ["rt", Date.parse(event.time)],
    ["suser", event.actor],
    ["suid", event.actorId],
    ["duser", subjectUser(event.subject)?.name ?? null],
    ...sourceAddress(event.sourceIp),
    ["requestClientApplication", event.userAgent],
    ["outcome", event.outcome],
    ["msg", event.reason],
    ["externalId", event.seq],
    ["cs1", event.hash],
    ["cs1Label", "hash"],
    ["cs2", event.subject],
    ["cs2Label", event.subject === null ? null : "subject"],
    ["cs3", event.correlationId],
    ["cs3Label", event.correlationId === null ? null : "correlationId"],
    ["cs4", event.id],
    ["cs4Label", "eventId"],
    ["cs5", event.prevHash],
    ["cs5Label", "prevHash"],
    ...details(event.details),
  ];
  const extension = ext
    .filter((pair): pair is [string, string | number] => pair[1] !== null)
    .map(([key, value]) => `${key}=${cefValueEscape(String(value))}`)
    .join(" ");
  return `${header}|${extension}`;
}

function sourceAddress(ip: string | null): [string, string | null][] {
  if (ip === null) return [];
  const v4 = asIpv4(ip);
  if (v4 !== null) return [["src", v4]];
  if (looksLikeIpv6(ip))
    return [
      ["c6a2", ip],
      ["c6a2Label", "Source IPv6 Address"],
    ];
  return [["shost", ip]];
}

function details(value: Record<string, unknown>): [string, string][] {
  if (Object.keys(value).length === 0) return [];
  return [
    ["cs6", JSON.stringify(value)],
    ["cs6Label", "details"],
  ];
}

// ---------------------------------------------------------------- OCSF

interface OcsfClass {
  categoryUid: number;
  categoryName: string;
  classUid: number;
  className: string;
  activities: Readonly<Record<string, readonly [number, string]>>;
}

const OTHER: readonly [number, string] = [99, "Other"];

const LOGON: readonly [number, string] = [1, "Logon"];
const LOGOFF: readonly [number, string] = [2, "Logoff"];
const AUTHENTICATION: OcsfClass = {
  categoryUid: 3,
  categoryName: "Identity & Access Management",
  classUid: 3002,
  className: "Authentication",
  activities: {
    login: LOGON,
    logon: LOGON,
    signin: LOGON,
    sign_in: LOGON,
    start: LOGON,
    logout: LOGOFF,
    logoff: LOGOFF,
    signout: LOGOFF,
    sign_out: LOGOFF,
    end: LOGOFF,
  },
};

const ACCOUNT_CHANGE: OcsfClass = {
  categoryUid: 3,
  categoryName: "Identity & Access Management",
  classUid: 3001,
  className: "Account Change",
  activities: {
    create: [1, "Create"],
    enable: [2, "Enable"],
    password_change: [3, "Password Change"],
    password_reset: [4, "Password Reset"],
    disable: [5, "Disable"],
    delete: [6, "Delete"],
    lock: [9, "Lock"],
  },
};

/** mfa.* verbs, checked before the generic Account Change verbs. */
const MFA_ACTIVITIES: Readonly<Record<string, readonly [number, string]>> = {
  enroll: [10, "MFA Factor Enable"],
  enable: [10, "MFA Factor Enable"],
  remove: [11, "MFA Factor Disable"],
  disable: [11, "MFA Factor Disable"],
  reset: [11, "MFA Factor Disable"],
};

const API_ACTIVITY: OcsfClass = {
  categoryUid: 6,
  categoryName: "Application Activity",
  classUid: 6003,
  className: "API Activity",
  activities: {
    create: [1, "Create"],
    read: [2, "Read"],
    get: [2, "Read"],
    list: [2, "Read"],
    export: [2, "Read"],
    update: [3, "Update"],
    delete: [4, "Delete"],
  },
};

const CLASS_BY_PREFIX: Readonly<Record<string, OcsfClass>> = {
  auth: AUTHENTICATION,
  session: AUTHENTICATION,
  user: ACCOUNT_CHANGE,
  group: ACCOUNT_CHANGE,
  token: ACCOUNT_CHANGE,
  mfa: ACCOUNT_CHANGE,
};

/** The OCSF class and activity of an action: class by its first segment, activity by its last. */
export function ocsfClassOf(action: string): {
  categoryUid: number;
  categoryName: string;
  classUid: number;
  className: string;
  activityId: number;
  activityName: string;
} {
  const segments = action.toLowerCase().split(".");
  const prefix = segments.length > 1 ? segments[0]! : "";
  const verb = (segments.at(-1) ?? "").replace(/-/g, "_");
  const cls = Object.hasOwn(CLASS_BY_PREFIX, prefix) ? CLASS_BY_PREFIX[prefix]! : API_ACTIVITY;
  const fromMfa = prefix === "mfa" && Object.hasOwn(MFA_ACTIVITIES, verb) ? MFA_ACTIVITIES[verb] : undefined;
  const [activityId, activityName] = fromMfa ?? (Object.hasOwn(cls.activities, verb) ? cls.activities[verb]! : OTHER);
  return {
    categoryUid: cls.categoryUid,
    categoryName: cls.categoryName,
    classUid: cls.classUid,
    className: cls.className,
    activityId,
    activityName,
  };
}

export interface OcsfUser {
  name?: string;
  uid?: string;
}

/** An OCSF 1.1.0 event (the attributes Stint fills). */
export interface OcsfEvent {
  category_uid: number;
  category_name: string;
  class_uid: number;
  class_name: string;
  activity_id: number;
  activity_name: string;
  type_uid: number;
  type_name: string;
  time: number;
  severity_id: number;
  severity: string;
  status_id: 1 | 2;
  status: "Success" | "Failure";
  status_detail: AuditOutcome;
  message?: string;
  actor: { user: OcsfUser };
  user?: OcsfUser;
  api?: { operation: string; service: { name: string } };
  src_endpoint: { ip: string } | { name: string };
  http_request?: { user_agent: string };
  metadata: {
    version: string;
    product: { name: string; vendor_name: string; version?: string };
    uid: string;
    correlation_uid?: string;
  };
  unmapped: {
    seq: number;
    action: string;
    hash: string;
    prev_hash: string;
    subject: string | null;
    details: Record<string, unknown>;
  };
}

/**
 * Maps an event to OCSF 1.1.0. Authentication and Account Change require a
 * `user`: the user the subject names, else the actor. API Activity requires
 * `api` and `src_endpoint`; an event without a source IP (Stint's own workers)
 * gets `src_endpoint: { name: "stint" }`.
 */
export function toOcsf(event: AuditEvent, productVersion?: string): OcsfEvent {
  const cls = ocsfClassOf(event.action);
  const severity = SEVERITY[event.outcome];
  const success = event.outcome === "success";
  const actorUser: OcsfUser = { name: event.actor, ...(event.actorId !== null && { uid: event.actorId }) };
  return {
    category_uid: cls.categoryUid,
    category_name: cls.categoryName,
    class_uid: cls.classUid,
    class_name: cls.className,
    activity_id: cls.activityId,
    activity_name: cls.activityName,
    type_uid: cls.classUid * 100 + cls.activityId,
    type_name: `${cls.className}: ${cls.activityName}`,
    time: Date.parse(event.time),
    severity_id: severity.ocsfId,
    severity: severity.ocsfName,
    status_id: success ? 1 : 2,
    status: success ? "Success" : "Failure",
    status_detail: event.outcome,
    ...(event.reason !== null && { message: event.reason }),
    actor: { user: actorUser },
    ...(cls.classUid !== API_ACTIVITY.classUid && { user: subjectUser(event.subject) ?? actorUser }),
    ...(cls.classUid === API_ACTIVITY.classUid && { api: { operation: event.action, service: { name: PRODUCT } } }),
    src_endpoint: event.sourceIp !== null ? { ip: event.sourceIp } : { name: "stint" },
    ...(event.userAgent !== null && { http_request: { user_agent: event.userAgent } }),
    metadata: {
      version: OCSF_VERSION,
      product: { name: PRODUCT, vendor_name: VENDOR, ...(productVersion !== undefined && { version: productVersion }) },
      uid: event.id,
      ...(event.correlationId !== null && { correlation_uid: event.correlationId }),
    },
    unmapped: {
      seq: event.seq,
      action: event.action,
      hash: event.hash,
      prev_hash: event.prevHash,
      subject: event.subject,
      details: event.details,
    },
  };
}
