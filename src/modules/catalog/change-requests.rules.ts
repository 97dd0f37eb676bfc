/**
 * Four-eyes on changes to access itself, the pure part: which planned changes widen access and at which risk
 * tier, whether a plan is held for a second admin, and the lifecycle of a change request. No IO, no clock:
 * callers pass `now`.
 *
 * A change widens access when it adds eligibility (or moves its start earlier or its end later), adds members to
 * a group that is eligible for, owns or approves a role, lowers a role's risk tier or changes its target,
 * entitlement, owners or policy to a looser one, loosens a policy (a longer duration, no MFA, fewer or other
 * approvers, an approving timeout, break-glass, unrecorded sessions, …) or touches a target's credential, address,
 * identity mapping or options. Anything not known to narrow counts as widening. Deletions narrow.
 *
 * A plan is held as a whole when any of its changes widens access at a tier four-eyes covers: a widening change
 * inside a mixed plan does not slip through with the narrowing ones (the plan is never split).
 */
import { createHash } from "node:crypto";
import { parseDuration } from "../../lib/duration.js";
import { diffValues } from "./catalog.plan.rules.js";
import type { CatalogState, Change, DesiredCatalog, FieldChange, RiskTier, RoleState } from "./catalog.types.js";
import { effectiveRisk } from "./risk-floor.rules.js";
import { finalState } from "./catalog.plan.rules.js";

export const RISK_ORDER: readonly RiskTier[] = ["low", "medium", "high", "critical"];

export type Effect = "widens" | "narrows" | "neutral";

export interface ChangeAssessment {
  kind: Change["kind"];
  action: Change["action"];
  name: string;
  effect: Effect;
  /** The highest risk tier of the roles the change reaches; null when it reaches none. */
  tier: RiskTier | null;
  /** Why it widens, one sentence per reason (empty unless it widens). */
  reasons: string[];
}

export interface PlanAssessment {
  changes: ChangeAssessment[];
  /** Held for a second admin: some change widens access at a tier in `tiers`. */
  held: boolean;
  /** The highest tier among the widening changes that make it held (null when not held). */
  tier: RiskTier | null;
}

export function maxTier(...tiers: (RiskTier | null | undefined)[]): RiskTier | null {
  let best: RiskTier | null = null;
  for (const tier of tiers)
    if (tier && (best === null || RISK_ORDER.indexOf(tier) > RISK_ORDER.indexOf(best))) best = tier;
  return best;
}

const ms = (text: unknown): number | null => {
  if (typeof text !== "string") return null;
  try {
    return parseDuration(text);
  } catch {
    return null;
  }
};
const time = (value: unknown): number | null =>
  typeof value === "string" && !Number.isNaN(Date.parse(value)) ? Date.parse(value) : null;

/**
 * Whether one policy leaf change (as the plan shows it, `spec.` prefix optional) widens access; the reason when it
 * does, null when it narrows or does not matter for access. Unknown fields widen.
 */
export function policyFieldWidens(change: FieldChange): string | null {
  const field = change.field.replace(/^spec\./, "");
  const { from, to } = change;
  const longer = (what: string) => {
    const a = ms(from);
    const b = ms(to);
    return a !== null && b !== null && b <= a ? null : `${what} longer (${String(from)} → ${String(to)})`;
  };
  switch (field) {
    case "description":
    case "notify":
    case "session.queryParameters":
      return null;
    case "defaultDuration":
      return longer("default duration");
    case "maxDuration":
      return longer("maximum duration");
    case "mfa.maxAge":
      return longer("MFA age");
    case "approval.mfa.maxAge":
      return longer("approver MFA age");
    case "mfa.required":
    case "approval.mfa.required":
      return to === true ? null : `${field === "mfa.required" ? "MFA" : "approver MFA"} no longer required`;
    case "mfa.methods":
    case "approval.mfa.methods": {
      // Absent means any method; a list narrows to its members.
      const what = field === "mfa.methods" ? "MFA" : "approver MFA";
      if (to === undefined) return `any ${what} method accepted`;
      const before = Array.isArray(from) ? (from as unknown[]) : null;
      const after = to as unknown[];
      return before === null || after.every((m) => before.includes(m)) ? null : `more ${what} methods accepted`;
    }
    case "approval.mfa":
      return approverMfaWidens(from, to);
    case "justification.minLength":
      return typeof from === "number" && typeof to === "number" && to >= from ? null : "shorter justification";
    case "justification.ticketRequired":
      return to === true ? null : "ticket no longer required";
    case "justification.ticketPattern":
      return from === undefined && to !== undefined ? null : "ticket pattern changed";
    case "justification.rejectWords": {
      const before = Array.isArray(from) ? (from as unknown[]) : [];
      const after = Array.isArray(to) ? (to as unknown[]) : [];
      return before.every((w) => after.includes(w)) ? null : "fewer rejected words";
    }
    case "approval.stages":
      return stagesWiden(from, to);
    case "approval.sameApproverAcrossStages":
      return to === false ? null : "one person may approve several stages";
    case "windows": {
      const before = Array.isArray(from) ? from : [];
      const after = Array.isArray(to) ? to : [];
      return before.length === 0 && after.length > 0 ? null : "activation windows changed";
    }
    case "outsideWindow":
      return to === "deny" ? null : "activation outside the windows allowed with approval";
    case "maxExtensions":
      return typeof from === "number" && typeof to === "number" && to <= from ? null : "more extensions";
    case "breakGlass":
      return to === false ? null : "break-glass allowed";
    case "drift":
      return to === "remove" ? null : "drift only reported";
    case "session.recording":
      return to === "required" ? null : "session recording optional";
    case "session.portForwarding":
      return to === false ? null : "port forwarding allowed";
    case "session.files":
      return filesWiden(from, to);
    case "session.files.download":
      return to === "deny" ? null : "file downloads allowed";
    case "session.files.upload":
      return to === "deny" ? null : "file uploads allowed";
    case "session.files.maxBytes":
      return filesWiden({ maxBytes: from }, { maxBytes: to });
    case "session.moderator":
      return moderatorWidens(from, to);
    case "session.moderator.groups":
      return moderatorWidens({ groups: from }, { groups: to });
    default:
      return `${field} changed`;
  }
}

/** The file-transfer policy (absent: every transfer passes) lets more through: a direction allowed, a larger cap or none. */
function filesWiden(from: unknown, to: unknown): string | null {
  const read = (value: unknown) => {
    const files = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
    return {
      download: files.download === "deny",
      upload: files.upload === "deny",
      maxBytes: typeof files.maxBytes === "number" ? files.maxBytes : Infinity,
    };
  };
  const before = read(from);
  const after = read(to);
  if (before.download && !after.download) return "file downloads allowed";
  if (before.upload && !after.upload) return "file uploads allowed";
  if (after.maxBytes > before.maxBytes) return "larger file transfers allowed";
  return null;
}

/**
 * A moderator requirement (live-sessions.md) lets more through when it goes, or when a group that may admit
 * a session is added (more people may start one); requiring one, or fewer groups, narrows.
 */
function moderatorWidens(from: unknown, to: unknown): string | null {
  const groups = (value: unknown): string[] | null => {
    const rule = (typeof value === "object" && value !== null ? value : {}) as { groups?: unknown };
    return Array.isArray(rule.groups) ? rule.groups.filter((g): g is string => typeof g === "string") : null;
  };
  const before = groups(from);
  const after = groups(to);
  if (after === null || after.length === 0)
    return before === null || before.length === 0 ? null : "moderator no longer required";
  if (before === null || before.length === 0) return null;
  return after.every((group) => before.includes(group)) ? null : "more moderator groups";
}

/**
 * The approver MFA rule written or taken out whole. Absent, it asks critical roles' approvers only, so taking it out
 * counts as no longer required, and writing one narrows only when it requires MFA no older than the absent rule's
 * 15m (`approverMfaRule` in requests/policy.rules.ts).
 */
function approverMfaWidens(from: unknown, to: unknown): string | null {
  if (to === undefined || typeof to !== "object" || to === null)
    return (from as { required?: unknown } | undefined)?.required === false ? null : "approver MFA no longer required";
  const rule = to as { required?: unknown; maxAge?: unknown };
  if (rule.required === false) return "approver MFA no longer required";
  const age = ms(rule.maxAge ?? "15m");
  return age !== null && age <= 15 * 60_000 ? null : `approver MFA age longer (${String(rule.maxAge)})`;
}

type Stage = { approvers?: unknown; count?: number; onTimeout?: string; [key: string]: unknown };

/** More stages after the same ones, or the same stages needing more approvals, narrow; anything else widens. */
function stagesWiden(from: unknown, to: unknown): string | null {
  const before = (Array.isArray(from) ? from : []) as Stage[];
  const after = (Array.isArray(to) ? to : []) as Stage[];
  if (after.length < before.length) return `fewer approval stages (${before.length} → ${after.length})`;
  for (let i = 0; i < after.length; i += 1) {
    const next = after[i]!;
    if (next.onTimeout === "approve" && before[i]?.onTimeout !== "approve")
      return `approval stage ${i + 1} approves on timeout`;
    const previous = before[i];
    if (previous === undefined) continue; // an added stage
    const changes = diffValues("", previous, next).filter((c) => c.field !== ".name");
    for (const c of changes) {
      if (c.field === ".count" && typeof c.from === "number" && typeof c.to === "number" && c.to >= c.from) continue;
      if (c.field === ".count") return `approval stage ${i + 1} needs fewer approvals`;
      return `approval stage ${i + 1} changed (${c.field.slice(1)})`;
    }
  }
  return null;
}

/** A role at the higher of its declared tier and its floor in that state (risk-floor.rules.ts). */
function riskIn(state: ReturnType<typeof finalState>, role: RoleState | undefined): RiskTier | undefined {
  if (!role) return undefined;
  const target = state.target.get(role.target);
  const policy = state.policy.get(role.policy);
  if (!target || !policy) return role.risk;
  const grant = { targetKind: target.kind, targetLabels: target.labels, entitlement: role.entitlement };
  return effectiveRisk({ ...grant, policy: policy.spec }, role.risk);
}

/** Where each group reaches roles (eligible for, owns, or approves through a policy), for tiers. */
function groupReach(state: ReturnType<typeof finalState>, group: string): RiskTier | null {
  let tier: RiskTier | null = null;
  for (const e of state.eligibility.values())
    if (e.subjectKind === "group" && e.subject === group) tier = maxTier(tier, riskIn(state, state.role.get(e.role)));
  for (const role of state.role.values()) {
    if (role.owners.includes(group)) tier = maxTier(tier, riskIn(state, role));
    const policy = state.policy.get(role.policy);
    if (policy && JSON.stringify(policy.spec).includes(JSON.stringify(group)))
      tier = maxTier(tier, riskIn(state, role));
  }
  return tier;
}

/**
 * Each change of a plan with its effect on access and the risk tier it reaches; held when any widening change
 * reaches a tier in `tiers`. `current` is the catalog the plan was made against, `desired` the file.
 */
export function assessPlan(
  current: CatalogState,
  desired: DesiredCatalog,
  changes: readonly Change[],
  tiers: readonly RiskTier[],
): PlanAssessment {
  const after = finalState(current, desired);
  const before = finalState(current, { prune: false });
  const roleTier = (name: string) =>
    maxTier(riskIn(after, after.role.get(name)), riskIn(before, before.role.get(name)));
  const rolesOf = (pick: (role: { target: string; policy: string }) => boolean) =>
    maxTier(
      ...[...after.role.values()].filter(pick).map((role) => riskIn(after, role)),
      ...[...before.role.values()].filter(pick).map((role) => riskIn(before, role)),
    );

  const assessed = changes.map((change): ChangeAssessment => {
    const reasons: string[] = [];
    let tier: RiskTier | null = null;
    const base = { kind: change.kind, action: change.action, name: change.name };
    if (change.action === "delete") return { ...base, effect: "narrows", tier: null, reasons };
    const field = (name: string) => change.fields.find((f) => f.field === name);
    switch (change.kind) {
      case "eligibility": {
        const e = after.eligibility.get(change.name) ?? before.eligibility.get(change.name);
        tier = e ? roleTier(e.role) : null;
        if (change.action === "create") reasons.push("new eligibility");
        const from = field("from");
        if (from && change.action === "update") {
          const a = time(from.from);
          const b = time(from.to);
          if (a === null || b === null || b < a) reasons.push("starts earlier");
        }
        const until = field("until");
        if (until && change.action === "update") {
          const a = time(until.from);
          const b = time(until.to);
          if (until.to === undefined || until.to === null) reasons.push("no longer ends");
          else if (a !== null && b !== null && b > a) reasons.push("ends later");
        }
        break;
      }
      case "group": {
        tier = groupReach(after, change.name);
        const members = field("members");
        const was = Array.isArray(members?.from) ? (members.from as string[]) : [];
        const added = Array.isArray(members?.to) ? (members.to as string[]).filter((m) => !was.includes(m)) : [];
        if (added.length > 0) reasons.push(`members added: ${added.join(", ")}`);
        break;
      }
      case "role": {
        const role = after.role.get(change.name);
        const old = before.role.get(change.name);
        tier = maxTier(riskIn(after, role), riskIn(before, old));
        if (change.action === "create") break; // grants nothing until someone is eligible (itself held)
        for (const f of change.fields) {
          if (f.field === "description") continue;
          if (f.field === "risk") {
            const a = RISK_ORDER.indexOf(f.from as RiskTier);
            const b = RISK_ORDER.indexOf(f.to as RiskTier);
            if (b < a) reasons.push(`risk lowered (${String(f.from)} → ${String(f.to)})`);
          } else if (f.field === "owners") {
            const was2 = Array.isArray(f.from) ? (f.from as string[]) : [];
            const added = Array.isArray(f.to) ? (f.to as string[]).filter((o) => !was2.includes(o)) : [];
            if (added.length > 0) reasons.push(`owners added: ${added.join(", ")}`);
          } else if (f.field === "policy") {
            const a = after.policy.get(String(f.from)) ?? before.policy.get(String(f.from));
            const b = after.policy.get(String(f.to));
            const looser =
              a && b
                ? diffValues("spec", a.spec, b.spec)
                    .map(policyFieldWidens)
                    .filter((r): r is string => r !== null)
                : ["policy replaced"];
            if (looser.length > 0) reasons.push(`policy ${String(f.to)} is looser: ${looser.join("; ")}`);
          } else {
            reasons.push(`${f.field.split(".")[0]} changed`);
          }
        }
        break;
      }
      case "policy": {
        tier = rolesOf((role) => role.policy === change.name);
        if (change.action === "create") break; // no role uses it before a role change says so (assessed there)
        for (const f of change.fields) {
          const reason = policyFieldWidens(f);
          if (reason) reasons.push(reason);
        }
        break;
      }
      case "target": {
        // A target no role uses reaches the lowest tier: its credential still matters.
        tier = maxTier(rolesOf((role) => role.target === change.name)) ?? "low";
        for (const f of change.fields) {
          const top = f.field.split(".")[0]!;
          if (top === "labels") continue;
          if (change.action === "create" && top !== "credential") continue;
          reasons.push(top === "credential" ? "credential touched" : `${top} changed`);
        }
        break;
      }
      case "review":
        break;
    }
    const unique = [...new Set(reasons)];
    return { ...base, effect: unique.length > 0 ? "widens" : "neutral", tier, reasons: unique };
  });
  const holding = assessed.filter((c) => c.effect === "widens" && c.tier !== null && tiers.includes(c.tier));
  return { changes: assessed, held: holding.length > 0, tier: maxTier(...holding.map((c) => c.tier)) };
}

/** SHA-256 over the catalog as configuration as code sees it, entities sorted by kind and name. */
export function catalogFingerprint(state: CatalogState): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value !== null && typeof value === "object")
      return Object.fromEntries(
        Object.keys(value as object)
          .sort()
          .map((key) => [key, canonical((value as Record<string, unknown>)[key])]),
      );
    return value;
  };
  const entries: string[] = [];
  const sections: [string, unknown[] | undefined][] = [
    ["group", state.groups],
    ["policy", state.policies],
    ["target", state.targets],
    ["role", state.roles],
    ["eligibility", state.eligibility],
    ["review", state.reviews],
  ];
  for (const [kind, items] of sections)
    for (const item of items ?? []) entries.push(`${kind}:${JSON.stringify(canonical(item))}`);
  return createHash("sha256").update(entries.sort().join("\n")).digest("hex");
}

// ---------------------------------------------------------------------------
// Lifecycle

export type ChangeRequestStatus = "pending" | "applied" | "denied" | "expired" | "stale";

export interface DecisionFacts {
  status: ChangeRequestStatus;
  authorId: string;
  expiresAt: Date;
}

export type DecisionRefusal = "CHANGE_REQUEST_NOT_PENDING" | "CHANGE_REQUEST_EXPIRED" | "CHANGE_REQUEST_SELF_APPROVAL";

/** The status a reader sees: a pending request past its expiry is expired, written or not. */
export function effectiveStatus(status: ChangeRequestStatus, expiresAt: Date, now: Date): ChangeRequestStatus {
  return status === "pending" && expiresAt.getTime() <= now.getTime() ? "expired" : status;
}

/**
 * Whether `deciderId` may approve (or deny) the request now. The author never approves their own change; the
 * author may withdraw it (deny), which needs no second pair of eyes.
 */
export function decisionRefusal(
  facts: DecisionFacts,
  deciderId: string,
  decision: "approve" | "deny",
  now: Date,
): DecisionRefusal | null {
  if (facts.status !== "pending") return "CHANGE_REQUEST_NOT_PENDING";
  if (effectiveStatus(facts.status, facts.expiresAt, now) === "expired") return "CHANGE_REQUEST_EXPIRED";
  if (decision === "approve" && facts.authorId === deciderId) return "CHANGE_REQUEST_SELF_APPROVAL";
  return null;
}
