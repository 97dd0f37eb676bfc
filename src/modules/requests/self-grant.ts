/**
 * Nobody grants themselves access (Teleport GHSA-76cc-p55w-63g3). A change that could add to someone's
 * eligibility (an eligibility created or changed, a group membership, a configuration file) takes a
 * snapshot of the actor's own eligibility first and compares after the change, in the same transaction:
 * if the actor became eligible for more (a new role, an earlier start, a later end), or what a role they
 * are eligible for grants or demands changed (target and its definition, entitlement, risk, policy), the change is refused and
 * the transaction rolls back. Comparing outcomes instead of inspecting each kind of change covers every
 * path, including a group the actor belongs to and a file that adds them to one.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { StintError } from "../../lib/errors.js";
import type { Actor } from "../authz/authz.types.js";
import { widenedEligibility, type EligibilityWindow } from "./requests.rules.js";
import { eligibilityWindowsOf, rulesOfRoles } from "./requests.store.js";

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
 * login to a stronger role's), so it is refused like a new eligibility. Labels are not part of it.
 */
async function rulesOf(tx: Kysely<Database>, roles: string[]): Promise<Map<string, string>> {
  const rows = await rulesOfRoles(tx, roles);
  return new Map(
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
  );
}

/** Snapshots the actor's eligibility; workers and the system (no principal) are not guarded. */
export async function guardOwnAccess(tx: Kysely<Database>, actor: Actor): Promise<OwnAccessGuard> {
  if (actor.kind !== "principal") return { check: async () => undefined };
  const before = await windowsOf(tx, actor.id);
  const mine = [...new Set(before.map((w) => w.role))];
  const rulesBefore = await rulesOf(tx, mine);
  return {
    async check(db, now) {
      const widened = widenedEligibility(before, await windowsOf(db, actor.id), now.getTime());
      if (widened.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change would make you eligible for more (${widened.join(", ")}); someone else must make it.`,
          { roles: widened },
        );
      const rulesAfter = await rulesOf(db, mine);
      const changed = mine.filter((role) => rulesAfter.has(role) && rulesAfter.get(role) !== rulesBefore.get(role));
      if (changed.length > 0)
        throw new StintError(
          "SELF_GRANT",
          `This change alters what a role you are eligible for grants, or its policy (${changed.join(", ")}); someone else must make it.`,
          { roles: changed },
        );
    },
  };
}
