export type AuditOutcome = "success" | "denied" | "failed";

/** What a service says happened; the log adds seq, time and the chain. */
export interface AuditInput {
  action: string;
  outcome: AuditOutcome;
  subject?: string | null | undefined;
  reason?: string | null | undefined;
  details?: Record<string, unknown> | undefined;
}

export interface AuditEvent {
  seq: number;
  id: string;
  time: string;
  actor: string;
  actorId: string | null;
  action: string;
  subject: string | null;
  outcome: AuditOutcome;
  reason: string | null;
  correlationId: string | null;
  sourceIp: string | null;
  userAgent: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export type VerifyResult =
  | { ok: true; count: number; headSeq: number; checkpoints: number }
  | { ok: false; count: number; brokenSeq: number; problem: string };
