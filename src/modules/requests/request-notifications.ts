/**
 * Turns request events into notifications in the outbox: approvers hear of
 * what waits for them, requesters hear every outcome. Runs inside the
 * request's transaction, so a notification exists exactly when its change does.
 * Many events at once (the scheduler ending a batch of activations) cost a
 * constant number of statements: one read of the requesters' addresses and one
 * insert of all their outbox rows.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import type { Clock } from "../../lib/clock.js";
import type { Notification, Notifier } from "../notify/index.js";
import type { OutboxService } from "../outbox/index.js";
import { isNamedBy, currentApprovers } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import type { RequestEvent } from "./requests.service.js";
import type { DecisionLinks } from "./decision-links.js";
import { policySpec } from "../../contract/catalog.js";
import { formatDuration } from "../../lib/duration.js";
import { approverMfaHint } from "./approver-mfa.rules.js";

const TITLES: Record<RequestEvent["type"], (e: RequestEvent) => string> = {
  expiring: (e) => `${e.role} for ${e.requester} ends soon`,
  submitted: (e) => `${e.requester} asks to activate ${e.role}`,
  approved: (e) =>
    `${e.role} for ${e.requester} was approved${e.by ? ` by ${e.by}` : ""}${e.startAt ? `; it starts at ${e.startAt}` : ""}`,
  denied: (e) => `${e.role} for ${e.requester} was denied${e.by ? ` by ${e.by}` : ""}`,
  escalated: (e) => `${e.requester}'s request for ${e.role} was escalated`,
  activated: (e) => `${e.role} is active for ${e.requester}`,
  expired: (e) => `${e.role} for ${e.requester} has expired`,
  pending_expired: (e) => `The request for ${e.role} by ${e.requester} expired without a decision`,
  revoked: (e) => `${e.role} for ${e.requester} was revoked${e.by ? ` by ${e.by}` : ""}`,
  deactivated: (e) => `${e.requester} ended ${e.role}`,
  cancelled: (e) => `${e.requester} cancelled the request for ${e.role}`,
  extended: (e) => `${e.role} for ${e.requester} was extended`,
  failed: (e) => `${e.role} for ${e.requester} could not be activated at the target`,
  break_glass: (e) => `BREAK-GLASS: ${e.requester} activated ${e.role}`,
};

const EVENT_NAMES: Record<RequestEvent["type"], string> = {
  expiring: "request.expiring",
  submitted: "request.submitted",
  approved: "request.approved",
  denied: "request.denied",
  escalated: "request.escalated",
  activated: "request.activated",
  expired: "request.expired",
  pending_expired: "request.expired",
  revoked: "request.revoked",
  deactivated: "request.deactivated",
  cancelled: "request.cancelled",
  extended: "request.extended",
  failed: "request.failed",
  break_glass: "breakglass.used",
};

/**
 * What approving asks of an approver's own MFA (the decision's rule, `approverMfaHint`), as a line of the approvers'
 * notification, so that they know before they open it; null when it asks nothing. The approval checks it then.
 */
function approverMfaLine(row: requestStore.RequestRow): string | null {
  const spec = policySpec.safeParse(row.policy_snapshot);
  if (!spec.success) return null;
  // No session here: only what the rule asks (required, window, passkey only), not whether anyone has it now.
  const hint = approverMfaHint(spec.data, row.role_risk, {}, new Date(0));
  if (!hint.required) return null;
  const within = formatDuration((hint.withinSeconds ?? 0) * 1000);
  return hint.passkeyOnly
    ? `Approving needs a passkey check of your own within the last ${within}: the page asks for it.`
    : `Approving needs your own MFA within the last ${within}: the page asks for a one-time code or a passkey, or use stint approve --otp -.`;
}

/** The principals who may decide the request's current stage now (their emails), and what approving asks of them. */
async function approversOf(db: Kysely<Database>, requestId: string): Promise<{ emails: string[]; mfa: string | null }> {
  const row = await requestStore.findRequest(db, requestId);
  const stage = row ? requestStore.stagesOf(row)[row.stage_index] : undefined;
  if (!row || !stage) return { emails: [], mfa: null };
  const candidates = await db
    .selectFrom("principals")
    .select(["id", "name", "email"])
    .where("status", "=", "active")
    .where("email", "is not", null)
    .execute();
  const memberships = await db
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .select(["group_members.principal_id", "groups.name"])
    .execute();
  const emails = candidates
    .filter((p) => p.id !== row.requester_id)
    .filter((p) =>
      isNamedBy(
        currentApprovers(stage),
        { id: p.id, name: p.name, groups: memberships.filter((m) => m.principal_id === p.id).map((m) => m.name) },
        row.requester_manager_id,
      ),
    )
    .map((p) => p.email!);
  return { emails, mfa: approverMfaLine(row) };
}

export function createRequestNotifications(deps: {
  notifier: Notifier;
  outbox: Pick<OutboxService, "enqueue" | "enqueueMany">;
  clock: Clock;
  publicUrl: string;
  decisionLinks?: Pick<DecisionLinks, "sign">;
}) {
  /** The notification of one event, to `recipients`, handed to the notifier with `outbox`. */
  async function enqueue(
    tx: Kysely<Database>,
    outbox: Pick<OutboxService, "enqueue">,
    event: RequestEvent,
    { emails: recipients, mfa }: { emails: string[]; mfa: string | null },
  ): Promise<void> {
    const toApprovers = event.type === "submitted" || event.type === "escalated";
    const link = `${deps.publicUrl.replace(/\/$/, "")}/requests/${event.requestId}`;
    // One-time, expiring, and useless without the approver's own sign-in: see decision-links.ts. The token
    // rides in the fragment, which browsers never send to a server: no request log, proxy log or Referer
    // holds it; the page at /requests/<id> reads it and posts it in the decision's body.
    const decisionLink = async (action: "approve" | "deny") =>
      deps.decisionLinks
        ? `${link}#decide=${action}&token=${await deps.decisionLinks.sign(event.requestId, action)}`
        : `${link}#decide=${action}`;
    const notification: Notification = {
      event: EVENT_NAMES[event.type],
      severity:
        event.type === "break_glass"
          ? "critical"
          : event.type === "denied" || event.type === "revoked" || event.type === "failed"
            ? "warning"
            : "info",
      title: TITLES[event.type](event),
      text:
        [
          event.reason ? `Reason: ${event.reason}` : null,
          toApprovers ? mfa : null,
          toApprovers
            ? `Decide with: stint approve ${event.requestId} --reason "…" or stint deny ${event.requestId} --reason "…"`
            : null,
        ]
          .filter(Boolean)
          .join("\n") || TITLES[event.type](event),
      fields: [
        { label: "Role", value: event.role },
        { label: "Requester", value: event.requester },
        { label: "Request", value: event.requestId },
      ],
      links: toApprovers
        ? [
            { label: "Approve", url: await decisionLink("approve"), style: "primary" },
            { label: "Deny", url: await decisionLink("deny"), style: "danger" },
          ]
        : [{ label: "Open", url: link }],
      ...(recipients.length > 0 ? { recipients } : {}),
      occurredAt: deps.clock.now().toISOString(),
    };
    await deps.notifier.enqueueNotification(tx, outbox, notification, {
      dedupeKey: `${event.type}:${event.requestId}:${deps.clock.now().getTime()}`,
    });
  }

  /** Approvers of what waits for them (with what approving asks of their MFA); the requester of anything else. */
  async function recipientsOf(tx: Kysely<Database>, event: RequestEvent, emails: Map<string, string | null>) {
    if (event.type === "submitted" || event.type === "escalated") return approversOf(tx, event.requestId);
    const email = emails.get(event.requester);
    return { emails: email ? [email] : [], mfa: null };
  }

  return async (tx: Kysely<Database>, events: RequestEvent | RequestEvent[]): Promise<void> => {
    const all = Array.isArray(events) ? events : [events];
    if (all.length === 0) return;
    const names = [...new Set(all.map((event) => event.requester))];
    const emails = new Map(
      (await tx.selectFrom("principals").select(["name", "email"]).where("name", "in", names).execute()).map((p) => [
        p.name,
        p.email,
      ]),
    );
    if (all.length === 1) return enqueue(tx, deps.outbox, all[0]!, await recipientsOf(tx, all[0]!, emails));
    // The notifier writes one row per channel through `outbox.enqueue`: collected here, then written in one
    // insert. What it reports per row (written or a duplicate) is not used here.
    const rows: Parameters<OutboxService["enqueue"]>[1][] = [];
    const collecting = {
      enqueue: async (_tx: Kysely<Database>, input: Parameters<OutboxService["enqueue"]>[1]) => {
        rows.push(input);
        return true;
      },
    };
    for (const event of all) await enqueue(tx, collecting, event, await recipientsOf(tx, event, emails));
    await deps.outbox.enqueueMany(tx, rows);
  };
}
