import { z } from "zod";
import { isoTime, name } from "./common.js";

export const auditEvent = z.object({
  seq: z.number().int(),
  id: z.string(),
  time: isoTime,
  actor: z.string(),
  actorId: z.string().nullable(),
  action: z.string(),
  subject: z.string().nullable(),
  outcome: z.enum(["success", "denied", "failed"]),
  reason: z.string().nullable(),
  correlationId: z.string().nullable(),
  sourceIp: z.string().nullable(),
  userAgent: z.string().nullable(),
  details: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});

/** The filters the events list and the export share. */
const eventFilters = {
  since: isoTime.optional(),
  until: isoTime.optional(),
  /** Exactly this actor ("alice", "system:scheduler"). */
  actor: z.string().trim().min(1).max(200).optional(),
  /** Exactly this action, or every action that starts with it when it ends with "*" ("request.*"). */
  action: z
    .string()
    .trim()
    .regex(
      /^[a-z0-9_.]{1,100}\*?$/,
      "must be an action like request.approved, or a prefix ending with * like request.*",
    )
    .optional(),
  /** Events about this role (their details name it). */
  role: name.optional(),
  /** Exactly this subject ("user:alice", "role:db-admin"), or every subject that starts with it when it ends with "*". */
  target: z.string().trim().min(1).max(300).optional(),
  outcome: z.enum(["success", "denied", "failed"]).optional(),
};

/** Counting stops here: past it the answer says "at least". */
export const AUDIT_COUNT_CAP = 100_000;

export const auditQuery = z.strictObject({
  afterSeq: z.coerce.number().int().min(0).default(0),
  /** Newest first: events before this sequence number (the next page's `nextBeforeSeq`). */
  beforeSeq: z.coerce.number().int().min(1).optional(),
  order: z.enum(["asc", "desc"]).default("asc"),
  ...eventFilters,
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  /** count=true: the answer says how many events match the filters in all (`total`, up to AUDIT_COUNT_CAP). */
  count: z
    .enum(["true", "false"])
    .transform((v) => v === "true")
    .optional(),
});
export const auditPage = z.object({
  items: z.array(auditEvent),
  /** Oldest-first paging: pass as afterSeq for the next page; null at the end. */
  nextAfterSeq: z.number().int().nullable(),
  /** Newest-first paging (order=desc): pass as beforeSeq for the next page; null at the end. */
  nextBeforeSeq: z.number().int().nullable().optional(),
  /** With count=true: how many events match the filters in all (every page), at most AUDIT_COUNT_CAP. */
  total: z.number().int().optional(),
  /** With count=true: more than `total` match (counting stopped at AUDIT_COUNT_CAP). */
  totalCapped: z.boolean().optional(),
});

/** A signed audit head held outside the database (the anchor file, GET /v1/audit/anchor, the export stream). */
export const auditAnchor = z.strictObject({
  format: z.literal("stint-audit-anchor/v1"),
  seq: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  hash: z.string().regex(/^[0-9a-f]{64}$/, "must be a SHA-256 hash in lower-case hex"),
  every: z.number().int().min(1).max(1_000_000),
  time: isoTime,
  keyId: z.string().min(1).max(200),
  signature: z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, "must be a base64url signature"),
});

export const verifyRequest = z.strictObject({
  /** Check that the chain still holds this signed head (same seq, same hash). */
  anchor: auditAnchor.optional(),
});

export const verifyResult = z.union([
  z.object({
    ok: z.literal(true),
    count: z.number().int(),
    headSeq: z.number().int(),
    checkpoints: z.number().int(),
    /** The anchored seq the chain was checked against, when an anchor was given. */
    anchorSeq: z.number().int().optional(),
    /** Events committed after verify began and not chained yet (verified next time). */
    pending: z.number().int().optional(),
  }),
  z.object({ ok: z.literal(false), count: z.number().int(), brokenSeq: z.number().int(), problem: z.string() }),
]);

/**
 * The export: every event matching the filters (none: the whole chain, with its signed heads), oldest first, up
 * to the newest event when the export began. `csv` is for people (a spreadsheet); the SIEM formats are the others.
 */
export const exportQuery = z.strictObject({
  format: z.enum(["jsonl", "cef", "ocsf", "csv"]).default("jsonl"),
  ...eventFilters,
});
