/**
 * The catalog: targets, policies, roles and eligibility, by API and as
 * configuration as code. Each call authorizes first; each write takes the
 * catalog lock, then writes its change and its audit event in one transaction.
 * A configuration file is planned and applied inside that one transaction, one
 * audit event per change, and nothing at all when anything is wrong with it.
 */
import type { ChangeRequestRefDto, HeldWriteDto } from "../../contract/catalog-api.js";
import { StintError } from "../../lib/errors.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { createCatalogContext, HeldAsFile, type CatalogServiceDeps, type HeldFollowUp } from "./catalog.context.js";
import { targetUseCases } from "./catalog.targets.js";
import { policyUseCases } from "./catalog.policies.js";
import { roleUseCases } from "./catalog.roles.js";
import { eligibilityUseCases } from "./catalog.eligibility.js";
import { configUseCases } from "./catalog.config-as-code.js";
import { diffEntity } from "./catalog.plan.rules.js";
import { findPrincipal } from "./catalog.store.js";

export type { CatalogServiceDeps, HeldFollowUp, HeldPlan } from "./catalog.context.js";

/**
 * The catalog's use cases, one file each (targets, policies, roles, eligibility, configuration as code). A one-object
 * write that four-eyes holds (catalog.context `HeldAsFile`) goes to the file apply as a file of that one entry and
 * answers `{ changeRequest }`; should the file apply it at once after all (the last other admin left meanwhile),
 * the object as it now is.
 */
export function createCatalogService(deps: CatalogServiceDeps) {
  const ctx = createCatalogContext(deps);
  const targets = targetUseCases(ctx);
  const policies = policyUseCases(ctx);
  const roles = roleUseCases(ctx);
  const eligibility = eligibilityUseCases(ctx);
  const config = configUseCases(ctx);

  async function orHeld<T>(
    actor: Actor,
    context: CallContext,
    call: () => Promise<T>,
    reload: () => Promise<T>,
  ): Promise<T | HeldWriteDto> {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof HeldAsFile)) throw error;
      const result = await config.applyConfig(actor, error.text, context);
      if (result.changeRequest) return { changeRequest: result.changeRequest };
      return reload();
    }
  }

  /** The one eligibility of `role` for `subject` (after a held create that was applied at once). */
  async function eligibilityOf(actor: Actor, role: string, subject: { principal?: string; group?: string }) {
    const found = (await eligibility.listEligibilities(actor, {})).find(
      (e) =>
        e.role === role &&
        (subject.principal !== undefined ? e.principal === subject.principal : e.group === subject.group),
    );
    if (!found) throw new StintError("CONFLICT", "The change was applied but the eligibility is not there.");
    return found;
  }

  /**
   * Four-eyes for the eligibility `stint discover --convert` makes (grants.standing): when making it widens access at
   * a covered tier, all of it is held as one change request (a file of just those entries, SELF_GRANT checked on it)
   * and that is answered; null when four-eyes lets the caller make it at once (or the file was applied at once).
   * `followUp`, kept with the change request, is what its approval does besides applying the file.
   */
  async function holdNewEligibility(
    actor: Actor,
    context: CallContext,
    entries: { role: string; principal: string; reason: string }[],
    followUp?: HeldFollowUp,
  ): Promise<ChangeRequestRefDto | null> {
    try {
      await eligibility.guardNewEligibility(actor, entries);
      return null;
    } catch (error) {
      if (!(error instanceof HeldAsFile)) throw error;
      return (await config.applyConfig(actor, error.text, context, followUp)).changeRequest ?? null;
    }
  }

  /**
   * Four-eyes for `stint groups add` (the directory's `POST /v1/groups/{name}/members`): adding `principal` to
   * `group` is judged as a file changing that group's members is; when it widens access at a covered tier it is
   * applied as that file (held as a change request; SELF_GRANT checked on it) and the change request answered,
   * "applied" should the file apply it at once after all; null when the directory may add it itself (nothing
   * held, or no such group or principal: the directory answers for those).
   */
  async function holdGroupMember(
    actor: Actor,
    context: CallContext,
    group: string,
    principal: string,
  ): Promise<ChangeRequestRefDto | "applied" | null> {
    try {
      await ctx.store.transaction(async (tx) => {
        const before = (await ctx.loadState(tx)).groups.find((g) => g.name === group);
        if (!before || before.members.includes(principal) || !(await findPrincipal(tx, principal))) return;
        const after = { ...before, members: [...before.members, principal].sort() };
        const fields = diffEntity("group", before, after);
        await ctx.fourEyesGuard(
          tx,
          actor,
          { action: "update", kind: "group", name: group, fields },
          {
            prune: false,
            groups: [after],
          },
        );
      });
      return null;
    } catch (error) {
      if (!(error instanceof HeldAsFile)) throw error;
      return (await config.applyConfig(actor, error.text, context)).changeRequest ?? "applied";
    }
  }

  return {
    ...targets,
    ...policies,
    ...roles,
    ...eligibility,
    ...config,
    holdNewEligibility,
    holdGroupMember,
    updateTarget: (
      actor: Actor,
      ref: string,
      input: Parameters<typeof targets.updateTarget>[2],
      context: CallContext,
    ) =>
      orHeld(
        actor,
        context,
        () => targets.updateTarget(actor, ref, input, context),
        () => targets.getTarget(actor, ref),
      ),
    updatePolicy: (
      actor: Actor,
      ref: string,
      input: Parameters<typeof policies.updatePolicy>[2],
      context: CallContext,
    ) =>
      orHeld(
        actor,
        context,
        () => policies.updatePolicy(actor, ref, input, context),
        () => policies.getPolicy(actor, ref),
      ),
    updateRole: (actor: Actor, ref: string, input: Parameters<typeof roles.updateRole>[2], context: CallContext) =>
      orHeld(
        actor,
        context,
        () => roles.updateRole(actor, ref, input, context),
        () => roles.getRole(actor, ref),
      ),
    createEligibility: (
      actor: Actor,
      input: Parameters<typeof eligibility.createEligibility>[1],
      context: CallContext,
    ) =>
      orHeld(
        actor,
        context,
        () => eligibility.createEligibility(actor, input, context),
        () => eligibilityOf(actor, input.role, input),
      ),
    updateEligibility: (
      actor: Actor,
      id: string,
      input: Parameters<typeof eligibility.updateEligibility>[2],
      context: CallContext,
    ) =>
      orHeld(
        actor,
        context,
        () => eligibility.updateEligibility(actor, id, input, context),
        () => eligibility.getEligibility(actor, id),
      ),
  };
}

export type CatalogService = ReturnType<typeof createCatalogService>;
