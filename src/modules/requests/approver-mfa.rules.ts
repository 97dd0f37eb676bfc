/**
 * What approving a request asks of one approver's own second factor (finding 82), evaluated one way for the
 * decision (`decide.ts`) and for the hint the approvals inbox shows ahead of it (`queries.ts`): the request's rule
 * (`approverMfaRule`: its policy's `approval.mfa`, else critical roles within 15m) applied to the caller's session
 * by `checkApproverMfa`. The hint is never a permission: the decision checks again, in its own transaction, at its
 * own time.
 */
import type { PolicySpec } from "../../contract/catalog.js";
import { parseDuration } from "../../lib/duration.js";
import { approverMfaRule, checkApproverMfa } from "./policy.rules.js";

/** The approver's session as the access token says it: when its last MFA of any kind, and its last passkey check. */
export interface ApproverSession {
  mfaAt?: Date | null | undefined;
  webauthnAt?: Date | null | undefined;
}

/** The approval's MFA check for this approver now: refused as the decision refuses, or what its event records. */
export function approverMfaCheck(
  spec: Pick<PolicySpec, "approval">,
  risk: string,
  approver: ApproverSession,
  now: Date,
): ReturnType<typeof checkApproverMfa> {
  return checkApproverMfa(approverMfaRule(spec, risk), approver.mfaAt ?? null, now, approver.webauthnAt ?? null);
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

export function approverMfaHint(
  spec: Pick<PolicySpec, "approval">,
  risk: string,
  approver: ApproverSession,
  now: Date,
): ApproverMfaHint {
  const rule = approverMfaRule(spec, risk);
  const satisfied = approverMfaCheck(spec, risk, approver, now).ok;
  if (!rule.required) return { required: false, withinSeconds: null, passkeyOnly: false, satisfied };
  return {
    required: true,
    withinSeconds: Math.floor(parseDuration(rule.maxAge) / 1000),
    passkeyOnly: rule.methods !== undefined && !rule.methods.includes("totp"),
    satisfied,
  };
}
