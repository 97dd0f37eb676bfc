/**
 * Group commit of deactivates (issue 14 acceptance 2), as `submit.group.ts` does for submits: holders ending
 * their own activations together are written by one transaction — one locking read of every caller's open
 * activation, one statement ending them with their grants and sending their messages (`endEach`, each with its
 * holder's name), one INSERT of the audit events, each call's with its own actor and context — and each caller
 * is answered after that commit. A caller with no active activation of the role is refused alone (NOT_ACTIVE,
 * audited in its own transaction, as alone); if the transaction fails as a whole, each deactivate runs again
 * alone.
 */
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import type { RequestCore } from "./activation.js";
import { createGroupCommit, type Settled } from "./group-commit.js";
import * as requestStore from "./requests.store.js";
import { Refusal, type RequestDto } from "./request-context.js";

export interface DeactivateCall {
  actor: Extract<Actor, { kind: "principal" }>;
  roleName: string;
  context: CallContext;
}

const ENDS = {
  deactivated: { reason: "ended early by the holder" },
  expired: { reason: "the activation reached its end time" },
} as const;

export function createDeactivateGroup(core: RequestCore, alone: (call: DeactivateCall) => Promise<RequestDto>) {
  const { store, audit, clock, refuse, dtoOf, isPastExpiry, endEach } = core;

  async function write(calls: DeactivateCall[]): Promise<(RequestDto | Refusal)[]> {
    const outcomes: (RequestDto | Refusal)[] = [];
    await store.transaction(async (tx) => {
      const now = clock.now();
      const locked = await requestStore.lockOpenOfRoles(
        tx,
        calls.map((call) => ({ requesterId: call.actor.id, roleName: call.roleName })),
      );
      const ending = { deactivated: [] as number[], expired: [] as number[] };
      for (const [i, call] of calls.entries()) {
        const open = locked[i];
        if (!open || open.row.state !== "active")
          outcomes[i] = new Refusal("NOT_ACTIVE", `You have no active activation of ${call.roleName}.`);
        else ending[isPastExpiry(open.row, now) ? "expired" : "deactivated"].push(i);
      }
      const appends: { actor: Actor; context: CallContext; events: AuditInput[] }[] = [];
      for (const state of ["deactivated", "expired"] as const) {
        const which = ending[state];
        if (which.length === 0) continue;
        const rows = which.map((i) => locked[i]!.row);
        const by =
          state === "expired" ? "system" : new Map(which.map((i) => [locked[i]!.row.id, calls[i]!.actor.name]));
        const { reason } = ENDS[state];
        const events = await endEach(tx, rows, state, reason, by, now);
        for (const i of which) {
          const { row, decisions } = locked[i]!;
          const endedBy = typeof by === "string" ? by : by.get(row.id)!;
          appends.push({ actor: calls[i]!.actor, context: calls[i]!.context, events: events.get(row.id) ?? [] });
          outcomes[i] = dtoOf({ ...row, state, ended_at: now, end_reason: reason, ended_by: endedBy }, decisions);
        }
      }
      if (appends.length === 0) return;
      if (audit.appendMany) await audit.appendMany(tx, appends);
      else for (const { actor, context, events } of appends) await audit.append(tx, actor, context, events);
    });
    return outcomes;
  }

  async function run(calls: DeactivateCall[]): Promise<Settled<RequestDto>[]> {
    if (calls.length === 1) return [{ ok: true, value: alone(calls[0]!) }];
    const outcomes = await write(calls);
    return outcomes.map((outcome, i) => {
      const call = calls[i]!;
      if (!(outcome instanceof Refusal)) return { ok: true, value: outcome };
      return {
        ok: true,
        value: refuse(call.actor, call.context, "request.deactivated", `role:${call.roleName}`, outcome),
      };
    });
  }

  const group = createGroupCommit<DeactivateCall, RequestDto>({
    run,
    alone,
    key: (call) => `${call.actor.id}\u0000${call.roleName}`,
  });
  return { deactivate: (call: DeactivateCall) => group.submit(call), stats: group.stats };
}
