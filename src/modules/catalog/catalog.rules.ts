/**
 * Pure catalog rules shared by the API and configuration as code: which roles
 * may use a policy, what a policy refers to, eligibility status and the dates
 * of the configuration file. No IO, no clock: callers pass `now`.
 */
import type { PolicySpec } from "../../contract/catalog.js";
import { parseDuration } from "../../lib/duration.js";
import type { EligibilityState, Path, RiskTier, SubjectKind, TargetConfig } from "./catalog.types.js";

/**
 * Reads a target row's `config` column, filling what rows written before these fields existed lack. Other modules
 * (grants, vault) decode the target rows they are handed with it.
 */
export function targetConfig(raw: unknown): TargetConfig {
  const config = (raw ?? {}) as Partial<TargetConfig>;
  return {
    credential: config.credential ?? null,
    identity: { template: config.identity?.template ?? "{{name}}", map: config.identity?.map ?? {} },
    options: config.options ?? {},
  };
}

/** Indexes of the approval stages that approve by themselves when their timeout passes. */
export function autoApprovingStages(spec: PolicySpec): number[] {
  return spec.approval.stages.flatMap((stage, index) => (stage.onTimeout === "approve" ? [index] : []));
}

/** Why a role of this risk may not use this policy, or null when it may. */
export function riskProblem(spec: PolicySpec, risk: RiskTier): string | null {
  const stages = autoApprovingStages(spec);
  if (risk === "low" || stages.length === 0) return null;
  return `a policy that approves on timeout (approval.stages[${stages[0]}].onTimeout: approve) may only be used by low-risk roles, not ${risk}`;
}

/** Problems of a policy on its own (beyond its schema), each with its path inside the spec. */
export function policyProblems(spec: PolicySpec): { path: Path; message: string }[] {
  const problems: { path: Path; message: string }[] = [];
  if (parseDuration(spec.defaultDuration) > parseDuration(spec.maxDuration)) {
    problems.push({
      path: ["defaultDuration"],
      message: `defaultDuration ${spec.defaultDuration} is longer than maxDuration ${spec.maxDuration}`,
    });
  }
  return problems;
}

export interface PolicyReference {
  kind: "group" | "user";
  name: string;
  /** Inside the spec, like approval.stages[0].approvers.groups[1]. */
  path: Path;
}

/** Every group and user a policy names as an approver. */
export function policyReferences(spec: PolicySpec): PolicyReference[] {
  const references: PolicyReference[] = [];
  const approvers = (set: { groups: string[]; users: string[] } | undefined, path: Path) => {
    if (!set) return;
    set.groups.forEach((name, i) => references.push({ kind: "group", name, path: [...path, "groups", i] }));
    set.users.forEach((name, i) => references.push({ kind: "user", name, path: [...path, "users", i] }));
  };
  spec.approval.stages.forEach((stage, index) => {
    approvers(stage.approvers, ["approval", "stages", index, "approvers"]);
    approvers(stage.escalateTo, ["approval", "stages", index, "escalateTo"]);
  });
  approvers(spec.outsideWindowApprovers, ["outsideWindowApprovers"]);
  return references;
}

/** The key of an eligibility in plans and audit subjects: `role/user:alice`, `role/group:sre`. */
export function eligibilityName(e: Pick<EligibilityState, "role" | "subjectKind" | "subject">): string {
  return `${e.role}/${e.subjectKind}:${e.subject}`;
}

export function subjectKindOf(row: { principal: string | null }): SubjectKind {
  return row.principal !== null ? "user" : "group";
}

export function eligibilityStatus(startsAt: Date, endsAt: Date | null, now: Date): "scheduled" | "active" | "ended" {
  if (now.getTime() < startsAt.getTime()) return "scheduled";
  if (endsAt !== null && endsAt.getTime() <= now.getTime()) return "ended";
  return "active";
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const DAY_MS = 86_400_000;

/**
 * A file's `from`/`until` as an ISO time. A date alone means the whole day in
 * UTC: `from` starts at its midnight, `until` ends at the next midnight.
 */
export function configTimeToIso(text: string, edge: "from" | "until"): string {
  if (DATE_ONLY.test(text)) {
    const midnight = Date.parse(`${text}T00:00:00Z`);
    return new Date(edge === "until" ? midnight + DAY_MS : midnight).toISOString();
  }
  return new Date(text).toISOString();
}

/** The inverse of configTimeToIso: midnight UTC is written as a date, anything else as a UTC time. */
export function isoToConfigTime(iso: string, edge: "from" | "until"): string {
  const ms = Date.parse(iso);
  if (ms % DAY_MS === 0) return new Date(edge === "until" ? ms - DAY_MS : ms).toISOString().slice(0, 10);
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

/** Sorted, without repeats: lists that are sets (members, owners). */
export function sortedSet(values: readonly string[]): string[] {
  return [...new Set(values)].sort();
}
