/**
 * Nobody weakens the review of their own access. Recurring access reviews (`reviews:` in the configuration file,
 * stored in review_definitions) are how someone else looks at whether you still need a role; whoever may write
 * the catalog (admin, security) could narrow the scope of the one covering their own role, stretch its period or
 * delete it, and keep the access unreviewed. Taken with the SELF_GRANT snapshot (self-grant.ts): the definitions
 * whose scope covers one of the actor's eligibilities, compared after the change; any change to one, or its
 * deletion, is refused with SELF_GRANT. Adding reviews is always allowed.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

interface Scope {
  roles?: string[];
  targets?: string[];
  groups?: string[];
  risk?: string[];
}

interface HeldEligibility {
  role: string;
  target: string;
  risk: string;
  /** The group it is held through, or null when held directly. */
  group: string | null;
}

const parse = (spec: unknown): Record<string, unknown> =>
  (typeof spec === "string" ? JSON.parse(spec) : (spec ?? {})) as Record<string, unknown>;

/** Whether a review's scope reaches an eligibility of someone who belongs to `groups` ("every field narrows"). */
function covers(scope: Scope, held: HeldEligibility, groups: ReadonlySet<string>): boolean {
  if (scope.roles && !scope.roles.includes(held.role)) return false;
  if (scope.targets && !scope.targets.includes(held.target)) return false;
  if (scope.risk && !scope.risk.includes(held.risk)) return false;
  if (scope.groups)
    return held.group !== null ? scope.groups.includes(held.group) : scope.groups.some((g) => groups.has(g));
  return true;
}

/** The stored spec (as JSON text) of each review definition named; absent when deleted. */
export async function reviewSpecs(db: Kysely<Database>, names: string[]): Promise<Map<string, string>> {
  if (names.length === 0) return new Map();
  const rows = await db.selectFrom("review_definitions").select(["name", "spec"]).where("name", "in", names).execute();
  return new Map(rows.map((row) => [row.name, JSON.stringify(parse(row.spec))]));
}

/** The review definitions whose scope covers one of the principal's live eligibilities: name → spec. */
export async function reviewsCovering(db: Kysely<Database>, principalId: string): Promise<Map<string, string>> {
  const groups = new Set(
    (
      await db
        .selectFrom("group_members")
        .innerJoin("groups", "groups.id", "group_members.group_id")
        .select("groups.name")
        .where("group_members.principal_id", "=", principalId)
        .execute()
    ).map((row) => row.name),
  );
  const held: HeldEligibility[] = (
    await db
      .selectFrom("eligibilities")
      .innerJoin("roles", "roles.id", "eligibilities.role_id")
      .innerJoin("targets", "targets.id", "roles.target_id")
      .leftJoin("groups", "groups.id", "eligibilities.group_id")
      .select(["roles.name as role", "targets.name as target", "roles.risk", "groups.name as group"])
      .where("eligibilities.removed_at", "is", null)
      .where((eb) =>
        eb.or([
          eb("eligibilities.principal_id", "=", principalId),
          eb(
            "eligibilities.group_id",
            "in",
            eb.selectFrom("group_members").select("group_id").where("principal_id", "=", principalId),
          ),
        ]),
      )
      .execute()
  ).map((row) => ({ role: row.role, target: row.target, risk: String(row.risk), group: row.group ?? null }));
  if (held.length === 0) return new Map();
  const definitions = await db.selectFrom("review_definitions").select(["name", "spec"]).execute();
  const covering = new Map<string, string>();
  for (const definition of definitions) {
    const spec = parse(definition.spec);
    const scope = (spec.scope ?? {}) as Scope;
    if (held.some((h) => covers(scope, h, groups))) covering.set(definition.name, JSON.stringify(spec));
  }
  return covering;
}
