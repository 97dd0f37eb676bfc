/** Four-eyes change requests (`/v1/change-requests`): shared by the server, the CLI and the web app. */
import { z } from "zod";
import { configPlan } from "./catalog-api.js";
import { approverMfaHint } from "./requests.js";

export const changeRequestStatus = z.enum(["pending", "applied", "denied", "expired", "stale"]);

export const changeAssessment = z.object({
  kind: z.string(),
  action: z.enum(["create", "update", "delete"]),
  name: z.string(),
  effect: z.enum(["widens", "narrows", "neutral"]),
  tier: z.enum(["low", "medium", "high", "critical"]).nullable(),
  reasons: z.array(z.string()),
});

export const changeRequest = z.object({
  id: z.string(),
  /**
   * What it holds: a configuration file (`catalog`), or a change to one account (`directory`: granting a platform
   * role that approves, or an administrator's reset of an approver's password; `document` describes it).
   */
  kind: z.enum(["catalog", "directory"]),
  status: changeRequestStatus,
  tier: z.enum(["low", "medium", "high", "critical"]),
  author: z.string(),
  createdAt: z.string(),
  expiresAt: z.string(),
  /** The plan (the diff): the same one `stint diff` shows for the file. */
  plan: configPlan,
  /** Each change's effect on access; the widening ones say why. */
  assessment: z.array(changeAssessment),
  /** The file itself, as its author sent it. */
  document: z.string(),
  decidedBy: z.string().nullable(),
  decidedAt: z.string().nullable(),
  reason: z.string().nullable(),
  /** Whether the caller may approve it now (pending, not theirs nor about their account, may write the catalog). */
  canApprove: z.boolean(),
  /**
   * Only where `canApprove`: what approving asks of the caller's own MFA now (`fourEyes.approverMfa` at this tier),
   * by the decision's own check at the time of the answer. A hint: the approval checks again when it is made.
   */
  approverMfa: approverMfaHint.optional(),
});
export type ChangeRequestDto = z.infer<typeof changeRequest>;

export const changeRequestList = z.object({ items: z.array(changeRequest) });

export const changeRequestQuery = z.strictObject({
  status: z.enum(["pending", "applied", "denied", "expired", "stale", "all"]).default("pending"),
});

export const changeRequestParams = z.strictObject({ id: z.uuid() });

export const changeRequestDecision = z.strictObject({ reason: z.string().trim().max(500).optional() });
