/**
 * What an approver needs to decide a request: the role's risk, the policy that governs the request, the
 * requester's latest requests for that role and the approvals so far. Read-only; authorized by being an
 * approver of the request's current stage (not by a platform role): a plain `user` who leads a team sees it
 * for the requests in their inbox, and nobody else sees it, an administrator included (they have the
 * catalog and request lists for that). A caller who may not decide gets the same NOT_FOUND as for a request
 * that does not exist.
 */
import type { AppStore } from "../../db/index.js";
import { policySpec } from "../../contract/catalog.js";
import type { ApproverContextDto } from "../../contract/requests.js";
import { formatDuration } from "../../lib/duration.js";
import { StintError } from "../../lib/errors.js";
import type { Actor } from "../authz/authz.types.js";
import { currentApprovers, isNamedBy } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";

/** How many of the requester's earlier requests for the role an approver is shown. */
export const HISTORY_SHOWN = 5;

const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString());

export interface ApproverContext {
  context(actor: Actor, requestId: string): Promise<ApproverContextDto>;
}

export function createApproverContext(deps: { store: Pick<AppStore, "db"> }): ApproverContext {
  const { store } = deps;
  const notFound = () => new StintError("NOT_FOUND", "There is no such request.");

  return {
    async context(actor, requestId) {
      if (actor.kind !== "principal") throw notFound();
      const row = await requestStore.findRequest(store.db, requestId);
      if (!row || row.state !== "pending" || row.requester_id === actor.id) throw notFound();
      const me = await requestStore.principalContext(store.db, actor.id);
      const stage = requestStore.stagesOf(row)[row.stage_index];
      if (
        !me ||
        me.status !== "active" ||
        !stage ||
        !isNamedBy(currentApprovers(stage), { id: me.id, name: me.name, groups: me.groups }, row.requester_manager_id)
      )
        throw notFound();

      const [role, decisions, earlier] = await Promise.all([
        requestStore.findRole(store.db, row.role_name),
        requestStore.decisionsOf(store.db, row.id),
        requestStore.listRequests(store.db, {
          requesterId: row.requester_id,
          roleName: row.role_name,
          // This request may be among them: one more than shown, to tell whether there are more.
          limit: HISTORY_SHOWN + 2,
        }),
      ]);
      const others = earlier.filter((r) => r.id !== row.id);
      const shown = others.slice(0, HISTORY_SHOWN);
      const decidedOf = await Promise.all(shown.map((r) => requestStore.decisionsOf(store.db, r.id)));
      const spec = policySpec.parse(row.policy_snapshot);
      const stages = requestStore.stagesOf(row);

      return {
        requestId: row.id,
        role: {
          name: row.role_name,
          risk: role?.risk ?? row.role_risk,
          target: role?.target_name ?? "",
          targetKind: role?.target_kind ?? row.target_kind,
        },
        policy: {
          name: role?.policy_name ?? "",
          defaultDuration: spec.defaultDuration,
          maxDuration: spec.maxDuration,
          mfaRequired: spec.mfa.required,
          ticketRequired: spec.justification.ticketRequired,
          ticketPattern: spec.justification.ticketPattern ?? null,
          reasonMinLength: spec.justification.minLength,
          approvalStages: spec.breakGlass ? 0 : spec.approval.stages.length,
          maxExtensions: spec.maxExtensions,
          breakGlass: spec.breakGlass,
          windows: spec.windows.length > 0,
        },
        history: shown.map((r, i) => ({
          id: r.id,
          state: r.state,
          duration: formatDuration(r.duration_ms),
          reason: r.reason,
          ticket: r.ticket,
          submittedAt: iso(r.submitted_at)!,
          activatedAt: iso(r.activated_at),
          endedAt: iso(r.ended_at),
          endReason: r.end_reason,
          endedBy: r.ended_by,
          decidedBy: decidedOf[i]!.map((d) => ({ approver: d.approverName, decision: d.decision })),
        })),
        moreHistory: others.length > HISTORY_SHOWN,
        stages: stages.map((s, index) => ({
          name: s.name,
          count: s.count,
          approvals: decisions
            .filter((d) => d.stageIndex === index && d.decision === "approve")
            .map((d) => d.approverName),
          escalated: !!s.escalated,
        })),
        stageIndex: row.stage_index,
        decisions: decisions.map((d) => ({
          stage: d.stageIndex,
          approver: d.approverName,
          decision: d.decision,
          reason: d.reason,
          decidedAt: d.decidedAt.toISOString(),
        })),
        decidedByYou: decisions.some((d) => d.stageIndex === row.stage_index && d.approverId === actor.id),
      };
    },
  };
}
