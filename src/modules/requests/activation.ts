/**
 * The steps that start and end activations, shared by the use cases: approve then grant (people, a timeout, a
 * policy without stages, an extension), the start of a request written already approved (`started`), the end
 * of activations set-based (`endMany`), and ending what lost its basis.
 */
import type { Kysely } from "kysely";
import type { Database } from "../../db/index.js";
import { formatDuration } from "../../lib/duration.js";
import { newId } from "../../lib/ids.js";
import type { AuditInput } from "../audit/audit.types.js";
import { windowProblemAtActivation } from "./policy.rules.js";
import { assertTransition, stageDeadline } from "./requests.rules.js";
import * as requestStore from "./requests.store.js";
import { createRequestTiming } from "./timing.js";
import { waitsForStart } from "./timing.rules.js";
import { iso, type GrantInputs, type RequestContext } from "./request-context.js";

/** The notification of an activation that became active. */
export function activatedNotice(row: requestStore.RequestRow) {
  return { type: "activated" as const, requestId: row.id, role: row.role_name, requester: row.requester_name };
}

/** The audit event of an activation that became active. */
export function activatedEvent(row: requestStore.RequestRow, grantId: string, expiresAt: Date): AuditInput {
  return {
    action: "request.activated",
    outcome: "success",
    subject: `request:${row.id}`,
    details: { role: row.role_name, requester: row.requester_name, expiresAt: expiresAt.toISOString(), grantId },
  };
}

/** The shared context with the activation steps: what each use case file receives. */
export function createRequestCore(ctx: RequestContext) {
  const { deps, store, audit, clock, index, emit, tellActive, lostBasis, loadPolicy } = ctx;

  /**
   * A request that never started ends (cancelled, or expired undecided): its row, with the reason and who
   * ended it, and its notification. The caller says what is audited.
   */
  async function endUnstarted(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    end: { state: "cancelled" | "expired"; event: "cancelled" | "pending_expired"; reason: string; by: string },
    now: Date,
  ): Promise<void> {
    const { state, event, reason, by } = end;
    assertTransition(row.state, state);
    await tx
      .updateTable("activation_requests")
      .set({ state, ended_at: now, end_reason: reason, ended_by: by, stage_deadline: null, updated_at: now })
      .where("id", "=", row.id)
      .execute();
    await emit(tx, { type: event, requestId: row.id, role: row.role_name, requester: row.requester_name, reason, by });
  }

  /** A request that has not started (pending, approved) ends as cancelled, with the reason and who ended it. */
  async function cancelUnstarted(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    reason: string,
    by: string,
    now: Date,
  ): Promise<AuditInput[]> {
    await endUnstarted(tx, row, { state: "cancelled", event: "cancelled", reason, by }, now);
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
    // The internal target is active at once; a real one is provisioning until the worker reports.
    const expiresAt = row.target_kind === "internal" ? new Date(now.getTime() + row.duration_ms) : null;
    if (expiresAt) assertTransition("approved", "active");
    await tx
      .updateTable("activation_requests")
      .set(
        expiresAt
          ? { state: "active", activated_at: now, expires_at: expiresAt, updated_at: now }
          : { state: "provisioning", updated_at: now },
      )
      .where("id", "=", row.id)
      .execute();
    if (expiresAt) await tellActive(tx, row, now, expiresAt);
    await tx
      .insertInto("grants")
      .values({
        id: grantId,
        request_id: row.id,
        role_id: row.role_id,
        principal_id: row.requester_id,
        state: expiresAt ? "active" : "provisioning",
        created_at: now,
        updated_at: now,
      })
      .execute();
    return announceStart(tx, row, grantId, expiresAt);
  }

  /**
   * After an activation started (its request and grant written): the notification of an active one, or the
   * provisioning job of one at a real target (`expiresAt` null), and its audit event.
   */
  async function announceStart(
    tx: Kysely<Database>,
    row: requestStore.RequestRow,
    grantId: string,
    expiresAt: Date | null,
    /** The provisioning hook's inputs, when the caller read them already (the submit). */
    inputs?: GrantInputs,
  ): Promise<AuditInput[]> {
    const subject = `request:${row.id}`;
    if (!expiresAt) {
      await deps.onGrant?.(tx, { grantId, requestId: row.id, action: "provision", ...(inputs ? { inputs } : {}) });
      return [
        { action: "request.provisioning", outcome: "success", subject, details: { role: row.role_name, grantId } },
      ];
    }
    await emit(tx, activatedNotice(row));
    return [activatedEvent(row, grantId, expiresAt)];
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
    /** The index's message went with the statement that wrote the request (`insertRequest`). */
    told = false,
    /** What the provisioning hook needs (a real target), read with the submit's facts. */
    inputs?: GrantInputs,
  ): Promise<AuditInput[]> {
    if (row.state !== "active") return announceStart(tx, row, grantId, null, inputs);
    const expiresAt = new Date(row.expires_at!);
    if (!told) await tellActive(tx, row, now, expiresAt);
    return announceStart(tx, row, grantId, expiresAt);
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
    return [...(await endEach(tx, rows, state, reason, by, now)).values()].flat();
  }

  /**
   * `endMany`, each activation's audit events apart (by request id), and who ended it given per activation
   * (by request id) or one for all: a group of deactivates, each by its holder.
   */
  async function endEach(
    tx: Kysely<Database>,
    rows: requestStore.RequestRow[],
    state: "expired" | "deactivated" | "revoked",
    reason: string,
    by: string | ReadonlyMap<string, string>,
    now: Date,
  ): Promise<Map<string, AuditInput[]>> {
    if (rows.length === 0) return new Map();
    for (const row of rows) assertTransition(row.state, state);
    const byOf = (id: string) => (typeof by === "string" ? by : by.get(id)!);
    // Given the sessions' payloads, every message of the end (the index's, the sessions') is sent by the
    // statement that ends them: one round trip, not three.
    const notify = deps.endedNotifications
      ? [
          ...(index?.prepareMany(
            tx,
            rows.map((row) => ({ t: "end", id: row.id })),
          ) ?? []),
          ...deps.endedNotifications(
            rows.map((row) => ({ requestId: row.id, role: row.role_name, state, by: byOf(row.id), reason })),
          ),
        ]
      : undefined;
    const ids = rows.map((row) => row.id);
    const which = typeof by === "string" ? { ids } : { ids, by: ids.map(byOf) };
    const endBy = typeof by === "string" ? by : "system";
    const done = await requestStore.endActivations(tx, which, { state, reason, by: endBy, now }, notify);
    return ended(tx, done, state, reason, byOf, now, notify !== undefined);
  }

  /** What follows the end of activations (see `endActivations`): revocations, messages, audit events. */
  async function ended(
    tx: Kysely<Database>,
    rows: requestStore.EndedRow[],
    state: "expired" | "deactivated" | "revoked",
    reason: string,
    byOf: (id: string) => string,
    now: Date,
    /** The index's and the sessions' messages went with the statement that ended them (`endMany`). */
    notified = false,
  ): Promise<Map<string, AuditInput[]>> {
    const events = new Map<string, AuditInput[]>();
    if (rows.length === 0) return events;
    // A real target is revoked through the outbox (Stint enforces internal roles itself: nothing to queue).
    for (const row of rows)
      if (row.grant_id && row.target_kind !== "internal")
        await deps.onGrant?.(tx, { grantId: row.grant_id, requestId: row.id, action: "revoke" });
    if (!notified) {
      await index?.sendMany(
        tx,
        rows.map((row) => ({ t: "end", id: row.id })),
      );
      await deps.onEnded?.(
        tx,
        rows.map((row) => ({ requestId: row.id, role: row.role_name, state, by: byOf(row.id), reason })),
      );
    }
    await deps.onEvent?.(
      tx,
      rows.map((row) => ({
        type: state,
        requestId: row.id,
        role: row.role_name,
        requester: row.requester_name,
        reason,
        by: byOf(row.id),
      })),
    );
    for (const row of rows) {
      const own: AuditInput[] = row.cancelled.map((id) => ({
        action: "request.cancelled",
        outcome: "success",
        subject: `request:${id}`,
        reason: "the activation it would extend ended",
        details: { role: row.role_name, extends: row.id },
      }));
      own.push({
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
      events.set(row.id, own);
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

  /**
   * Approved (by the last approver, a stage's timeout, or a policy without stages on an extension): the
   * request is marked approved and starts (`grant`: basis, start time and windows checked again).
   */
  async function approveThenGrant(tx: Kysely<Database>, requestId: string, now: Date): Promise<AuditInput[]> {
    await markApproved(tx, requestId, now);
    return grant(tx, (await requestStore.findRequest(tx, requestId))!, now);
  }

  /** Pending requests past their time to live, requests approved ahead whose start came (`timing.ts`). */
  const timing = createRequestTiming({ store, audit, clock, endUnstarted, grant });

  return {
    ...ctx,
    cancelUnstarted,
    endWithoutBasis,
    grant,
    approveThenGrant,
    started,
    end,
    endMany,
    endEach,
    moveToStage,
    timing,
  };
}

export type RequestCore = ReturnType<typeof createRequestCore>;
