/**
 * Pure rules of activation requests: the state machine, who may decide, and
 * what a decision or a timeout does. The service loads facts inside a
 * transaction, calls these, and writes back what they return.
 */
import { parseDuration } from "../../lib/duration.js";
import type { PolicySpec } from "../../contract/catalog.js";
import type {
  ApproverSet,
  Approver,
  DecisionOutcome,
  RequestFacts,
  RequestState,
  Stage,
  TimeoutOutcome,
} from "./requests.types.js";

/** Every allowed transition; anything else is refused. */
const TRANSITIONS: Record<RequestState, readonly RequestState[]> = {
  // expired: undecided when its policy's requestTtl passed (timing.rules.ts); never started, no grant.
  pending: ["approved", "denied", "cancelled", "expired"],
  approved: ["provisioning", "active", "cancelled", "failed"],
  provisioning: ["active", "failed", "revoked"],
  active: ["expired", "revoked", "deactivated"],
  denied: [],
  cancelled: [],
  expired: [],
  revoked: [],
  deactivated: [],
  failed: [],
};

export const OPEN_STATES: readonly RequestState[] = ["pending", "approved", "provisioning", "active"];
export const ENDED_STATES: readonly RequestState[] = ["expired", "revoked", "deactivated"];

export function canTransition(from: RequestState, to: RequestState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function assertTransition(from: RequestState, to: RequestState): void {
  if (!canTransition(from, to)) throw new Error(`an activation request cannot go from ${from} to ${to}`);
}

/** Stages fixed at submission: break-glass has none; outside the windows an extra stage may be added. */
export function stagesFor(policy: PolicySpec, options: { extraWindowStage: boolean; breakGlass: boolean }): Stage[] {
  if (options.breakGlass) return [];
  const stages: Stage[] = policy.approval.stages.map((stage, index) => ({
    name: stage.name ?? `stage ${index + 1}`,
    approvers: { ...stage.approvers },
    count: stage.count,
    timeoutMs: stage.timeout ? parseDuration(stage.timeout) : null,
    onTimeout: stage.onTimeout,
    escalateTo: stage.escalateTo ? { ...stage.escalateTo } : null,
  }));
  if (options.extraWindowStage) {
    const approvers = policy.outsideWindowApprovers ??
      stages.at(-1)?.approvers ?? { groups: [], users: [], manager: true };
    stages.push({
      name: "outside activation window",
      approvers: { ...approvers },
      count: 1,
      timeoutMs: null,
      onTimeout: "deny",
      escalateTo: null,
    });
  }
  return stages;
}

export function stageDeadline(stage: Stage | undefined, from: Date): Date | null {
  return stage?.timeoutMs ? new Date(from.getTime() + stage.timeoutMs) : null;
}

/** Whether `approver` is named by `set` for a request by someone whose manager is `managerId`. */
export function isNamedBy(set: ApproverSet, approver: Approver, managerId: string | null): boolean {
  if (set.users.includes(approver.name)) return true;
  if (set.manager && managerId !== null && managerId === approver.id) return true;
  return approver.groups.some((group) => set.groups.includes(group));
}

/** The approvers of a stage as they stand: escalated stages are decided by their fallback set. */
export function currentApprovers(stage: Stage): ApproverSet {
  return stage.escalated && stage.escalateTo ? stage.escalateTo : stage.approvers;
}

/**
 * Applies one approver's decision. The requester never decides; only a named approver counts, once per stage,
 * and (unless the policy says otherwise) a person's approval counts for one stage of a request only.
 */
export function applyDecision(
  request: RequestFacts,
  approver: Approver,
  decision: "approve" | "deny",
): DecisionOutcome {
  if (request.state !== "pending") {
    return {
      ok: false,
      code: "REQUEST_NOT_PENDING",
      message: `The request is ${request.state}; only pending requests take decisions.`,
    };
  }
  if (approver.id === request.requesterId) {
    return { ok: false, code: "SELF_APPROVAL", message: "Nobody decides on their own request." };
  }
  const stage = request.stages[request.stageIndex];
  if (!stage) return { ok: false, code: "REQUEST_NOT_PENDING", message: "The request has no approval stage left." };
  if (!isNamedBy(currentApprovers(stage), approver, request.requesterManagerId)) {
    return { ok: false, code: "NOT_AN_APPROVER", message: `You are not an approver of ${stage.name} of this request.` };
  }
  if (request.decisions.some((d) => d.stageIndex === request.stageIndex && d.approverId === approver.id)) {
    return { ok: false, code: "ALREADY_DECIDED", message: "You already decided on this stage of the request." };
  }
  if (decision === "deny") return { ok: true, result: "denied" };
  // Two stages mean two people: someone who approved an earlier stage does not count again (denying stays open).
  if (
    !request.sameApproverAcrossStages &&
    request.decisions.some(
      (d) => d.stageIndex !== request.stageIndex && d.approverId === approver.id && d.decision === "approve",
    )
  ) {
    return {
      ok: false,
      code: "DISTINCT_APPROVERS_REQUIRED",
      message: "You approved an earlier stage of this request; this stage needs someone else.",
    };
  }
  const approvals = new Set(
    request.decisions
      .filter((d) => d.stageIndex === request.stageIndex && d.decision === "approve")
      .map((d) => d.approverId),
  );
  approvals.add(approver.id);
  if (approvals.size < stage.count)
    return { ok: true, result: "recorded", approvals: approvals.size, needed: stage.count };
  if (request.stageIndex + 1 < request.stages.length)
    return { ok: true, result: "next_stage", stageIndex: request.stageIndex + 1 };
  return { ok: true, result: "approved" };
}

/** What happens when a pending stage's deadline has passed. */
export function applyTimeout(request: RequestFacts, now: Date): TimeoutOutcome {
  if (request.state !== "pending" || !request.stageDeadline || request.stageDeadline.getTime() > now.getTime())
    return { result: "none" };
  const stage = request.stages[request.stageIndex];
  if (!stage) return { result: "none" };
  if (stage.onTimeout === "escalate" && !stage.escalated && stage.escalateTo) {
    const escalated: Stage = { ...stage, escalated: true };
    return { result: "escalated", stage: escalated, deadline: stageDeadline(stage, now) };
  }
  if (stage.onTimeout === "approve" && request.risk === "low") {
    if (request.stageIndex + 1 < request.stages.length)
      return { result: "next_stage", stageIndex: request.stageIndex + 1 };
    return {
      result: "approved",
      reason: `${stage.name} timed out and the policy approves low-risk roles at the timeout`,
    };
  }
  const why = stage.escalated ? "timed out after escalation" : "timed out";
  return { result: "denied", reason: `${stage.name} ${why} without enough approvals` };
}

/** What an activation stands on, as it is now: the requester's account and their eligibility for the role. */
export interface ActivationBasis {
  requesterActive: boolean;
  eligible: boolean;
}

/**
 * Why an activation may not start or go on, or null when it may. Checked wherever a request becomes
 * approved, provisioning, active or extended, and whenever an account, an eligibility or a group membership
 * is taken away: access never outlives what it was granted on.
 */
export function basisProblem(basis: ActivationBasis): string | null {
  if (!basis.requesterActive) return "the requester's account is disabled";
  if (!basis.eligible) return "the requester is no longer eligible for the role";
  return null;
}

/** One eligibility of a principal for a role, as times in ms (endsAt Infinity: no end). */
export interface EligibilityWindow {
  role: string;
  startsAt: number;
  endsAt: number;
}

/**
 * The roles for which `after` makes a principal eligible at some moment (from `now` on) that `before` did
 * not: a new role, an earlier start or a later end. Windows of one role are merged first, so holding a role
 * directly and through a group counts as their union.
 */
export function widenedEligibility(before: EligibilityWindow[], after: EligibilityWindow[], now: number): string[] {
  const union = (role: string) =>
    before
      .filter((w) => w.role === role && w.endsAt > w.startsAt)
      .sort((a, b) => a.startsAt - b.startsAt)
      .reduce<{ startsAt: number; endsAt: number }[]>((merged, w) => {
        const last = merged.at(-1);
        if (last && w.startsAt <= last.endsAt) last.endsAt = Math.max(last.endsAt, w.endsAt);
        else merged.push({ startsAt: w.startsAt, endsAt: w.endsAt });
        return merged;
      }, []);
  const widened = new Set<string>();
  for (const w of after) {
    const from = Math.max(w.startsAt, now);
    if (w.endsAt <= from) continue; // over already: grants nothing
    const covered = union(w.role).some((u) => u.startsAt <= from && u.endsAt >= w.endsAt);
    if (!covered) widened.add(w.role);
  }
  return [...widened].sort();
}

/** The expiry of an activation: fixed when it becomes active; only an approved extension moves it. */
export function expiryOf(activatedAt: Date, durationMs: number): Date {
  return new Date(activatedAt.getTime() + durationMs);
}

/** What a second request for a role says: the open one's state in plain words, and what to do instead. */
export function alreadyOpenMessage(role: string, open: { id: string; state: string }, maxExtensions: number): string {
  const state = open.state;
  const article = /^[aeiou]/.test(state) ? "an" : "a";
  const advice =
    state === "active"
      ? maxExtensions > 0
        ? `; extend it instead (stint extend ${role})`
        : `; its policy allows no extensions: deactivate it first (stint deactivate ${role}) or wait until it ends`
      : state === "pending"
        ? `; wait for its decision, or cancel it (stint cancel ${open.id})`
        : "";
  return `You already have ${article} ${state} request for ${role}${advice}.`;
}
