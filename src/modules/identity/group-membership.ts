/**
 * Taking principals out of groups, in the caller's transaction: the membership rows deleted and, for everyone who
 * lost one, what they activated on an eligibility held through it ended (`onAccessBasisLost`: pending requests
 * cancelled, activations revoked at the targets through the outbox). One sequence for `stint groups remove`
 * (directory) and single sign-on's group sync, so access never outlives a membership however it ended.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/schema.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { LifecycleDeps } from "./principal-lifecycle.js";

export interface MembershipRemoval {
  group: { id: string; name: string };
  principal: { id: string; name: string };
}

/**
 * Adds each membership that does not exist yet, in the caller's transaction; returns one `group.member_added`
 * event per membership added (none when all existed). One sequence for `stint groups add` (directory) and SCIM.
 */
export async function addMemberships(
  tx: Kysely<Database>,
  additions: MembershipRemoval[],
  now: Date,
  cause: { source?: string } = {},
): Promise<AuditInput[]> {
  const events: AuditInput[] = [];
  for (const { group, principal } of additions) {
    const added = await tx
      .insertInto("group_members")
      .values({ group_id: group.id, principal_id: principal.id, added_at: now })
      .onConflict((oc) => oc.columns(["group_id", "principal_id"]).doNothing())
      .executeTakeFirst();
    if (Number(added.numInsertedOrUpdatedRows ?? 0) === 0) continue;
    events.push({
      action: "group.member_added",
      outcome: "success",
      subject: `group:${group.name}`,
      details: { principal: principal.name, ...(cause.source ? { source: cause.source } : {}) },
    });
  }
  return events;
}

/**
 * Removes each membership that exists; returns the audit events of what changed (one `group.member_removed` per
 * membership removed, then the events of the access that ended). Nothing removed: no events.
 */
export async function removeMemberships(
  tx: Kysely<Database>,
  deps: Pick<LifecycleDeps, "onAccessBasisLost">,
  removals: MembershipRemoval[],
  cause: { by: string; source?: string },
): Promise<AuditInput[]> {
  const events: AuditInput[] = [];
  const lost = new Map<string, string[]>();
  for (const { group, principal } of removals) {
    const removed = await tx
      .deleteFrom("group_members")
      .where("group_id", "=", group.id)
      .where("principal_id", "=", principal.id)
      .executeTakeFirst();
    if (Number(removed.numDeletedRows) === 0) continue;
    events.push({
      action: "group.member_removed",
      outcome: "success",
      subject: `group:${group.name}`,
      details: { principal: principal.name, ...(cause.source ? { source: cause.source } : {}) },
    });
    lost.set(principal.id, [...(lost.get(principal.id) ?? []), group.name]);
  }
  for (const [principalId, groups] of lost) {
    const reason = `removed from the group${groups.length > 1 ? "s" : ""} ${groups.join(", ")}`;
    events.push(
      ...((await deps.onAccessBasisLost?.(tx, { principalIds: [principalId] }, { by: cause.by, reason })) ?? []),
    );
  }
  return events;
}
