/**
 * An approver's decision on a pending request: recorded per stage, moving it on, denying it, or approving it
 * (then it starts, `approveThenGrant`).
 */
import { StintError } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import { can } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import { approverMfaCheck } from "./approver-mfa.rules.js";
import { windowProblemAtActivation } from "./policy.rules.js";
import { applyDecision, currentApprovers, isNamedBy } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import { expiredUndecided, isPendingPastTtl, waitsForStart } from "./timing.rules.js";
import type { RequestCore } from "./activation.js";
import { iso, Refusal, type RequestDto } from "./request-context.js";

type Decisions = Awaited<ReturnType<typeof requestStore.decisionsOf>>;

/**
 * The decisions that still stand: an approval of the current stage by someone the stage no longer names (removed
 * from its approver group, disabled since) does not count towards the stage (`discounted`, by name). Read in the
 * decision's transaction, so the count is of people who are approvers when the stage is decided.
 */
async function standingDecisions(
  tx: Parameters<typeof requestStore.principalContext>[0],
  row: { stage_index: number; requester_manager_id: string | null } & Parameters<typeof requestStore.stagesOf>[0],
  decisions: Decisions,
): Promise<{ standing: Decisions; discounted: string[] }> {
  const stage = requestStore.stagesOf(row)[row.stage_index];
  const standing: Decisions = [];
  const discounted: string[] = [];
  for (const d of decisions) {
    if (stage && d.stageIndex === row.stage_index && d.decision === "approve") {
      const who = await requestStore.principalContext(tx, d.approverId);
      const named = (set: typeof stage.approvers | null | undefined) =>
        !!who && !!set && isNamedBy(set, who, row.requester_manager_id);
      if (
        !who ||
        who.status !== "active" ||
        !(named(stage.approvers) || (stage.escalated && named(stage.escalateTo)))
      ) {
        discounted.push(d.approverName);
        continue;
      }
    }
    standing.push(d);
  }
  return { standing, discounted };
}

export function createDecide(core: RequestCore) {
  const {
    deps,
    store,
    audit,
    clock,
    emit,
    refuse,
    principalOf,
    toDto,
    lostBasis,
    loadPolicy,
    cancelUnstarted,
    moveToStage,
    approveThenGrant,
    timing,
  } = core;

  return {
    async decide(
      actor: Actor,
      requestId: string,
      decision: "approve" | "deny",
      reason: string | undefined,
      context: CallContext,
      /** The one-time token of a notification's decision link, when the decision came through one. */
      linkToken?: string,
    ): Promise<RequestDto> {
      const principal = principalOf(actor);
      if (decision === "deny" && !reason) throw new StintError("VALIDATION_FAILED", "A denial needs a reason.");
      const action = decision === "approve" ? "request.approved" : "request.denied";
      const outcome = await store.transaction(async (tx) => {
        const now = clock.now();
        // The decider's own account, read first and locked FOR SHARE (the order a disable takes: principal, then
        // its requests): a disable either waits for this decision or is seen here. A credential verified before
        // the disable (a cache window, a decision link opened earlier) decides nothing.
        if ((await requestStore.principalStatus(tx, principal.id, true)) !== "active")
          return new Refusal("NOT_AN_APPROVER", "A disabled account decides on no request.", { requestId });
        const row = await requestStore.lockRequest(tx, requestId);
        if (!row) return new Refusal("NOT_FOUND", "There is no such request.");
        const approver = await requestStore.principalContext(tx, principal.id);
        if (!approver) return new Refusal("UNAUTHENTICATED", "Sign in again.");
        const decisions = await requestStore.decisionsOf(tx, row.id);
        // Someone who is neither the requester nor an approver learns nothing about the request.
        const mayKnow = () => {
          const stage = requestStore.stagesOf(row)[row.stage_index];
          const involved =
            row.requester_id === approver.id ||
            decisions.some((d) => d.approverId === approver.id) ||
            (!!stage && isNamedBy(currentApprovers(stage), approver, row.requester_manager_id));
          return involved || can(actor, "requests.read");
        };
        // Past its time to live a pending request takes no decision: whoever notices first expires it.
        const lapsed = isPendingPastTtl(row, now);
        if (lapsed || expiredUndecided(row)) {
          if (lapsed) await audit.append(tx, SYSTEM, context, await timing.expireUndecided(tx, row, now));
          const expiredAt = iso(lapsed ? row.pending_expires_at : row.ended_at);
          return mayKnow()
            ? new Refusal(
                "REQUEST_EXPIRED",
                `The request expired without a decision at ${expiredAt}; the requester must ask again.`,
                { requestId, expiredAt },
              )
            : new Refusal("NOT_FOUND", "There is no such request.", { requestId });
        }
        const { standing, discounted } = await standingDecisions(tx, row, decisions);
        const result = applyDecision(
          requestStore.factsOf(row, standing),
          { id: approver.id, name: approver.name, groups: approver.groups },
          decision,
        );
        if (!result.ok) {
          const known = mayKnow();
          return new Refusal(known ? result.code : "NOT_FOUND", known ? result.message : "There is no such request.", {
            requestId,
          });
        }
        const spec = decision === "approve" ? await loadPolicy({ policy_spec: row.policy_snapshot }) : null;
        // An approval needs the approver's own fresh second factor where the policy (absent: a critical role) asks
        // for one: a phished password alone approves nothing. Checked before anything is recorded or a decision
        // link is spent, so the approver steps up and the same link still works. A denial needs none.
        // The same check the approvals inbox's hint runs (`approverMfaHint`), here again at the decision's own time.
        const approverMfa = spec ? approverMfaCheck(spec, row.role_risk, principal, now) : null;
        if (approverMfa && !approverMfa.ok) return new Refusal(approverMfa.code, approverMfa.message, { requestId });
        if (spec && result.result === "approved" && !waitsForStart(row, now)) {
          // The approval that would activate it must fall inside the windows; nothing is recorded otherwise.
          const closed = windowProblemAtActivation(spec, now);
          if (closed) return new Refusal("OUTSIDE_WINDOW", closed, { requestId });
        }
        if (decision === "approve") {
          const lost = await lostBasis(tx, row, now);
          if (lost) {
            // The request cannot start any more: it ends here, and the approver hears why.
            await audit.append(tx, SYSTEM, context, await cancelUnstarted(tx, row, lost, "system", now));
            return new Refusal("REQUESTER_NOT_ELIGIBLE", `The request was cancelled: ${lost}.`, { requestId });
          }
        }
        if (linkToken !== undefined) {
          if (!deps.decisionLinks) return new Refusal("VALIDATION_FAILED", "Decision links are not enabled.");
          try {
            await deps.decisionLinks.consume(tx, linkToken, row.id, decision, approver.id);
          } catch (error) {
            if (error instanceof StintError) return new Refusal(error.code, error.message);
            throw error;
          }
        }
        await tx
          .insertInto("request_decisions")
          .values({
            id: newId(),
            request_id: row.id,
            stage_index: row.stage_index,
            approver_id: approver.id,
            decision,
            reason: reason ?? null,
            decided_at: now,
          })
          .execute();
        const subject = `request:${row.id}`;
        const base = {
          role: row.role_name,
          requester: row.requester_name,
          stage: row.stage_index + 1,
          ...(discounted.length > 0 ? { discounted } : {}),
          // When and how the approver last proved a second factor (never the code), where the rule asked for it.
          ...(approverMfa?.ok && approverMfa.used ? { approverMfa: approverMfa.used } : {}),
        };
        const events: AuditInput[] = [];
        switch (result.result) {
          case "denied":
            await tx
              .updateTable("activation_requests")
              .set({ state: "denied", decided_at: now, stage_deadline: null, updated_at: now })
              .where("id", "=", row.id)
              .execute();
            events.push({
              action: "request.denied",
              outcome: "success",
              subject,
              reason: reason ?? null,
              details: base,
            });
            await emit(tx, {
              type: "denied",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
              reason: reason ?? null,
              by: approver.name,
            });
            break;
          case "recorded":
            events.push({
              action: "request.approval_recorded",
              outcome: "success",
              subject,
              reason: reason ?? null,
              details: { ...base, approvals: result.approvals, needed: result.needed },
            });
            break;
          case "next_stage": {
            await moveToStage(tx, row, result.stageIndex, now);
            events.push({
              action: "request.stage_approved",
              outcome: "success",
              subject,
              reason: reason ?? null,
              details: base,
            });
            break;
          }
          case "approved": {
            const ahead = waitsForStart(row, now) ? { startAt: iso(row.start_at)! } : {};
            events.push({
              action: "request.approved",
              outcome: "success",
              subject,
              reason: reason ?? null,
              details: { ...base, ...ahead },
            });
            await emit(tx, {
              type: "approved",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
              reason: reason ?? null,
              by: approver.name,
              ...ahead,
            });
            events.push(...(await approveThenGrant(tx, row.id, now)));
            break;
          }
        }
        await audit.append(tx, actor, context, events);
        return toDto(tx, (await requestStore.findRequest(tx, row.id))!);
      });
      if (outcome instanceof Refusal) return refuse(actor, context, action, `request:${requestId}`, outcome);
      return outcome;
    },
  };
}
