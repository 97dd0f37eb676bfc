/**
 * Standing access: discovery of the privileged access a target holds outside Stint, its conversion to
 * eligibility (one audited transaction) and its removal at the target through the outbox.
 */

import canonicalize from "canonicalize";
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

export function createStandingAccess(ctx: GrantContext) {
  const { store, audit, clock, outbox, revokeAttempts, connectorTarget, call, requireTarget, loginsOf, queueRestores } =
    ctx;

  /**
   * Four-eyes on a conversion: the eligibility it creates widens access (Stint cannot tell that the user a login maps
   * to is the person who held that login), so where a one-object eligibility write would be held, the conversion is
   * held as a whole: the catalog keeps its new eligibility as one change request, and nothing else happens now (no
   * eligibility, no removal). Once approved, the same conversion again finds the eligibility and removes the
   * standing access. Null when not held.
   */
  async function holdConversion(
    actor: Actor,
    context: CallContext,
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
    const changeRequest = await hold(actor, context, entries);
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
        const held = await holdConversion(actor, context, role, plan, input.reason);
        if (held) return { ...result, converted: held.converted, changeRequest: held.changeRequest };
      }
      const conversionId = newId();
      await store.transaction(async (tx) => {
        const now = clock.now();
        // Nobody makes themselves eligible, here as through the catalog: checked on the outcome.
        const ownAccess = await guardOwnAccess(tx, actor);
        for (const [index, { access, principal }] of plan.entries()) {
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
          await outbox.enqueue(tx, {
            kind: JOB.removeStanding,
            idempotencyKey: `standing-remove:${conversionId}:${index}`,
            payload: {
              targetId: row.id,
              login: access.login,
              entitlement: access.entitlement,
              privilege: access.privilege,
              conversionId,
            },
            maxAttempts: revokeAttempts,
          });
        }
        if (!input.dryRun) await ownAccess.check(tx, now);
        if (!input.dryRun && plan.length > 0)
          await audit.append(tx, actor, context, {
            action: "standing.converted",
            outcome: "success",
            subject: `target:${row.name}`,
            reason: input.reason,
            details: {
              role: role.name,
              conversionId,
              converted: result.converted.map((c) => ({
                login: c.login,
                principal: c.principal,
                privilege: c.privilege,
              })),
            },
          });
      });
      return result;
    },
  };
}
