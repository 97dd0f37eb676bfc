/**
 * Configuration as code: export, diff and apply a file (planned and applied inside one transaction, one audit event
 * per change, nothing at all when anything is wrong with it), and the held plans of four-eyes.
 */
import type { Tx } from "../../db/index.js";
import type { ConfigApplyResultDto, ConfigPlanDto } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import { actorLabel } from "../audit/audit.service.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { parseConfig, renderConfig } from "./catalog.config.js";
import { checkConfig, keyOf, planConfig, summarize } from "./catalog.plan.rules.js";
import { assessPlan, catalogFingerprint, type PlanAssessment } from "./change-requests.rules.js";
import * as catalogStore from "./catalog.store.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import { applyCustody, checkCustody, roleSessionProblem } from "./custody.js";
import { targetWarnings } from "../connectors/index.js";
import type {
  CatalogFacts,
  CatalogState,
  Change,
  DesiredCatalog,
  EligibilityState,
  GroupState,
  Plan,
  PolicyState,
  ReviewState,
  RoleState,
  TargetState,
} from "./catalog.types.js";
import {
  HOLD,
  type Db,
  reviewSpec,
  endpointOfRow,
  targetDefinition,
  custodyOrThrow,
  connectorProblems,
  invalidFile,
  auditAction,
} from "./catalog.helpers.js";
import type { CatalogContext, HeldFollowUp, HeldPlan } from "./catalog.context.js";

export function configUseCases(ctx: CatalogContext) {
  const { deps, store, audit, clock, allowanceKey, write, requireTarget, requirePolicy, requireRole, loadState } = ctx;

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
     * Changing groups also needs groups.write. A held file keeps `followUp` for its approval (`HeldFollowUp`).
     */
    async applyConfig(
      actor: Actor,
      text: string,
      context: CallContext,
      followUp?: HeldFollowUp,
    ): Promise<ConfigApplyResultDto> {
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
      const changeRequest = await fourEyes!.hold(actor, text, followUp ? { ...plan, followUp } : plan, context);
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
