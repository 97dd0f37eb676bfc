/**
 * Nobody grants themselves access (Teleport GHSA-76cc-p55w-63g3). A change that could add to someone's
 * eligibility (an eligibility created or changed, a group membership, a configuration file) takes a
 * snapshot of the actor's own eligibility first and compares after the change, in the same transaction:
 * if the actor became eligible for more (a new role, an earlier start, a later end), or what a role they
 * are eligible for grants or demands changed (target and its definition, entitlement, risk, policy), or someone
 * joined a group that approves such a role (an account of the actor's making would approve their requests), the
 * change is refused and the transaction rolls back. Comparing outcomes instead of inspecting each kind of change covers every
 * path, including a group the actor belongs to and a file that adds them to one.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import type { Actor } from "../authz/authz.types.js";
import { widenedEligibility, type EligibilityWindow } from "./requests.rules.js";
import { eligibilityWindowsOf, rulesOfRoles } from "./requests.store.js";
import { reviewSpecs, reviewsCovering } from "./self-review.js";

export interface OwnAccessGuard {
  /** Throws SELF_GRANT (rolling the transaction back) when the actor's own eligibility grew since the snapshot. */
  check(tx: Kysely<Database>, now: Date): Promise<void>;
}

async function windowsOf(tx: Kysely<Database>, principalId: string): Promise<EligibilityWindow[]> {
  return (await eligibilityWindowsOf(tx, principalId)).map((row) => ({
    role: row.role_name,
    startsAt: new Date(row.starts_at).getTime(),
    endsAt: row.ends_at === null ? Number.POSITIVE_INFINITY : new Date(row.ends_at).getTime(),
  }));
}

/**
 * What a role grants and under which rules, for the roles given: its target and that target's definition (kind,
 * address, credential, identity mapping, options: the session login the proxies sign in as is the target's unless
 * the role names its own), entitlement, risk and policy. Changing any of these for a role one is eligible for is
 * changing one's own access (dropping an approval stage, widening an entitlement, switching the target's session
 * login to a stronger role's), so it is refused like a new eligibility. Labels are not part of it. With it, who
 * approves each role: the members of the groups its policy names.
 */
async function rulesOf(tx: Kysely<Database>, roles: string[]): Promise<RulesSnapshot> {
  const rows = await rulesOfRoles(tx, roles);
  const named = new Map(rows.map((r) => [r.name, groupsNamedIn(r.policy_spec)]));
  const members = await membersOf(tx, [...new Set([...named.values()].flat())]);
  return {
    rules: new Map(
      rows.map((r) => [
        r.name,
        JSON.stringify([
          r.target_id,
          r.entitlement,
          r.risk,
          r.policy_id,
          r.policy_spec,
          r.target_kind,
          r.target_address,
          r.target_config,
        ]),
      ]),
    ),
    approvers: new Map(rows.map((r) => [r.name, new Set(named.get(r.name)!.flatMap((g) => members.get(g) ?? []))])),
  };
}

interface RulesSnapshot {
  rules: Map<string, string>;
  /** Per role, the members of every group its policy names (approvers, their escalation, moderators). */
  approvers: Map<string, Set<string>>;
}

/** Every `groups: [...]` in a policy's spec: approval stages and their escalation, outside-window approvers, moderators. */
function groupsNamedIn(spec: unknown): string[] {
  const found: string[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (typeof value === "object" && value !== null)
      for (const [key, inner] of Object.entries(value)) {
        if (key === "groups" && Array.isArray(inner))
          found.push(...inner.filter((g): g is string => typeof g === "string"));
        else walk(inner);
      }
  };
  walk(typeof spec === "string" ? (JSON.parse(spec) as unknown) : spec);
  return found;
}

async function membersOf(tx: Kysely<Database>, groups: string[]): Promise<Map<string, string[]>> {
  if (groups.length === 0) return new Map();
  const rows = await tx
    .selectFrom("group_members")
    .innerJoin("groups", "groups.id", "group_members.group_id")
    .select(["groups.name", "group_members.principal_id"])
    .where("groups.name", "in", groups)
    .execute();
  const members = new Map<string, string[]>();
  for (const row of rows) members.set(row.name, [...(members.get(row.name) ?? []), row.principal_id]);
  return members;
}

/** Snapshots the actor's eligibility; workers and the system (no principal) are not guarded. */
export async function guardOwnAccess(tx: Kysely<Database>, actor: Actor): Promise<OwnAccessGuard> {
  if (actor.kind !== "principal") return { check: async () => undefined };
  const before = await windowsOf(tx, actor.id);
  const mine = [...new Set(before.map((w) => w.role))];
  const rulesBefore = await rulesOf(tx, mine);
  const reviewsBefore = await reviewsCovering(tx, actor.id);
  return {
    async check(db, now) {
      const widened = widenedEligibility(before, await windowsOf(db, actor.id), now.getTime());
      if (widened.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change would make you eligible for more (${widened.join(", ")}); someone else must make it.`,
          { roles: widened },
        );
      const after = await rulesOf(db, mine);
      const changed = mine.filter(
        (role) => after.rules.has(role) && after.rules.get(role) !== rulesBefore.rules.get(role),
      );
      if (changed.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change alters what a role you are eligible for grants, or its policy (${changed.join(", ")}); someone else must make it.`,
          { roles: changed },
        );
      // Choosing who approves one's own requests: someone joined a group that approves a role one is eligible for.
      const joined = mine.filter((role) => {
        const was = rulesBefore.approvers.get(role) ?? new Set<string>();
        return [...(after.approvers.get(role) ?? [])].some((id) => !was.has(id));
      });
      if (joined.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change adds an approver of a role you are eligible for (${joined.join(", ")}); someone else must make it.`,
          { roles: joined },
        );
      // Weakening the review of one's own access: a definition covering it narrowed, stretched or deleted.
      const reviewsAfter = await reviewSpecs(db, [...reviewsBefore.keys()]);
      const weakened = [...reviewsBefore].filter(([name, spec]) => reviewsAfter.get(name) !== spec).map(([n]) => n);
      if (weakened.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change alters or removes an access review of your own access (${weakened.join(", ")}); someone else must make it.`,
          { reviews: weakened },
        );
    },
  };
}
