/** Anomaly alerts: the API's shapes (GET /v1/alerts, one alert, its acknowledgement). Shared by server, CLI and web. */
import { z } from "zod";
import { isoTime, reason } from "./common.js";

export const alertRuleNames = [
  "firstActivation",
  "unusualHours",
  "newIp",
  "burst",
  "fastApproval",
  "rubberStamp",
  "dormantEligibility",
  "breakGlass",
  "deniedThenBreakGlass",
  "drift",
] as const;
export const alertRule = z.enum(alertRuleNames);
export const alertStatus = z.enum(["open", "acknowledged"]);

export const alert = z.object({
  id: z.uuid(),
  rule: alertRule,
  severity: z.enum(["info", "warning", "critical"]),
  status: alertStatus,
  title: z.string(),
  text: z.string(),
  /** Who it is about (a user or an approver); null for a target's drift. */
  principal: z.string().nullable(),
  /** `request:<id>` or `target:<name>`. */
  subject: z.string().nullable(),
  /** The audit event it was raised on. */
  eventId: z.uuid(),
  eventSeq: z.number().int(),
  eventTime: isoTime,
  raisedAt: isoTime,
  /** What the rule's configuration did besides notifying: opened a review item, or revoked the activation. */
  action: z.enum(["none", "review", "revoke"]),
  reviewItemId: z.uuid().nullable(),
  details: z.record(z.string(), z.unknown()),
  acknowledgedAt: isoTime.nullable(),
  acknowledgedBy: z.string().nullable(),
  ackNote: z.string().nullable(),
});
export type AlertDto = z.infer<typeof alert>;

export const alertList = z.object({ items: z.array(alert) });

export const alertQuery = z.strictObject({
  status: alertStatus.optional(),
  rule: alertRule.optional(),
  principal: z.string().max(64).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

export const alertIdParam = z.strictObject({ id: z.uuid() });

export const ackInput = z.strictObject({ note: reason.optional() });
