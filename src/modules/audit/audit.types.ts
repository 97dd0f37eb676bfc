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

/**
 * The columns of `audit_events`, in the order reads select them (`audit.store.ts`) and the CSV export
 * writes them (`audit.csv.ts`, all but `id`): the one list both derive from.
 */
export const EVENT_ROW_COLUMNS = [
  "seq",
  "id",
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

export type EventRowColumn = (typeof EVENT_ROW_COLUMNS)[number];

/** An event as its transaction writes it: not chained yet (no seq, no hashes). */
export type PendingAuditEvent = Omit<AuditEvent, "seq" | "prevHash" | "hash">;

/**
 * `pending`: events committed but not chained yet when verify finished (the sequencer chains them within
 * its lag); the chained prefix is what was verified.
 */
export type VerifyResult =
  | { ok: true; count: number; headSeq: number; checkpoints: number; anchorSeq?: number; pending?: number }
  | { ok: false; count: number; brokenSeq: number; problem: string };

/**
 * The latest signed head, as shipped outside the database (the anchor file, GET /v1/audit/anchor and a
 * record in the SIEM export). `stint audit verify --anchor FILE` checks that the chain still holds it.
 */
export interface AuditAnchor {
  format: "stint-audit-anchor/v1";
  seq: number;
  hash: string;
  /** The checkpoint interval in force when it was signed. */
  every: number;
  /** When it was signed (ISO 8601); covered by the signature. */
  time: string;
  keyId: string;
  /** Ed25519 over `stint-audit-checkpoint:v2:<seq>:<hash>:<every>:<time>`, base64url. */
  signature: string;
}

/** A checkpoint's row: signed for the event at `seq`, written by the statement that chains it or by `checkpoint`. */
export interface CheckpointValues {
  seq: number;
  hash: string;
  every: number;
  keyId: string;
  signature: string;
  signedAt: Date;
}
