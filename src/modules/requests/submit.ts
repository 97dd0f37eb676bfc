/**
 * Submitting a request: one read decides (role, policy, eligibility, account), one insert writes it; a policy
 * without stages writes it in its final state with its grant.
 */
import type { Insertable, Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { isUniqueViolation } from "../../lib/db.js";
import { newId } from "../../lib/ids.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { alreadyOpenMessage } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import { breakGlassUse } from "./break-glass-use.js";
import type { RequestCore } from "./activation.js";
import { Refusal, type RequestDto } from "./request-context.js";
import { createSubmitGroup, type SubmitCall } from "./submit.group.js";
import { planSubmit, type SubmitInput } from "./submit.plan.js";

export function createSubmit(core: RequestCore) {
  const { store, audit, clock, index, actMessage, emit, refuse, principalOf, dtoOf, loadPolicy, started } = core;

  /** The refusal of a second open request for a role, naming the open one (read in `tx`). */
  async function alreadyOpen(
    tx: Kysely<Database>,
    requesterId: string,
    roleId: string,
    roleName: string,
    maxExtensions: number,
  ): Promise<Refusal> {
    const open = await requestStore.findOpenRequest(tx, requesterId, roleId);
    return new Refusal(
      "REQUEST_ALREADY_OPEN",
      open ? alreadyOpenMessage(roleName, open, maxExtensions) : `You already have an open request for ${roleName}.`,
      open ? { requestId: open.id, state: open.state } : undefined,
    );
  }

  /** A submit in a transaction of its own. */
  async function submitAlone({ actor, input, context }: SubmitCall): Promise<RequestDto> {
    const principal = actor;
    const now = clock.now();
    const subject = `role:${input.role}`;
    const id = newId();
    let roleName = input.role;
    try {
      // One read decides everything (role, policy, eligibility, account), inside the transaction that
      // writes; a refusal writes nothing here and is audited on its own below.
      const outcome = await store.transaction(async (tx) => {
        const facts = await requestStore.submitFacts(tx, principal.id, input.role, now);
        if (!facts || !facts.role_id || !facts.role_name || !facts.eligible)
          return new Refusal("NOT_ELIGIBLE", `You are not eligible for ${input.role} (or it does not exist).`);
        roleName = facts.role_name;
        const spec = await loadPolicy(facts);
        const plan = planSubmit(
          principal,
          input,
          { ...facts, role_id: facts.role_id, role_name: facts.role_name },
          spec,
          now,
          id,
        );
        if (plan instanceof Refusal) return plan;
        const { row, automatic, startAt, expiresAt, events } = plan;
        const state = row.state;
        // Approved at once: its grant is written with it, in the same statement.
        const grantId = automatic && !startAt ? newId() : null;
        // Active at once: the index's message goes in that statement too (sent only if the request is written).
        const act = expiresAt && index?.prepareAct ? index.prepareAct(tx, actMessage(row, now, expiresAt)) : undefined;
        // The partial unique index allows one open request per requester and role: a second is not written.
        const inserted = await requestStore.insertRequest(
          tx,
          plan.columns as Insertable<Database["activation_requests"]>,
          grantId ? { id: grantId, state: state === "active" ? "active" : "provisioning", at: now } : null,
          act,
        );
        if (!inserted) return alreadyOpen(tx, principal.id, facts.role_id, facts.role_name, spec.maxExtensions);
        const told = act !== undefined && inserted.x !== undefined;
        if (told) act.sent(inserted.x!);
        if (automatic) {
          if (startAt)
            events.push({
              action: "request.scheduled",
              outcome: "success",
              subject: `request:${id}`,
              details: { role: facts.role_name, requester: row.requester_name, startAt: startAt.toISOString() },
            });
          else {
            // At a real target, the provisioning hook names the login and lane from the facts read above.
            const inputs =
              state === "provisioning" && facts.target_id && facts.role_entitlement && facts.target_config
                ? {
                    entitlement: facts.role_entitlement,
                    target_id: facts.target_id,
                    target_config: facts.target_config,
                    principal_name: facts.requester_name,
                    principal_email: facts.requester_email,
                  }
                : undefined;
            events.push(...(await started(tx, row, grantId!, now, told, inputs)));
          }
        } else {
          await emit(tx, {
            type: "submitted",
            requestId: id,
            role: facts.role_name,
            requester: row.requester_name,
            reason: input.reason,
          });
        }
        // A break-glass activation is reviewed after the fact, always, and every channel is told.
        if (spec.breakGlass)
          events.push(
            await breakGlassUse(tx, emit, {
              activationId: id,
              role: facts.role_name,
              requesterId: principal.id,
              requester: row.requester_name,
              reason: input.reason,
              now,
            }),
          );
        await audit.append(tx, actor, context, events);
        return dtoOf(row, []);
      });
      if (outcome instanceof Refusal) return refuse(actor, context, "request.submitted", subject, outcome);
      return outcome;
    } catch (error) {
      if (isUniqueViolation(error)) {
        return refuse(
          actor,
          context,
          "request.submitted",
          subject,
          new Refusal("REQUEST_ALREADY_OPEN", `You already have an open request for ${roleName}.`),
        );
      }
      throw error;
    }
  }

  const group = createSubmitGroup(core, { alone: submitAlone, alreadyOpen });

  return {
    /**
     * Submits an activation request. Concurrent submits go together (`submit.group.ts`): each is decided
     * and answered as alone, its request and audit events committed by one transaction with the others'.
     */
    async submit(actor: Actor, input: SubmitInput, context: CallContext): Promise<RequestDto> {
      return group.submit({ actor: principalOf(actor), input, context });
    },
    /** The submit groups so far (a benchmark's figures). */
    submitGroups: group.stats,
  };
}
