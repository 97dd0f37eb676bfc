/**
 * Tells the other admins and security users that a change request waits for them: one notification through the
 * outbox, written in the transaction that creates the change request (so it exists exactly when the request does),
 * and once per change request (its dedupe key is the request's id). It names the author, the tier and what widens,
 * never the file itself: a configuration file may name vault paths and entitlements, which stay in Stint.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { Notification, Notifier } from "../notify/index.js";
import type { OutboxService } from "../outbox/index.js";

/** What the change request service says when it keeps a change request (change-requests.service `hold`). */
export interface ChangeRequestCreated {
  id: string;
  author: string;
  tier: string;
  /** e.g. "role db-admin: risk lowered (high → low)"; names and reasons only. */
  widening: string[];
  expiresAt: Date;
  createdAt: Date;
  /** E-mail addresses of who may approve (not the author). */
  recipients: string[];
}

export function createChangeRequestNotifications(deps: {
  notifier: Pick<Notifier, "enqueueNotification">;
  outbox: Pick<OutboxService, "enqueue">;
  publicUrl: string;
}) {
  return async (tx: Kysely<Database>, created: ChangeRequestCreated): Promise<void> => {
    const listed = created.widening.slice(0, 10).map((line) => (line.length > 300 ? `${line.slice(0, 299)}…` : line));
    const notification: Notification = {
      event: "change_request.created",
      severity: "warning",
      title: `${created.author} asks a second admin to approve a change (risk ${created.tier})`,
      text: [
        `A change to the catalog widens access at risk ${created.tier} and waits for another admin's approval.`,
        ...listed.map((line) => `- ${line}`),
        created.widening.length > listed.length ? `(and ${created.widening.length - listed.length} more)` : null,
        `Review it with: stint changes show ${created.id}, then stint changes approve ${created.id} or stint changes deny ${created.id}.`,
      ]
        .filter((line): line is string => line !== null)
        .join("\n"),
      fields: [
        { label: "Change request", value: created.id },
        { label: "Author", value: created.author },
        { label: "Risk", value: created.tier },
        { label: "Expires", value: created.expiresAt.toISOString() },
      ],
      links: [{ label: "Open", url: `${deps.publicUrl.replace(/\/$/, "")}/admin` }],
      ...(created.recipients.length > 0 ? { recipients: created.recipients.slice(0, 50) } : {}),
      occurredAt: created.createdAt.toISOString(),
    };
    await deps.notifier.enqueueNotification(tx, deps.outbox, notification, {
      dedupeKey: `change_request.created:${created.id}`,
    });
  };
}
