/**
 * Configuration as code, the pure part: what a file changes (planConfig) and
 * what is wrong with it given the current catalog (checkConfig). Only the
 * sections a file lists are reconciled; deletions need `prune: true`.
 */
import {
  eligibilityName,
  policyProblems,
  policyReferences,
  riskProblem,
  autoApprovingStages,
} from "./catalog.rules.js";
import { riskFloorProblem } from "./risk-floor.rules.js";
import {
  KINDS,
  SECTION_OF,
  type CatalogFacts,
  type CatalogState,
  type Change,
  type DesiredCatalog,
  type EligibilityState,
  type FieldChange,
  type GroupState,
  type Kind,
  type Located,
  type Path,
  type PathProblem,
  type Plan,
  type PolicyState,
  type ReviewState,
  type RoleState,
  type TargetState,
} from "./catalog.types.js";

// ---------------------------------------------------------------------------
// Values

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Structural equality of JSON-like values; key order does not matter, undefined properties do not count. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => deepEqual(item, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) if (!deepEqual(a[key], b[key])) return false;
    return true;
  }
  return false;
}

/** Leaf-level differences: nested objects are walked, arrays and scalars compared whole. */
export function diffValues(field: string, from: unknown, to: unknown, out: FieldChange[] = []): FieldChange[] {
  if (isPlainObject(from) && isPlainObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    for (const key of keys) diffValues(`${field}.${key}`, from[key], to[key], out);
    return out;
  }
  if (deepEqual(from, to)) return out;
  out.push({ field, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) });
  return out;
}

// ---------------------------------------------------------------------------
// Kinds

type EntityOf = {
  group: GroupState;
  policy: PolicyState;
  target: TargetState;
  role: RoleState;
  eligibility: EligibilityState;
  review: ReviewState;
};

/** The fields a plan compares, in the order it shows them. `name` is the key, never a field. */
const FIELDS: { [K in Kind]: readonly (keyof EntityOf[K] & string)[] } = {
  group: ["description", "members"],
  policy: ["description", "spec"],
  target: ["kind", "address", "labels", "credential", "identity", "options"],
  role: ["description", "target", "policy", "risk", "owners", "entitlement"],
  eligibility: ["from", "until", "reason"],
  review: ["every", "duration", "scope", "reviewers", "remindEvery", "escalateTo", "onMissed"],
};

export function keyOf<K extends Kind>(kind: K, entity: EntityOf[K]): string {
  return kind === "eligibility" ? eligibilityName(entity as EligibilityState) : (entity as { name: string }).name;
}

/** Field changes from `from` to `to`; an eligibility's unsaid `from` is never compared. */
export function diffEntity<K extends Kind>(kind: K, from: EntityOf[K], to: EntityOf[K]): FieldChange[] {
  const out: FieldChange[] = [];
  for (const field of FIELDS[kind]) {
    if (kind === "eligibility" && field === "from" && (to as EligibilityState).from === undefined) continue;
    diffValues(field, from[field], to[field], out);
  }
  return out;
}

/** What a create sets, leaving out what is empty anyway (null, [], {}). */
function createFields<K extends Kind>(kind: K, entity: EntityOf[K]): FieldChange[] {
  const empty = (value: unknown) =>
    value === undefined ||
    value === null ||
    (Array.isArray(value) && value.length === 0) ||
    (isPlainObject(value) && Object.keys(value).length === 0);
  return FIELDS[kind].flatMap((field) => (empty(entity[field]) ? [] : [{ field, to: entity[field] }]));
}

function sectionOf<K extends Kind>(state: CatalogState | DesiredCatalog, kind: K): EntityOf[K][] | undefined {
  return (state as unknown as Record<string, EntityOf[K][] | undefined>)[SECTION_OF[kind]];
}

const PLURAL: Record<Kind, [string, string]> = {
  group: ["group", "groups"],
  policy: ["policy", "policies"],
  target: ["target", "targets"],
  role: ["role", "roles"],
  eligibility: ["eligibility", "eligibilities"],
  review: ["review campaign", "review campaigns"],
};

// ---------------------------------------------------------------------------
// The plan

/**
 * The changes that make `current` what `desired` says. Creates and updates run
 * in dependency order (groups, policies, targets, roles, eligibility), deletes
 * in the reverse order; within a kind, by name.
 */
export function planConfig(current: CatalogState, desired: DesiredCatalog): Plan {
  const upserts: Change[] = [];
  const deletes: Change[][] = [];
  const notes: string[] = [];
  for (const kind of KINDS) {
    const wanted = sectionOf(desired, kind);
    if (wanted === undefined) continue;
    const existing = new Map<string, EntityOf[typeof kind]>();
    for (const entity of sectionOf(current, kind) ?? []) {
      const key = keyOf(kind, entity);
      if (!existing.has(key)) existing.set(key, entity);
    }
    const seen = new Set<string>();
    const changes: Change[] = [];
    for (const entity of wanted) {
      const key = keyOf(kind, entity);
      if (seen.has(key)) continue; // a duplicate: checkConfig reports it
      seen.add(key);
      const before = existing.get(key);
      if (before === undefined) {
        changes.push({ action: "create", kind, name: key, fields: createFields(kind, entity) });
        continue;
      }
      const fields = diffEntity(kind, before, entity);
      if (fields.length > 0) changes.push({ action: "update", kind, name: key, fields });
    }
    upserts.push(...changes.sort(byName));
    const unlisted = [...existing.keys()].filter((key) => !seen.has(key)).sort();
    if (desired.prune) {
      deletes.push(unlisted.map((name) => ({ action: "delete", kind, name, fields: [] })));
    } else if (unlisted.length > 0) {
      const [one, many] = PLURAL[kind];
      notes.push(
        `${unlisted.length} ${unlisted.length === 1 ? one : many} not in the file ${unlisted.length === 1 ? "is" : "are"} kept (prune: true would delete ${unlisted.length === 1 ? "it" : "them"}).`,
      );
    }
  }
  return { changes: [...upserts, ...deletes.reverse().flat()], notes };
}

function byName(a: Change, b: Change): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

export function summarize(plan: Plan): { create: number; update: number; delete: number } {
  const summary = { create: 0, update: 0, delete: 0 };
  for (const change of plan.changes) summary[change.action] += 1;
  return summary;
}

// ---------------------------------------------------------------------------
// Checks

type Final = { [K in Kind]: Map<string, EntityOf[K] & Located> };

/** What the catalog would be after the plan: listed sections replace (prune) or overlay the current ones. */
export function finalState(current: CatalogState, desired: DesiredCatalog): Final {
  const build = <K extends Kind>(kind: K) => {
    const map = new Map<string, EntityOf[K] & Located>();
    const wanted = sectionOf(desired, kind) as (EntityOf[K] & Located)[] | undefined;
    if (wanted === undefined || !desired.prune) {
      for (const entity of sectionOf(current, kind) ?? []) map.set(keyOf(kind, entity), entity);
    }
    const fromFile = new Set<string>();
    for (const entity of wanted ?? []) {
      const key = keyOf(kind, entity);
      if (fromFile.has(key)) continue; // the first of duplicates counts, as in planConfig
      fromFile.add(key);
      map.set(key, entity);
    }
    return map;
  };
  return {
    group: build("group"),
    policy: build("policy"),
    target: build("target"),
    role: build("role"),
    eligibility: build("eligibility"),
    review: build("review"),
  };
}

const quote = (name: string) => JSON.stringify(name);

/**
 * Every problem of a desired catalog against the current one: duplicates,
 * references to policies, targets, roles, groups and users that will not exist,
 * risk rules, and deletions that would lose history. `invalid` holds names of
 * entries the schema refused, so references to them are not reported twice.
 * Problems caused by `prune` about entities the file does not list point at `prune`.
 */
export function checkConfig(
  current: CatalogState,
  desired: DesiredCatalog,
  facts: CatalogFacts,
  invalid: Partial<Record<Kind, ReadonlySet<string>>> = {},
): PathProblem[] {
  const problems: PathProblem[] = [];
  const final = finalState(current, desired);
  const exists = (kind: Kind, name: string) => final[kind].has(name) || (invalid[kind]?.has(name) ?? false);
  const userExists = (name: string) => facts.principals.has(name);
  const prunePath: Path = ["prune"];
  const notInFile = (kind: Kind, name: string) => `${kind} ${quote(name)} (not in this file)`;
  const pruned = (kind: string, name: string) => `${kind} ${quote(name)}, which prune would delete`;
  const refAt = (entity: Located, name: string, fallback: Path): Path => entity.refsAt?.[name] ?? fallback;

  // Duplicates within the file.
  for (const kind of KINDS) {
    const first = new Map<string, Path | undefined>();
    for (const entity of (sectionOf(desired, kind) ?? []) as (EntityOf[typeof kind] & Located)[]) {
      const key = keyOf(kind, entity);
      if (!first.has(key)) {
        first.set(key, entity.at);
        continue;
      }
      const seenAt = first.get(key);
      const where = seenAt ? ` (first at ${formatPath(seenAt)})` : "";
      if (kind === "eligibility") {
        const e = entity as EligibilityState & Located;
        problems.push({
          path: refAt(e, e.subject, e.at ?? []),
          message: `${e.subjectKind} ${quote(e.subject)} is eligible for role ${quote(e.role)} twice${where}`,
        });
      } else {
        problems.push({
          path: [...(entity.at ?? []), "name"],
          message: `duplicate ${kind} name ${quote(key)}${where}`,
        });
      }
    }
  }

  // Groups: members must be principals.
  for (const group of final.group.values()) {
    if (!group.at) continue;
    for (const member of group.members) {
      if (!userExists(member))
        problems.push({
          path: refAt(group, member, [...group.at, "members"]),
          message: `unknown user ${quote(member)}`,
        });
    }
  }

  // Policies: approvers must exist; the spec must make sense.
  for (const policy of final.policy.values()) {
    for (const reference of policyReferences(policy.spec)) {
      const ok = reference.kind === "group" ? exists("group", reference.name) : userExists(reference.name);
      if (ok) continue;
      problems.push(
        policy.at
          ? { path: [...policy.at, ...reference.path], message: `unknown ${reference.kind} ${quote(reference.name)}` }
          : {
              path: prunePath,
              message: `${notInFile("policy", policy.name)} names ${pruned(reference.kind, reference.name)}`,
            },
      );
    }
    if (!policy.at) continue;
    for (const problem of policyProblems(policy.spec)) {
      problems.push({ path: [...policy.at, ...problem.path], message: problem.message });
    }
  }

  // Review campaigns: the groups they name (reviewers, fallback, escalation) must exist; a campaign a file does
  // not list may lose its group to prune.
  for (const review of final.review.values()) {
    const reviewers = review.reviewers as { groups?: string[]; fallback?: string };
    const named: [string, Path][] = [
      ...(reviewers.groups ?? []).map((g, i): [string, Path] => [g, ["reviewers", "groups", i]]),
      ...(reviewers.fallback ? [[reviewers.fallback, ["reviewers", "fallback"]] as [string, Path]] : []),
      ...(review.escalateTo ? [[review.escalateTo, ["escalateTo"]] as [string, Path]] : []),
    ];
    for (const [group, path] of named) {
      if (exists("group", group)) continue;
      problems.push(
        review.at
          ? { path: [...review.at, ...path], message: `unknown group ${quote(group)}` }
          : { path: prunePath, message: `${notInFile("review", review.name)} uses ${pruned("group", group)}` },
      );
    }
  }

  // Roles: target, policy and owners must exist; the policy must suit the risk.
  for (const role of final.role.values()) {
    const references: [Kind, string, Path][] = [
      ["target", role.target, [...(role.at ?? []), "target"]],
      ["policy", role.policy, [...(role.at ?? []), "policy"]],
      ...role.owners.map((owner): [Kind, string, Path] => [
        "group",
        owner,
        refAt(role, owner, [...(role.at ?? []), "owners"]),
      ]),
    ];
    for (const [kind, name, path] of references) {
      if (exists(kind, name)) continue;
      problems.push(
        role.at
          ? { path, message: `unknown ${kind} ${quote(name)}` }
          : { path: prunePath, message: `${notInFile("role", role.name)} uses ${pruned(kind, name)}` },
      );
    }
    const policy = final.policy.get(role.policy);
    const target = final.target.get(role.target);
    // Its tier may not be below what it grants (risk-floor.rules.ts), whichever side of it the file changes.
    const floor =
      policy && target
        ? riskFloorProblem(
            {
              targetKind: target.kind,
              targetLabels: target.labels,
              entitlement: role.entitlement,
              policy: policy.spec,
            },
            role.risk,
          )
        : null;
    if (floor)
      problems.push(
        role.at
          ? { path: [...role.at, "risk"], message: `role ${quote(role.name)}: ${floor}` }
          : {
              path: policy?.at ?? target?.at ?? prunePath,
              message: `role ${quote(role.name)} (not in this file) would have ${floor}`,
            },
      );
    const problem = policy ? riskProblem(policy.spec, role.risk) : null;
    if (!policy || !problem) continue;
    if (role.at) {
      problems.push({
        path: [...role.at, "risk"],
        message: `role ${quote(role.name)} uses policy ${quote(policy.name)}: ${problem}`,
      });
    } else if (policy.at) {
      const stage = autoApprovingStages(policy.spec)[0] ?? 0;
      problems.push({
        path: [...policy.at, "approval", "stages", stage, "onTimeout"],
        message: `approve on timeout is only for low-risk roles, but role ${quote(role.name)} (not in this file) has risk ${role.risk} and uses this policy`,
      });
    }
  }

  // Eligibility: the role and the group or user must exist.
  for (const e of final.eligibility.values()) {
    const label = eligibilityName(e);
    if (!exists("role", e.role)) {
      problems.push(
        e.at
          ? { path: [...e.at, "role"], message: `unknown role ${quote(e.role)}` }
          : { path: prunePath, message: `${notInFile("eligibility", label)} is for ${pruned("role", e.role)}` },
      );
    }
    const subjectOk = e.subjectKind === "group" ? exists("group", e.subject) : userExists(e.subject);
    if (!subjectOk) {
      problems.push(
        e.at
          ? { path: refAt(e, e.subject, e.at), message: `unknown ${e.subjectKind} ${quote(e.subject)}` }
          : {
              path: prunePath,
              message: `${notInFile("eligibility", label)} names ${pruned(e.subjectKind, e.subject)}`,
            },
      );
    }
    if (e.at && e.from !== undefined && e.until !== null && Date.parse(e.until) <= Date.parse(e.from)) {
      problems.push({ path: [...e.at, "until"], message: "until must be after from" });
    }
  }

  // Deleting a role with activation requests on record would lose its history.
  for (const role of current.roles) {
    if (!final.role.has(role.name) && facts.rolesWithHistory.has(role.name)) {
      problems.push({
        path: prunePath,
        message: `role ${quote(role.name)} has activation requests on record and cannot be deleted; keep it in the file`,
      });
    }
  }
  return dedupe(problems);
}

function dedupe(problems: PathProblem[]): PathProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${formatPath(p.path)}\u0000${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** roles[0].policy, policies[1].approval.stages[0].onTimeout */
export function formatPath(path: readonly (string | number)[]): string {
  return path
    .map((segment, i) => (typeof segment === "number" ? `[${segment}]` : i === 0 ? segment : `.${segment}`))
    .join("");
}
