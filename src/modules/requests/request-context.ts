/**
 * What every use case of activation requests shares: the service's dependencies, the answer's shape, the
 * refusal (audited, then thrown) and the few reads and messages they all use. The use cases themselves are
 * one file each (`submit.ts`, `decide.ts`, `lifecycle.ts`, `scheduler.ts`, `queries.ts`), wired in
 * `requests.service.ts`.
 */
import type { BurstHold } from "../../lib/burst-hold.js";
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import type { Clock } from "../../lib/clock.js";
import { formatDuration } from "../../lib/duration.js";
import { StintError, type ErrorCode } from "../../lib/errors.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { AuditLog } from "../audit/audit.service.js";
import type { AppendUniform } from "../audit/audit.uniform.js";
import type { Actor, CallContext } from "../authz/authz.types.js";
import { basisProblem } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import type { RequestState } from "./requests.types.js";
import type { DecisionLinks } from "./decision-links.js";

export interface RequestEvent {
  type:
    | "expiring"
    | "submitted"
    | "approved"
    | "denied"
    | "escalated"
    | "activated"
    | "expired"
    | "pending_expired"
    | "revoked"
    | "deactivated"
    | "cancelled"
    | "extended"
    | "failed"
    | "break_glass";
  requestId: string;
  role: string;
  requester: string;
  reason?: string | null;
  by?: string;
  /** The start time of a request approved ahead (approved events). */
  startAt?: string;
}

/** What a grant's provisioning hook needs to name its login and lane: its role's entitlement, target and principal. */
export interface GrantInputs {
  entitlement: Record<string, unknown>;
  target_id: string;
  target_config: Record<string, unknown>;
  principal_name: string;
  principal_email: string | null;
}

export interface RequestServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record"> & {
    /** `AuditLog.appendUniform` (the scheduler's expiries); without it they take `append` and one more statement. */
    appendUniform?: AppendUniform;
    /** `AuditLog.appendMany` (a group of submits or deactivates); without it each call's events take `append`. */
    appendMany?: AuditLog["appendMany"];
  };
  clock: Clock;
  /**
   * Called inside the transaction; typically enqueues notifications in the outbox. Many at once (activations
   * ended together) come in one call, which should cost a bounded number of statements whatever their number.
   */
  onEvent?: (tx: Kysely<Database>, event: RequestEvent | RequestEvent[]) => Promise<void>;
  /** Verifies one-time decision-link tokens (from notifications). */
  decisionLinks?: Pick<DecisionLinks, "consume">;
  /**
   * Called inside the transaction when a grant must be provisioned or revoked at a real target. A submit gives
   * `inputs`, read with its facts: the hook then reads nothing to name the login and the lane.
   */
  onGrant?: (
    tx: Kysely<Database>,
    change: { grantId: string; requestId: string; action: "provision" | "revoke"; inputs?: GrantInputs },
  ) => Promise<void>;
  /**
   * Called inside the transaction that ends active activations (their brokered sessions end with them), once
   * for all the activations it ends.
   */
  onEnded?: (
    tx: Kysely<Database>,
    ended: {
      requestId: string;
      role: string;
      state: "expired" | "deactivated" | "revoked";
      by: string;
      reason: string;
    }[],
  ) => Promise<void>;
  /**
   * The notifications `onEnded` sends, as payloads: given, they go in a statement already made instead of
   * calling `onEnded` (one round trip fewer): the scheduler's expiries in the one that writes their audit
   * events, every other end (deactivate, revoke, a lost basis) in the one that ends the activations.
   */
  endedNotifications?: (
    ended: {
      requestId: string;
      role: string;
      state: "expired" | "deactivated" | "revoked";
      by: string;
      reason: string;
    }[],
  ) => { channel: string; payload: string }[];
  /**
   * The node's access index: the check API and activation tokens answer from it, and every transaction
   * that starts, extends or ends an activation tells it (all nodes hear it at commit).
   */
  index?: Pick<AccessIndex, "view" | "send" | "sendMany" | "prepareMany"> &
    Partial<Pick<AccessIndex, "prepareAct" | "sentAct">>;
  /**
   * Told while the scheduler's expiries end full batches one after another (a wave due at once), so that work
   * which can wait (the audit sequencer's chaining) stays out of the wave's way (`lib/burst-hold.ts`).
   */
  expiryBurst?: Pick<BurstHold, "hold">;
}

export interface RequestDto {
  id: string;
  role: string;
  requester: string;
  state: RequestState;
  duration: string;
  reason: string;
  ticket: string | null;
  breakGlass: boolean;
  extendsRequestId: string | null;
  stages: { name: string; count: number; approvals: string[]; escalated: boolean }[];
  stageIndex: number;
  stageDeadline: string | null;
  submittedAt: string;
  decidedAt: string | null;
  activatedAt: string | null;
  expiresAt: string | null;
  endedAt: string | null;
  endReason: string | null;
  endedBy: string | null;
  extensions: number;
  /** The start time asked for: approved ahead, the request stays approved until then (null: at once). */
  startAt: string | null;
  /** When the request expires if still undecided (null once it is not pending). */
  pendingExpiresAt: string | null;
  decisions: {
    stage: number;
    approver: string;
    decision: "approve" | "deny";
    reason: string | null;
    decidedAt: string;
  }[];
}

export const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString());

/** A refusal that should be audited and then thrown, decided inside a transaction. */
export class Refusal {
  constructor(
    readonly code: ErrorCode,
    readonly message: string,
    readonly details?: Record<string, unknown>,
  ) {}
}

/** The index's message for an activation that became active (or whose expiry moved). */
function actMessage(row: requestStore.RequestRow, activatedAt: Date, expiresAt: Date) {
  return {
    t: "act" as const,
    id: row.id,
    pid: row.requester_id,
    pn: row.requester_name,
    rid: row.role_id,
    rn: row.role_name,
    exp: expiresAt.getTime(),
    since: activatedAt.getTime(),
  };
}

/** The service's dependencies and the helpers every use case shares. */
export function createRequestContext(deps: RequestServiceDeps) {
  const { store, audit, clock, index } = deps;
  const emit = async (tx: Kysely<Database>, event: RequestEvent) => deps.onEvent?.(tx, event);

  /** In the transaction that made `row` active or moved its expiry: every node's index learns it at commit. */
  async function tellActive(tx: Kysely<Database>, row: requestStore.RequestRow, activatedAt: Date, expiresAt: Date) {
    await index?.send(tx, actMessage(row, activatedAt, expiresAt));
  }

  function principalOf(actor: Actor): Extract<Actor, { kind: "principal" }> {
    if (actor.kind !== "principal") throw new StintError("UNAUTHENTICATED");
    return actor;
  }

  async function refuse(
    actor: Actor,
    context: CallContext,
    action: string,
    subject: string,
    refusal: Refusal,
  ): Promise<never> {
    await audit.record(actor, context, {
      action,
      outcome: "denied",
      subject,
      reason: refusal.message,
      details: refusal.details,
    });
    throw new StintError(refusal.code, refusal.message, refusal.details);
  }

  async function toDto(db: Kysely<Database>, row: requestStore.RequestRow): Promise<RequestDto> {
    return dtoOf(row, await requestStore.decisionsOf(db, row.id));
  }

  /** The answer for a request whose row and decisions the caller already holds (no read). */
  function dtoOf(row: requestStore.RequestRow, decisions: requestStore.DecisionOf[]): RequestDto {
    const stages = requestStore.stagesOf(row);
    return {
      id: row.id,
      role: row.role_name,
      requester: row.requester_name,
      state: row.state,
      duration: formatDuration(row.duration_ms),
      reason: row.reason,
      ticket: row.ticket,
      breakGlass: row.break_glass,
      extendsRequestId: row.extends_request_id,
      stages: stages.map((stage, index) => ({
        name: stage.name,
        count: stage.count,
        approvals: decisions
          .filter((d) => d.stageIndex === index && d.decision === "approve")
          .map((d) => d.approverName),
        escalated: !!stage.escalated,
      })),
      stageIndex: row.stage_index,
      stageDeadline: iso(row.stage_deadline),
      submittedAt: iso(row.submitted_at)!,
      decidedAt: iso(row.decided_at),
      activatedAt: iso(row.activated_at),
      expiresAt: iso(row.expires_at),
      endedAt: iso(row.ended_at),
      endReason: row.end_reason,
      endedBy: row.ended_by,
      extensions: row.extensions,
      startAt: iso(row.start_at),
      pendingExpiresAt: row.state === "pending" ? iso(row.pending_expires_at) : null,
      decisions: decisions.map((d) => ({
        stage: d.stageIndex,
        approver: d.approverName,
        decision: d.decision,
        reason: d.reason,
        decidedAt: d.decidedAt.toISOString(),
      })),
    };
  }

  /** Why `row`'s requester may not hold its role now (disabled, no longer eligible), or null. */
  async function lostBasis(
    tx: Kysely<Database>,
    row: { requester_id: string; role_id: string },
    now: Date,
  ): Promise<string | null> {
    const basis = await requestStore.basisOf(tx, row.requester_id, row.role_id, now);
    return basisProblem({ requesterActive: basis.active, eligible: basis.active && basis.eligible });
  }

  /** An activation whose time is up ends as expired, whoever notices first (the scheduler or a caller). */
  function isPastExpiry(row: requestStore.RequestRow, now: Date): boolean {
    return row.state === "active" && row.expires_at !== null && new Date(row.expires_at).getTime() <= now.getTime();
  }

  /**
   * A stored policy, parsed by zod once per text (not once per submit: ~1% of the CPU of an elevation) and kept
   * frozen, shared by the calls that read the same text; at most `PARSED_POLICIES_MAX` texts are kept. Given
   * as its JSON text (a submit's facts read it so: not parsed by the driver each time) or as read (`jsonb`).
   */
  async function loadPolicy(row: { policy_spec: unknown }): Promise<PolicySpec> {
    const given = row.policy_spec;
    const text = typeof given === "string" ? given : JSON.stringify(given);
    let spec = parsedPolicies.get(text);
    if (spec === undefined) {
      spec = deepFreeze(policySpec.parse(typeof given === "string" ? JSON.parse(given) : given));
      if (parsedPolicies.size >= PARSED_POLICIES_MAX) parsedPolicies.clear();
      parsedPolicies.set(text, spec);
    }
    return spec;
  }
  const parsedPolicies = new Map<string, PolicySpec>();

  return {
    deps,
    store,
    audit,
    clock,
    index,
    emit,
    tellActive,
    actMessage,
    principalOf,
    refuse,
    toDto,
    dtoOf,
    lostBasis,
    isPastExpiry,
    loadPolicy,
  };
}

export type RequestContext = ReturnType<typeof createRequestContext>;

const PARSED_POLICIES_MAX = 1000;

/** `value` and everything it holds, frozen (a shared parsed policy must not be changed by one of its readers). */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
