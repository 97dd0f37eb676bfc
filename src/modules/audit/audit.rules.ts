/** Pure rules of the audit chain: canonical encoding, hashing, verification. */
import canonicalize from "canonicalize";
import { createHash } from "node:crypto";
import type { AuditEvent, VerifyResult } from "./audit.types.js";

export const GENESIS_HASH = "0".repeat(64);

/** SHA-256 over the RFC 8785 canonical JSON of every field but the hash itself. */
export function hashEvent(event: Omit<AuditEvent, "hash">): string {
  const canonical = canonicalize({
    seq: event.seq,
    id: event.id,
    time: event.time,
    actor: event.actor,
    actorId: event.actorId,
    action: event.action,
    subject: event.subject,
    outcome: event.outcome,
    reason: event.reason,
    correlationId: event.correlationId,
    sourceIp: event.sourceIp,
    userAgent: event.userAgent,
    details: event.details,
    prevHash: event.prevHash,
  });
  if (canonical === undefined) throw new Error("audit event cannot be encoded");
  return createHash("sha256").update(canonical).digest("hex");
}

/** Links `event` after `prev` (seq and hash) and computes its hash. */
export function chain(
  event: Omit<AuditEvent, "seq" | "prevHash" | "hash">,
  prev: { seq: number; hash: string },
): AuditEvent {
  const linked = { ...event, seq: prev.seq + 1, prevHash: prev.hash };
  return { ...linked, hash: hashEvent(linked) };
}

/** The text an audit checkpoint signature covers. */
export function checkpointMessage(seq: number, hash: string): string {
  return `stint-audit-checkpoint:v1:${seq}:${hash}`;
}

export interface CheckpointCheck {
  seq: number;
  hash: string;
  signatureValid: boolean;
}

/**
 * Incremental verifier: give it the checkpoints, feed events in seq order,
 * then the head row. The first problem found names its seq.
 */
export function createChainVerifier(checkpoints: readonly CheckpointCheck[] = []) {
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let count = 0;
  let broken: { seq: number; problem: string } | undefined;
  const bySeq = new Map(checkpoints.map((cp) => [cp.seq, cp]));

  const fail = (seq: number, problem: string) => {
    broken ??= { seq, problem };
  };

  return {
    /** Returns false once the chain is broken (callers may stop reading). */
    push(event: AuditEvent): boolean {
      if (broken) return false;
      if (event.seq !== expectedSeq) {
        fail(
          expectedSeq,
          event.seq > expectedSeq ? `event ${expectedSeq} is missing` : `event ${event.seq} is out of order`,
        );
        return false;
      }
      if (event.prevHash !== prevHash) {
        fail(event.seq, `event ${event.seq} does not point at the hash of event ${event.seq - 1}`);
        return false;
      }
      if (hashEvent(event) !== event.hash) {
        fail(event.seq, `event ${event.seq} was altered: its content does not match its hash`);
        return false;
      }
      const cp = bySeq.get(event.seq);
      if (cp && !cp.signatureValid) fail(cp.seq, `the checkpoint at ${cp.seq} has an invalid signature`);
      else if (cp && cp.hash !== event.hash) fail(cp.seq, `event ${cp.seq} differs from its signed checkpoint`);
      if (broken) return false;
      prevHash = event.hash;
      expectedSeq += 1;
      count += 1;
      return true;
    },
    finish(head: { seq: number; hash: string }): VerifyResult {
      const lastSeq = expectedSeq - 1;
      if (!broken) {
        if (head.seq > lastSeq)
          fail(lastSeq + 1, `events ${lastSeq + 1}..${head.seq} are missing from the end of the log`);
        else if (head.seq < lastSeq) fail(head.seq + 1, `event ${head.seq + 1} was appended outside the chain head`);
        else if (head.hash !== prevHash) fail(head.seq, `event ${head.seq} does not match the chain head`);
        const beyond = checkpoints.find((cp) => cp.seq > lastSeq);
        if (beyond) fail(lastSeq + 1, `a signed checkpoint covers event ${beyond.seq}, which is missing`);
      }
      if (broken) return { ok: false, count, brokenSeq: broken.seq, problem: broken.problem };
      return { ok: true, count, headSeq: lastSeq, checkpoints: checkpoints.length };
    },
  };
}
