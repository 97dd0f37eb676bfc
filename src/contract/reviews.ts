/**
 * Access review campaigns: the API's request and response shapes and the `reviews:` entries of the
 * configuration file. Shared by server, CLI and web.
 */
import { z } from "zod";
import { durationText, isoTime, name, reason } from "./common.js";
import { riskTier } from "./catalog.js";

const names = z.array(name).max(200);

export const campaignScope = z.strictObject({
  roles: names.optional(),
  targets: names.optional(),
  groups: names.optional(),
  risk: z.array(riskTier).max(4).optional(),
});

export const campaignReviewers = z
  .strictObject({
    owners: z.boolean().optional(),
    manager: z.boolean().optional(),
    groups: names.optional(),
    fallback: name.optional(),
  })
  .refine((r) => r.owners || r.manager || (r.groups?.length ?? 0) > 0 || r.fallback, {
    message: "name at least one source of reviewers (owners, manager, groups or fallback)",
  });

export const onMissed = z.enum(["remove", "keep"]);

/** A recurring campaign in the configuration file. */
export const reviewDefinition = z.strictObject({
  name,
  every: durationText,
  duration: durationText,
  scope: campaignScope.default({}),
  reviewers: campaignReviewers,
  remindEvery: durationText.optional(),
  escalateTo: name.optional(),
  onMissed: onMissed.optional(),
});

/** An ad hoc campaign: due after `duration`, or at `dueAt`. */
export const campaignInput = z
  .strictObject({
    name,
    scope: campaignScope.default({}),
    reviewers: campaignReviewers,
    duration: durationText.optional(),
    dueAt: isoTime.optional(),
    remindEvery: durationText.optional(),
    escalateTo: name.optional(),
    onMissed: onMissed.optional(),
  })
  .refine((c) => (c.duration === undefined) !== (c.dueAt === undefined), {
    message: "give exactly one of duration or dueAt",
    path: ["duration"],
  });
export type CampaignInput = z.infer<typeof campaignInput>;

export const evidence = z.object({
  lastActivationAt: isoTime.nullable(),
  activationsInPeriod: z.number().int(),
  sessionsInPeriod: z.number().int(),
  periodDays: z.number().int(),
  lastSignInAt: isoTime.nullable(),
  recommendation: z.enum(["keep", "remove"]),
  recommendationText: z.string(),
});

export const reviewItem = z.object({
  id: z.uuid(),
  kind: z.enum(["break-glass-secret", "break-glass-activation", "anomaly-alert", "eligibility"]),
  campaignId: z.uuid().nullable(),
  subject: z.string(),
  role: z.string().nullable(),
  member: z.string().nullable(),
  status: z.enum(["open", "closed"]),
  outcome: z.string().nullable(),
  reason: z.string(),
  decisionReason: z.string().nullable(),
  reviewers: z.array(z.string()),
  onMissed: onMissed.nullable(),
  evidence: evidence.nullable(),
  dueAt: isoTime,
  closedAt: isoTime.nullable(),
  closedBy: z.string().nullable(),
});
export type ReviewItemDto = z.infer<typeof reviewItem>;

export const campaign = z.object({
  id: z.uuid(),
  name: z.string(),
  definition: z.string().nullable(),
  status: z.enum(["open", "closed"]),
  scope: campaignScope,
  reviewers: z.object({
    owners: z.boolean().optional(),
    manager: z.boolean().optional(),
    groups: z.array(z.string()).optional(),
    fallback: z.string().optional(),
  }),
  onMissed: z.enum(["remove", "keep", "by-risk"]),
  openedAt: isoTime,
  dueAt: isoTime,
  closedAt: isoTime.nullable(),
  createdBy: z.string(),
  progress: z.object({ total: z.number().int(), decided: z.number().int(), open: z.number().int() }),
});
export type CampaignDto = z.infer<typeof campaign>;

export const campaignList = z.object({ items: z.array(campaign) });
export const campaignDetail = campaign.extend({ items: z.array(reviewItem) });
export type CampaignDetailDto = z.infer<typeof campaignDetail>;
export const reviewItemList = z.object({ items: z.array(reviewItem) });

/**
 * keep/remove decide an eligibility item; acknowledge/escalate work a break-glass item (the reason is the finding).
 */
export const itemDecision = z.enum(["keep", "remove", "acknowledge", "escalate"]);
export const decisionInput = z.strictObject({ decision: itemDecision, reason });
export const idParam = z.strictObject({ id: z.uuid() });
