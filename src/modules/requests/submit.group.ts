/**
 * Group commit of submits (issue 14 acceptance 2): auto-approved activations of internal roles submitted
 * together (`group-commit.ts`: while a group's transaction is in flight, or in one turn of the event loop) are
 * written by one transaction — one read of every caller's facts, one statement writing the requests with their
 * grants and the access index's messages, one INSERT of the audit events — and each caller is answered after
 * that commit. Each request is decided alone, from its own facts, by the rules a submit alone applies
 * (`submit.plan.ts`); each request's audit events carry its own actor and context and commit with it.
 *
 * What the group does not write itself goes the way a submit alone goes, after the group: a refusal is audited
 * in its own transaction and thrown (as alone); a request that needs approval, starts later, is break-glass or
 * provisions at a real target is submitted alone (its facts read again there). A request whose requester has
 * one open for the role already is refused alone (REQUEST_ALREADY_OPEN); two of one requester and role never
 * share a group (the second waits for the next one, and is refused there). If the group's transaction fails as a
 * whole, nothing of it was written, and each submit runs again alone.
 */
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { ACCESS_CHANNEL } from "../access-index/access-index.service.js";
import { activatedEvent, activatedNotice, type RequestCore } from "./activation.js";
import { createGroupCommit, type Settled } from "./group-commit.js";
import { insertActiveRequests } from "./group.store.js";
import * as requestStore from "./requests.store.js";
import { Refusal, type RequestDto } from "./request-context.js";
import { planSubmit, type SubmitInput, type SubmitPlan } from "./submit.plan.js";

export interface SubmitCall {
  actor: Extract<Actor, { kind: "principal" }>;
  input: SubmitInput;
  context: CallContext;
}

export function createSubmitGroup(
  core: RequestCore,
  deps: {
    /** A submit alone (its own transaction). */
    alone: (call: SubmitCall) => Promise<RequestDto>;
    /** The refusal of a REQUEST_ALREADY_OPEN, read in the transaction. */
    alreadyOpen: (
      tx: Parameters<RequestCore["emit"]>[0],
      requesterId: string,
      roleId: string,
      roleName: string,
      maxExtensions: number,
    ) => Promise<Refusal>;
  },
) {
  const { store, audit, clock, index, actMessage, refuse, dtoOf, loadPolicy, tellActive } = core;

  type Outcome = RequestDto | Refusal | "alone";

  async function write(calls: SubmitCall[]): Promise<Outcome[]> {
    const outcomes: Outcome[] = calls.map(() => "alone");
    await store.transaction(async (tx) => {
      const now = clock.now();
      const facts = await requestStore.submitFactsMany(
        tx,
        calls.map((call) => ({ principalId: call.actor.id, roleName: call.input.role })),
        now,
      );
      const writes: { i: number; plan: SubmitPlan & { expiresAt: Date }; grantId: string }[] = [];
      const acts = new Map<string, { head: string; sent(x: number): void }>();
      for (const [i, call] of calls.entries()) {
        const f = facts[i];
        if (!f || !f.role_id || !f.role_name || !f.eligible) {
          outcomes[i] = new Refusal(
            "NOT_ELIGIBLE",
            `You are not eligible for ${call.input.role} (or it does not exist).`,
          );
          continue;
        }
        const spec = await loadPolicy(f);
        const plan = planSubmit(
          call.actor,
          call.input,
          { ...f, role_id: f.role_id, role_name: f.role_name },
          spec,
          now,
          newId(),
        );
        if (plan instanceof Refusal) outcomes[i] = plan;
        // Active at once on the internal target, nothing else to write: the group's case.
        else if (plan.automatic && !plan.startAt && plan.expiresAt && !spec.breakGlass) {
          writes.push({ i, plan: plan as SubmitPlan & { expiresAt: Date }, grantId: newId() });
          const act = index?.prepareAct?.(tx, actMessage(plan.row, now, plan.expiresAt));
          if (act) acts.set(plan.row.id, act);
        }
      }
      const written = await insertActiveRequests(
        tx,
        writes.map(({ plan, grantId }) => ({
          // The JSON columns as their texts (written into the parameter as they are).
          columns: plan.columns,
          grantId,
          head: acts.get(plan.row.id)?.head ?? "",
        })),
        ACCESS_CHANNEL,
        now,
      );
      const appends: { actor: Actor; context: CallContext; events: AuditInput[] }[] = [];
      const notices: ReturnType<typeof activatedNotice>[] = [];
      for (const { i, plan, grantId } of writes) {
        const { row, spec } = plan;
        const x = written.get(row.id);
        if (x === undefined) {
          outcomes[i] = await deps.alreadyOpen(tx, row.requester_id, row.role_id, row.role_name, spec.maxExtensions);
          continue;
        }
        const act = acts.get(row.id);
        if (act) act.sent(x);
        else await tellActive(tx, row, now, plan.expiresAt);
        notices.push(activatedNotice(row));
        appends.push({
          actor: calls[i]!.actor,
          context: calls[i]!.context,
          events: [...plan.events, activatedEvent(row, grantId, plan.expiresAt)],
        });
        outcomes[i] = dtoOf(row, []);
      }
      if (notices.length > 0) await core.deps.onEvent?.(tx, notices);
      if (appends.length === 0) return;
      if (audit.appendMany) await audit.appendMany(tx, appends);
      else for (const { actor, context, events } of appends) await audit.append(tx, actor, context, events);
    });
    return outcomes;
  }

  async function run(calls: SubmitCall[]): Promise<Settled<RequestDto>[]> {
    // One alone is a submit alone: the same statements, and what it does not write needs no second read.
    if (calls.length === 1) return [{ ok: true, value: deps.alone(calls[0]!) }];
    const outcomes = await write(calls);
    return outcomes.map((outcome, i) => {
      const call = calls[i]!;
      if (outcome === "alone") return { ok: true, value: deps.alone(call) };
      if (outcome instanceof Refusal)
        return {
          ok: true,
          value: refuse(call.actor, call.context, "request.submitted", `role:${call.input.role}`, outcome),
        };
      return { ok: true, value: outcome };
    });
  }

  const group = createGroupCommit<SubmitCall, RequestDto>({
    run,
    alone: deps.alone,
    key: (call) => `${call.actor.id}\u0000${call.input.role}`,
  });
  return { submit: (call: SubmitCall) => group.submit(call), stats: group.stats };
}
