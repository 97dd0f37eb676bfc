/**
 * Submitting a request: one read decides (role, policy, eligibility, account), one insert writes it; a policy
 * without stages writes it in its final state with its grant.
 */
import { formatDuration } from "../../lib/duration.js";
import { isUniqueViolation } from "../../lib/db.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { checkJustification, checkMfaFreshness, evaluateWindow, resolveDuration } from "./policy.rules.js";
import { alreadyOpenMessage, assertTransition, stageDeadline, stagesFor } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import type { RequestState } from "./requests.types.js";
import { checkStart, pendingExpiresAt } from "./timing.rules.js";
import { breakGlassUse } from "./break-glass-use.js";
import type { RequestCore } from "./activation.js";
import { iso, Refusal, type RequestDto } from "./request-context.js";

export function createSubmit(core: RequestCore) {
  const { store, audit, clock, index, actMessage, emit, refuse, principalOf, dtoOf, loadPolicy, started } = core;

  return {
    async submit(
      actor: Actor,
      input: {
        role: string;
        duration?: string | undefined;
        reason: string;
        ticket?: string | undefined;
        /** A later start (ISO time): approved ahead, the request starts then (`timing.rules.ts`). */
        startAt?: string | undefined;
      },
      context: CallContext,
    ): Promise<RequestDto> {
      const principal = principalOf(actor);
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
          const duration = resolveDuration(spec, input.duration);
          if (!duration.ok) return new Refusal(duration.code, duration.message);
          const justification = checkJustification(spec, input.reason, input.ticket);
          if (!justification.ok)
            return new Refusal("JUSTIFICATION_INVALID", justification.problems.join(" "), {
              problems: justification.problems,
              fields: justification.fields,
            });
          const start = checkStart(spec, input.startAt === undefined ? undefined : new Date(input.startAt), now);
          if (!start.ok)
            return new Refusal(
              start.code,
              start.message,
              start.maxStartDelay ? { maxStartDelay: start.maxStartDelay } : undefined,
            );
          const startAt = start.startAt;
          // The windows are those of the moment it would start.
          const window = spec.breakGlass
            ? ({ allowed: true, extraStage: false } as const)
            : evaluateWindow(spec, startAt ?? now);
          if (!window.allowed) return new Refusal("OUTSIDE_WINDOW", window.reason);
          const mfa = checkMfaFreshness(spec, principal.mfaAt ?? null, now, principal.webauthnAt ?? null);
          if (!mfa.ok) return new Refusal(mfa.code, mfa.message);
          // The requester's row is locked (FOR SHARE) by the read: a concurrent disable waits for this request.
          if (facts.status !== "active") return new Refusal("ACCOUNT_DISABLED", "This account is disabled.");

          const stages = stagesFor(spec, { extraWindowStage: window.extraStage, breakGlass: spec.breakGlass });
          // A policy without stages approves at once, and the basis was checked above in this transaction: the
          // row is written in its final state (active, or provisioning at a real target), not moved there.
          const automatic = stages.length === 0;
          const internal = facts.target_kind === "internal";
          // Approved ahead of a later start, it is written approved and starts when the scheduler reaches it.
          const state: RequestState = !automatic
            ? "pending"
            : startAt
              ? "approved"
              : internal
                ? "active"
                : "provisioning";
          if (automatic) {
            assertTransition("pending", "approved");
            if (state !== "approved") assertTransition("approved", state);
          }
          const expiresAt = state === "active" ? new Date(now.getTime() + duration.durationMs) : null;
          const row: requestStore.RequestRow = {
            id,
            role_id: facts.role_id,
            requester_id: principal.id,
            extends_request_id: null,
            state,
            duration_ms: duration.durationMs,
            reason: input.reason,
            ticket: input.ticket ?? null,
            break_glass: spec.breakGlass,
            policy_snapshot: spec as unknown as Record<string, unknown>,
            stages,
            stage_index: 0,
            stage_deadline: stageDeadline(stages[0], now),
            mfa_at: principal.mfaAt ?? null,
            submitted_at: now,
            decided_at: automatic ? now : null,
            activated_at: expiresAt ? now : null,
            expires_at: expiresAt,
            ended_at: null,
            end_reason: null,
            ended_by: null,
            extensions: 0,
            start_at: startAt,
            pending_expires_at: state === "pending" ? pendingExpiresAt(spec, now) : null,
            role_name: facts.role_name,
            role_risk: facts.role_risk!,
            target_kind: facts.target_kind!,
            requester_name: facts.requester_name,
            requester_manager_id: facts.requester_manager_id,
          };
          // The partial unique index allows one open request per requester and role: a second is not written.
          const {
            role_name: _roleName,
            role_risk: _risk,
            target_kind: _kind,
            requester_name: _name,
            requester_manager_id: _manager,
            ...columns
          } = row;
          // Approved at once: its grant is written with it, in the same statement.
          const grantId = automatic && !startAt ? newId() : null;
          // Active at once: the index's message goes in that statement too (sent only if the request is written).
          const act =
            expiresAt && index?.prepareAct ? index.prepareAct(tx, actMessage(row, now, expiresAt)) : undefined;
          const inserted = await requestStore.insertRequest(
            tx,
            { ...columns, policy_snapshot: JSON.stringify(spec), stages: JSON.stringify(stages), updated_at: now },
            grantId ? { id: grantId, state: state === "active" ? "active" : "provisioning", at: now } : null,
            act,
          );
          if (!inserted) {
            const open = await requestStore.findOpenRequest(tx, principal.id, facts.role_id);
            return new Refusal(
              "REQUEST_ALREADY_OPEN",
              open
                ? alreadyOpenMessage(facts.role_name, open, spec.maxExtensions)
                : `You already have an open request for ${facts.role_name}.`,
              open ? { requestId: open.id, state: open.state } : undefined,
            );
          }
          const told = act !== undefined && inserted.x !== undefined;
          if (told) act.sent(inserted.x!);
          const events: AuditInput[] = [
            {
              action: "request.submitted",
              outcome: "success",
              subject: `request:${id}`,
              reason: input.reason,
              details: {
                role: facts.role_name,
                duration: formatDuration(duration.durationMs),
                ticket: input.ticket ?? null,
                stages: stages.length,
                breakGlass: spec.breakGlass,
                outsideWindow: window.extraStage,
                ...(startAt ? { startAt: startAt.toISOString() } : {}),
                ...(row.pending_expires_at ? { pendingExpiresAt: iso(row.pending_expires_at) } : {}),
              },
            },
          ];
          if (automatic) {
            events.push({
              action: "request.approved",
              outcome: "success",
              subject: `request:${id}`,
              reason: spec.breakGlass ? "break-glass role: no approval" : "the role's policy needs no approval",
              details: { role: facts.role_name, automatic: true },
            });
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
    },
  };
}
