/** Pure rules of access reviews: who reviews, what is recommended, what a missed item becomes, who may decide. */
import { StintError } from "../../lib/errors.js";
import type { Evidence, OnMissed, Risk } from "./reviews.types.js";

export const DAY_MS = 86_400_000;
/** Eligibility not activated for this long is recommended for removal. */
export const DORMANT_DAYS = 90;

/** What an undecided item becomes at the due date: the campaign's choice, else remove for high and critical. */
export function onMissedFor(campaign: OnMissed | "by-risk", risk: Risk): OnMissed {
  if (campaign !== "by-risk") return campaign;
  return risk === "high" || risk === "critical" ? "remove" : "keep";
}

/** The recommendation shown with an item's evidence. */
export function recommend(
  facts: {
    lastActivationAt: Date | null;
    activationsInPeriod: number;
    sessionsInPeriod?: number;
    lastSignInAt: Date | null;
    periodDays: number;
  },
  now: Date,
): Evidence {
  const dormantSince = now.getTime() - DORMANT_DAYS * DAY_MS;
  const unused = facts.lastActivationAt === null || facts.lastActivationAt.getTime() < dormantSince;
  const base = {
    lastActivationAt: facts.lastActivationAt?.toISOString() ?? null,
    activationsInPeriod: facts.activationsInPeriod,
    sessionsInPeriod: facts.sessionsInPeriod ?? 0,
    periodDays: facts.periodDays,
    lastSignInAt: facts.lastSignInAt?.toISOString() ?? null,
  };
  if (unused)
    return {
      ...base,
      recommendation: "remove",
      recommendationText:
        facts.lastActivationAt === null ? "never activated → remove" : `not used in ${DORMANT_DAYS} days → remove`,
    };
  return {
    ...base,
    recommendation: "keep",
    recommendationText: `used ${facts.activationsInPeriod} time(s) in the last ${facts.periodDays} days → keep`,
  };
}

/**
 * The reviewers of one item: the union of the sources, never the subject (nor a member of the group the
 * eligibility names); the fallback's members when that leaves nobody.
 */
export function reviewersFor(input: {
  subjectIds: readonly string[];
  owners: readonly string[];
  manager: string | null;
  groups: readonly string[];
  fallback: readonly string[];
}): string[] {
  const excluded = new Set(input.subjectIds);
  const pick = (ids: readonly string[]) => [...new Set(ids)].filter((id) => !excluded.has(id)).sort();
  const chosen = pick([...input.owners, ...(input.manager ? [input.manager] : []), ...input.groups]);
  return chosen.length > 0 ? chosen : pick(input.fallback);
}

export interface DecidableItem {
  status: "open" | "closed";
  reviewerIds: readonly string[];
  /** Whose access it is: the principal, or the members of the group that holds the eligibility. */
  subjectIds: readonly string[];
  /** The campaign's due date, past which nobody decides the item. */
  dueAt?: Date | undefined;
}

/**
 * May `reviewerId` decide this item now? Self-review is checked before reviewership, so it is always named. A
 * campaign item is decided only before its due date: from then on it takes its `onMissed` outcome (the worker's
 * next pass applies it), so a late "keep" cannot save access due to be removed.
 */
export function checkDecision(item: DecidableItem, reviewerId: string, now?: Date): void {
  if (item.status !== "open") throw new StintError("REVIEW_ITEM_CLOSED");
  if (item.subjectIds.includes(reviewerId)) throw new StintError("SELF_REVIEW");
  if (!item.reviewerIds.includes(reviewerId)) throw new StintError("NOT_A_REVIEWER");
  if (item.dueAt && now && now.getTime() >= item.dueAt.getTime())
    throw new StintError(
      "CAMPAIGN_CLOSED",
      "The review campaign is past its due date: undecided items take their onMissed outcome.",
    );
}

/** Is a reminder due: the campaign is open, not past due, and `remindEveryMs` passed since the last (or opening). */
export function reminderDue(
  campaign: { remindEveryMs: number | null; openedAt: Date; dueAt: Date; lastRemindedAt: Date | null },
  now: Date,
): boolean {
  if (!campaign.remindEveryMs || campaign.remindEveryMs <= 0) return false;
  if (now.getTime() >= campaign.dueAt.getTime()) return false;
  const since = (campaign.lastRemindedAt ?? campaign.openedAt).getTime();
  return now.getTime() - since >= campaign.remindEveryMs;
}

/** The outcome an item records. */
export function outcomeOf(decision: OnMissed, missed: boolean): string {
  const done = decision === "remove" ? "removed" : "kept";
  return missed ? `missed-${done}` : done;
}

export type ItemDecision = OnMissed | "acknowledge" | "escalate";
export const BREAK_GLASS_KINDS = ["break-glass-secret", "break-glass-activation"] as const;
/**
 * Items worked with a finding (acknowledge or escalate) by those who manage reviews, never by the person
 * whose conduct they are about: break-glass uses, and anomaly alerts configured with `action: review`.
 */
export const FINDING_KINDS = [...BREAK_GLASS_KINDS, "anomaly-alert"] as const;

/**
 * An eligibility item is kept or removed; a break-glass or anomaly-alert item is acknowledged (with a
 * finding) or escalated.
 */
export function decisionFits(kind: string, decision: ItemDecision): boolean {
  const finding = (FINDING_KINDS as readonly string[]).includes(kind);
  return finding ? decision === "acknowledge" || decision === "escalate" : decision === "keep" || decision === "remove";
}

/**
 * May `reviewerId` work this finding item (a break-glass use or an anomaly alert)? Its reviewers are those who
 * manage reviews (security, admin), never the person whose conduct it is about, nor anyone who took part in the
 * request it is about (`involvedIds`: its requester and deciders; an alert about a fast approval names the
 * approver, yet the requester got the access); self-review is checked first, so it is always named.
 */
export function checkFindingDecision(
  item: { status: "open" | "closed"; actorId: string | null; involvedIds?: readonly string[] },
  reviewerId: string,
  managesReviews: boolean,
): void {
  if (item.status !== "open") throw new StintError("REVIEW_ITEM_CLOSED");
  if (item.actorId === reviewerId || item.involvedIds?.includes(reviewerId)) throw new StintError("SELF_REVIEW");
  if (!managesReviews) throw new StintError("NOT_A_REVIEWER");
}

/** The outcome a worked finding item records. */
export function findingOutcome(decision: "acknowledge" | "escalate"): "acknowledged" | "escalated" {
  return decision === "acknowledge" ? "acknowledged" : "escalated";
}
