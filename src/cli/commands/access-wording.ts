/** How `stint roles` and `stint requests` word roles and activation requests for people, and their table columns. */
import type { z } from "zod";
import type { ActivationRequestDto, ApproverMfaHintDto, myRoles, RequestListItemDto } from "../../contract/requests.js";
import { shortId } from "../../contract/short-id.js";
import type { Column } from "../output.js";

export type MyRole = z.infer<typeof myRoles>["items"][number];

/** A span of time for people: 45s, 23m, 1h 5m, 2d 3h. */
export function humanSpan(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  const days = Math.floor(hours / 24);
  return hours % 24 === 0 ? `${days}d` : `${days}d ${hours % 24}h`;
}

/** "in 23m" or "5m ago". */
function relative(iso: string | null, now: number): string | null {
  if (iso === null) return null;
  const delta = Date.parse(iso) - now;
  return delta >= 0 ? `in ${humanSpan(delta)}` : `${humanSpan(-delta)} ago`;
}

/** An ISO time without milliseconds, as people read it. */
export function clock(iso: string): string {
  return iso.replace(/\.\d{3}(?=Z$)/, "");
}

/** A role's policy in plain words. */
export function describePolicy(policy: MyRole["policy"]): string {
  const parts = [`up to ${policy.maxDuration} (default ${policy.defaultDuration})`];
  if (policy.breakGlass) parts.push("break-glass: no approval, reviewed afterwards");
  else if (!policy.approvalRequired) parts.push("no approval");
  else parts.push(policy.approvalStages === 1 ? "1 approval stage" : `${policy.approvalStages} approval stages`);
  if (policy.mfaRequired)
    parts.push(
      policy.mfaMethods && !policy.mfaMethods.includes("totp") ? "passkey MFA (stint step-up --webauthn)" : "MFA",
    );
  if (policy.ticketRequired) parts.push("ticket required");
  if (policy.maxExtensions > 0)
    parts.push(policy.maxExtensions === 1 ? "1 extension" : `${policy.maxExtensions} extensions`);
  return parts.join(", ");
}

function describeRoleState(role: MyRole, now: number): string {
  if (role.state === null) return "eligible";
  if (role.state === "active" && role.expiresAt !== null) {
    return `active, ${humanSpan(Date.parse(role.expiresAt) - now)} left`;
  }
  if (role.state === "pending") return "pending approval";
  if (role.state === "approved" && role.startAt) return `scheduled, starts ${relative(role.startAt, now)}`;
  return role.state;
}

/** Where a pending request stands: "stage 1/2 (manager): 1 of 2 approvals (carol)". */
export function describeProgress(request: ActivationRequestDto): string {
  const stage = request.stages[request.stageIndex];
  if (!stage) return request.state;
  const who = stage.approvals.length > 0 ? ` (${stage.approvals.join(", ")})` : "";
  const escalated = stage.escalated ? ", escalated" : "";
  return (
    `stage ${request.stageIndex + 1}/${request.stages.length} (${stage.name}${escalated}): ` +
    `${stage.approvals.length} of ${stage.count} approvals${who}`
  );
}

function stageColumn(request: ActivationRequestDto): string | null {
  if (request.state !== "pending" || request.stages.length === 0) return null;
  return `${request.stageIndex + 1}/${request.stages.length}`;
}

/**
 * When an activation ends ("in 23m"), or ended ("ended 5m ago"); for a pending request, whichever comes first of
 * its approval stage's timeout ("stage times out in 29m") and its lapse undecided ("lapses in 23h"); nothing for
 * requests that never became active.
 */
function expiresColumn(request: ActivationRequestDto, now: number): string | null {
  if (request.endedAt !== null && request.activatedAt !== null) return `ended ${relative(request.endedAt, now)}`;
  if (request.state === "active" || request.state === "provisioning") return relative(request.expiresAt, now);
  if (request.state !== "pending") return null;
  // The stage's timeout (its onTimeout: deny, escalate or approve) and the policy's requestTtl, the sooner one.
  const lapses = request.pendingExpiresAt ?? null;
  const stage = request.stageDeadline;
  if (stage !== null && (lapses === null || Date.parse(stage) < Date.parse(lapses)))
    return Date.parse(stage) >= now
      ? `stage times out ${relative(stage, now)}`
      : `stage timed out ${relative(stage, now)}`;
  return lapses ? `lapses ${relative(lapses, now)}` : null;
}

export function describeActive(request: ActivationRequestDto, now: number): string {
  if (request.expiresAt === null) return `${request.role} is active.`;
  return `${request.role} is active until ${clock(request.expiresAt)} (${humanSpan(Date.parse(request.expiresAt) - now)} left).`;
}

/** Why a denied request was denied, and by whom. */
export function denialOf(request: ActivationRequestDto): { by: string; reason: string } {
  const denial = [...request.decisions].reverse().find((decision) => decision.decision === "deny");
  return {
    by: denial?.approver ?? request.endedBy ?? "the policy",
    reason: denial?.reason ?? request.endReason ?? "no reason given",
  };
}

/** One line for a request that has reached `state`, after a submission or a decision. */
export function describeOutcome(request: ActivationRequestDto, now: number): string {
  const whose = `${request.role} for ${request.requester}`;
  switch (request.state) {
    case "pending":
      return `Request ${request.id} (${whose}) is pending: ${describeProgress(request)}.`;
    case "active":
      return describeActive(request, now);
    case "approved":
      return request.startAt
        ? `Request ${request.id} (${whose}) is approved; it starts at ${clock(request.startAt)} (${relative(request.startAt, now)}) for ${request.duration}.`
        : `Request ${request.id} (${whose}) is approved.`;
    case "provisioning":
      return `Request ${request.id} (${whose}) is approved; the access is being set up at the target.`;
    case "denied": {
      const { by, reason } = denialOf(request);
      return `Request ${request.id} (${whose}) was denied by ${by}: ${reason}`;
    }
    default:
      return `Request ${request.id} (${whose}) is ${request.state}${request.endReason ? `: ${request.endReason}` : ""}.`;
  }
}

export const REQUEST_COLUMNS = (now: number): readonly Column<ActivationRequestDto>[] => [
  { header: "ID", value: (request) => shortId(request.id) },
  { header: "ROLE", value: (request) => request.role },
  { header: "REQUESTER", value: (request) => request.requester },
  {
    header: "STATE",
    value: (request) =>
      request.state === "approved" && request.startAt
        ? `scheduled (starts ${relative(request.startAt, now)})`
        : request.state,
  },
  { header: "AGE", value: (request) => humanSpan(now - Date.parse(request.submittedAt)) },
  { header: "STAGE", value: (request) => stageColumn(request) },
  { header: "EXPIRES", value: (request) => expiresColumn(request, now) },
  { header: "REASON", value: (request) => request.reason },
];

/** Something a list offers to approve, with what approving it asks of your MFA (`approverMfa`, a hint). */
type WithApproverMfa = { approverMfa?: ApproverMfaHintDto | undefined };

/**
 * What approving asks of your own MFA now, from a list's hint (the inbox's requests, the change requests): `-` (not
 * asked), `ok (15m)` (your session's MFA is recent enough, for now), `step up (15m)` (a one-time code or a passkey
 * first), `passkey (10m)` (only a passkey counts). A hint: the approval checks again when it is made.
 */
export function approverMfaColumn(item: WithApproverMfa): string {
  const hint = item.approverMfa;
  if (!hint?.required) return "-";
  const within = humanSpan((hint.withinSeconds ?? 0) * 1000);
  if (hint.satisfied) return `ok (${within})`;
  return hint.passkeyOnly ? `passkey (${within})` : `step up (${within})`;
}

/** The inbox's table: the requests' columns with what approving asks of your MFA before the reason. */
export const INBOX_COLUMNS = (now: number): readonly Column<RequestListItemDto>[] =>
  REQUEST_COLUMNS(now).toSpliced(-1, 0, {
    header: "MFA TO APPROVE",
    value: (request: RequestListItemDto) => approverMfaColumn(request),
  });

/**
 * Said under a list's table when some approval there needs a fresh second factor first, and how to give it: `what`
 * names the things listed, `approve` the command that approves one with a code read from stdin.
 */
export function inboxStepUpNote(
  items: readonly WithApproverMfa[],
  what: { one: string; many: string; approve: string } = {
    one: "request",
    many: "requests",
    approve: "stint approve <id> --otp -",
  },
): string {
  const needs = items.filter((item) => item.approverMfa?.required && !item.approverMfa.satisfied);
  if (needs.length === 0) return "";
  const how = needs.every((item) => item.approverMfa?.passkeyOnly)
    ? "`stint step-up --webauthn` first (only a passkey counts)"
    : `\`stint step-up\` first (\`--webauthn\` for a passkey), or \`${what.approve}\``;
  const count = needs.length === 1 ? `1 ${what.one} needs` : `${needs.length} ${what.many} need`;
  return `\n${count} a fresh MFA check of yours to approve: ${how}.\n`;
}

export const ROLE_COLUMNS = (now: number): readonly Column<MyRole>[] => [
  { header: "ROLE", value: (role) => role.role },
  { header: "STATE", value: (role) => describeRoleState(role, now) },
  { header: "RISK", value: (role) => role.risk },
  { header: "POLICY", value: (role) => describePolicy(role.policy) },
  { header: "ELIGIBLE UNTIL", value: (role) => (role.eligibleUntil ? clock(role.eligibleUntil) : "no end") },
];
