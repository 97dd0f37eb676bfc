/**
 * The catalog: targets, policies, roles and eligibility, by API and as
 * configuration as code. Each call authorizes first; each write takes the
 * catalog lock, then writes its change and its audit event in one transaction.
 * A configuration file is planned and applied inside that one transaction, one
 * audit event per change, and nothing at all when anything is wrong with it.
 */
import type { AppStore, Tx } from "../../db/index.js";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import type {
  ConfigApplyResultDto,
  ConfigPlanDto,
  ConfigProblem,
  ChangeRequestRefDto,
  EligibilityDto,
  EligibilityInput,
  EligibilityUpdate,
  PolicyDto,
  PolicyInput,
  RoleDto,
  RoleInput,
  TargetDto,
  TargetInput,
} from "../../contract/catalog-api.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { isUniqueViolation } from "../../lib/db.js";
import { deriveKey } from "../../lib/security.js";
import { newId } from "../../lib/ids.js";
import { actorLabel, type AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { parseConfig, renderConfig, reviewState, sortProblems } from "./catalog.config.js";
import { reviewDefinition } from "../../contract/reviews.js";
import { checkConfig, diffEntity, keyOf, planConfig, summarize } from "./catalog.plan.rules.js";
import { assessPlan, catalogFingerprint, type PlanAssessment } from "./change-requests.rules.js";
import {
  eligibilityName,
  eligibilityStatus,
  policyProblems,
  policyReferences,
  riskProblem,
  sortedSet,
} from "./catalog.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { applyCustody, checkCustody, roleSessionProblem, type CustodyCheck } from "./custody.js";
import { storedCredentials } from "./custody.store.js";
import { endpointOf } from "./custody.rules.js";
import { DEFAULT_IDENTITY } from "../../contract/catalog-api.js";
import { entitlementProblems, targetProblems, targetWarnings } from "../connectors/index.js";
import type {
  CatalogFacts,
  CatalogState,
  Change,
  DesiredCatalog,
  EligibilityState,
  FieldChange,
  GroupState,
  Path,
  PathProblem,
  Plan,
  PolicyState,
  ReviewState,
  RiskTier,
  RoleState,
  TargetState,
} from "./catalog.types.js";

export interface CatalogServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append">;
  clock: Clock;
  /** The master key: session-secret allowances are MACed with a key derived from it (custody.rules). */
  masterKey: Uint8Array;
  /**
   * Called inside the transaction that removes or narrows eligibility (or changes groups by file): ends the
   * open activations that lost their basis (the requests service) and returns their audit events. No scope
   * means every open activation. Called before this transaction's own audit append: the request rows are
   * locked before the audit head, in the order every request transaction takes them (no deadlock).
   */
  onAccessBasisLost?: (
    tx: Tx,
    scope: { roleIds?: string[] },
    cause: { by: string; reason?: string },
  ) => Promise<AuditInput[]>;
  /**
   * Four-eyes (change-requests.service): a file whose plan widens access at one of `tiers` is not applied but
   * handed to `hold`, which keeps it as a change request for a second admin. Absent or no tiers: applied at once.
   */
  fourEyes?: {
    tiers: readonly RiskTier[];
    /** Without another active principal who could approve: `apply` at once (audited, noted) or `hold` anyway. */
    alone: "apply" | "hold";
    /** Whether some active principal other than `actor` may write the catalog (and so approve). */
    anotherApprover: (tx: Tx, actor: Actor) => Promise<boolean>;
    hold: (actor: Actor, text: string, held: HeldPlan, context: CallContext) => Promise<ChangeRequestRefDto>;
  };
}

/** A plan kept for a second admin: what it changes, why it is held, and the catalog it was made against. */
export interface HeldPlan {
  plan: ConfigPlanDto;
  assessment: PlanAssessment;
  fingerprint: string;
}

/** Thrown inside the apply transaction to roll back a plan that is held (never leaves the service). */
const HOLD = Symbol("hold");

type Db = AppStore["db"];
type Issue = { path: string; message: string };

const quote = (name: string) => JSON.stringify(name);
const iso = (value: Date | string) => new Date(value).toISOString();

function isForeignKeyViolation(error: unknown): boolean {
  return (error as { code?: string })?.code === "23503";
}

/** A review definition as stored (the `reviews:` entry, absent fields left out). */
function reviewSpec(r: ReviewState): Record<string, unknown> {
  return {
    name: r.name,
    every: r.every,
    duration: r.duration,
    scope: r.scope,
    reviewers: r.reviewers,
    ...(r.remindEvery !== null ? { remindEvery: r.remindEvery } : {}),
    ...(r.escalateTo !== null ? { escalateTo: r.escalateTo } : {}),
    ...(r.onMissed !== null ? { onMissed: r.onMissed } : {}),
  };
}

/** A target's values from the API, checked by its connector. */
function targetValues(input: TargetInput): catalogStore.TargetValues {
  const values = {
    name: input.name,
    kind: input.kind,
    address: input.address ?? null,
    labels: input.labels,
    credential: input.credential?.secret ?? null,
    identity: input.identity ?? DEFAULT_IDENTITY,
    options: input.options,
  };
  const problems = targetProblems(values);
  if (problems.length > 0) throw invalid(problems.map((p) => ({ path: `body.${p.field}`, message: p.message })));
  return values;
}

/** Where a stored target's credential goes now (custody.rules endpointOf). */
function endpointOfRow(row: catalogStore.TargetRow): string {
  return endpointOf({ kind: row.kind, address: row.address, options: catalogStore.targetConfig(row.config).options });
}

/** A stored target as custody checks see it. */
function targetDefinition(row: catalogStore.TargetRow) {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    address: row.address,
    options: catalogStore.targetConfig(row.config).options,
  };
}

/** Custody checks of a target from the API: VALIDATION_FAILED with the fields at fault. */
async function custodyOrThrow(
  tx: Tx,
  actor: Actor,
  values: catalogStore.TargetValues,
  existing: catalogStore.TargetRow | null,
): Promise<CustodyCheck> {
  const check = await checkCustody(tx, actor, values, existing);
  if (check.problems.length > 0)
    throw invalid(check.problems.map((p) => ({ path: `body.${p.field}`, message: p.message })));
  return check;
}

/** Connector checks of a file's targets and roles, located in the file. */
function connectorProblems(current: CatalogState, desired: DesiredCatalog): PathProblem[] {
  const problems: PathProblem[] = [];
  const kinds = new Map(current.targets.map((t) => [t.name, t.kind]));
  for (const target of desired.targets ?? []) {
    kinds.set(target.name, target.kind);
    for (const p of targetProblems(target))
      problems.push({ path: [...(target.at ?? []), p.field], message: p.message });
  }
  for (const role of desired.roles ?? []) {
    const kind = kinds.get(role.target);
    if (kind === undefined) continue; // checkConfig reports the unknown target
    for (const message of entitlementProblems(kind, role.entitlement))
      problems.push({ path: [...(role.at ?? []), "entitlement"], message });
  }
  return problems;
}

function invalid(issues: Issue[]): StintError {
  return new StintError(
    "VALIDATION_FAILED",
    `The request is not valid: ${issues.map((i) => `${i.path} ${i.message}`).join("; ")}.`,
    { issues },
  );
}

function invalidFile(problems: ConfigProblem[]): StintError {
  const sorted = sortProblems(problems);
  const first = sorted[0]!;
  const where = `${first.line}:${first.column}: ${first.path ? `${first.path}: ` : ""}`;
  return new StintError(
    "VALIDATION_FAILED",
    `The configuration file has ${sorted.length} problem${sorted.length === 1 ? "" : "s"}, so nothing was changed; the first is ${where}${first.message}.`,
    { problems: sorted },
  );
}

const dotted = (path: Path) => path.join(".");

/** A stored spec with every default filled in (rows written before a default existed still read right). */
function normalizeSpec(raw: unknown): PolicySpec {
  const parsed = policySpec.safeParse(raw);
  return parsed.success ? parsed.data : (raw as PolicySpec);
}

/** `stored`: a credential is stored at the path for this very target (custody binds it to the target). */
function targetDto(row: catalogStore.TargetRow, storedSecrets: ReadonlyMap<string, string | null>): TargetDto {
  const config = catalogStore.targetConfig(row.config);
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    address: row.address,
    labels: row.labels ?? {},
    credential: config.credential
      ? { secret: config.credential, stored: storedSecrets.get(config.credential) === row.id }
      : null,
    identity: config.identity,
    options: config.options,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

function policyDto(row: catalogStore.PolicyRow, roles: string[]): PolicyDto {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    spec: normalizeSpec(row.spec),
    roles,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

function roleDto(row: catalogStore.RoleRow): RoleDto {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    target: row.target_name,
    policy: row.policy_name,
    entitlement: row.entitlement ?? {},
    risk: row.risk,
    owners: row.owners,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
  };
}

function eligibilityDto(row: catalogStore.EligibilityRow, now: Date): EligibilityDto {
  const startsAt = new Date(row.starts_at);
  const endsAt = row.ends_at ? new Date(row.ends_at) : null;
  return {
    id: row.id,
    role: row.role_name,
    principal: row.principal_name,
    group: row.group_name,
    startsAt: startsAt.toISOString(),
    endsAt: endsAt?.toISOString() ?? null,
    status: eligibilityStatus(startsAt, endsAt, now),
    grantedBy: row.granted_by,
    reason: row.reason,
    createdAt: iso(row.created_at),
  };
}

function auditAction(change: Change): string {
  if (change.action === "delete") return change.kind === "eligibility" ? "eligibility.remove" : `${change.kind}.delete`;
  return `${change.kind}.${change.action}`;
}

export function createCatalogService(deps: CatalogServiceDeps) {
  const { store, audit, clock } = deps;
  const allowanceKey = deriveKey(deps.masterKey, "secret-allowances");

  /** A catalog write: under the catalog lock, in one transaction; database refusals become stable codes. */
  async function write<T>(fn: (tx: Tx) => Promise<T>, alreadyExists?: string): Promise<T> {
    try {
      return await store.transaction(async (tx) => {
        await catalogStore.lockCatalog(tx);
        return fn(tx);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new StintError("ALREADY_EXISTS", alreadyExists);
      if (isForeignKeyViolation(error))
        throw new StintError("CONFLICT", "Something else in the catalog still refers to it.");
      throw error;
    }
  }

  // -------------------------------------------------------------------------
  // Checks shared by create and update

  async function policyIssues(db: Db, spec: PolicySpec): Promise<Issue[]> {
    const issues: Issue[] = policyProblems(spec).map((p) => ({
      path: `body.spec.${dotted(p.path)}`,
      message: p.message,
    }));
    const references = policyReferences(spec);
    const groups = await catalogStore.groupNames(
      db,
      references.filter((r) => r.kind === "group").map((r) => r.name),
    );
    const users = await catalogStore.principalNames(
      db,
      references.filter((r) => r.kind === "user").map((r) => r.name),
    );
    for (const reference of references) {
      const known = reference.kind === "group" ? groups.has(reference.name) : users.has(reference.name);
      if (!known)
        issues.push({
          path: `body.spec.${dotted(reference.path)}`,
          message: `unknown ${reference.kind} ${quote(reference.name)}`,
        });
    }
    return issues;
  }

  async function roleValues(db: Db, actor: Actor, input: RoleInput): Promise<catalogStore.RoleValues> {
    const issues: Issue[] = [];
    const target = await catalogStore.findTarget(db, input.target);
    if (!target) issues.push({ path: "body.target", message: `unknown target ${quote(input.target)}` });
    const policy = await catalogStore.findPolicy(db, input.policy);
    if (!policy) issues.push({ path: "body.policy", message: `unknown policy ${quote(input.policy)}` });
    const owners = sortedSet(input.owners);
    const known = await catalogStore.groupNames(db, owners);
    input.owners.forEach((owner, i) => {
      if (!known.has(owner)) issues.push({ path: `body.owners.${i}`, message: `unknown group ${quote(owner)}` });
    });
    const problem = policy ? riskProblem(normalizeSpec(policy.spec), input.risk) : null;
    if (problem) issues.push({ path: "body.risk", message: problem });
    if (target) {
      for (const message of entitlementProblems(target.kind, input.entitlement))
        issues.push({ path: "body.entitlement", message });
      // The role's own session secret gets the custody decision a target's gets (custody.ts).
      const session = await roleSessionProblem(db, actor, input.entitlement, targetDefinition(target));
      if (session) issues.push({ path: "body.entitlement", message: session });
    }
    if (issues.length > 0 || !target || !policy) throw invalid(issues);
    return {
      name: input.name,
      description: input.description ?? null,
      target_id: target.id,
      policy_id: policy.id,
      entitlement: input.entitlement,
      risk: input.risk,
      owners,
    };
  }

  async function requireTarget(db: Db, ref: string) {
    const row = await catalogStore.findTarget(db, ref);
    if (!row) throw new StintError("NOT_FOUND", `There is no target ${quote(ref)}.`);
    return row;
  }

  async function requirePolicy(db: Db, ref: string) {
    const row = await catalogStore.findPolicy(db, ref);
    if (!row) throw new StintError("NOT_FOUND", `There is no policy ${quote(ref)}.`);
    return row;
  }

  async function requireRole(db: Db, ref: string) {
    const row = await catalogStore.findRole(db, ref);
    if (!row) throw new StintError("NOT_FOUND", `There is no role ${quote(ref)}.`);
    return row;
  }

  async function requireEligibility(db: Db, id: string, lock = false) {
    const row = await catalogStore.findEligibility(db, id, lock);
    if (!row) throw new StintError("NOT_FOUND", "There is no such eligibility.");
    return row;
  }

  // -------------------------------------------------------------------------
  // Configuration as code: state, facts, plan, execution

  async function loadState(db: Db): Promise<CatalogState> {
    const groups = await catalogStore.listGroupsWithMembers(db);
    const policies = await catalogStore.listPolicies(db);
    const targets = await catalogStore.listTargets(db);
    const roles = await catalogStore.listRoles(db);
    const eligibilities = await catalogStore.listEligibilities(db);
    const reviews = await db.selectFrom("review_definitions").select(["name", "spec"]).orderBy("name").execute();
    return {
      reviews: reviews.map((r) => reviewState(reviewDefinition.parse(r.spec))),
      groups: groups.map((g) => ({ name: g.name, description: g.description, members: sortedSet(g.members) })),
      policies: policies.map((p) => ({ name: p.name, description: p.description, spec: normalizeSpec(p.spec) })),
      targets: targets.map((t) => ({
        name: t.name,
        kind: t.kind,
        address: t.address,
        labels: t.labels ?? {},
        ...catalogStore.targetConfig(t.config),
      })),
      roles: roles.map((r) => ({
        name: r.name,
        description: r.description,
        target: r.target_name,
        policy: r.policy_name,
        risk: r.risk,
        owners: sortedSet(r.owners),
        entitlement: r.entitlement ?? {},
      })),
      eligibility: eligibilities.map((e) => ({
        role: e.role_name,
        subjectKind: e.principal_name !== null ? ("user" as const) : ("group" as const),
        subject: (e.principal_name ?? e.group_name)!,
        from: iso(e.starts_at),
        fromChosen: new Date(e.starts_at).getTime() !== new Date(e.created_at).getTime(),
        until: e.ends_at ? iso(e.ends_at) : null,
        reason: e.reason,
      })),
    };
  }

  async function loadFacts(db: Db): Promise<CatalogFacts> {
    return {
      principals: new Set((await catalogStore.principalIdsByName(db)).keys()),
      rolesWithHistory: await catalogStore.roleNamesWithRequests(db),
    };
  }

  /** Parses, checks and plans a file against the catalog as `db` sees it; every problem at once. */
  async function prepare(
    db: Db,
    text: string,
    actor: Actor,
  ): Promise<{ plan: Plan; current: CatalogState; desired: DesiredCatalog }> {
    const parsed = parseConfig(text);
    if (parsed.fatal) throw invalidFile(parsed.problems);
    const current = await loadState(db);
    const problems = [
      ...parsed.problems,
      ...checkConfig(current, parsed.desired, await loadFacts(db), parsed.invalidNames).map(parsed.locate),
      ...connectorProblems(current, parsed.desired).map(parsed.locate),
    ];
    if (problems.length > 0) throw invalidFile(problems);
    const plan = planConfig(current, parsed.desired);
    // What a changed target may name as its credential and session secret, checked against what is stored.
    const changed = new Set(
      plan.changes.filter((c) => c.kind === "target" && c.action !== "delete").map((c) => c.name),
    );
    for (const target of parsed.desired.targets ?? []) {
      if (!changed.has(target.name)) continue;
      const existingRow = (await catalogStore.findTarget(db, target.name)) ?? null;
      for (const p of (await checkCustody(db, actor, target, existingRow)).problems)
        problems.push(parsed.locate({ path: [...(target.at ?? []), p.field], message: p.message }));
    }
    // What a created or changed role may name as its own session secret, for its target as the file leaves it.
    const changedRoles = new Set(
      plan.changes.filter((c) => c.kind === "role" && c.action !== "delete").map((c) => c.name),
    );
    for (const role of parsed.desired.roles ?? []) {
      if (!changedRoles.has(role.name)) continue;
      const stored = (await catalogStore.findTarget(db, role.target)) ?? null;
      const inFile = (parsed.desired.targets ?? []).find((t) => t.name === role.target);
      const target = inFile ? { ...inFile, id: stored?.id ?? null } : stored ? targetDefinition(stored) : null;
      if (!target) continue; // checkConfig reports the unknown target
      const problem = await roleSessionProblem(db, actor, role.entitlement, target);
      if (problem) problems.push(parsed.locate({ path: [...(role.at ?? []), "entitlement"], message: problem }));
    }
    if (problems.length > 0) throw invalidFile(problems);
    // Opt-ins that weaken how Stint reaches a target (TLS off, cleartext passwords) are said every time.
    for (const target of parsed.desired.targets ?? [])
      for (const warning of targetWarnings(target)) plan.notes.push(`warning: target ${target.name}: ${warning}`);
    return { plan, current, desired: parsed.desired };
  }

  function toDto(plan: Plan): ConfigPlanDto {
    return { changes: plan.changes, summary: summarize(plan), notes: plan.notes };
  }

  async function executeChange(
    tx: Tx,
    change: Change,
    wanted: Map<string, unknown>,
    existing: Map<string, unknown>,
    principals: Map<string, string>,
    grantedBy: string,
    now: Date,
  ): Promise<void> {
    const key = `${change.kind}\u0000${change.name}`;
    const after = wanted.get(key);
    const before = existing.get(key);
    const principalId = (name: string) => {
      const id = principals.get(name);
      if (!id) throw new StintError("CONFLICT", `${name} no longer exists.`);
      return id;
    };
    const groupId = async (name: string) => {
      const group = await catalogStore.findGroup(tx, name);
      if (!group) throw new StintError("CONFLICT", `The group ${name} no longer exists.`);
      return group.id;
    };
    switch (change.kind) {
      case "group": {
        const group = after as GroupState | undefined;
        if (change.action === "create") {
          const id = newId();
          await catalogStore.insertGroup(tx, id, group!.name, group!.description, now);
          await catalogStore.addMembers(tx, id, group!.members.map(principalId), now);
          return;
        }
        const id = await groupId(change.name);
        if (change.action === "delete") return catalogStore.deleteGroup(tx, id);
        const previous = before as GroupState;
        if (group!.description !== previous.description)
          await catalogStore.setGroupDescription(tx, id, group!.description);
        const added = group!.members.filter((m) => !previous.members.includes(m));
        const removed = previous.members.filter((m) => !group!.members.includes(m));
        await catalogStore.addMembers(tx, id, added.map(principalId), now);
        await catalogStore.removeMembers(tx, id, removed.map(principalId));
        return;
      }
      case "policy": {
        const policy = after as PolicyState | undefined;
        const values = policy && { name: policy.name, description: policy.description, spec: policy.spec };
        if (change.action === "create") return catalogStore.insertPolicy(tx, newId(), values!, now);
        const row = await requirePolicy(tx, change.name);
        if (change.action === "delete") return catalogStore.deletePolicy(tx, row.id);
        return catalogStore.updatePolicy(tx, row.id, values!, now);
      }
      case "target": {
        const target = after as TargetState | undefined;
        if (change.action === "create") return catalogStore.insertTarget(tx, newId(), target!, now);
        const row = await requireTarget(tx, change.name);
        if (change.action === "delete") return catalogStore.deleteTarget(tx, row.id);
        return catalogStore.updateTarget(tx, row.id, target!, now);
      }
      case "role": {
        const role = after as RoleState | undefined;
        const values = async (): Promise<catalogStore.RoleValues> => ({
          name: role!.name,
          description: role!.description,
          target_id: (await requireTarget(tx, role!.target)).id,
          policy_id: (await requirePolicy(tx, role!.policy)).id,
          entitlement: role!.entitlement,
          risk: role!.risk,
          owners: role!.owners,
        });
        if (change.action === "create") return catalogStore.insertRole(tx, newId(), await values(), now);
        const row = await requireRole(tx, change.name);
        if (change.action === "delete") return catalogStore.deleteRole(tx, row.id);
        return catalogStore.updateRole(tx, row.id, await values(), now);
      }
      case "eligibility": {
        const e = (after ?? before) as EligibilityState;
        const role = await requireRole(tx, e.role);
        const subject =
          e.subjectKind === "user" ? { principalId: principalId(e.subject) } : { groupId: await groupId(e.subject) };
        if (change.action === "create") {
          return catalogStore.insertEligibility(
            tx,
            newId(),
            {
              role_id: role.id,
              principal_id: subject.principalId ?? null,
              group_id: subject.groupId ?? null,
              starts_at: e.from !== undefined ? new Date(e.from) : now,
              ends_at: e.until !== null ? new Date(e.until) : null,
              granted_by: grantedBy,
              reason: e.reason,
            },
            now,
          );
        }
        for (const row of await catalogStore.findEligibilitiesOf(tx, role.id, subject)) {
          if (change.action === "delete") {
            await catalogStore.removeEligibility(tx, row.id, now);
          } else {
            await catalogStore.updateEligibility(tx, row.id, {
              starts_at: e.from !== undefined ? new Date(e.from) : new Date(row.starts_at),
              ends_at: e.until !== null ? new Date(e.until) : null,
              reason: e.reason,
            });
          }
        }
        return;
      }
      case "review": {
        // The definition is stored as the file says it; the reviews worker opens its campaigns.
        const review = after as ReviewState | undefined;
        if (change.action === "delete")
          return void (await tx.deleteFrom("review_definitions").where("name", "=", change.name).execute());
        const spec = JSON.stringify(reviewSpec(review!));
        if (change.action === "create") {
          // The first campaign opens at the worker's next pass.
          await tx
            .insertInto("review_definitions")
            .values({ name: review!.name, spec, next_open_at: now, created_at: now, updated_at: now })
            .execute();
          return;
        }
        await tx
          .updateTable("review_definitions")
          .set({ spec, updated_at: now })
          .where("name", "=", change.name)
          .execute();
        return;
      }
    }
  }

  /**
   * Four-eyes for one-object writes (API and admin forms): a change that widens access at a covered tier is refused
   * with FOUR_EYES_REQUIRED (a configuration file holds it as a change request instead), unless nobody else could
   * approve it (`alone: apply`). `desired` lists the entity as it would be, under its current name.
   */
  async function fourEyesGuard(tx: Tx, actor: Actor, change: Change, desired: DesiredCatalog): Promise<void> {
    const fourEyes = deps.fourEyes;
    if (!fourEyes || fourEyes.tiers.length === 0) return;
    const assessment = assessPlan(await loadState(tx), desired, [change], fourEyes.tiers);
    if (!assessment.held) return;
    if (fourEyes.alone === "apply" && !(await fourEyes.anotherApprover(tx, actor))) return;
    const reasons = assessment.changes.flatMap((c) => c.reasons);
    throw new StintError(
      "FOUR_EYES_REQUIRED",
      `This change widens access at risk ${assessment.tier} (${reasons.join("; ")}), so a second admin must approve it: make it with a configuration file (stint apply, or the Configuration as code tab), which holds it as a change request.`,
      { tier: assessment.tier, reasons },
    );
  }

  /**
   * Parses, plans and executes a file in `tx` as `actor` (the author): every change, its custody, the author's own
   * access (and that of `alsoGuard`: an approver) compared before and after, and the activations that lost their
   * basis ended. With `expected`, refuses with CHANGE_REQUEST_STALE unless the catalog is still that fingerprint.
   * The caller appends `events` (or rolls the transaction back).
   */
  async function runFile(
    tx: Tx,
    actor: Actor,
    text: string,
    alsoGuard: Actor[],
    expected?: string,
    decide?: (tx: Tx, plan: Plan, current: CatalogState, desired: DesiredCatalog) => Promise<boolean>,
  ) {
    const { plan, current, desired } = await prepare(tx, text, actor);
    if (expected !== undefined && catalogFingerprint(current) !== expected)
      throw new StintError("CHANGE_REQUEST_STALE");
    // Held for four-eyes: executed to check it, then rolled back by the caller; it ends no activation.
    const held = decide ? await decide(tx, plan, current, desired) : false;
    const ownAccess = await guardOwnAccess(tx, actor);
    const otherAccess = await Promise.all(alsoGuard.map((other) => guardOwnAccess(tx, other)));
    if (plan.changes.some((change) => change.kind === "group")) authorize(actor, "groups.write");
    const events: AuditInput[] = [];
    if (plan.changes.length === 0) return { plan, current, desired, events, held };
    const now = clock.now();
    const wanted = index(desired);
    const existing = index(current);
    const principals = await catalogStore.principalIdsByName(tx);
    const grantedBy = actorLabel(actor).actor;
    for (const change of plan.changes) {
      const before =
        change.kind === "target" && change.action !== "delete"
          ? ((await catalogStore.findTarget(tx, change.name)) ?? null)
          : null;
      await executeChange(tx, change, wanted, existing, principals, grantedBy, now);
      events.push({
        action: auditAction(change),
        outcome: "success",
        subject: `${change.kind}:${change.name}`,
        details: { source: "config", fields: change.fields },
      });
      if (change.kind === "target" && change.action !== "delete") {
        // Checked in prepare; the stored credential and session allowances follow the new definition.
        const row = (await catalogStore.findTarget(tx, change.name))!;
        const custody = await custodyOrThrow(
          tx,
          actor,
          wanted.get(`target\u0000${change.name}`) as TargetState,
          before,
        );
        const moved = before !== null && custody.endpoint !== endpointOfRow(before);
        events.push(
          ...(await applyCustody(tx, { id: row.id, name: row.name }, custody, moved, grantedBy, now, allowanceKey)),
        );
      }
    }
    // A file does not make the person applying it (nor the one approving it) eligible for more.
    await ownAccess.check(tx, now);
    for (const guard of otherAccess) await guard.check(tx, now);
    // Eligibility or group membership a file took away ends what stood on it, in this transaction.
    if (!held && plan.changes.some((change) => change.kind === "eligibility" || change.kind === "group"))
      events.push(
        ...((await deps.onAccessBasisLost?.(tx, {}, { by: grantedBy, reason: "changed by configuration" })) ?? []),
      );
    return { plan, current, desired, events, held };
  }

  function index(state: CatalogState | DesiredCatalog): Map<string, unknown> {
    const map = new Map<string, unknown>();
    const add = (kind: Change["kind"], entities: unknown[] | undefined) => {
      for (const entity of entities ?? []) {
        const key = `${kind}\u0000${keyOf(kind, entity as never)}`;
        if (!map.has(key)) map.set(key, entity);
      }
    };
    add("group", state.groups);
    add("policy", state.policies);
    add("target", state.targets);
    add("role", state.roles);
    add("eligibility", state.eligibility);
    add("review", state.reviews);
    return map;
  }

  return {
    // -----------------------------------------------------------------------
    // Targets

    async listTargets(actor: Actor): Promise<TargetDto[]> {
      authorize(actor, "catalog.read");
      const stored = await storedCredentials(store.db);
      return (await catalogStore.listTargets(store.db)).map((row) => targetDto(row, stored));
    },

    async getTarget(actor: Actor, ref: string): Promise<TargetDto> {
      authorize(actor, "catalog.read");
      return targetDto(await requireTarget(store.db, ref), await storedCredentials(store.db));
    },

    async createTarget(actor: Actor, input: TargetInput, context: CallContext): Promise<TargetDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        const id = newId();
        const values = targetValues(input);
        const custody = await custodyOrThrow(tx, actor, values, null);
        await catalogStore.insertTarget(tx, id, values, now);
        const custodyEvents = await applyCustody(
          tx,
          { id, name: values.name },
          custody,
          false,
          actorLabel(actor).actor,
          now,
          allowanceKey,
        );
        await audit.append(tx, actor, context, {
          action: "target.create",
          outcome: "success",
          subject: `target:${input.name}`,
          details: {
            source: "api",
            kind: values.kind,
            address: values.address,
            labels: values.labels,
            credential: values.credential,
            identity: values.identity,
            options: values.options,
          },
        });
        await audit.append(tx, actor, context, custodyEvents);
        return targetDto((await catalogStore.findTarget(tx, id))!, await storedCredentials(tx));
      }, `A target named ${input.name} already exists.`);
    },

    async updateTarget(actor: Actor, ref: string, input: TargetInput, context: CallContext): Promise<TargetDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requireTarget(tx, ref);
        const values = targetValues(input);
        const before = { ...row, labels: row.labels ?? {}, ...catalogStore.targetConfig(row.config) };
        const fields = diffEntity("target", before, values);
        if (row.name !== values.name) fields.unshift({ field: "name", from: row.name, to: values.name });
        if (before.kind !== values.kind && (await catalogStore.roleNamesUsingTarget(tx, row.id)).length > 0)
          throw invalid([{ path: "body.kind", message: "cannot change the kind of a target that has roles" }]);
        if (fields.length === 0) return targetDto(row, await storedCredentials(tx));
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "target", name: row.name, fields },
          { prune: false, targets: [{ ...values, name: row.name }] },
        );
        const custody = await custodyOrThrow(tx, actor, values, row);
        await catalogStore.updateTarget(tx, row.id, values, clock.now());
        await audit.append(tx, actor, context, {
          action: "target.update",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { source: "api", fields },
        });
        const moved = custody.endpoint !== endpointOfRow(row);
        await audit.append(
          tx,
          actor,
          context,
          await applyCustody(
            tx,
            { id: row.id, name: values.name },
            custody,
            moved,
            actorLabel(actor).actor,
            clock.now(),
            allowanceKey,
          ),
        );
        return targetDto((await catalogStore.findTarget(tx, row.id))!, await storedCredentials(tx));
      }, `A target named ${input.name} already exists.`);
    },

    async deleteTarget(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireTarget(tx, ref);
        const roles = await catalogStore.roleNamesUsingTarget(tx, row.id);
        if (roles.length > 0)
          throw new StintError(
            "CONFLICT",
            `The target ${row.name} is used by the roles ${roles.join(", ")}; move or delete them first.`,
          );
        await catalogStore.deleteTarget(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "target.delete",
          outcome: "success",
          subject: `target:${row.name}`,
          details: { source: "api" },
        });
      });
    },

    // -----------------------------------------------------------------------
    // Policies

    async listPolicies(actor: Actor): Promise<PolicyDto[]> {
      authorize(actor, "catalog.read");
      const roles = await catalogStore.roleNamesByPolicy(store.db);
      return (await catalogStore.listPolicies(store.db)).map((row) => policyDto(row, roles.get(row.id) ?? []));
    },

    async getPolicy(actor: Actor, ref: string): Promise<PolicyDto> {
      authorize(actor, "catalog.read");
      const row = await requirePolicy(store.db, ref);
      return policyDto(
        row,
        (await catalogStore.rolesUsingPolicy(store.db, row.id)).map((r) => r.name),
      );
    },

    async createPolicy(actor: Actor, input: PolicyInput, context: CallContext): Promise<PolicyDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const issues = await policyIssues(tx, input.spec);
        if (issues.length > 0) throw invalid(issues);
        const now = clock.now();
        const id = newId();
        await catalogStore.insertPolicy(
          tx,
          id,
          { name: input.name, description: input.description ?? null, spec: input.spec },
          now,
        );
        await audit.append(tx, actor, context, {
          action: "policy.create",
          outcome: "success",
          subject: `policy:${input.name}`,
          details: { source: "api", spec: input.spec },
        });
        return policyDto((await catalogStore.findPolicy(tx, id))!, []);
      }, `A policy named ${input.name} already exists.`);
    },

    async updatePolicy(actor: Actor, ref: string, input: PolicyInput, context: CallContext): Promise<PolicyDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requirePolicy(tx, ref);
        // Nobody changes the policy of a role they are eligible for (dropping its approval, say).
        const ownAccess = await guardOwnAccess(tx, actor);
        const roles = await catalogStore.rolesUsingPolicy(tx, row.id);
        const issues = await policyIssues(tx, input.spec);
        for (const role of roles) {
          const problem = riskProblem(input.spec, role.risk);
          if (problem)
            issues.push({ path: "body.spec.approval", message: `role ${quote(role.name)} uses it: ${problem}` });
        }
        if (issues.length > 0) throw invalid(issues);
        const before = { name: row.name, description: row.description, spec: normalizeSpec(row.spec) };
        const after = { name: input.name, description: input.description ?? null, spec: input.spec };
        const fields = diffEntity("policy", before, after);
        if (before.name !== after.name) fields.unshift({ field: "name", from: before.name, to: after.name });
        const names = roles.map((r) => r.name);
        if (fields.length === 0) return policyDto(row, names);
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "policy", name: row.name, fields },
          { prune: false, policies: [{ ...after, name: row.name, spec: normalizeSpec(after.spec) }] },
        );
        await catalogStore.updatePolicy(tx, row.id, after, clock.now());
        await ownAccess.check(tx, clock.now());
        await audit.append(tx, actor, context, {
          action: "policy.update",
          outcome: "success",
          subject: `policy:${row.name}`,
          details: { source: "api", fields },
        });
        return policyDto((await catalogStore.findPolicy(tx, row.id))!, names);
      }, `A policy named ${input.name} already exists.`);
    },

    async deletePolicy(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requirePolicy(tx, ref);
        const roles = await catalogStore.rolesUsingPolicy(tx, row.id);
        if (roles.length > 0)
          throw new StintError(
            "CONFLICT",
            `The policy ${row.name} is used by the roles ${roles.map((r) => r.name).join(", ")}; give them another policy first.`,
          );
        await catalogStore.deletePolicy(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "policy.delete",
          outcome: "success",
          subject: `policy:${row.name}`,
          details: { source: "api" },
        });
      });
    },

    // -----------------------------------------------------------------------
    // Roles

    async listRoles(actor: Actor): Promise<RoleDto[]> {
      authorize(actor, "catalog.read");
      return (await catalogStore.listRoles(store.db)).map(roleDto);
    },

    async getRole(actor: Actor, ref: string): Promise<RoleDto> {
      authorize(actor, "catalog.read");
      return roleDto(await requireRole(store.db, ref));
    },

    async createRole(actor: Actor, input: RoleInput, context: CallContext): Promise<RoleDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const values = await roleValues(tx, actor, input);
        const id = newId();
        await catalogStore.insertRole(tx, id, values, clock.now());
        const row = (await catalogStore.findRole(tx, id))!;
        await audit.append(tx, actor, context, {
          action: "role.create",
          outcome: "success",
          subject: `role:${row.name}`,
          details: {
            source: "api",
            target: row.target_name,
            policy: row.policy_name,
            risk: row.risk,
            owners: row.owners,
            entitlement: row.entitlement,
          },
        });
        return roleDto(row);
      }, `A role named ${input.name} already exists.`);
    },

    async updateRole(actor: Actor, ref: string, input: RoleInput, context: CallContext): Promise<RoleDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const row = await requireRole(tx, ref);
        // Nor what a role they are eligible for grants, or which policy governs it.
        const ownAccess = await guardOwnAccess(tx, actor);
        const values = await roleValues(tx, actor, input);
        const before = roleDto(row);
        const after = {
          name: values.name,
          description: values.description,
          target: (await catalogStore.findTarget(tx, values.target_id))!.name,
          policy: (await catalogStore.findPolicy(tx, values.policy_id))!.name,
          risk: values.risk,
          owners: values.owners,
          entitlement: values.entitlement,
        };
        const fields = diffEntity("role", { ...before, owners: sortedSet(before.owners) }, after);
        if (before.name !== after.name) fields.unshift({ field: "name", from: before.name, to: after.name });
        if (fields.length === 0) return before;
        await fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "role", name: row.name, fields },
          { prune: false, roles: [{ ...after, name: row.name }] },
        );
        await catalogStore.updateRole(tx, row.id, values, clock.now());
        await ownAccess.check(tx, clock.now());
        await audit.append(tx, actor, context, {
          action: "role.update",
          outcome: "success",
          subject: `role:${row.name}`,
          details: { source: "api", fields },
        });
        return roleDto((await catalogStore.findRole(tx, row.id))!);
      }, `A role named ${input.name} already exists.`);
    },

    async deleteRole(actor: Actor, ref: string, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireRole(tx, ref);
        const live = await catalogStore.countLiveEligibilities(tx, row.id);
        if (live > 0)
          throw new StintError(
            "CONFLICT",
            `The role ${row.name} still has ${live} eligibilit${live === 1 ? "y" : "ies"}; remove them first.`,
          );
        if (await catalogStore.roleHasRequests(tx, row.id))
          throw new StintError(
            "CONFLICT",
            `The role ${row.name} has activation requests on record; deleting it would lose their history.`,
          );
        await catalogStore.deleteRole(tx, row.id);
        await audit.append(tx, actor, context, {
          action: "role.delete",
          outcome: "success",
          subject: `role:${row.name}`,
          details: { source: "api" },
        });
      });
    },

    // -----------------------------------------------------------------------
    // Eligibility

    async listEligibilities(actor: Actor, filter: catalogStore.EligibilityFilter = {}): Promise<EligibilityDto[]> {
      authorize(actor, "catalog.read");
      const now = clock.now();
      return (await catalogStore.listEligibilities(store.db, filter)).map((row) => eligibilityDto(row, now));
    },

    async getEligibility(actor: Actor, id: string): Promise<EligibilityDto> {
      authorize(actor, "catalog.read");
      return eligibilityDto(await requireEligibility(store.db, id), clock.now());
    },

    async createEligibility(actor: Actor, input: EligibilityInput, context: CallContext): Promise<EligibilityDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        // Nobody makes themselves eligible (directly or through a group they are in): checked on the outcome.
        const ownAccess = await guardOwnAccess(tx, actor);
        const issues: Issue[] = [];
        const role = await catalogStore.findRole(tx, input.role);
        if (!role) issues.push({ path: "body.role", message: `unknown role ${quote(input.role)}` });
        const principal = input.principal !== undefined ? await catalogStore.findPrincipal(tx, input.principal) : null;
        if (input.principal !== undefined && !principal)
          issues.push({ path: "body.principal", message: `unknown user or service ${quote(input.principal)}` });
        const group = input.group !== undefined ? await catalogStore.findGroup(tx, input.group) : null;
        if (input.group !== undefined && !group)
          issues.push({ path: "body.group", message: `unknown group ${quote(input.group)}` });
        const startsAt = input.startsAt !== undefined ? new Date(input.startsAt) : now;
        const endsAt = input.endsAt ? new Date(input.endsAt) : null;
        if (endsAt && endsAt.getTime() <= startsAt.getTime())
          issues.push({ path: "body.endsAt", message: "must be after startsAt" });
        if (issues.length > 0 || !role) throw invalid(issues);
        const subjectName = (principal?.name ?? group?.name)!;
        const name = eligibilityName({
          role: role.name,
          subjectKind: principal ? "user" : "group",
          subject: subjectName,
        });
        const subject = principal ? { principalId: principal.id } : { groupId: group!.id };
        const existing = await catalogStore.findEligibilitiesOf(tx, role.id, subject);
        if (existing.length > 0)
          throw new StintError(
            "ALREADY_EXISTS",
            `${subjectName} is already eligible for ${role.name} (eligibility ${existing[0]!.id}); change that one instead.`,
          );
        await fourEyesGuard(
          tx,
          actor,
          { action: "create", kind: "eligibility", name, fields: [] },
          {
            prune: false,
            eligibility: [
              {
                role: role.name,
                subjectKind: principal ? "user" : "group",
                subject: subjectName,
                from: startsAt.toISOString(),
                until: endsAt?.toISOString() ?? null,
                reason: input.reason ?? null,
              },
            ],
          },
        );
        const id = newId();
        await catalogStore.insertEligibility(
          tx,
          id,
          {
            role_id: role.id,
            principal_id: principal?.id ?? null,
            group_id: group?.id ?? null,
            starts_at: startsAt,
            ends_at: endsAt,
            granted_by: actorLabel(actor).actor,
            reason: input.reason ?? null,
          },
          now,
        );
        await audit.append(tx, actor, context, {
          action: "eligibility.create",
          outcome: "success",
          subject: `eligibility:${name}`,
          reason: input.reason ?? null,
          details: {
            source: "api",
            eligibilityId: id,
            startsAt: startsAt.toISOString(),
            endsAt: endsAt?.toISOString() ?? null,
          },
        });
        await ownAccess.check(tx, now);
        return eligibilityDto((await catalogStore.findEligibility(tx, id))!, now);
      }, "That eligibility already exists.");
    },

    async updateEligibility(
      actor: Actor,
      id: string,
      input: EligibilityUpdate,
      context: CallContext,
    ): Promise<EligibilityDto> {
      authorize(actor, "catalog.write");
      return write(async (tx) => {
        const now = clock.now();
        const row = await requireEligibility(tx, id, true);
        const ownAccess = await guardOwnAccess(tx, actor);
        const startsAt = input.startsAt !== undefined ? new Date(input.startsAt) : new Date(row.starts_at);
        const endsAt = input.endsAt ? new Date(input.endsAt) : null;
        if (endsAt && endsAt.getTime() <= startsAt.getTime())
          throw invalid([{ path: "body.endsAt", message: "must be after startsAt" }]);
        const fields: FieldChange[] = [];
        const compare = (field: string, from: string | null, to: string | null) => {
          if (from !== to) fields.push({ field, from, to });
        };
        compare("startsAt", iso(row.starts_at), startsAt.toISOString());
        compare("endsAt", row.ends_at ? iso(row.ends_at) : null, endsAt?.toISOString() ?? null);
        compare("reason", row.reason, input.reason ?? null);
        if (fields.length === 0) return eligibilityDto(row, now);
        const name = eligibilityName({
          role: row.role_name,
          subjectKind: row.principal_name !== null ? "user" : "group",
          subject: (row.principal_name ?? row.group_name)!,
        });
        await fourEyesGuard(
          tx,
          actor,
          {
            action: "update",
            kind: "eligibility",
            name,
            fields: fields.map((f) => ({
              ...f,
              field: f.field === "startsAt" ? "from" : f.field === "endsAt" ? "until" : f.field,
            })),
          },
          {
            prune: false,
            eligibility: [
              {
                role: row.role_name,
                subjectKind: row.principal_name !== null ? "user" : "group",
                subject: (row.principal_name ?? row.group_name)!,
                from: startsAt.toISOString(),
                until: endsAt?.toISOString() ?? null,
                reason: input.reason ?? null,
              },
            ],
          },
        );
        await catalogStore.updateEligibility(tx, row.id, {
          starts_at: startsAt,
          ends_at: endsAt,
          reason: input.reason ?? null,
        });
        await ownAccess.check(tx, now);
        // An eligibility moved to start later or end sooner may no longer carry what is active on it.
        const ended =
          (await deps.onAccessBasisLost?.(
            tx,
            { roleIds: [row.role_id] },
            { by: actorLabel(actor).actor, reason: "its eligibility changed" },
          )) ?? [];
        await audit.append(tx, actor, context, [
          {
            action: "eligibility.update",
            outcome: "success",
            subject: `eligibility:${name}`,
            details: { source: "api", eligibilityId: row.id, fields },
          },
          ...ended,
        ]);
        return eligibilityDto((await catalogStore.findEligibility(tx, row.id))!, now);
      }, "That eligibility already exists.");
    },

    async removeEligibility(actor: Actor, id: string, reason: string | undefined, context: CallContext): Promise<void> {
      authorize(actor, "catalog.write");
      await write(async (tx) => {
        const row = await requireEligibility(tx, id, true);
        await catalogStore.removeEligibility(tx, row.id, clock.now());
        const name = eligibilityName({
          role: row.role_name,
          subjectKind: row.principal_name !== null ? "user" : "group",
          subject: (row.principal_name ?? row.group_name)!,
        });
        const ended =
          (await deps.onAccessBasisLost?.(
            tx,
            { roleIds: [row.role_id] },
            { by: actorLabel(actor).actor, reason: reason ? `eligibility removed (${reason})` : "eligibility removed" },
          )) ?? [];
        await audit.append(tx, actor, context, [
          {
            action: "eligibility.remove",
            outcome: "success",
            subject: `eligibility:${name}`,
            reason: reason ?? null,
            details: { source: "api", eligibilityId: row.id },
          },
          ...ended,
        ]);
      });
    },

    // -----------------------------------------------------------------------
    // Configuration as code

    /** The whole catalog, with the groups, as a configuration file that `applyConfig` accepts. */
    async exportConfig(actor: Actor): Promise<string> {
      authorize(actor, "catalog.read");
      authorize(actor, "groups.read");
      return renderConfig(await loadState(store.db));
    },

    /** What applying the file would change; VALIDATION_FAILED with details.problems when it is invalid. */
    async diffConfig(actor: Actor, text: string): Promise<ConfigPlanDto> {
      authorize(actor, "catalog.read");
      return toDto((await prepare(store.db, text, actor)).plan);
    },

    /**
     * Makes the catalog what the file says, in one transaction with one audit
     * event per change. An unchanged catalog writes nothing, not even an event.
     * Changing groups also needs groups.write.
     */
    async applyConfig(actor: Actor, text: string, context: CallContext): Promise<ConfigApplyResultDto> {
      authorize(actor, "catalog.write");
      const fourEyes = deps.fourEyes;
      let held: HeldPlan | null = null;
      let waived: PlanAssessment | null = null;
      // Judged on the plan before anything is written: a held plan is still executed (so SELF_GRANT and custody
      // refuse it now, not at approval) but ends no activation, and is rolled back.
      const decide = async (tx: Tx, plan: Plan, current: CatalogState, desired: DesiredCatalog) => {
        if (!fourEyes || fourEyes.tiers.length === 0 || plan.changes.length === 0) return false;
        const assessment = assessPlan(current, desired, plan.changes, fourEyes.tiers);
        if (!assessment.held) return false;
        if (fourEyes.alone === "apply" && !(await fourEyes.anotherApprover(tx, actor))) {
          waived = assessment;
          return false;
        }
        held = { plan: toDto(plan), assessment, fingerprint: catalogFingerprint(current) };
        return true;
      };
      const result = await write(async (tx) => {
        const run = await runFile(tx, actor, text, [], undefined, decide);
        if (run.plan.changes.length === 0) return { ...toDto(run.plan), applied: false };
        if (run.held) throw HOLD; // everything written above is rolled back: the plan waits for a second admin
        const assessment = waived as PlanAssessment | null;
        if (assessment) {
          // Nobody else could approve it (a first admin building the catalog): applied, and said so.
          run.plan.notes.push(
            "four-eyes waived: this widens access, but no other active admin or security user could approve it (fourEyes.alone: apply).",
          );
          run.events.push({
            action: "config.four_eyes_waived",
            outcome: "success",
            subject: "catalog",
            reason: "no second admin",
            details: {
              tier: assessment.tier,
              widening: assessment.changes
                .filter((c) => c.effect === "widens")
                .map((c) => ({ kind: c.kind, name: c.name, tier: c.tier, reasons: c.reasons })),
            },
          });
        }
        await audit.append(tx, actor, context, run.events);
        return { ...toDto(run.plan), applied: true };
      }, "Something the file creates already exists; run the diff again.").catch((error: unknown) => {
        if (error !== HOLD) throw error;
        return null;
      });
      if (result !== null) return result;
      const plan = held! as HeldPlan;
      const changeRequest = await fourEyes!.hold(actor, text, plan, context);
      return { ...plan.plan, applied: false, changeRequest };
    },

    /**
     * Applies a held file in the caller's transaction (which holds the catalog lock): only if the catalog is still
     * the one its plan was made against, as its author, and making neither the author nor the approver eligible
     * for more. Returns the plan and the audit events of its changes (the caller appends them).
     */
    async applyHeld(
      tx: Tx,
      author: Actor,
      approver: Actor,
      text: string,
      fingerprint: string,
    ): Promise<{ plan: ConfigPlanDto; events: AuditInput[] }> {
      const run = await runFile(tx, author, text, [approver], fingerprint);
      return { plan: toDto(run.plan), events: run.events };
    },

    /** The catalog's fingerprint as `db` sees it (what a held plan was made against). */
    async fingerprint(db: Db): Promise<string> {
      return catalogFingerprint(await loadState(db));
    },
  };
}

export type CatalogService = ReturnType<typeof createCatalogService>;
