/**
 * What happens to a request after it was submitted, other than decisions: cancel, extend, deactivate, revoke,
 * and the provisioning worker's outcome (provisioned, failed).
 */
import { parseDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import type { HandlerContext } from "../outbox/index.js";
import { checkExtension, checkJustification, checkMfaFreshness, evaluateWindow } from "./policy.rules.js";
import { createActivation, SLOW_TARGET, type ActivationPath } from "./provisioned.js";
import { assertTransition, stageDeadline, stagesFor } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import { expiredUndecided, isPendingPastTtl, pendingExpiresAt } from "./timing.rules.js";
import type { RequestCore } from "./activation.js";
import { breakGlassUse } from "./break-glass-use.js";
import { iso, Refusal, type RequestDto } from "./request-context.js";
import { createDeactivateGroup, type DeactivateCall } from "./deactivate.group.js";

export function createLifecycle(core: RequestCore) {
  const {
    store,
    audit,
    clock,
    emit,
    refuse,
    principalOf,
    toDto,
    dtoOf,
    isPastExpiry,
    loadPolicy,
    end,
    approveThenGrant,
    timing,
  } = core;

  /** A deactivate in a transaction of its own. */
  async function deactivateAlone({ actor, roleName, context }: DeactivateCall): Promise<RequestDto> {
    const principal = actor;
    const outcome = await store.transaction(async (tx) => {
      const now = clock.now();
      const open = await requestStore.lockOpenOfRole(tx, principal.id, roleName);
      if (!open || open.row.state !== "active")
        return new Refusal("NOT_ACTIVE", `You have no active activation of ${roleName}.`);
      const { row, decisions } = open;
      const ended = isPastExpiry(row, now)
        ? { state: "expired" as const, reason: "the activation reached its end time", by: "system" }
        : { state: "deactivated" as const, reason: "ended early by the holder", by: principal.name };
      await audit.append(tx, actor, context, await end(tx, row, ended.state, ended.reason, ended.by, now));
      return dtoOf(
        { ...row, state: ended.state, ended_at: now, end_reason: ended.reason, ended_by: ended.by },
        decisions,
      );
    });
    if (outcome instanceof Refusal) return refuse(actor, context, "request.deactivated", `role:${roleName}`, outcome);
    return outcome;
  }

  const deactivateGroup = createDeactivateGroup(core, deactivateAlone);
  const { activate } = createActivation(core);

  return {
    async cancel(actor: Actor, requestId: string, context: CallContext): Promise<RequestDto> {
      const principal = principalOf(actor);
      const outcome = await store.transaction(async (tx) => {
        const now = clock.now();
        const row = await requestStore.lockRequest(tx, requestId);
        if (!row || row.requester_id !== principal.id)
          return new Refusal("NOT_FOUND", "There is no such request of yours.");
        const lapsed = isPendingPastTtl(row, now);
        if (lapsed || expiredUndecided(row)) {
          if (lapsed) await audit.append(tx, SYSTEM, context, await timing.expireUndecided(tx, row, now));
          const expiredAt = iso(lapsed ? row.pending_expires_at : row.ended_at);
          return new Refusal("REQUEST_EXPIRED", `The request already expired without a decision at ${expiredAt}.`, {
            requestId,
            expiredAt,
          });
        }
        // An approved extension has already moved its activation's expiry: cancelling it would undo nothing.
        if (row.extends_request_id && row.state !== "pending")
          return new Refusal(
            "REQUEST_NOT_PENDING",
            `The extension is ${row.state}; only a pending one can be cancelled.`,
          );
        if (row.state !== "pending" && row.state !== "approved")
          return new Refusal("REQUEST_NOT_PENDING", `The request is ${row.state}; deactivate an active one instead.`);
        await tx
          .updateTable("activation_requests")
          .set({
            state: "cancelled",
            ended_at: now,
            end_reason: "cancelled by the requester",
            ended_by: principal.name,
            stage_deadline: null,
            updated_at: now,
          })
          .where("id", "=", row.id)
          .execute();
        await audit.append(tx, actor, context, {
          action: "request.cancelled",
          outcome: "success",
          subject: `request:${row.id}`,
          details: { role: row.role_name },
        });
        await emit(tx, { type: "cancelled", requestId: row.id, role: row.role_name, requester: row.requester_name });
        return toDto(tx, (await requestStore.findRequest(tx, row.id))!);
      });
      if (outcome instanceof Refusal)
        return refuse(actor, context, "request.cancelled", `request:${requestId}`, outcome);
      return outcome;
    },

    /**
     * Ends the caller's own active activation of a role early. Concurrent deactivates go together
     * (`deactivate.group.ts`), each decided and answered as alone.
     */
    async deactivate(actor: Actor, roleName: string, context: CallContext): Promise<RequestDto> {
      return deactivateGroup.deactivate({ actor: principalOf(actor), roleName, context });
    },

    /** The deactivate groups so far (a benchmark's figures). */
    deactivateGroups: () => deactivateGroup.stats(),

    /** An administrator ends someone's activation (or a provisioning one), with a reason. */
    async revoke(actor: Actor, requestId: string, reason: string, context: CallContext): Promise<RequestDto> {
      authorize(actor, "requests.revoke");
      const by = actor.kind === "principal" ? actor.name : "system";
      const outcome = await store.transaction(async (tx) => {
        const now = clock.now();
        const row = await requestStore.lockRequest(tx, requestId);
        if (!row) return new Refusal("NOT_FOUND", "There is no such request.");
        if (row.state !== "active" && row.state !== "provisioning")
          return new Refusal("NOT_ACTIVE", `The request is ${row.state}, not active.`);
        const events = isPastExpiry(row, now)
          ? await end(tx, row, "expired", "the activation reached its end time", "system", now)
          : await end(tx, row, "revoked", reason, by, now);
        await audit.append(tx, actor, context, events);
        return toDto(tx, (await requestStore.findRequest(tx, row.id))!);
      });
      if (outcome instanceof Refusal) return refuse(actor, context, "request.revoked", `request:${requestId}`, outcome);
      return outcome;
    },

    /** Asks for more time on an active activation; the extension goes through the policy again. */
    async extend(
      actor: Actor,
      roleName: string,
      input: { by: string; reason: string },
      context: CallContext,
    ): Promise<RequestDto> {
      const principal = principalOf(actor);
      const now = clock.now();
      const subject = `role:${roleName}`;
      const role = await requestStore.findRole(store.db, roleName);
      const open = role ? await requestStore.findOpenRequest(store.db, principal.id, role.id) : undefined;
      if (!role || !open || open.state !== "active") {
        return refuse(
          actor,
          context,
          "request.extended",
          subject,
          new Refusal("NOT_ACTIVE", `You have no active activation of ${roleName} to extend.`),
        );
      }
      if (!(await requestStore.isEligible(store.db, principal.id, role.id, now))) {
        return refuse(
          actor,
          context,
          "request.extended",
          subject,
          new Refusal("NOT_ELIGIBLE", `You are no longer eligible for ${roleName}.`),
        );
      }
      const spec = await loadPolicy(role);
      let byMs: number;
      try {
        byMs = parseDuration(input.by);
      } catch {
        throw new StintError("VALIDATION_FAILED", "The extension must be a duration like 30m.");
      }
      const justification = checkJustification(spec, input.reason, undefined);
      if (!justification.ok && !(spec.justification.ticketRequired && justification.problems.length === 1)) {
        return refuse(
          actor,
          context,
          "request.extended",
          subject,
          new Refusal("JUSTIFICATION_INVALID", justification.problems.join(" "), {
            problems: justification.problems,
            fields: justification.fields,
          }),
        );
      }
      const mfa = checkMfaFreshness(spec, principal.mfaAt ?? null, now, principal.webauthnAt ?? null);
      if (!mfa.ok) return refuse(actor, context, "request.extended", subject, new Refusal(mfa.code, mfa.message));
      const window = evaluateWindow(spec, now);
      if (!window.allowed)
        return refuse(actor, context, "request.extended", subject, new Refusal("OUTSIDE_WINDOW", window.reason));
      const outcome = await store.transaction(async (tx) => {
        if ((await requestStore.principalStatus(tx, principal.id, true)) !== "active")
          return new Refusal("ACCOUNT_DISABLED", "This account is disabled.");
        const parent = await requestStore.lockRequest(tx, open.id);
        // Past its expiry an activation has ended, even before the scheduler has recorded it.
        if (
          !parent ||
          parent.state !== "active" ||
          !parent.expires_at ||
          !parent.activated_at ||
          new Date(parent.expires_at).getTime() <= now.getTime()
        )
          return new Refusal("NOT_ACTIVE", `You have no active activation of ${roleName} to extend.`);
        const waiting = await tx
          .selectFrom("activation_requests")
          .select("id")
          .where("extends_request_id", "=", parent.id)
          .where("state", "=", "pending")
          .executeTakeFirst();
        if (waiting)
          return new Refusal(
            "REQUEST_ALREADY_OPEN",
            `An extension of this activation of ${roleName} is already waiting for approval.`,
            { requestId: waiting.id },
          );
        const check = checkExtension(
          spec,
          parent.extensions,
          byMs,
          new Date(parent.expires_at),
          new Date(parent.activated_at),
        );
        if (!check.ok) return new Refusal(check.code, check.reason);
        const stages = stagesFor(spec, { extraWindowStage: window.extraStage, breakGlass: spec.breakGlass });
        const id = newId();
        await tx
          .insertInto("activation_requests")
          .values({
            id,
            role_id: role.id,
            requester_id: principal.id,
            extends_request_id: parent.id,
            state: "pending",
            duration_ms: byMs,
            reason: input.reason,
            ticket: parent.ticket,
            policy_snapshot: JSON.stringify(spec),
            stages: JSON.stringify(stages),
            stage_deadline: stageDeadline(stages[0], now),
            mfa_at: principal.mfaAt ?? null,
            submitted_at: now,
            pending_expires_at: pendingExpiresAt(spec, now),
            updated_at: now,
          })
          .execute();
        const events: AuditInput[] = [
          {
            action: "request.extension_submitted",
            outcome: "success",
            subject: `request:${parent.id}`,
            reason: input.reason,
            details: { extensionRequestId: id, by: input.by, role: role.name, stages: stages.length },
          },
        ];
        if (stages.length === 0) {
          events.push(...(await approveThenGrant(tx, id, now)));
          // An extension of a break-glass activation is a break-glass use of its own: loud and reviewed.
          if (spec.breakGlass)
            events.push(
              await breakGlassUse(tx, emit, {
                activationId: parent.id,
                extensionId: id,
                role: role.name,
                requesterId: principal.id,
                requester: principal.name,
                reason: input.reason,
                now,
              }),
            );
        } else {
          await emit(tx, {
            type: "submitted",
            requestId: id,
            role: role.name,
            requester: principal.name,
            reason: input.reason,
          });
        }
        await audit.append(tx, actor, context, events);
        return toDto(tx, (await requestStore.findRequest(tx, id))!);
      });
      if (outcome instanceof Refusal) return refuse(actor, context, "request.extended", subject, outcome);
      return outcome;
    },

    /**
     * Worker: the target now holds the privilege. A provisioning request becomes active and its
     * clock starts now. Returns false when the request ended meanwhile (the caller revokes again). A
     * requester who lost the basis meanwhile (disabled, no longer eligible) is revoked here instead.
     */
    async provisioned(
      grantId: string,
      details: {
        login: string;
        done?: HandlerContext["done"] | undefined;
        /**
         * The target's change, when it is still under way: the activation's transaction writes beside it and
         * commits only once it succeeded (when it fails, nothing is written and its error is thrown). A change
         * slower than `OVERLAP_MS` has the transaction rolled back (its locks are not held for a slow target) and
         * written again once the change is done.
         */
        ready?: Promise<void>;
        /** Told how the activation's transaction ran, once it committed or ended (the grants module's metric). */
        ran?: (path: ActivationPath) => void;
      },
    ): Promise<boolean> {
      let path: ActivationPath = "after_target";
      if (details.ready) {
        const outcome = await activate(grantId, details, details.ready);
        if (outcome !== SLOW_TARGET) {
          details.ran?.("beside_target");
          return outcome;
        }
        await details.ready;
        path = "after_slow_target";
      }
      const outcome = (await activate(grantId, details, undefined)) as boolean;
      details.ran?.(path);
      return outcome;
    },

    /** Worker: the target refused the privilege (or never answered): the activation fails with its message. */
    async provisionFailed(grantId: string, message: string): Promise<boolean> {
      const context: CallContext = { correlationId: `grant:${grantId}`, sourceIp: null, userAgent: null };
      return store.transaction(async (tx) => {
        const now = clock.now();
        const row = (await requestStore.lockRequestOfGrant(tx, grantId))?.row;
        if (!row || row.state !== "provisioning") return false;
        assertTransition("provisioning", "failed");
        const reason = `the target refused: ${message}`.slice(0, 1000);
        // The request and its grant fail in one statement (the request's update a CTE of the grant's).
        await tx
          .with("request", (db) =>
            db
              .updateTable("activation_requests")
              .set({ state: "failed", ended_at: now, end_reason: reason, ended_by: "system", updated_at: now })
              .where("id", "=", row.id),
          )
          .updateTable("grants")
          .set({ state: "failed", last_error: message.slice(0, 1000), next_attempt_at: null, updated_at: now })
          .where("id", "=", grantId)
          .execute();
        await emit(tx, {
          type: "failed",
          requestId: row.id,
          role: row.role_name,
          requester: row.requester_name,
          reason,
        });
        await audit.append(tx, SYSTEM, context, {
          action: "request.failed",
          outcome: "failed",
          subject: `request:${row.id}`,
          reason,
          details: { role: row.role_name, requester: row.requester_name, grantId },
        });
        return true;
      });
    },
  };
}
