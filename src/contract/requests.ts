/** Activation requests, the check API and activation tokens. */
import { z } from "zod";
import { durationText, isoTime, name, reason } from "./common.js";

export const activationRequest = z.object({
  id: z.uuid(),
  role: z.string(),
  requester: z.string(),
  state: z.enum([
    "pending",
    "approved",
    "provisioning",
    "active",
    "denied",
    "cancelled",
    "expired",
    "revoked",
    "deactivated",
    "failed",
  ]),
  duration: z.string(),
  reason: z.string(),
  ticket: z.string().nullable(),
  breakGlass: z.boolean(),
  extendsRequestId: z.uuid().nullable(),
  stages: z.array(
    z.object({ name: z.string(), count: z.number().int(), approvals: z.array(z.string()), escalated: z.boolean() }),
  ),
  stageIndex: z.number().int(),
  stageDeadline: isoTime.nullable(),
  submittedAt: isoTime,
  decidedAt: isoTime.nullable(),
  activatedAt: isoTime.nullable(),
  expiresAt: isoTime.nullable(),
  endedAt: isoTime.nullable(),
  endReason: z.string().nullable(),
  endedBy: z.string().nullable(),
  extensions: z.number().int(),
  /** The start time asked for (null: at once); approved ahead, the request stays approved until then. */
  startAt: isoTime.nullable().optional(),
  /** When the request expires if still undecided (its policy's requestTtl after submission); null unless pending. */
  pendingExpiresAt: isoTime.nullable().optional(),
  decisions: z.array(
    z.object({
      stage: z.number().int(),
      approver: z.string(),
      decision: z.enum(["approve", "deny"]),
      reason: z.string().nullable(),
      decidedAt: isoTime,
    }),
  ),
});
export type ActivationRequestDto = z.infer<typeof activationRequest>;

export const submitActivation = z.strictObject({
  role: name,
  duration: durationText.optional(),
  reason,
  ticket: z.string().trim().min(1).max(100).optional(),
  /** Start later (an ISO time with its offset): approved ahead, activated at that time. */
  startAt: isoTime.optional(),
});
const linkToken = z.string().min(20).max(2048);
export const approveBody = z.strictObject({ reason: reason.optional(), linkToken: linkToken.optional() });
export const denyBody = z.strictObject({ reason, linkToken: linkToken.optional() });
export const revokeBody = z.strictObject({ reason });
export const extendBody = z.strictObject({ by: durationText, reason });
export const requestIdParams = z.strictObject({ id: z.uuid() });
export const roleParams = z.strictObject({ role: name });

export const requestListQuery = z.strictObject({
  scope: z.enum(["mine", "inbox", "all"]).default("mine"),
  state: z
    .enum([
      "pending",
      "approved",
      "provisioning",
      "active",
      "denied",
      "cancelled",
      "expired",
      "revoked",
      "deactivated",
      "failed",
    ])
    .optional(),
  role: name.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});
/**
 * What approving a request asks of the caller's own second factor now (`approval.mfa`; absent: within 15m for
 * critical roles): a hint ahead of the decision, computed by the decision's own check at the time of the list.
 * Never a permission: the approval checks again when it is made, and an MFA that was recent enough a moment ago
 * may not be any more.
 */
export const approverMfaHint = z.object({
  required: z.boolean(),
  /** How recent the approver's MFA must be, in seconds; null when not required. */
  withinSeconds: z.number().int().nullable(),
  /** Only a passkey check counts (the policy's `methods: [webauthn]`), not a one-time code. */
  passkeyOnly: z.boolean(),
  /** The caller's session would pass the check now (true when not required). */
  satisfied: z.boolean(),
});
export type ApproverMfaHintDto = z.infer<typeof approverMfaHint>;
/** A listed request; in the inbox (`scope=inbox`) with what approving it asks of the caller's MFA. */
export const requestListItem = activationRequest.extend({ approverMfa: approverMfaHint.optional() });
export type RequestListItemDto = z.infer<typeof requestListItem>;
export const requestList = z.object({ items: z.array(requestListItem) });

export const myRole = z.object({
  role: z.string(),
  description: z.string().nullable(),
  risk: z.enum(["low", "medium", "high", "critical"]),
  /** The role's target and its kind (postgres, ssh-host…): what the page offers to connect with. */
  target: z.string().nullable().optional(),
  targetKind: z.string().nullable().optional(),
  eligibleUntil: isoTime.nullable(),
  policy: z.object({
    defaultDuration: z.string(),
    maxDuration: z.string(),
    approvalRequired: z.boolean(),
    approvalStages: z.number().int(),
    mfaRequired: z.boolean(),
    /** The second factors that count for it (empty when MFA is not required). */
    mfaMethods: z.array(z.enum(["totp", "webauthn"])).optional(),
    ticketRequired: z.boolean(),
    /** The regular expression a ticket must match whole (null: any ticket). */
    ticketPattern: z.string().nullable().optional(),
    /** The fewest characters a reason may have. */
    reasonMinLength: z.number().int().optional(),
    breakGlass: z.boolean(),
    maxExtensions: z.number().int(),
  }),
  state: z.string().nullable(),
  requestId: z.uuid().nullable(),
  expiresAt: isoTime.nullable(),
  /** The start time of a request approved ahead (state approved), else null. */
  startAt: isoTime.nullable().optional(),
});
export const myRoles = z.object({ items: z.array(myRole) });

/**
 * What an approver needs to decide one request (GET /v1/activation-requests/{id}/context): the role's risk,
 * the policy that governs the request (as it was when submitted), the requester's latest requests for that
 * role, and the approvals so far. Only someone who may decide the request now may read it.
 */
export const approverContext = z.object({
  requestId: z.uuid(),
  role: z.object({
    name: z.string(),
    risk: z.enum(["low", "medium", "high", "critical"]),
    target: z.string(),
    targetKind: z.string(),
  }),
  policy: z.object({
    name: z.string(),
    defaultDuration: z.string(),
    maxDuration: z.string(),
    mfaRequired: z.boolean(),
    ticketRequired: z.boolean(),
    ticketPattern: z.string().nullable(),
    reasonMinLength: z.number().int(),
    approvalStages: z.number().int(),
    maxExtensions: z.number().int(),
    breakGlass: z.boolean(),
    /** Activation windows apply (outside them the policy denies or asks for one more stage). */
    windows: z.boolean(),
  }),
  /** The requester's latest earlier requests for this role, newest first (this request excluded). */
  history: z.array(
    z.object({
      id: z.uuid(),
      state: activationRequest.shape.state,
      duration: z.string(),
      reason: z.string(),
      ticket: z.string().nullable(),
      submittedAt: isoTime,
      activatedAt: isoTime.nullable(),
      endedAt: isoTime.nullable(),
      endReason: z.string().nullable(),
      endedBy: z.string().nullable(),
      /** Who decided it: approvers and deniers, in order. */
      decidedBy: z.array(z.object({ approver: z.string(), decision: z.enum(["approve", "deny"]) })),
    }),
  ),
  /** More earlier requests exist than `history` holds. */
  moreHistory: z.boolean(),
  stages: activationRequest.shape.stages,
  stageIndex: z.number().int(),
  /** Decisions so far, oldest first. */
  decisions: activationRequest.shape.decisions,
  /** Whether the caller already decided the current stage (then they cannot approve it again). */
  decidedByYou: z.boolean(),
});
export type ApproverContextDto = z.infer<typeof approverContext>;

export const checkQuery = z.strictObject({ principal: name, role: name });
export const checkResult = z.object({
  principal: z.string(),
  role: z.string(),
  allowed: z.boolean(),
  reason: z.string(),
  expiresAt: isoTime.nullable(),
  requestId: z.uuid().nullable(),
});

export const activationToken = z.object({
  token: z.string(),
  expiresAt: isoTime,
  roles: z.array(z.object({ role: z.string(), expiresAt: isoTime, requestId: z.uuid() })),
});
