/**
 * What approving asks of one approver's own second factor (finding 82), evaluated one way for the decision and for
 * the hint a list shows ahead of it. An activation request: the request's rule (`approverMfaRule`: its policy's
 * `approval.mfa`, else critical roles within 15m), decided in `decide.ts`, hinted in the approvals inbox
 * (`queries.ts`). A four-eyes change request: `fourEyes.approverMfa` at the request's tier (`changeApproverMfaRule`),
 * decided and hinted in change-requests.service.ts. Either way the rule is applied to the caller's session by the one
 * `approverMfaRuleCheck`. The hint is never a permission: the decision checks again, in its own transaction, at its
 * own time.
 */
import type { MfaRule, PolicySpec } from "../../contract/catalog.js";
import { parseDuration } from "../../lib/duration.js";
import { approverMfaRule, checkApproverMfa, DEFAULT_APPROVER_MFA_MAX_AGE } from "./policy.rules.js";

/** The approver's session as the access token says it: when its last MFA of any kind, and its last passkey check. */
export interface ApproverSession {
  mfaAt?: Date | null | undefined;
  webauthnAt?: Date | null | undefined;
}

/** `rule` applied to this approver's session now: refused as the decision refuses, or what its event records. */
export function approverMfaRuleCheck(
  rule: MfaRule,
  approver: ApproverSession,
  now: Date,
  /** Who needs it, for the refusal's message. */
  needs?: string,
): ReturnType<typeof checkApproverMfa> {
  return checkApproverMfa(rule, approver.mfaAt ?? null, now, approver.webauthnAt ?? null, needs);
}

/** The approval's MFA check for this approver now: refused as the decision refuses, or what its event records. */
export function approverMfaCheck(
  spec: Pick<PolicySpec, "approval">,
  risk: string,
  approver: ApproverSession,
  now: Date,
): ReturnType<typeof checkApproverMfa> {
  return approverMfaRuleCheck(approverMfaRule(spec, risk), approver, now);
}

/** What approving asks of this approver's second factor now, for a list ahead of the decision. */
export interface ApproverMfaHint {
  /** Approving asks for the approver's own recent MFA at all. */
  required: boolean;
  /** How recent it must be (the rule's maxAge in seconds), null when not required. */
  withinSeconds: number | null;
  /** Only a passkey check counts (`methods: [webauthn]`), not a one-time code. */
  passkeyOnly: boolean;
  /** The session's MFA would pass the check at `now` (always true when not required). A moment later it may not. */
  satisfied: boolean;
}

/** The hint of `rule` for this approver now: `satisfied` is `approverMfaRuleCheck`'s verdict, the decision's own. */
export function approverMfaRuleHint(rule: MfaRule, approver: ApproverSession, now: Date): ApproverMfaHint {
  const satisfied = approverMfaRuleCheck(rule, approver, now).ok;
  if (!rule.required) return { required: false, withinSeconds: null, passkeyOnly: false, satisfied };
  return {
    required: true,
    withinSeconds: Math.floor(parseDuration(rule.maxAge) / 1000),
    passkeyOnly: rule.methods !== undefined && !rule.methods.includes("totp"),
    satisfied,
  };
}

export function approverMfaHint(
  spec: Pick<PolicySpec, "approval">,
  risk: string,
  approver: ApproverSession,
  now: Date,
): ApproverMfaHint {
  return approverMfaRuleHint(approverMfaRule(spec, risk), approver, now);
}

/** `fourEyes.approverMfa` as configured: the tiers it covers and how recent the MFA must be (ms). */
export interface ChangeApproverMfaConfig {
  tiers: readonly string[];
  maxAge: number;
}

/**
 * The rule approving a four-eyes change request at `tier` follows: the approver's own MFA within `maxAge` where
 * `fourEyes.approverMfa.tiers` covers the tier (a one-time code, the identity provider's MFA or a passkey), nothing
 * asked otherwise or when it is not configured.
 */
export function changeApproverMfaRule(config: ChangeApproverMfaConfig | undefined, tier: string): MfaRule {
  if (!config?.tiers.includes(tier)) return { required: false, maxAge: DEFAULT_APPROVER_MFA_MAX_AGE };
  return { required: true, maxAge: `${Math.ceil(config.maxAge / 1000)}s` };
}
