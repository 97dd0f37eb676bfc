/**
 * The evidence report: who had privileged access to what between two dates, approved by whom, with what
 * justification, and what they did (sessions and their recordings' hashes), with the seeds' SLIs over the same
 * scope. Shared by server, CLI and web.
 */
import { z } from "zod";
import { isoTime, name } from "./common.js";

/** The report's scope: a period (from inclusive, to exclusive), optionally one role and/or one target. */
export const evidenceQuery = z
  .strictObject({
    from: isoTime,
    to: isoTime,
    role: name.optional(),
    target: name.optional(),
    format: z.enum(["json", "csv"]).default("json"),
  })
  .refine((q) => Date.parse(q.from) < Date.parse(q.to), { message: "from must be before to", path: ["from"] });
export type EvidenceQuery = z.infer<typeof evidenceQuery>;

export const evidenceDecision = z.object({
  approver: z.string(),
  decision: z.enum(["approve", "deny"]),
  reason: z.string().nullable(),
  decidedAt: isoTime,
  stage: z.number().int(),
});

export const evidenceSession = z.object({
  id: z.uuid(),
  kind: z.string(),
  login: z.string(),
  startedAt: isoTime,
  endedAt: isoTime.nullable(),
  endReason: z.string().nullable(),
  recording: z.object({ key: z.string(), sha256: z.string(), bytes: z.number().int().nullable() }).nullable(),
});

export const evidenceReview = z.object({
  itemId: z.uuid(),
  status: z.enum(["open", "closed"]),
  outcome: z.string().nullable(),
  finding: z.string().nullable(),
  closedBy: z.string().nullable(),
  closedAt: isoTime.nullable(),
});

export const evidenceActivation = z.object({
  requestId: z.uuid(),
  role: z.string(),
  target: z.string(),
  risk: z.string(),
  requester: z.string(),
  breakGlass: z.boolean(),
  state: z.string(),
  justification: z.string(),
  ticket: z.string().nullable(),
  /** How it was approved: by people (decisions), by the policy (none needed), or break-glass (reviewed after). */
  approval: z.enum(["approved", "automatic", "break-glass"]),
  decisions: z.array(evidenceDecision),
  submittedAt: isoTime,
  activatedAt: isoTime,
  expiresAt: isoTime.nullable(),
  endedAt: isoTime.nullable(),
  endReason: z.string().nullable(),
  endedBy: z.string().nullable(),
  sessions: z.array(evidenceSession),
  /** The break-glass review item, when there is one. */
  review: evidenceReview.nullable(),
});
export type EvidenceActivation = z.infer<typeof evidenceActivation>;

const latency = z.object({
  count: z.number().int(),
  medianMs: z.number().nullable(),
  p95Ms: z.number().nullable(),
  maxMs: z.number().nullable(),
});
const ratio = z.object({
  numerator: z.number().int(),
  denominator: z.number().int(),
  /** numerator / denominator, or null when the denominator is 0. */
  value: z.number().nullable(),
});

export const evidenceSlis = z.object({
  timeToElevate: latency,
  elevationSuccessRate: ratio,
  approvalLatency: latency,
  approvedJustification: ratio,
  recordingCoverage: ratio,
  revocationLatency: latency,
});
export type EvidenceSlis = z.infer<typeof evidenceSlis>;

export const evidenceReport = z.object({
  scope: z.object({ from: isoTime, to: isoTime, role: z.string().nullable(), target: z.string().nullable() }),
  generatedAt: isoTime,
  generatedBy: z.string(),
  activations: z.array(evidenceActivation),
  /** Requests submitted in the period (the denominator of the success rate), by final state. */
  requests: z.record(z.string(), z.number().int()),
  slis: evidenceSlis,
  /** SHA-256 (hex) of the RFC 8785 canonical JSON of this report without this field; audited. */
  sha256: z.string(),
});
export type EvidenceReportDto = z.infer<typeof evidenceReport>;
