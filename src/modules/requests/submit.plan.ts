/**
 * What a submit decides from the facts read in its transaction (`requestStore.submitFacts`), without touching
 * the store: a refusal, or the request row to write and the audit events of its submission. Shared by a submit
 * alone (`submit.ts`) and a group of them (`submit.group.ts`), so both decide alike.
 */
import { formatDuration } from "../../lib/duration.js";
import type { AuditInput } from "../audit/audit.types.js";
import type { Actor } from "../authz/authz.types.js";
import { checkJustification, checkMfaFreshness, evaluateWindow, resolveDuration } from "./policy.rules.js";
import { assertTransition, stageDeadline, stagesFor } from "./requests.rules.js";
import type * as requestStore from "./requests.store.js";
import type { PolicySpec, RequestState } from "./requests.types.js";
import { checkStart, pendingExpiresAt } from "./timing.rules.js";
import { iso, Refusal } from "./request-context.js";

export interface SubmitInput {
  role: string;
  duration?: string | undefined;
  reason: string;
  ticket?: string | undefined;
  /** A later start (ISO time): approved ahead, the request starts then (`timing.rules.ts`). */
  startAt?: string | undefined;
}

export type SubmitFacts = NonNullable<Awaited<ReturnType<typeof requestStore.submitFacts>>>;

export interface SubmitPlan {
  row: requestStore.RequestRow;
  spec: PolicySpec;
  /** Approved at once (a policy without stages). */
  automatic: boolean;
  startAt: Date | null;
  expiresAt: Date | null;
  /** The columns to insert. */
  columns: Record<string, unknown>;
  /** The submission's audit events (and its automatic approval). */
  events: AuditInput[];
}

/** A parsed policy's JSON text, written once per policy (`loadPolicy` shares one frozen spec per text). */
const snapshots = new WeakMap<PolicySpec, string>();
function snapshotText(spec: PolicySpec): string {
  let text = snapshots.get(spec);
  if (text === undefined) snapshots.set(spec, (text = JSON.stringify(spec)));
  return text;
}

export function planSubmit(
  principal: Extract<Actor, { kind: "principal" }>,
  input: SubmitInput,
  facts: SubmitFacts & { role_id: string; role_name: string },
  spec: PolicySpec,
  now: Date,
  id: string,
): Refusal | SubmitPlan {
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
  const state: RequestState = !automatic ? "pending" : startAt ? "approved" : internal ? "active" : "provisioning";
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
  const {
    role_name: _roleName,
    role_risk: _risk,
    target_kind: _kind,
    requester_name: _name,
    requester_manager_id: _manager,
    ...columns
  } = row;
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
  if (automatic)
    events.push({
      action: "request.approved",
      outcome: "success",
      subject: `request:${id}`,
      reason: spec.breakGlass ? "break-glass role: no approval" : "the role's policy needs no approval",
      details: { role: facts.role_name, automatic: true },
    });
  return {
    row,
    spec,
    automatic,
    startAt,
    expiresAt,
    columns: { ...columns, policy_snapshot: snapshotText(spec), stages: JSON.stringify(stages), updated_at: now },
    events,
  };
}
