/**
 * Activation requests: submit, decide, cancel, extend, deactivate, revoke,
 * and the scheduler's expiries and stage timeouts. Every call loads its facts
 * inside one transaction (the request row locked), applies the pure rules,
 * and writes the change, its audit events and its outbox rows together.
 * Refusals are audited too, in their own transaction.
 */
import type { Kysely } from "kysely";
import type { AppStore, Database } from "../../db/index.js";
import { policySpec, type PolicySpec } from "../../contract/catalog.js";
import type { Clock } from "../../lib/clock.js";
import { formatDuration, parseDuration } from "../../lib/duration.js";
import { isUniqueViolation } from "../../lib/db.js";
import { StintError, type ErrorCode } from "../../lib/errors.js";
import { newId } from "../../lib/ids.js";
import type { AccessIndex } from "../access-index/access-index.service.js";
import type { ActiveActivation } from "../access-index/access-index.types.js";
import type { AuditLog } from "../audit/audit.service.js";
import { canonicalDetailsText, type AppendUniform } from "../audit/audit.uniform.js";
import type { AuditInput } from "../audit/audit.types.js";
import { authorize, can } from "../authz/authz.rules.js";
import { SYSTEM, type Actor, type CallContext } from "../authz/authz.types.js";
import {
  checkExtension,
  checkJustification,
  checkMfaFreshness,
  evaluateWindow,
  resolveDuration,
  windowProblemAtActivation,
} from "./policy.rules.js";
import {
  alreadyOpenMessage,
  applyDecision,
  applyTimeout,
  assertTransition,
  basisProblem,
  currentApprovers,
  isNamedBy,
  stageDeadline,
  stagesFor,
} from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import type { RequestState, Stage } from "./requests.types.js";
import { createRequestTiming } from "./timing.js";
import { checkStart, expiredUndecided, isPendingPastTtl, pendingExpiresAt, waitsForStart } from "./timing.rules.js";
import type { DecisionLinks } from "./decision-links.js";

/** Something happened to a request that people should hear about (delivered through the outbox). */
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

export interface RequestServiceDeps {
  store: Pick<AppStore, "db" | "transaction">;
  audit: Pick<AuditLog, "append" | "record"> & {
    /** `AuditLog.appendUniform` (the scheduler's expiries); without it they take `append` and one more statement. */
    appendUniform?: AppendUniform;
  };
  clock: Clock;
  /**
   * Called inside the transaction; typically enqueues notifications in the outbox. Many at once (activations
   * ended together) come in one call, which should cost a bounded number of statements whatever their number.
   */
  onEvent?: (tx: Kysely<Database>, event: RequestEvent | RequestEvent[]) => Promise<void>;
  /** Verifies one-time decision-link tokens (from notifications). */
  decisionLinks?: Pick<DecisionLinks, "consume">;
  /** Called inside the transaction when a grant must be provisioned or revoked at a real target. */
  onGrant?: (
    tx: Kysely<Database>,
    change: { grantId: string; requestId: string; action: "provision" | "revoke" },
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
   * The notifications `onEnded` sends, as payloads: given, the scheduler's expiries send them in the statement
   * that writes their audit events instead of calling `onEnded` (one round trip fewer per batch).
   */
  endedNotifications?: (
    ended: { requestId: string; role: string; state: "expired"; by: string; reason: string }[],
  ) => { channel: string; payload: string }[];
  /**
   * The node's access index: the check API and activation tokens answer from it, and every transaction
   * that starts, extends or ends an activation tells it (all nodes hear it at commit).
   */
  index?: Pick<AccessIndex, "view" | "send" | "sendMany" | "prepareMany">;
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

const iso = (value: Date | string | null) => (value === null ? null : new Date(value).toISOString());

/** Why the scheduler ends an activation (its `end_reason` and the audit event's reason). */
const EXPIRY_REASON = "the activation reached its end time";
/** The call context of the scheduler's audit events. */
const SCHEDULER_CONTEXT: CallContext = { correlationId: "scheduler", sourceIp: null, userAgent: null };
/** A character JSON escapes, or a surrogate (which the canonical form decides on its own). */
// eslint-disable-next-line no-control-regex -- control characters are what JSON escapes
const NOT_PLAIN = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * The canonical JSON (RFC 8785: keys sorted, strings as JSON writes them) of a `request.expired` event's
 * details, `{activatedAt, endedAt, expiresAt, lateByMs, requester, role}`, written by concatenation: the ISO
 * times are given as made (`activatedAt` as JSON already: quoted, or null). A name needing an escape takes the
 * audit's own canonicalizer (`requests.expiry.test.ts` compares the two).
 */
export function expiredDetails(
  activatedAt: string,
  endedAt: string,
  expiresAt: string,
  lateByMs: number,
  requester: string,
  role: string,
): string {
  if (NOT_PLAIN.test(requester) || NOT_PLAIN.test(role) || !Number.isSafeInteger(lateByMs))
    return canonicalDetailsText({
      activatedAt: activatedAt === "null" ? null : (JSON.parse(activatedAt) as string),
      endedAt,
      expiresAt,
      lateByMs,
      requester,
      role,
    });
  return (
    `{"activatedAt":${activatedAt},"endedAt":"${endedAt}","expiresAt":"${expiresAt}","lateByMs":${lateByMs},` +
    `"requester":"${requester}","role":"${role}"}`
  );
}

/** A refusal that should be audited and then thrown, decided inside a transaction. */
class Refusal {
  constructor(
    readonly code: ErrorCode,
    readonly message: string,
    readonly details?: Record<string, unknown>,
  ) {}
}

/**
 * The check API's answer, built as a plain literal: this is the hottest answer Stint gives, and an object
 * spread (`{ ...base, allowed }`) measured ~3 µs on Node 20, more than the rest of the decision.
 */
export interface CheckAnswer {
  principal: string;
  role: string;
  allowed: boolean;
  reason: string;
  expiresAt: string | null;
  requestId: string | null;
}

function checkAnswer(
  [principal, role]: readonly [string, string],
  allowed: boolean,
  reason: string,
  expiresAt: string | null,
  requestId: string | null,
): CheckAnswer {
  return { principal, role, allowed, reason, expiresAt, requestId };
}

/** Each index entry's expiry as ISO text, made once per expiry (an extension moves it), not on every check. */
const isoExpiries = new WeakMap<ActiveActivation, { at: number; iso: string }>();
function isoExpiry(activation: ActiveActivation): string {
  let known = isoExpiries.get(activation);
  if (known?.at !== activation.expiresAt) {
    known = { at: activation.expiresAt, iso: new Date(activation.expiresAt).toISOString() };
    isoExpiries.set(activation, known);
  }
  return known.iso;
}

export function createRequestService(deps: RequestServiceDeps) {
  const { store, audit, clock, index } = deps;
  const emit = async (tx: Kysely<Database>, event: RequestEvent) => deps.onEvent?.(tx, event);

  /** In the transaction that made `row` active or moved its expiry: every node's index learns it at commit. */
  async function tellActive(tx: Kysely<Database>, row: requestStore.RequestRow, activatedAt: Date, expiresAt: Date) {
    await index?.send(tx, {
      t: "act",
      id: row.id,
      pid: row.requester_id,
      pn: row.requester_name,
      rid: row.role_id,
      rn: row.role_name,
      exp: expiresAt.getTime(),
      since: activatedAt.getTime(),
    });
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

  /** A request that has not started (pending, approved) ends as cancelled, with the reason and who ended it. */
  async function cancelUnstarted(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    reason: string,
    by: string,
    now: Date,
  ): Promise<AuditInput[]> {
    assertTransition(row.state, "cancelled");
    await tx
      .updateTable("activation_requests")
      .set({
        state: "cancelled",
        ended_at: now,
        end_reason: reason,
        ended_by: by,
        stage_deadline: null,
        updated_at: now,
      })
      .where("id", "=", row.id)
      .execute();
    await emit(tx, {
      type: "cancelled",
      requestId: row.id,
      role: row.role_name,
      requester: row.requester_name,
      reason,
      by,
    });
    return [
      {
        action: "request.cancelled",
        outcome: "success",
        subject: `request:${row.id}`,
        reason,
        details: {
          role: row.role_name,
          requester: row.requester_name,
          ...(row.extends_request_id ? { extends: row.extends_request_id } : {}),
        },
      },
    ];
  }

  /**
   * Ends every open activation in `scope` whose requester lost what it stood on (account, eligibility):
   * pending ones are cancelled, active and provisioning ones revoked (at the target through the outbox).
   * Runs inside the transaction that took the basis away, so nothing outlives it even for a moment.
   */
  async function endWithoutBasis(
    tx: Kysely<Database>,
    scope: { principalIds?: string[]; roleIds?: string[] },
    cause: { by: string; reason?: string },
    now: Date,
  ): Promise<AuditInput[]> {
    if (scope.principalIds?.length === 0 || scope.roleIds?.length === 0) return [];
    const events: AuditInput[] = [];
    for (const { id } of await requestStore.lockOpenActivations(tx, scope)) {
      const row = (await requestStore.findRequest(tx, id))!;
      const lost = await lostBasis(tx, row, now);
      if (!lost) continue;
      const reason = cause.reason ? `${lost}: ${cause.reason}` : lost;
      if (row.state === "pending" || row.state === "approved")
        events.push(...(await cancelUnstarted(tx, row, reason, cause.by, now)));
      else events.push(...(await end(tx, row, "revoked", reason, cause.by, now)));
    }
    return events;
  }

  /** Approved: an extension moves its parent's expiry; an activation becomes active (or provisioning at a real target). */
  async function grant(tx: Kysely<Database>, row: requestStore.RequestRow, now: Date): Promise<AuditInput[]> {
    const subject = `request:${row.id}`;
    // Whatever approved it (people, a timeout, a policy without stages), nothing starts without its basis.
    const lost = await lostBasis(tx, row, now);
    if (lost) return cancelUnstarted(tx, row, lost, "system", now);
    // Approved ahead: it stays approved until the scheduler starts it (`timing.ts`), windows checked then.
    if (!row.extends_request_id && waitsForStart(row, now))
      return [
        {
          action: "request.scheduled",
          outcome: "success",
          subject: `request:${row.id}`,
          details: { role: row.role_name, requester: row.requester_name, startAt: iso(row.start_at) },
        },
      ];
    // A deny rule holds at activation too: a timeout that approves after the window closed activates nothing.
    const closed = windowProblemAtActivation(await loadPolicy({ policy_spec: row.policy_snapshot }), now);
    if (closed) return cancelUnstarted(tx, row, `outside the role's activation windows: ${closed}`, "system", now);
    if (row.extends_request_id) {
      const parent = await requestStore.lockRequest(tx, row.extends_request_id);
      // An activation past its expiry has ended, even if the scheduler has not recorded it yet.
      if (!parent || parent.state !== "active" || !parent.expires_at || new Date(parent.expires_at) <= now) {
        await tx
          .updateTable("activation_requests")
          .set({
            state: "cancelled",
            end_reason: "the activation ended before the extension was approved",
            updated_at: now,
          })
          .where("id", "=", row.id)
          .execute();
        return [
          {
            action: "request.cancelled",
            outcome: "success",
            subject,
            reason: "the activation ended before the extension was approved",
          },
        ];
      }
      const expiresAt = new Date(new Date(parent.expires_at).getTime() + row.duration_ms);
      await tx
        .updateTable("activation_requests")
        .set({ state: "approved", decided_at: now, updated_at: now })
        .where("id", "=", row.id)
        .execute();
      await tx
        .updateTable("activation_requests")
        .set({ expires_at: expiresAt, extensions: parent.extensions + 1, expiring_notified_at: null, updated_at: now })
        .where("id", "=", parent.id)
        .execute();
      await tellActive(tx, parent, new Date(parent.activated_at ?? now), expiresAt);
      await emit(tx, {
        type: "extended",
        requestId: parent.id,
        role: row.role_name,
        requester: row.requester_name,
        reason: row.reason,
      });
      return [
        {
          action: "request.extended",
          outcome: "success",
          subject: `request:${parent.id}`,
          reason: row.reason,
          details: {
            extensionRequestId: row.id,
            by: formatDuration(row.duration_ms),
            expiresAt: expiresAt.toISOString(),
            role: row.role_name,
          },
        },
      ];
    }
    const grantId = newId();
    if (row.target_kind === "internal") {
      assertTransition("approved", "active");
      const expiresAt = new Date(now.getTime() + row.duration_ms);
      await tx
        .updateTable("activation_requests")
        .set({ state: "active", activated_at: now, expires_at: expiresAt, updated_at: now })
        .where("id", "=", row.id)
        .execute();
      await tellActive(tx, row, now, expiresAt);
      await tx
        .insertInto("grants")
        .values({
          id: grantId,
          request_id: row.id,
          role_id: row.role_id,
          principal_id: row.requester_id,
          state: "active",
          created_at: now,
          updated_at: now,
        })
        .execute();
      await emit(tx, { type: "activated", requestId: row.id, role: row.role_name, requester: row.requester_name });
      return [
        {
          action: "request.activated",
          outcome: "success",
          subject,
          details: { role: row.role_name, requester: row.requester_name, expiresAt: expiresAt.toISOString(), grantId },
        },
      ];
    }
    await tx
      .updateTable("activation_requests")
      .set({ state: "provisioning", updated_at: now })
      .where("id", "=", row.id)
      .execute();
    await tx
      .insertInto("grants")
      .values({
        id: grantId,
        request_id: row.id,
        role_id: row.role_id,
        principal_id: row.requester_id,
        state: "provisioning",
        created_at: now,
        updated_at: now,
      })
      .execute();
    await deps.onGrant?.(tx, { grantId, requestId: row.id, action: "provision" });
    return [{ action: "request.provisioning", outcome: "success", subject, details: { role: row.role_name, grantId } }];
  }

  /**
   * A request written already approved in its final state (`active` on the internal target, else
   * `provisioning`) with its grant (`insertRequest`): the index's message (or the provisioning job) and the
   * notification.
   */
  async function started(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    grantId: string,
    now: Date,
  ): Promise<AuditInput[]> {
    const active = row.state === "active";
    const subject = `request:${row.id}`;
    if (!active) {
      await deps.onGrant?.(tx, { grantId, requestId: row.id, action: "provision" });
      return [
        { action: "request.provisioning", outcome: "success", subject, details: { role: row.role_name, grantId } },
      ];
    }
    const expiresAt = new Date(row.expires_at!);
    await tellActive(tx, row, now, expiresAt);
    await emit(tx, { type: "activated", requestId: row.id, role: row.role_name, requester: row.requester_name });
    return [
      {
        action: "request.activated",
        outcome: "success",
        subject,
        details: { role: row.role_name, requester: row.requester_name, expiresAt: expiresAt.toISOString(), grantId },
      },
    ];
  }

  /** Ends an active activation (expired, deactivated, revoked): the grant goes with it, exactly once. */
  function end(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    state: "expired" | "deactivated" | "revoked",
    reason: string,
    by: string,
    now: Date,
  ): Promise<AuditInput[]> {
    return endMany(tx, [row], state, reason, by, now);
  }

  /**
   * Ends activations (rows locked by the caller) in one set-based statement however many (the request rows,
   * their grants, their pending extensions), then sends their messages in one statement each and returns
   * their audit events, for one append.
   */
  async function endMany(
    tx: Kysely<Database>,
    rows: requestStore.RequestRow[],
    state: "expired" | "deactivated" | "revoked",
    reason: string,
    by: string,
    now: Date,
  ): Promise<AuditInput[]> {
    if (rows.length === 0) return [];
    for (const row of rows) assertTransition(row.state, state);
    const done = await requestStore.endActivations(tx, { ids: rows.map((row) => row.id) }, { state, reason, by, now });
    return ended(tx, done, state, reason, by, now);
  }

  /** What follows the end of activations (see `endActivations`): revocations, messages, audit events. */
  async function ended(
    tx: Kysely<Database>,
    rows: requestStore.EndedRow[],
    state: "expired" | "deactivated" | "revoked",
    reason: string,
    by: string,
    now: Date,
  ): Promise<AuditInput[]> {
    if (rows.length === 0) return [];
    // A real target is revoked through the outbox (Stint enforces internal roles itself: nothing to queue).
    for (const row of rows)
      if (row.grant_id && row.target_kind !== "internal")
        await deps.onGrant?.(tx, { grantId: row.grant_id, requestId: row.id, action: "revoke" });
    await index?.sendMany(
      tx,
      rows.map((row) => ({ t: "end", id: row.id })),
    );
    await deps.onEnded?.(
      tx,
      rows.map((row) => ({ requestId: row.id, role: row.role_name, state, by, reason })),
    );
    await deps.onEvent?.(
      tx,
      rows.map((row) => ({
        type: state,
        requestId: row.id,
        role: row.role_name,
        requester: row.requester_name,
        reason,
        by,
      })),
    );
    const events: AuditInput[] = [];
    for (const row of rows) {
      for (const id of row.cancelled)
        events.push({
          action: "request.cancelled",
          outcome: "success",
          subject: `request:${id}`,
          reason: "the activation it would extend ended",
          details: { role: row.role_name, extends: row.id },
        });
      events.push({
        action: `request.${state}`,
        outcome: "success",
        subject: `request:${row.id}`,
        reason,
        details: {
          role: row.role_name,
          requester: row.requester_name,
          activatedAt: iso(row.activated_at),
          expiresAt: iso(row.expires_at),
          endedAt: now.toISOString(),
          lateByMs:
            state === "expired" && row.expires_at ? now.getTime() - new Date(row.expires_at).getTime() : undefined,
        },
      });
    }
    return events;
  }

  async function moveToStage(tx: Kysely<Database>, row: requestStore.RequestRow, stageIndex: number, now: Date) {
    const stages = requestStore.stagesOf(row);
    await tx
      .updateTable("activation_requests")
      .set({ stage_index: stageIndex, stage_deadline: stageDeadline(stages[stageIndex], now), updated_at: now })
      .where("id", "=", row.id)
      .execute();
  }

  async function markApproved(tx: Kysely<Database>, requestId: string, now: Date) {
    await tx
      .updateTable("activation_requests")
      .set({ state: "approved", decided_at: now, stage_deadline: null, updated_at: now })
      .where("id", "=", requestId)
      .execute();
  }

  /** An activation whose time is up ends as expired, whoever notices first (the scheduler or a caller). */
  function isPastExpiry(row: requestStore.RequestRow, now: Date): boolean {
    return row.state === "active" && row.expires_at !== null && new Date(row.expires_at).getTime() <= now.getTime();
  }

  async function loadPolicy(row: { policy_spec: unknown }): Promise<PolicySpec> {
    return policySpec.parse(row.policy_spec);
  }

  /** Pending requests past their time to live, requests approved ahead whose start came (`timing.ts`). */
  const timing = createRequestTiming({ store, audit, clock, emit, grant });

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
          const inserted = await requestStore.insertRequest(
            tx,
            { ...columns, policy_snapshot: JSON.stringify(spec), stages: JSON.stringify(stages), updated_at: now },
            grantId ? { id: grantId, state: state === "active" ? "active" : "provisioning", at: now } : null,
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
            else events.push(...(await started(tx, row, grantId!, now)));
          } else {
            await emit(tx, {
              type: "submitted",
              requestId: id,
              role: facts.role_name,
              requester: row.requester_name,
              reason: input.reason,
            });
          }
          if (spec.breakGlass) {
            // A break-glass activation is reviewed after the fact, always.
            const reviewId = newId();
            await tx
              .insertInto("review_items")
              .values({
                id: reviewId,
                kind: "break-glass-activation",
                subject: `request:${id}`,
                actor_id: principal.id,
                reason: input.reason,
                status: "open",
                created_at: now,
                due_at: new Date(now.getTime() + 3 * 24 * 3600_000),
              })
              .execute();
            events.push({
              action: "breakglass.used",
              outcome: "success",
              subject: `request:${id}`,
              reason: input.reason,
              details: { role: facts.role_name, reviewRequired: true, reviewId },
            });
            await emit(tx, {
              type: "break_glass",
              requestId: id,
              role: facts.role_name,
              requester: row.requester_name,
              reason: input.reason,
            });
          }
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
        const result = applyDecision(
          requestStore.factsOf(row, decisions),
          { id: approver.id, name: approver.name, groups: approver.groups },
          decision,
        );
        if (!result.ok) {
          const known = mayKnow();
          return new Refusal(known ? result.code : "NOT_FOUND", known ? result.message : "There is no such request.", {
            requestId,
          });
        }
        if (decision === "approve" && result.result === "approved" && !waitsForStart(row, now)) {
          // The approval that would activate it must fall inside the windows; nothing is recorded otherwise.
          const closed = windowProblemAtActivation(await loadPolicy({ policy_spec: row.policy_snapshot }), now);
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
        const base = { role: row.role_name, requester: row.requester_name, stage: row.stage_index + 1 };
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
            await markApproved(tx, row.id, now);
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
            const approved = (await requestStore.findRequest(tx, row.id))!;
            events.push(...(await grant(tx, approved, now)));
            break;
          }
        }
        await audit.append(tx, actor, context, events);
        return toDto(tx, (await requestStore.findRequest(tx, row.id))!);
      });
      if (outcome instanceof Refusal) return refuse(actor, context, action, `request:${requestId}`, outcome);
      return outcome;
    },

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

    /** Ends the caller's own active activation of a role early. */
    async deactivate(actor: Actor, roleName: string, context: CallContext): Promise<RequestDto> {
      const principal = principalOf(actor);
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
    },

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
          await tx
            .updateTable("activation_requests")
            .set({ state: "approved", decided_at: now, updated_at: now })
            .where("id", "=", id)
            .execute();
          events.push(...(await grant(tx, (await requestStore.findRequest(tx, id))!, now)));
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

    async get(actor: Actor, requestId: string): Promise<RequestDto> {
      const principal = principalOf(actor);
      const row = await requestStore.findRequest(store.db, requestId);
      if (!row) throw new StintError("NOT_FOUND", "There is no such request.");
      if (row.requester_id !== principal.id && !can(actor, "requests.read")) {
        const me = await requestStore.principalContext(store.db, principal.id);
        const stage = requestStore.stagesOf(row)[row.stage_index];
        const approver =
          me &&
          stage &&
          isNamedBy(currentApprovers(stage), { id: me.id, name: me.name, groups: me.groups }, row.requester_manager_id);
        const decided = (await requestStore.decisionsOf(store.db, row.id)).some((d) => d.approverId === principal.id);
        if (!approver && !decided) throw new StintError("NOT_FOUND", "There is no such request.");
      }
      return toDto(store.db, row);
    },

    /** mine: the caller's requests; inbox: pending requests the caller may decide now; all: everything (readers only). */
    async list(
      actor: Actor,
      filter: {
        scope: "mine" | "inbox" | "all";
        states?: RequestState[] | undefined;
        role?: string | undefined;
        limit?: number | undefined;
      },
    ): Promise<RequestDto[]> {
      const principal = principalOf(actor);
      const limit = Math.min(filter.limit ?? 100, 500);
      if (filter.scope === "all") authorize(actor, "requests.read");
      if (filter.scope === "inbox") {
        const me = await requestStore.principalContext(store.db, principal.id);
        if (!me) return [];
        const pending = await requestStore.listRequests(store.db, {
          states: ["pending"],
          roleName: filter.role,
          limit: 1000,
        });
        const mine = pending.filter((row) => {
          if (row.requester_id === me.id) return false;
          const stage = requestStore.stagesOf(row)[row.stage_index];
          return (
            !!stage &&
            isNamedBy(
              currentApprovers(stage),
              { id: me.id, name: me.name, groups: me.groups },
              row.requester_manager_id,
            )
          );
        });
        return Promise.all(mine.slice(0, limit).map((row) => toDto(store.db, row)));
      }
      const rows = await requestStore.listRequests(store.db, {
        requesterId: filter.scope === "mine" ? principal.id : undefined,
        states: filter.states,
        roleName: filter.role,
        limit,
      });
      return Promise.all(rows.map((row) => toDto(store.db, row)));
    },

    /** The caller's eligible roles with their policy in plain words, and what is active or pending. */
    async myRoles(actor: Actor) {
      const principal = principalOf(actor);
      const now = clock.now();
      const roles = await requestStore.eligibleRoles(store.db, principal.id, now);
      const open = await requestStore.listRequests(store.db, {
        requesterId: principal.id,
        states: ["pending", "approved", "provisioning", "active"],
        limit: 500,
      });
      return roles.map((role) => {
        const spec = policySpec.parse(role.policy_spec);
        const current = open.find((r) => r.role_id === role.id && !r.extends_request_id);
        const until = role.eligible_until ? new Date(role.eligible_until) : null;
        return {
          role: role.name,
          description: role.description,
          risk: role.risk,
          target: role.target_name ?? null,
          targetKind: role.target_kind ?? null,
          eligibleUntil: until && Number.isFinite(until.getTime()) ? until.toISOString() : null,
          policy: {
            defaultDuration: spec.defaultDuration,
            maxDuration: spec.maxDuration,
            approvalRequired: spec.approval.stages.length > 0 && !spec.breakGlass,
            approvalStages: spec.breakGlass ? 0 : spec.approval.stages.length,
            mfaRequired: spec.mfa.required,
            mfaMethods: spec.mfa.required ? (spec.mfa.methods ?? ["totp", "webauthn"]) : [],
            ticketRequired: spec.justification.ticketRequired,
            ticketPattern: spec.justification.ticketPattern ?? null,
            reasonMinLength: spec.justification.minLength,
            breakGlass: spec.breakGlass,
            maxExtensions: spec.maxExtensions,
          },
          state: current?.state ?? null,
          requestId: current?.id ?? null,
          expiresAt: current?.expires_at ? new Date(current.expires_at).toISOString() : null,
          startAt: current?.state === "approved" && current.start_at ? new Date(current.start_at).toISOString() : null,
        };
      });
    },

    /**
     * Worker: the target now holds the privilege. A provisioning request becomes active and its
     * clock starts now. Returns false when the request ended meanwhile (the caller revokes again). A
     * requester who lost the basis meanwhile (disabled, no longer eligible) is revoked here instead.
     */
    async provisioned(grantId: string, details: { login: string }): Promise<boolean> {
      const context: CallContext = { correlationId: `grant:${grantId}`, sourceIp: null, userAgent: null };
      return store.transaction(async (tx) => {
        const now = clock.now();
        const locked = await requestStore.lockRequestOfGrant(tx, grantId);
        if (!locked) return false;
        const { row } = locked;
        if (row.state !== "provisioning" || locked.grantState !== "provisioning") return false;
        const lost = await lostBasis(tx, row, now);
        if (lost) {
          // The target changed for someone who may no longer hold the role: take it away again, now.
          await audit.append(tx, SYSTEM, context, await end(tx, row, "revoked", lost, "system", now));
          return true;
        }
        assertTransition("provisioning", "active");
        const expiresAt = new Date(now.getTime() + row.duration_ms);
        // The request and its grant become active in one statement (one round trip fewer on the dynamic path).
        await tx
          .with("activated", (db) =>
            db
              .updateTable("activation_requests")
              .set({ state: "active", activated_at: now, expires_at: expiresAt, updated_at: now })
              .where("id", "=", row.id)
              .returning("id"),
          )
          .updateTable("grants")
          .set({ state: "active", last_error: null, next_attempt_at: null, updated_at: now })
          .where("id", "=", grantId)
          .execute();
        await tellActive(tx, row, now, expiresAt);
        await emit(tx, { type: "activated", requestId: row.id, role: row.role_name, requester: row.requester_name });
        await audit.append(tx, SYSTEM, context, {
          action: "request.activated",
          outcome: "success",
          subject: `request:${row.id}`,
          details: {
            role: row.role_name,
            requester: row.requester_name,
            expiresAt: expiresAt.toISOString(),
            grantId,
            login: details.login,
          },
        });
        return true;
      });
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
        await tx
          .updateTable("activation_requests")
          .set({ state: "failed", ended_at: now, end_reason: reason, ended_by: "system", updated_at: now })
          .where("id", "=", row.id)
          .execute();
        await tx
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

    /**
     * Scheduler: ends every activation whose time is up. Safe on any number of nodes: rows are claimed with
     * SKIP LOCKED. Two statements whatever the batch's size: the claim that ends them (`expireDue`, their
     * grants and pending extensions with them, the grants at real targets queued for revocation), then their
     * audit events with the index's and the sessions' notifications (`appendUniform`), each event's details
     * written from a template, with no object per activation on the way.
     */
    async expireDue(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const reason = EXPIRY_REASON;
        const due = await requestStore.expireDue(tx, { now, limit, reason });
        const n = due.ids.length;
        if (n === 0) return 0;
        // A real target is revoked through the outbox (Stint enforces internal roles itself: nothing to queue).
        for (const { grantId, requestId } of due.revoking)
          await deps.onGrant?.(tx, { grantId, requestId, action: "revoke" });
        const notify =
          index?.prepareMany(
            tx,
            due.ids.map((id) => ({ t: "end", id })),
          ) ?? [];
        const ended =
          deps.onEnded || deps.endedNotifications
            ? due.ids.map((requestId, i) => ({
                requestId,
                role: due.roles[i]!,
                state: "expired" as const,
                by: "system",
                reason,
              }))
            : [];
        if (deps.endedNotifications) notify.push(...deps.endedNotifications(ended));
        else await deps.onEnded?.(tx, ended);
        if (deps.onEvent)
          await deps.onEvent(
            tx,
            due.ids.map((requestId, i) => ({
              type: "expired",
              requestId,
              role: due.roles[i]!,
              requester: due.requesters[i]!,
              reason,
              by: "system",
            })),
          );
        if (due.cancelled.length > 0)
          await audit.append(
            tx,
            SYSTEM,
            SCHEDULER_CONTEXT,
            due.cancelled.map(({ id, extendsRequestId }) => ({
              action: "request.cancelled",
              outcome: "success",
              subject: `request:${id}`,
              reason: "the activation it would extend ended",
              details: { role: due.roles[due.ids.indexOf(extendsRequestId)], extends: extendsRequestId },
            })),
          );
        const subjects = new Array<string>(n);
        const details = new Array<string>(n);
        const endedAt = now.toISOString();
        let lastExpiry = Number.NaN;
        let expiresIso = "";
        let lastActivation = Number.NaN;
        let activatedIso = "null";
        for (let i = 0; i < n; i++) {
          const expires = due.expiresAt[i]!;
          const activated = due.activatedAt[i]!;
          // A wave shares its expiry (and often its start): each ISO text made once per run of equal times.
          if (expires !== lastExpiry) expiresIso = new Date((lastExpiry = expires)).toISOString();
          if (activated !== lastActivation)
            activatedIso = activated === null ? "null" : `"${new Date((lastActivation = activated)).toISOString()}"`;
          subjects[i] = `request:${due.ids[i]}`;
          details[i] = expiredDetails(
            activatedIso,
            endedAt,
            expiresIso,
            now.getTime() - expires,
            due.requesters[i]!,
            due.roles[i]!,
          );
        }
        const batch = { action: "request.expired", outcome: "success" as const, reason, subjects, details };
        if (audit.appendUniform)
          await audit.appendUniform(tx, SYSTEM, SCHEDULER_CONTEXT, { ...batch, notify, time: endedAt });
        else {
          await requestStore.notifyAll(tx, notify);
          await audit.append(
            tx,
            SYSTEM,
            SCHEDULER_CONTEXT,
            subjects.map((subject, i) => ({
              action: batch.action,
              outcome: batch.outcome,
              subject,
              reason,
              details: JSON.parse(details[i]!) as Record<string, unknown>,
            })),
          );
        }
        return n;
      });
    },

    /** Scheduler: applies stage timeouts (deny, escalate or approve, as each stage says). */
    async processDeadlines(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const due = await requestStore.claimDueDeadlines(tx, now, limit);
        const events: AuditInput[] = [];
        for (const { id } of due) {
          const row = (await requestStore.findRequest(tx, id))!;
          // Past its time to live as well: the request expires undecided, whatever the stage would do.
          if (isPendingPastTtl(row, now)) {
            events.push(...(await timing.expireUndecided(tx, row, now)));
            continue;
          }
          const stages = requestStore.stagesOf(row);
          const result = applyTimeout(requestStore.factsOf(row, []), now);
          const subject = `request:${row.id}`;
          const base = { role: row.role_name, requester: row.requester_name, stage: row.stage_index + 1 };
          if (result.result === "escalated") {
            const updated: Stage[] = stages.map((s, i) => (i === row.stage_index ? result.stage : s));
            await tx
              .updateTable("activation_requests")
              .set({ stages: JSON.stringify(updated), stage_deadline: result.deadline, updated_at: now })
              .where("id", "=", row.id)
              .execute();
            events.push({
              action: "request.escalated",
              outcome: "success",
              subject,
              reason: `${result.stage.name} timed out; escalated to the fallback approvers`,
              details: base,
            });
            await emit(tx, {
              type: "escalated",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
            });
          } else if (result.result === "denied") {
            await tx
              .updateTable("activation_requests")
              .set({
                state: "denied",
                decided_at: now,
                stage_deadline: null,
                end_reason: result.reason,
                ended_by: "system",
                updated_at: now,
              })
              .where("id", "=", row.id)
              .execute();
            events.push({
              action: "request.denied",
              outcome: "success",
              subject,
              reason: result.reason,
              details: { ...base, timeout: true },
            });
            await emit(tx, {
              type: "denied",
              requestId: row.id,
              role: row.role_name,
              requester: row.requester_name,
              reason: result.reason,
              by: "system",
            });
          } else if (result.result === "next_stage") {
            await moveToStage(tx, row, result.stageIndex, now);
            events.push({
              action: "request.stage_approved",
              outcome: "success",
              subject,
              reason: "stage timed out; the policy approves at the timeout",
              details: base,
            });
          } else if (result.result === "approved") {
            await markApproved(tx, row.id, now);
            events.push({
              action: "request.approved",
              outcome: "success",
              subject,
              reason: result.reason,
              details: { ...base, automatic: true },
            });
            events.push(...(await grant(tx, (await requestStore.findRequest(tx, row.id))!, now)));
          } else {
            await tx
              .updateTable("activation_requests")
              .set({ stage_deadline: null, updated_at: now })
              .where("id", "=", row.id)
              .execute();
          }
        }
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, events);
        return due.length;
      });
    },

    /** Scheduler: tells holders their activation ends soon (only when notifications are configured). */
    async warnExpiring(limit = 100): Promise<number> {
      if (!deps.onEvent) return 0;
      return store.transaction(async (tx) => {
        const now = clock.now();
        const candidates = await requestStore.claimExpiring(tx, now, limit);
        const due = candidates.filter(
          (c) =>
            new Date(c.expires_at!).getTime() - now.getTime() <=
            Math.min(requestStore.EXPIRY_WARNING_MAX_MS, c.duration_ms / 2),
        );
        const events: AuditInput[] = [];
        for (const { id } of due) {
          const row = (await requestStore.findRequest(tx, id))!;
          await tx.updateTable("activation_requests").set({ expiring_notified_at: now }).where("id", "=", id).execute();
          await emit(tx, { type: "expiring", requestId: id, role: row.role_name, requester: row.requester_name });
          events.push({
            action: "request.expiry_warning",
            outcome: "success",
            subject: `request:${id}`,
            details: { role: row.role_name, requester: row.requester_name, expiresAt: iso(row.expires_at) },
          });
        }
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, events);
        return due.length;
      });
    },

    /** Scheduler: an eligibility that reached its end date stops being usable (queries check it) and is reported once. */
    async reportEndedEligibilities(limit = 100): Promise<number> {
      return store.transaction(async (tx) => {
        const now = clock.now();
        const ended = await requestStore.claimEndedEligibilities(tx, now, limit);
        if (ended.length === 0) return 0;
        await tx
          .updateTable("eligibilities")
          .set({ expiry_reported_at: now })
          .where(
            "id",
            "in",
            ended.map((e) => e.id),
          )
          .execute();
        // What was activated on an eligibility that ended does not outlive it. The request rows are locked
        // before the audit head, as every request transaction does.
        const roleIds = [...new Set(ended.map((e) => e.role_id))];
        const endedAccess = await endWithoutBasis(
          tx,
          { roleIds },
          { by: "system", reason: "the eligibility ended" },
          now,
        );
        await audit.append(tx, SYSTEM, { correlationId: "scheduler", sourceIp: null, userAgent: null }, [
          ...ended.map((e) => ({
            action: "eligibility.expired",
            outcome: "success" as const,
            subject: `role:${e.role_name}`,
            reason: "the eligibility reached its end date",
            details: { eligibilityId: e.id, principal: e.principal_name, group: e.group_name, endedAt: iso(e.ends_at) },
          })),
          ...endedAccess,
        ]);
        return ended.length;
      });
    },

    /**
     * Called inside the transaction that disables an account, removes an eligibility or a group membership:
     * every open activation in `scope` that lost its basis ends in that same transaction. Returns the audit
     * events for the caller to append with its own (after these row locks, as every request transaction does).
     */
    async endAccessWithoutBasis(
      tx: Kysely<Database>,
      scope: { principalIds?: string[]; roleIds?: string[] },
      cause: { by: string; reason?: string },
    ): Promise<AuditInput[]> {
      return endWithoutBasis(tx, scope, cause, clock.now());
    },

    nextExpiry: () => requestStore.nextExpiry(store.db),

    expirePendingDue: timing.expirePendingDue,
    startScheduledDue: timing.startScheduledDue,
    nextTimingDue: timing.nextTimingDue,

    /**
     * Is `principal` holding `role` right now? Anyone may ask about themselves; readers about anyone. Answered
     * from the access index (no database round trip) when it vouches for itself, else from the database.
     */
    /**
     * The check API's answer from the access index, synchronously (the hottest route: no promise, no
     * list, no Date per call), or undefined while the index cannot vouch for itself (`check` asks the
     * database then). Throws when the caller may not ask about someone else.
     */
    checkNow(actor: Actor, principalName: string, roleName: string): CheckAnswer | undefined {
      const caller = principalOf(actor);
      if (caller.name !== principalName) authorize(actor, "access.check");
      const view = index?.view();
      if (!view) return undefined;
      const principal = view.principalByName(principalName);
      const who = [principalName, roleName] as const;
      if (!principal) return checkAnswer(who, false, "no such principal", null, null);
      if (principal.status !== "active") return checkAnswer(who, false, "the principal is disabled", null, null);
      const active = view.activeRole(principal.id, roleName);
      if (!active) return checkAnswer(who, false, "no active activation of this role", null, null);
      return checkAnswer(who, true, "active activation", isoExpiry(active), active.requestId);
    },

    async check(actor: Actor, principalName: string, roleName: string): Promise<CheckAnswer> {
      const fromMemory = this.checkNow(actor, principalName, roleName);
      if (fromMemory) return fromMemory;
      const now = clock.now();
      const principal = await store.db
        .selectFrom("principals")
        .select(["id", "status"])
        .where("name", "=", principalName)
        .executeTakeFirst();
      const found =
        principal && (await requestStore.activeFor(store.db, principal.id, now)).find((a) => a.role_name === roleName);
      const who = [principalName, roleName] as const;
      if (!principal) return checkAnswer(who, false, "no such principal", null, null);
      if (principal.status !== "active") return checkAnswer(who, false, "the principal is disabled", null, null);
      if (!found) return checkAnswer(who, false, "no active activation of this role", null, null);
      return checkAnswer(who, true, "active activation", new Date(found.expires_at!).toISOString(), found.id);
    },

    /** The caller's live activations (for activation tokens), from the access index when it vouches for itself. */
    async activeRoles(
      actor: Actor,
    ): Promise<{ id: string; role_name: string; expires_at: Date; activated_at: Date | null }[]> {
      const principal = principalOf(actor);
      const view = index?.view();
      if (view)
        return view.activeFor(principal.id).map((a) => ({
          id: a.requestId,
          role_name: a.roleName,
          expires_at: new Date(a.expiresAt),
          activated_at: a.activatedAt ? new Date(a.activatedAt) : null,
        }));
      const rows = await requestStore.activeFor(store.db, principal.id, clock.now());
      return rows.map((r) => ({
        id: r.id,
        role_name: r.role_name,
        expires_at: new Date(r.expires_at!),
        activated_at: r.activated_at ? new Date(r.activated_at) : null,
      }));
    },
  };
}

export type RequestService = ReturnType<typeof createRequestService>;
