/**
 * A use of a break-glass role (its activation, and each extension of it): no approval, so it is always loud and
 * reviewed: a review item opened, every channel told (`breakglass.used`), and the audit event the anomaly rule
 * `breakGlass` reads, all in the caller's transaction. An extension is a use of its own (finding 33): extending
 * silently would stretch an emergency someone had already reviewed, with nobody told.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { RequestEvent } from "./request-context.js";

const REVIEW_DUE_MS = 3 * 24 * 3600_000;

export async function breakGlassUse(
  tx: Kysely<Database>,
  emit: (tx: Kysely<Database>, event: RequestEvent) => Promise<unknown>,
  use: {
    /** The activation (the event's subject: an alert's `revoke` ends it). */
    activationId: string;
    /** The extension request, when the use is an extension (the review item's subject then). */
    extensionId?: string;
    role: string;
    requesterId: string;
    requester: string;
    reason: string;
    now: Date;
  },
): Promise<AuditInput> {
  const reviewId = newId();
  await tx
    .insertInto("review_items")
    .values({
      id: reviewId,
      kind: "break-glass-activation",
      subject: `request:${use.extensionId ?? use.activationId}`,
      actor_id: use.requesterId,
      reason: use.reason,
      status: "open",
      created_at: use.now,
      due_at: new Date(use.now.getTime() + REVIEW_DUE_MS),
    })
    .execute();
  await emit(tx, {
    type: "break_glass",
    requestId: use.activationId,
    role: use.role,
    requester: use.requester,
    reason: use.reason,
  });
  return {
    action: "breakglass.used",
    outcome: "success",
    subject: `request:${use.activationId}`,
    reason: use.reason,
    details: {
      role: use.role,
      reviewRequired: true,
      reviewId,
      ...(use.extensionId ? { extension: use.extensionId } : {}),
    },
  };
}
