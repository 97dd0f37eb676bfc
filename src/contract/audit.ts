import { z } from "zod";
import { isoTime } from "./common.js";

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

export const auditQuery = z.strictObject({
  afterSeq: z.coerce.number().int().min(0).default(0),
  since: isoTime.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});
export const auditPage = z.object({ items: z.array(auditEvent), nextAfterSeq: z.number().int().nullable() });

export const verifyResult = z.union([
  z.object({ ok: z.literal(true), count: z.number().int(), headSeq: z.number().int(), checkpoints: z.number().int() }),
  z.object({ ok: z.literal(false), count: z.number().int(), brokenSeq: z.number().int(), problem: z.string() }),
]);

export const exportQuery = z.strictObject({
  format: z.enum(["jsonl", "cef", "ocsf"]).default("jsonl"),
  since: isoTime.optional(),
});
