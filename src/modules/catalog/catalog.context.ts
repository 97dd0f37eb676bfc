/** The catalog service's dependencies and the context its use-case files share (catalog.service.ts wires them). */
import type { AppStore, Tx } from "../../db/index.js";
import { type PolicySpec } from "../../contract/catalog.js";
import type { ConfigPlanDto, ChangeRequestRefDto, RoleInput } from "../../contract/catalog-api.js";
import type { Clock } from "../../lib/clock.js";
import { StintError } from "../../lib/errors.js";
import { isUniqueViolation } from "../../lib/db.js";
import { deriveKey } from "../../lib/security.js";
import { type AuditLog } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { renderConfig, reviewState } from "./catalog.config.js";
import { reviewDefinition } from "../../contract/reviews.js";
import { assessPlan, type PlanAssessment } from "./change-requests.rules.js";
import { policyProblems, policyReferences, riskProblem, sortedSet, targetConfig } from "./catalog.rules.js";
import { riskFloorProblem } from "./risk-floor.rules.js";
import * as catalogStore from "./catalog.store.js";
import { roleSessionProblem } from "./custody.js";
import { entitlementProblems } from "../connectors/index.js";
import type { CatalogState, Change, DesiredCatalog, RiskTier, TargetKind } from "./catalog.types.js";
import {
  type Db,
  type Issue,
  quote,
  iso,
  isForeignKeyViolation,
  targetDefinition,
  invalid,
  dotted,
  normalizeSpec,
} from "./catalog.helpers.js";

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

/**
 * What the use case that held a file does once a second admin's approval applies it, in that same transaction (a
 * conversion of standing access: removing that access at the target). Kept with the change request and handed back
 * at approval (the change requests' `onApplied`); the catalog never reads `payload`. `notes` are shown to the
 * approver with the plan's.
 */
export interface HeldFollowUp {
  kind: string;
  notes: string[];
  payload: Record<string, unknown>;
}

/** A plan kept for a second admin: what it changes, why it is held, and the catalog it was made against. */
export interface HeldPlan {
  plan: ConfigPlanDto;
  assessment: PlanAssessment;
  fingerprint: string;
  followUp?: HeldFollowUp;
}

/**
 * What every catalog use case works with: the dependencies, the catalog write (lock, one transaction, database
 * refusals as stable codes), the lookups that answer NOT_FOUND, the checks shared by create and update, the
 * catalog as it stands, and the four-eyes guard of one-object writes.
 */
export function createCatalogContext(deps: CatalogServiceDeps) {
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
    if (target && policy) {
      const grant = {
        targetKind: target.kind as TargetKind,
        targetLabels: target.labels ?? {},
        entitlement: input.entitlement,
        policy: normalizeSpec(policy.spec),
      };
      const floor = riskFloorProblem(grant, input.risk);
      if (floor) issues.push({ path: "body.risk", message: floor });
    }
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
        ...targetConfig(t.config),
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

  /**
   * Four-eyes for one-object writes (API and admin forms): a change that widens access at a covered tier is not
   * made but thrown as a `HeldAsFile`: the change rendered as a configuration file of that one entry (no prune),
   * which the catalog service hands to the file apply, so it is held as a change request for a second admin just
   * as a file is. Unless nobody else could approve it (`alone: apply`). A rename is not something a file says (and
   * the rules count a rename at a covered tier as widening): it is refused with FOUR_EYES_REQUIRED. `desired` lists
   * the entity as it would be, under its current name.
   */
  async function fourEyesGuard(tx: Tx, actor: Actor, change: Change, desired: DesiredCatalog): Promise<void> {
    const fourEyes = deps.fourEyes;
    if (!fourEyes || fourEyes.tiers.length === 0) return;
    const assessment = assessPlan(await loadState(tx), desired, [change], fourEyes.tiers);
    if (!assessment.held) return;
    if (fourEyes.alone === "apply" && !(await fourEyes.anotherApprover(tx, actor))) return;
    const reasons = assessment.changes.flatMap((c) => c.reasons);
    if (change.action === "update" && change.fields.some((f) => f.field === "name"))
      throw new StintError(
        "FOUR_EYES_REQUIRED",
        `This change renames ${change.kind} ${change.name} at risk ${assessment.tier} (${reasons.join("; ")}): a rename there needs a second admin, but a change request cannot rename (a configuration file names entries by name), so it is refused. Keep the name; other changes are held for a second admin.`,
        { tier: assessment.tier, reasons },
      );
    throw new HeldAsFile(fragmentOf(desired));
  }

  return {
    deps,
    store,
    audit,
    clock,
    allowanceKey,
    write,
    policyIssues,
    roleValues,
    requireTarget,
    requirePolicy,
    requireRole,
    requireEligibility,
    loadState,
    fourEyesGuard,
  };
}

export type CatalogContext = ReturnType<typeof createCatalogContext>;

/** A one-object write held for four-eyes: the change as a configuration file of that one entry (no prune). */
export class HeldAsFile {
  constructor(readonly text: string) {}
}

/** `desired` (one entry, prune false) as a configuration file: only its own section has anything in it. */
function fragmentOf(desired: DesiredCatalog): string {
  return renderConfig({
    groups: desired.groups ?? [],
    policies: desired.policies ?? [],
    targets: desired.targets ?? [],
    roles: desired.roles ?? [],
    eligibility: (desired.eligibility ?? []).map((e) => ({
      ...e,
      from: e.from ?? "",
      fromChosen: e.from !== undefined,
    })),
  });
}
