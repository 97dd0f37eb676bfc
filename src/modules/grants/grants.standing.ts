/**
 * Standing access: discovery of the privileged access a target holds outside Stint, its conversion to
 * eligibility (one audited transaction) and its removal at the target through the outbox.
 */

import canonicalize from "canonicalize";
import { z } from "zod";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import type { StandingAccess } from "../connectors/index.js";
import type { HandlerContext } from "../outbox/index.js";
import { asConnectorError, systemContext, type GrantContext } from "./grants.context.js";
import * as grantStore from "./grants.store.js";
import { JOB, type ConvertResult, type DiscoveredAccessDto } from "./grants.types.js";
import { normalizeLogin } from "./reconcile.rules.js";
import { guardOwnAccess } from "../requests/self-grant.js";
import type { ChangeRequestRefDto } from "../../contract/catalog-api.js";
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";

type Q = Kysely<Database>;

/** The follow-up a held conversion leaves with its change request: what the approval removes. */
const HELD_CONVERSION = "standing.convert";
const heldConversion = z.object({
  conversionId: z.string(),
  targetId: z.string(),
  target: z.string(),
  roleId: z.string(),
  role: z.string(),
  reason: z.string(),
  removals: z.array(
    z.object({
      login: z.string(),
      entitlement: z.record(z.string(), z.unknown()),
      privilege: z.string(),
      principalId: z.string(),
      principal: z.string(),
    }),
  ),
});
type HeldConversion = z.infer<typeof heldConversion>;

export function createStandingAccess(ctx: GrantContext) {
  const { store, audit, clock, outbox, revokeAttempts, connectorTarget, call, requireTarget, loginsOf, queueRestores } =
    ctx;

  /**
   * Enqueues the removal of each converted login's standing access at the target (the outbox's `standing.remove`
   * jobs, idempotent by conversion and position) and answers the conversion's audit event.
   */
  async function enqueueRemovals(tx: Q, conversion: HeldConversion): Promise<AuditInput> {
    for (const [index, removal] of conversion.removals.entries())
      await outbox.enqueue(tx, {
        kind: JOB.removeStanding,
        idempotencyKey: `standing-remove:${conversion.conversionId}:${index}`,
        payload: {
          targetId: conversion.targetId,
          login: removal.login,
          entitlement: removal.entitlement,
          privilege: removal.privilege,
          conversionId: conversion.conversionId,
        },
        maxAttempts: revokeAttempts,
      });
    return {
      action: "standing.converted",
      outcome: "success",
      subject: `target:${conversion.target}`,
      reason: conversion.reason,
      details: {
        role: conversion.role,
        conversionId: conversion.conversionId,
        converted: conversion.removals.map((r) => ({ login: r.login, principal: r.principal, privilege: r.privilege })),
      },
    };
  }

  /**
   * Four-eyes on a conversion: the eligibility it creates widens access (Stint cannot tell that the user a login maps
   * to is the person who held that login), so where a one-object eligibility write would be held, the conversion is
   * held as a whole: the catalog keeps its new eligibility as one change request, with the removals as its follow-up,
   * and nothing else happens now (no eligibility, no removal). The approval applies both in one transaction
   * (`applyHeldFollowUp`): the eligibility, then the removal of the standing access through the outbox, as an
   * unheld conversion does. Null when not held.
   */
  async function holdConversion(
    actor: Actor,
    context: CallContext,
    target: { id: string; name: string },
    role: { id: string; name: string },
    plan: { access: DiscoveredAccessDto; principal: { id: string; name: string } }[],
    reason: string,
  ): Promise<{ converted: ConvertResult["converted"]; changeRequest: ChangeRequestRefDto } | null> {
    const hold = ctx.deps.holdNewEligibility;
    if (!hold || plan.length === 0) return null;
    const now = clock.now();
    const created = new Set<string>();
    for (const { principal } of plan)
      if (!(await grantStore.isDirectlyEligible(store.db, role.id, principal.id, now))) created.add(principal.name);
    if (created.size === 0) return null;
    const entries = [...created].map((principal) => ({ role: role.name, principal, reason }));
    const conversion: HeldConversion = {
      conversionId: newId(),
      targetId: target.id,
      target: target.name,
      roleId: role.id,
      role: role.name,
      reason,
      removals: plan.map(({ access, principal }) => ({
        login: access.login,
        entitlement: access.entitlement ?? {},
        privilege: access.privilege,
        principalId: principal.id,
        principal: principal.name,
      })),
    };
    const logins = conversion.removals.map((r) => r.login).join(", ");
    const changeRequest = await hold(actor, context, entries, {
      kind: HELD_CONVERSION,
      notes: [
        `approving also removes the standing access converted (${logins} at ${target.name}), as the conversion would have.`,
      ],
      payload: conversion,
    });
    if (!changeRequest) return null;
    const converted = plan.map(({ access, principal }) => ({
      login: access.login,
      principal: principal.name,
      privilege: access.privilege,
      eligibility: created.has(principal.name) ? ("created" as const) : ("existing" as const),
    }));
    return { converted, changeRequest };
  }

  async function removeStandingJob(payload: Record<string, unknown>, job: HandlerContext) {
    const targetRow = await grantStore.findTarget(store.db, String(payload.targetId));
    if (!targetRow) return;
    const login = String(payload.login);
    const entitlement = payload.entitlement as Record<string, unknown>;
    const membership: grantStore.MembershipKey = { targetId: targetRow.id, login, entitlement };
    const restoreReason = `the removal of standing access (conversion ${String(payload.conversionId)}) removed it`;
    const standingRemoved = (details: Record<string, unknown>): AuditInput => ({
      action: "standing.removed",
      outcome: "success",
      subject: `target:${targetRow.name}`,
      details: { login, entitlement, privilege: payload.privilege, ...details },
    });
    // The login holds it for an active activation now: it is no longer standing, and that activation's end
    // takes it away.
    const kept = await store.transaction(async (tx) => {
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["active"] });
      if (holders.length === 0) return false;
      if (job.attempt > 1) await queueRestores(tx, holders, job, restoreReason);
      await audit.append(
        tx,
        SYSTEM,
        systemContext(`convert:${String(payload.conversionId)}`),
        standingRemoved({ keptFor: { grantId: holders[0]!.id, requestId: holders[0]!.request_id } }),
      );
      return true;
    });
    if (kept) return;
    const { connector, target } = await connectorTarget(store.db, targetRow);
    await call(connector.kind, "revoke", () =>
      connector.revoke(
        target,
        { login, entitlement },
        { signal: job.signal, operationId: `standing:${String(payload.conversionId)}:${login}` },
      ),
    );
    await store.transaction(async (tx) => {
      const holders = await grantStore.grantsSharing(tx, membership, { states: ["provisioning", "active"] });
      await queueRestores(tx, holders, job, restoreReason);
      await audit.append(tx, SYSTEM, systemContext(`convert:${String(payload.conversionId)}`), standingRemoved({}));
    });
  }

  async function discover(
    actor: Actor,
    context: CallContext,
    row: grantStore.TargetRow,
  ): Promise<DiscoveredAccessDto[]> {
    let found: StandingAccess[];
    try {
      const { connector, target } = await connectorTarget(store.db, row);
      found = await call(connector.kind, "discover", () => connector.discover(target));
    } catch (error) {
      if (error instanceof StintError) throw error;
      const failure = asConnectorError(error);
      throw new StintError("TARGET_UNAVAILABLE", `${row.name}: ${failure.message}`, { reason: failure.reason });
    }
    const byLogin = await loginsOf(store.db, row);
    await audit.record(actor, context, {
      action: "target.discovered",
      outcome: "success",
      subject: `target:${row.name}`,
      details: { accounts: found.length },
    });
    return found.map((access) => ({
      ...access,
      principal: byLogin.get(normalizeLogin(row.kind, access.login))?.name ?? null,
    }));
  }

  return {
    removeStandingJob,

    /**
     * An approved change request's follow-up, in its transaction after its file made the eligibility: a held
     * conversion's removals are enqueued (only of logins whose user is eligible for the role now: nothing is taken
     * away that cannot be activated again) and its `standing.converted` event answered. Other kinds: nothing.
     */
    async applyHeldFollowUp(tx: Q, applied: { followUp: { kind: string; payload: unknown } }): Promise<AuditInput[]> {
      if (applied.followUp.kind !== HELD_CONVERSION) return [];
      const conversion = heldConversion.parse(applied.followUp.payload);
      const now = clock.now();
      const removals: HeldConversion["removals"] = [];
      for (const removal of conversion.removals)
        if (await grantStore.isDirectlyEligible(tx, conversion.roleId, removal.principalId, now))
          removals.push(removal);
      if (removals.length === 0) return [];
      return [await enqueueRemovals(tx, { ...conversion, removals })];
    },

    /** Standing privileged access at a target, with the Stint principal each login maps to. */
    async discover(actor: Actor, context: CallContext, ref: string): Promise<DiscoveredAccessDto[]> {
      authorize(actor, "targets.operate");
      return discover(actor, context, await requireTarget(ref));
    },

    /**
     * Phase one → phase two: the chosen standing access becomes eligibility for `role`
     * (one transaction, audited), and its removal at the target goes through the outbox.
     * Only access that the role grants back is converted; the rest is listed as skipped.
     */
    async convert(
      actor: Actor,
      context: CallContext,
      ref: string,
      input: { role: string; logins: string[] | null; dryRun: boolean; reason: string },
    ): Promise<ConvertResult> {
      authorize(actor, "targets.operate");
      if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
      const row = await requireTarget(ref);
      const role = await grantStore.findRoleByName(store.db, input.role);
      if (!role || role.target_id !== row.id)
        throw new StintError("NOT_FOUND", `There is no role ${JSON.stringify(input.role)} at the target ${row.name}.`);
      const found = await discover(actor, context, row);
      const key = (login: string) => normalizeLogin(row.kind, login);
      const wanted = input.logins ? new Set(input.logins.map(key)) : null;
      const result: ConvertResult = { dryRun: input.dryRun, role: role.name, converted: [], skipped: [] };
      const grants = canonicalize(role.entitlement);
      for (const login of input.logins ?? [])
        if (!found.some((a) => key(a.login) === key(login)))
          result.skipped.push({ login, reason: "no standing privileged access was found for it" });
      const byLogin = await loginsOf(store.db, row);
      const plan: { access: DiscoveredAccessDto; principal: { id: string; name: string } }[] = [];
      for (const access of found) {
        if (wanted && !wanted.has(key(access.login))) continue;
        if (access.entitlement === null || canonicalize(access.entitlement) !== grants) {
          // Without a list of logins, only what the role grants is looked at.
          if (wanted)
            result.skipped.push({
              login: access.login,
              reason: `${access.privilege}: the role ${role.name} does not grant this, so removing it would lose access`,
            });
          continue;
        }
        const principal = byLogin.get(key(access.login));
        if (!principal) {
          result.skipped.push({ login: access.login, reason: "no Stint user maps to this login" });
          continue;
        }
        plan.push({ access, principal });
      }
      if (!input.dryRun) {
        const held = await holdConversion(actor, context, row, role, plan, input.reason);
        if (held) return { ...result, converted: held.converted, changeRequest: held.changeRequest };
      }
      const conversion: HeldConversion = {
        conversionId: newId(),
        targetId: row.id,
        target: row.name,
        roleId: role.id,
        role: role.name,
        reason: input.reason,
        removals: [],
      };
      await store.transaction(async (tx) => {
        const now = clock.now();
        // Nobody makes themselves eligible, here as through the catalog: checked on the outcome.
        const ownAccess = await guardOwnAccess(tx, actor);
        for (const { access, principal } of plan) {
          const existing = await grantStore.isDirectlyEligible(tx, role.id, principal.id, now);
          result.converted.push({
            login: access.login,
            principal: principal.name,
            privilege: access.privilege,
            eligibility: existing ? "existing" : "created",
          });
          if (input.dryRun) continue;
          if (!existing)
            await grantStore.insertEligibility(tx, {
              id: newId(),
              roleId: role.id,
              principalId: principal.id,
              grantedBy: actor.id,
              reason: input.reason,
              now,
            });
          conversion.removals.push({
            login: access.login,
            entitlement: access.entitlement ?? {},
            privilege: access.privilege,
            principalId: principal.id,
            principal: principal.name,
          });
        }
        if (input.dryRun) return;
        await ownAccess.check(tx, now);
        if (plan.length > 0) await audit.append(tx, actor, context, await enqueueRemovals(tx, conversion));
      });
      return result;
    },
  };
}
