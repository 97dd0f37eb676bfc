/** Review items and campaigns as the API answers them (contract/reviews.ts), from their rows. */
import type { CampaignDto, ReviewItemDto } from "../../contract/reviews.js";
import type * as reviewStore from "./reviews.store.js";
import type { CampaignScope } from "./reviews.types.js";

export type CampaignRow = NonNullable<Awaited<ReturnType<typeof reviewStore.findCampaign>>>;

const iso = (value: Date | string) => new Date(value).toISOString();

export function itemDto(row: reviewStore.ItemRow): ReviewItemDto {
  // An eligibility item's holder; a break-glass item's member is whoever broke the glass.
  const member = row.member_name ?? (row.group_name ? `group:${row.group_name}` : (row.actor_name ?? null));
  return {
    id: row.id,
    kind: row.kind,
    campaignId: row.campaign_id,
    subject: row.subject,
    role: row.role_name,
    member,
    status: row.status,
    outcome: row.outcome,
    reason: row.reason,
    decisionReason: row.decision_reason,
    reviewers: row.reviewer_names ?? [],
    onMissed: row.on_missed,
    evidence: (row.evidence as ReviewItemDto["evidence"]) ?? null,
    dueAt: iso(row.due_at),
    closedAt: row.closed_at ? iso(row.closed_at) : null,
    closedBy: row.closed_by,
  };
}

export function campaignDto(row: CampaignRow, progress: { total: number; open: number } | undefined): CampaignDto {
  const total = progress?.total ?? 0;
  const open = progress?.open ?? 0;
  return {
    id: row.id,
    name: row.name,
    definition: row.definition_name,
    status: row.status,
    scope: row.scope as CampaignScope,
    reviewers: row.reviewers as CampaignDto["reviewers"],
    onMissed: row.on_missed,
    openedAt: iso(row.opened_at),
    dueAt: iso(row.due_at),
    closedAt: row.closed_at ? iso(row.closed_at) : null,
    createdBy: row.created_by,
    progress: { total, decided: total - open, open },
  };
}
